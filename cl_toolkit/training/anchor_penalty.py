"""The anchor's penalty, pure torch (training/anchor.py plugs it into Axolotl's trainer):

    λ · Σ_i w_i (θ_i − θ*_i)²

over every trainable parameter of a PEFT model (LoRA matrices, `modules_to_save` copies),
θ* from the parent adapter's safetensors (matched by the key PEFT saves the parameter
under), w_i = 1 (L2-SP) or the parent's diagonal Fisher normalised to mean 1 (EWC)."""

from __future__ import annotations

from pathlib import Path

import torch

from cl_toolkit.training.fisher import ADAPTER_FILE, saved_key

METHODS = ("l2sp", "ewc")


def reference_file(path: str | Path) -> Path:
    path = Path(path)
    return path / ADAPTER_FILE if path.is_dir() else path


class Anchor:
    """The penalty toward a reference: one (parameter, θ*, w) triple per trainable parameter."""

    def __init__(self, model: torch.nn.Module, reference: dict, strength: float, weights: dict | None = None):
        self.strength = float(strength)
        self.terms: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor | None]] = []
        missing, mismatched = [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            key = saved_key(name)
            ref = reference.get(key)
            w = weights.get(key) if weights is not None else None
            if ref is None or (weights is not None and w is None):
                missing.append(key)
            elif ref.shape != param.shape or (w is not None and w.shape != param.shape):
                mismatched.append(f"{key} {tuple(param.shape)} vs {tuple(ref.shape)}")
            else:
                self.terms.append((param, ref.detach().float(), None if w is None else w.detach().float()))
        if mismatched:
            raise ValueError(f"anchor: {len(mismatched)} trainable parameters differ in shape from the reference "
                             f"(sharded by ZeRO-3/FSDP, or another rank/adapter?): {', '.join(mismatched[:3])}")
        if missing:
            raise ValueError(f"anchor: {len(missing)} trainable parameters have no reference (or no Fisher weight) "
                             f"in the parent's adapter: {', '.join(missing[:3])}")
        if not self.terms:
            raise ValueError("anchor: the model has no trainable parameters to anchor")

    def penalty(self) -> torch.Tensor:
        """Σ w (θ − θ*)², in float32, on the parameters' device."""
        total = None
        for i, (param, ref, w) in enumerate(self.terms):
            if ref.device != param.device:  # moved once, the first time (the model may move after we load)
                ref, w = ref.to(param.device), None if w is None else w.to(param.device)
                self.terms[i] = (param, ref, w)
            sq = (param.float() - ref).pow(2)
            term = (sq if w is None else sq * w).sum()
            total = term if total is None else total + term
        return total

    def add_to(self, loss: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, dict]:
        """`loss` + scale · λ · penalty, and the log entries. With λ = 0 the loss comes back
        untouched (the penalty is measured without a graph, for the log only)."""
        if self.strength == 0:
            with torch.no_grad():
                p = self.penalty().item()
            return loss, {"anchor_loss": 0.0, "anchor_penalty": p}
        p = self.penalty()
        term = self.strength * p
        return loss + scale * term, {"anchor_loss": term.item(), "anchor_penalty": p.item()}


def load_anchor(model: torch.nn.Module, method: str, strength: float, reference: str | Path,
                fisher: str | Path | None = None) -> Anchor:
    """The anchor of `model` toward the adapter at `reference` (EWC: weighted by `fisher`)."""
    from safetensors.torch import load_file

    if method not in METHODS:
        raise ValueError(f"anchor_method must be one of {', '.join(METHODS)}, not {method!r}")
    ref_file = reference_file(reference)
    if not ref_file.is_file():
        raise ValueError(f"anchor_reference: no adapter weights at {ref_file}")
    weights = None
    if method == "ewc":
        if not fisher or not Path(fisher).is_file():
            raise ValueError(f"anchor_fisher: no Fisher file at {fisher}")
        weights = load_file(str(fisher))
    return Anchor(model, load_file(str(ref_file)), strength, weights)


def penalty_scale(trainer_divides: bool, accumulation_steps: int) -> float:
    """What the penalty is multiplied by in each micro-batch's loss so that one optimizer
    step carries λ · penalty once: the Trainer divides the loss by the accumulation steps
    itself unless the model normalises by the items in the batch (then we divide)."""
    return 1.0 if trainer_divides else 1.0 / max(1, accumulation_steps)


class AnchoredTrainerMixin:
    """compute_loss of the trainer below it, plus the anchor's penalty while training."""

    anchor: Anchor | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if self.anchor is None or not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        divides = ((not self.model_accepts_loss_kwargs or num_items_in_batch is None)
                   and self.compute_loss_func is None)
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        loss, logs = self.anchor.add_to(loss, penalty_scale(divides, steps))
        if hasattr(self, "store_metrics"):  # Axolotl's trainers: averaged into the next log line
            self.store_metrics(logs)
        return (loss, outputs) if return_outputs else loss


def anchored_trainer_cls(base: type) -> type:
    """A subclass of `base` (the trainer Axolotl would use) with the anchor's loss."""
    return type(f"Anchored{base.__name__}", (AnchoredTrainerMixin, base), {})
