"""The benchmark's continual-learning metrics. They live in `cl_toolkit.evaluation.cl_metrics`
(one definition, shared with the gate's accuracy matrix and `clt eval matrix`)."""

from cl_toolkit.evaluation.cl_metrics import (  # noqa: F401
    backward_transfer,
    final_accuracy,
    forgetting,
    forgetting_per_experience,
    plasticity,
    summarize,
)
