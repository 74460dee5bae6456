"""Judge a rendered config with Axolotl's own validators, and catch what Axolotl would not.

Axolotl silently drops keys it does not know; we reject them. Then the config goes
through `AxolotlInputConfig.model_validate`, `validate_config` (with the capabilities of
the profile's target hardware) and `normalize_config`, exactly as `axolotl train` does.
Imports are lazy: Axolotl takes seconds to import."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.recipe.passthrough import refuse_plugins

RENDERED = "axolotl.yml (rendered)"


def _input_config_class(cfg: dict):
    """Axolotl's config class, extended by the config's plugins; Axolotl imports each
    plugin here, so only allowed ones get this far (recipe.passthrough)."""
    refuse_plugins(cfg, RENDERED)
    from axolotl.utils.schemas.config import AxolotlInputConfig

    if cfg.get("plugins"):
        from axolotl.integrations.config import merge_input_args
        from axolotl.utils.config import prepare_plugins
        from axolotl.utils.dict import DictDefault

        prepare_plugins(DictDefault(copy.deepcopy(cfg)))
        return merge_input_args()[1]
    return AxolotlInputConfig


def known_keys(cls) -> set[str]:
    keys = set()
    for name, field in cls.model_fields.items():
        keys.add(name)
        if field.alias:
            keys.add(field.alias)
    return keys


def unknown_key_problems(cfg: dict) -> list[Problem]:
    """Top-level keys that Axolotl's schema does not know (it would drop them silently)."""
    known = known_keys(_input_config_class(cfg))
    return [Problem(RENDERED, "Axolotl does not know this key and would silently ignore it", key=k)
            for k in sorted(cfg) if k not in known]


def target_capabilities(cpu: bool, num_processes: int) -> tuple[dict, dict]:
    """The hardware the profile targets, not the machine rendering it."""
    import torch

    env = {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]}
    if cpu:
        return {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 0, "compute_capability": None}, env
    return {"bf16": True, "fp8": False, "tf32": True, "n_gpu": num_processes, "compute_capability": "sm_90"}, env


def validate_with_axolotl(cfg: dict, *, cpu: bool, num_processes: int = 1,
                          offline_model_config: Path | None = None) -> None:
    """Run Axolotl's validators on `cfg`; BadInput with one problem per error."""
    from pydantic import ValidationError

    problems = unknown_key_problems(cfg)
    if problems:
        raise BadInput(problems)
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    cls = _input_config_class(cfg)
    work = copy.deepcopy(cfg)
    if offline_model_config is not None:  # validation only: read the model config locally
        work["base_model_config"] = str(offline_model_config)
    caps, env = target_capabilities(cpu, num_processes)
    saved_env = dict(os.environ)
    try:
        cls.model_validate(copy.deepcopy(work))
        validated = validate_config(DictDefault(work), capabilities=caps, env_capabilities=env)
        normalize_config(validated)
    except ValidationError as e:
        raise BadInput([Problem(RENDERED, err["msg"], key=".".join(map(str, err["loc"])) or None)
                        for err in e.errors()]) from None
    except (ValueError, OSError) as e:
        raise BadInput([Problem(RENDERED, f"rejected by Axolotl: {e}")]) from None
    finally:  # normalize_config may export settings into the environment; keep ours clean
        os.environ.clear()
        os.environ.update(saved_env)
