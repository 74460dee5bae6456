"""distillation: a fresh LoRA student on the profile's base, trained by Axolotl's KD plugin
on the teacher's top-K log-probabilities over the mix (precomputed, cached)."""

from __future__ import annotations

from cl_toolkit.recipe.model import LoadedRecipe, recipe_schema
from cl_toolkit.registry import RegistryStore
from cl_toolkit.training.profiles import Profile
from cl_toolkit.training.strategies.interface import (
    PARENT_REQUIRED,
    Plan,
    ScaffoldDefaults,
    Strategy,
)
from cl_toolkit.training.teacher import cache_path, teacher_rows

KD_PLUGIN = "axolotl.integrations.kd.KDPlugin"
KD_DATASET = {"ds_type": "json", "type": "axolotl.integrations.kd.chat_template", "field_messages": "messages",
              "logprobs_field": "logprobs", "temperature": 1.0, "roles_to_train": ["assistant"]}


def plan(lr: LoadedRecipe, registry: RegistryStore, profile: Profile, rows: list[dict]) -> Plan:
    """The teacher's top-K log-probs over the mix; a fresh LoRA student trained by the KD plugin."""
    from transformers import AutoTokenizer  # heavy: only when a distillation renders

    d = lr.recipe.distillation
    teacher = registry.require(lr.recipe.model, d["teacher"])
    student_tok = AutoTokenizer.from_pretrained(profile.base_model) if profile.base_is_local else None
    kd_rows = teacher_rows(teacher, rows, d["top_k"], cache_path(lr.workspace, teacher, rows, d["top_k"]),
                           student_tokenizer=student_tok)
    keys = {"base_model": profile.base_model, "plugins": [KD_PLUGIN],
            "kd_trainer": True, "kd_ce_alpha": round(1.0 - d["alpha"], 6), "kd_alpha": d["alpha"],
            "kd_temperature": d["temperature"]}
    return Plan(keys, KD_DATASET, kd_rows)


def scaffold(source: dict) -> ScaffoldDefaults:
    """The source version teaches; alpha, temperature and top-K are the schema's defaults."""
    props = recipe_schema()["properties"]["distillation"]["properties"]
    block = {"teacher": source["version"], **{k: v["default"] for k, v in props.items() if "default" in v}}
    return ScaffoldDefaults(rehearsal_ratio=0.2, blocks={"distillation": block})


STRATEGY = Strategy(about="a fresh LoRA student trained by Axolotl's KD plugin on the teacher's top-K log-probs",
                    plan=plan, scaffold=scaffold,
                    rules={**PARENT_REQUIRED, "required": ["distillation"]},
                    parent_refs=("distillation.teacher",), plugins=(KD_PLUGIN,))  # no teacher given: the parent teaches
