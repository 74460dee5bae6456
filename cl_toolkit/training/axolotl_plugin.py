"""The toolkit's Axolotl plugin, named in every rendered config's `plugins:` and imported
only by Axolotl (in the training process and its config validator)."""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

from cl_toolkit.training.determinism import DEFAULT_SEED, seed_everything


class DeterminismPlugin(BasePlugin):
    """Seeds before the model is built, so the LoRA init draws from the seeded generator."""

    def pre_model_load(self, cfg):
        seed_everything(DEFAULT_SEED if cfg.seed is None else int(cfg.seed))
