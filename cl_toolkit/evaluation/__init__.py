"""Evaluation and the regression gate: suites, matchers, judges, batched greedy
generation, per-case results, the gate verdict and the model's evolution."""
