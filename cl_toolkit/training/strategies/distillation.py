"""distillation: a fresh LoRA student on the profile's base, trained by Axolotl's KD plugin
on the teacher's top-K log-probabilities over the mix (precomputed, cached)."""

from __future__ import annotations

import json

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
    reh = lr.recipe.data.rehearsal
    # per_epoch repeats every new row each epoch: the teacher answers each distinct row once
    unique, where = _distinct(rows) if reh and reh.resample == "per_epoch" else (rows, None)
    kd_rows = teacher_rows(teacher, unique, d["top_k"], cache_path(lr.workspace, teacher, unique, d["top_k"]),
                           student_tokenizer=student_tok)
    if where is not None:
        kd_rows = [kd_rows[i] for i in where]
    keys = {"base_model": profile.base_model, "plugins": [KD_PLUGIN],
            "kd_trainer": True, "kd_ce_alpha": round(1.0 - d["alpha"], 6), "kd_alpha": d["alpha"],
            "kd_temperature": d["temperature"]}
    return Plan(keys, KD_DATASET, kd_rows)


def _distinct(rows: list[dict]) -> tuple[list[dict], list[int]]:
    """The distinct rows, first occurrence first, and for each row the index of its copy."""
    first: dict[str, int] = {}
    unique, where = [], []
    for row in rows:
        key = json.dumps(row, sort_keys=True, ensure_ascii=False)
        if key not in first:
            first[key] = len(unique)
            unique.append(row)
        where.append(first[key])
    return unique, where


def scaffold(source: dict) -> ScaffoldDefaults:
    """The source version teaches; alpha, temperature and top-K are the schema's defaults."""
    props = recipe_schema()["properties"]["distillation"]["properties"]
    block = {"teacher": source["version"], **{k: v["default"] for k, v in props.items() if "default" in v}}
    return ScaffoldDefaults(rehearsal_ratio=0.2, blocks={"distillation": block})


STRATEGY = Strategy(about="a fresh LoRA student trained by Axolotl's KD plugin on the teacher's top-K log-probs",
                    plan=plan, scaffold=scaffold,
                    rules={**PARENT_REQUIRED, "required": ["distillation"]},
                    parent_refs=("distillation.teacher",), plugins=(KD_PLUGIN,))  # no teacher given: the parent teaches
