"""Parent anchoring inside Axolotl: `AnchorPlugin`, an Axolotl plugin that adds a penalty
pulling the trainable weights toward the parent's,

    loss = task loss + λ · Σ_i w_i (θ_i − θ*_i)²

over every trainable LoRA parameter (and `modules_to_save` copy), θ* read from the parent
adapter's safetensors. w_i = 1 for L2-SP; for EWC the parent's diagonal Fisher information,
normalised to mean 1 (`training/fisher.py` estimates it before training). With λ = 0 the
loss is exactly the plain one (the penalty is measured for the log, never added).

Axolotl imports this module in the training process when the rendered config says
`plugins: [cl_toolkit.training.anchor.AnchorPlugin]` (continued_lora with `train.anchor`);
its keys (`anchor_*`, `AnchorArgs`) join Axolotl's config schema; its trainer
(`get_trainer_cls`) is the trainer Axolotl would use with `compute_loss` extended. Every
rank builds its own anchor from the files (no rank-0-only state): under DDP each rank adds
the same penalty, so the averaged gradient carries it once. Sharded parameters (ZeRO-3,
FSDP) are refused: the penalty needs whole tensors.

The trainer's logs get `anchor_loss` (λ · penalty, the term added) and `anchor_penalty`
(the weighted squared distance itself), averaged over the logging window like `loss`."""

from __future__ import annotations

from typing import Literal

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel, Field, model_validator

from cl_toolkit.training.anchor_penalty import (
    AnchoredTrainerMixin,
    anchored_trainer_cls,
    load_anchor,
)


class AnchorArgs(BaseModel):
    """The plugin's config keys (joined to Axolotl's schema)."""

    anchor_method: Literal["l2sp", "ewc"] | None = None
    anchor_strength: float | None = Field(default=None, ge=0)
    anchor_reference: str | None = None  # the parent's adapter folder (or its safetensors file)
    anchor_fisher: str | None = None     # ewc: the parent's diagonal Fisher (safetensors, mean 1)

    @model_validator(mode="after")
    def _complete(self):
        if self.anchor_method is None:
            return self
        if self.anchor_strength is None or not self.anchor_reference:
            raise ValueError("anchor_method needs anchor_strength and anchor_reference (the parent's adapter)")
        if self.anchor_method == "ewc" and not self.anchor_fisher:
            raise ValueError("anchor_method ewc needs anchor_fisher (the parent's diagonal Fisher)")
        return self


class AnchorPlugin(BasePlugin):
    """Axolotl plugin: anchor the trainable weights to the parent's adapter (L2-SP or EWC)."""

    def get_input_args(self) -> str:
        return "cl_toolkit.training.anchor.AnchorArgs"

    def pre_model_load(self, cfg):
        if cfg.anchor_method and cfg.rl:
            raise ValueError(f"anchor_method works with supervised fine-tuning only; rl: {cfg.rl} trains "
                             f"with a trainer this plugin does not extend")

    def get_trainer_cls(self, cfg):
        if not cfg.anchor_method:
            return None
        if cfg.reward_model or cfg.process_reward_model or cfg.model_config_type == "mamba":
            raise ValueError("anchor_method works with causal-LM supervised fine-tuning only")
        if cfg.trainer_cls:
            from axolotl.utils.import_helper import get_cls_from_module_str

            return anchored_trainer_cls(get_cls_from_module_str(cfg.trainer_cls))
        from axolotl.core.trainers.base import AxolotlTrainer

        return anchored_trainer_cls(AxolotlTrainer)

    def post_trainer_create(self, cfg, trainer):
        """Every rank loads the reference (and Fisher) into its own trainer."""
        if not cfg.anchor_method:
            return
        if not isinstance(trainer, AnchoredTrainerMixin):
            raise ValueError(f"anchor_method: the trainer is {type(trainer).__name__}, not the anchor's "
                             f"(another plugin chose the trainer)")
        model = trainer.accelerator.unwrap_model(trainer.model)
        trainer.anchor = load_anchor(model, cfg.anchor_method, cfg.anchor_strength, cfg.anchor_reference,
                                     cfg.anchor_fisher)
