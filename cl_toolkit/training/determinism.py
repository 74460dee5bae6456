"""Reproducible training: every random number generator seeded and PyTorch's deterministic
algorithms on *before* the model is built, in every training process.

Axolotl hands the config's `seed:` to the HF Trainer, which seeds when the Trainer is
created: after the model was loaded and the LoRA adapter added. PEFT draws each `lora_A`
from torch's global generator at that point, so without this two runs of the same recipe
start from different adapters (measured: lora_A differed by up to 0.25, and so did the
adapter's bytes every time). Rendering therefore puts the toolkit's Axolotl plugin
(`axolotl_plugin.DeterminismPlugin`, which calls `seed_everything` from its `pre_model_load`
hook) first in every config's `plugins:`; the variables that must exist before CUDA starts
(`CUBLAS_WORKSPACE_CONFIG`) or Python does (`PYTHONHASHSEED`) are in `DETERMINISM_ENV`,
part of every training process's environment (launch.TRAIN_ENV). docs/environment.md says
what this buys on CPU and what it cannot promise on a GPU."""

from __future__ import annotations

PLUGIN = "cl_toolkit.training.axolotl_plugin.DeterminismPlugin"
DEFAULT_SEED = 42  # Axolotl's own default when a config has no seed
DETERMINISM_ENV = {
    "PYTHONHASHSEED": "0",  # set and dict orders that follow str hashes stay the same
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS needs it for deterministic GEMMs (CUDA >= 10.2)
}


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (every device) seeded; deterministic kernels where they exist.
    `warn_only`: an operation without a deterministic kernel (some CUDA backward passes)
    warns instead of failing the run; none of those runs on the CPU path."""
    import torch
    from transformers import set_seed

    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def with_plugin(plugins: list | tuple | None) -> list[str]:
    """A config's plugin list with the determinism plugin first (and only once)."""
    return [PLUGIN, *(p for p in (plugins or []) if p != PLUGIN)]
