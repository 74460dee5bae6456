"""Knowing when to update: trigger rules, drift, A/B statistics, health checks and
auto-rollback, over the feedback store and the registry.

Library modules take data and return results (`triggers`, `drift`, `ab`, `health`,
`stat_tests`, `decisions`); `observe` is the only one that reads the store and the registry.
Nothing here acts: rolling back and training are `cl_toolkit.pipeline.loop`'s; the
commands are in `cl_toolkit.cli`.

The meaning of a rating is defined once, in `cl_toolkit.feedback.ratings` (the same rule as
`clt feedback extract`): the *effective rating* of a prediction comes from its most trusted
source, thumbs counting as 5 / 3 / 1; *positive* is >= 4, *negative* <= 2. "Accuracy" is
the positive rate over rated predictions. A prediction's model line is `metadata.model`, else the registry's only
model line.
"""
