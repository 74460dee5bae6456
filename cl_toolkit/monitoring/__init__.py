"""Knowing when to update: trigger rules, drift, A/B statistics, health checks and
auto-rollback, over the feedback store and the registry.

Library modules take data and return results (`triggers`, `drift`, `ab`, `health`,
`stats`, `decisions`); `observe` is the only one that reads the store and the registry.
Nothing here acts: rolling back and training are `cl_toolkit.pipeline.loop`'s.

Definitions shared by every check (the same rule as `clt feedback extract`): a
prediction's *effective rating* comes from its most trusted source that rated it (expert,
then incident, then user), thumbs counting as 5 / 3 / 1. It is *positive* when >= 4
(rating >= 4 or thumbs up), *negative* when <= 2. "Accuracy" is the positive rate over
rated predictions. A prediction's model line is `metadata.model`, else the registry's only
model line.
"""
