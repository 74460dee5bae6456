"""What an `axolotl:` pass-through block (a recipe's or a profile's) may hold: checked before
anything is rendered or imported.

- Paths. Every key that Axolotl reads as a file or folder is confined to the project root
  and the workspace, like every other path (`core.workspace.resolve_path`), and rendered
  absolute (training runs in the run folder). The list comes from Axolotl's config schema
  (`axolotl.utils.schemas`; tests/test_recipe_passthrough.py checks it against the installed
  version): `PATH_KEYS` are always paths, `HUB_OR_PATH_KEYS` are a hub id unless written as a
  path, and any key ending in `_dir`, `_path`, `_file` or `_files` is a path as well.
- Plugins. `plugins:` names only Axolotl's own integrations (`axolotl.integrations.*`) and
  the toolkit's (`cl_toolkit.*`): Axolotl imports every plugin it is given.
- Code named by data. A dotted dataset `type` (a custom prompt strategy) and TRL's
  `reward_funcs` / `rollout_func` are modules Axolotl imports: only `axolotl.*` and
  `cl_toolkit.*` may be named.
- Remote code. `trust_remote_code` anywhere in the block runs code from the model's or the
  dataset's repository; it needs `--trust-remote-code` on the command line.

Imports nothing heavy: the recipe layer validates without Axolotl."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.workspace import TOOLKIT_PREFIX, WORKSPACE_PREFIX, resolve_path
from cl_toolkit.core.yamlio import LineMap, format_key

# Always a local file or folder (top-level keys, or keys of the nested blocks named so).
PATH_KEYS = frozenset({
    "output_dir", "dataset_prepared_path", "resume_from_checkpoint", "torchdistx_path",
    "axolotl_config_path", "deepspeed", "trigger_file_path",
})
# A Hugging Face hub id, or a local path when written as one (see `is_local`).
HUB_OR_PATH_KEYS = frozenset({
    "base_model", "base_model_config", "tokenizer_config", "cls_model_config", "lora_model_dir",
    "path", "data_files",
})
# Blocks whose entries are datasets (their `path`, `data_files`, `chat_template_jinja`).
DATASET_BLOCKS = frozenset({"datasets", "test_datasets", "pretraining_dataset"})
PATH_SUFFIXES = ("_dir", "_path", "_file", "_files")
# A chat template given inline or as a file: a file when it holds no template syntax.
TEMPLATE_OR_PATH_KEYS = frozenset({"chat_template_jinja"})

PLUGIN = re.compile(r"(?:axolotl\.integrations|cl_toolkit)(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
TRUST_FLAG = "--trust-remote-code"


def is_local(raw: str, root: Path) -> bool:
    """Whether a hub-or-path value names a local file: written as a path (`/`, `~`, `.`,
    `workspace:`, `toolkit:`, `file://`, a `..` part, more than one `/`) or existing under the root."""
    if raw.startswith(("/", "~", ".", WORKSPACE_PREFIX, TOOLKIT_PREFIX, "file:")):
        return True
    if "://" in raw:  # s3://, gs://, https://: remote, not a path
        return False
    parts = raw.replace("\\", "/").split("/")
    return ".." in parts or len(parts) > 2 or (root / raw).exists()


def _is_template(raw: str) -> bool:
    return "\n" in raw or "{" in raw or "%" in raw


def _kind(key: str, parents: tuple) -> str | None:
    """'path', 'hub' (hub or path) or None for a key of the block at `parents`."""
    in_dataset = any(isinstance(p, str) and p in DATASET_BLOCKS for p in parents)
    if key in PATH_KEYS or key.endswith(PATH_SUFFIXES):
        return "path"
    if key in TEMPLATE_OR_PATH_KEYS:
        return "template"
    if key in {"path", "data_files"}:
        return "hub" if in_dataset else None
    if key in HUB_OR_PATH_KEYS and not parents:
        return "hub"
    return None


def _local_raw(raw: str) -> str:
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    return os.path.expanduser(raw) if raw.startswith("~") else raw


def path_refs(block, root: Path, parents: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, raw value) for every local path in the block, nested blocks included."""
    refs = []
    items = block.items() if isinstance(block, dict) else enumerate(block) if isinstance(block, list) else ()
    for key, value in items:
        here = (*parents, key)
        kind = _kind(key, parents) if isinstance(key, str) else None
        if kind and isinstance(value, str):
            candidates = [(here, value)]
        elif kind and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            candidates = [((*here, i), v) for i, v in enumerate(value)]
        else:
            candidates = []
            if isinstance(value, dict | list):
                refs.extend(path_refs(value, root, here))
        refs += [(at, raw) for at, raw in candidates
                 if kind == "path" or (kind == "hub" and is_local(raw, root))
                 or (kind == "template" and not _is_template(raw))]
    return refs


def _set(block, at: tuple, value) -> None:
    for part in at[:-1]:
        block = block[part]
    block[at[-1]] = value


def resolve_paths(block: dict, root: Path, workspace: Path) -> tuple[dict, list[tuple[tuple, str]]]:
    """A copy of `block` with every local path absolute, and (key path, why) for each path
    that leaves the project root and the workspace."""
    out, problems = copy.deepcopy(block), []
    for at, raw in path_refs(block, root):
        try:
            _set(out, at, str(resolve_path(_local_raw(raw), root, workspace)))
        except BadInput as e:
            problems.append((at, e.problems[0].message))
    return out, problems


def plugin_problems(block: dict) -> list[tuple[tuple, str]]:
    """(key path, why) for every plugin outside Axolotl's integrations and the toolkit's."""
    plugins = block.get("plugins") if isinstance(block, dict) else None
    if plugins is None:
        return []
    if not isinstance(plugins, list):
        return [(("plugins",), "plugins must be a list of module paths")]
    return [(("plugins", i), "only Axolotl's integrations (axolotl.integrations.*) and the toolkit's "
                             "(cl_toolkit.*) may be plugins; nothing else is imported")
            for i, name in enumerate(plugins) if not (isinstance(name, str) and PLUGIN.fullmatch(name))]


# Axolotl imports the module a dotted dataset `type` (its prompt strategy) or a TRL reward /
# rollout function names, trying top-level modules first: only its own and ours may be named.
CODE_REF = re.compile(r"(?:axolotl|cl_toolkit)(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
TRL_CODE_KEYS = frozenset({"reward_funcs", "rollout_func"})


def code_ref_problems(block) -> list[tuple[tuple, str]]:
    """(key path, why) for every dataset `type` or TRL function that names a module outside
    Axolotl and the toolkit (an undotted type is one of Axolotl's own prompt strategies)."""
    if not isinstance(block, dict):
        return []
    why = "names a module to import; only Axolotl's (axolotl.*) and the toolkit's (cl_toolkit.*) may be named"
    found = []
    for name in DATASET_BLOCKS:
        entries = block.get(name)
        entries = [entries] if isinstance(entries, dict) else entries if isinstance(entries, list) else []
        for i, entry in enumerate(entries):
            kind = entry.get("type") if isinstance(entry, dict) else None
            if isinstance(kind, str) and "." in kind and not CODE_REF.fullmatch(kind):
                at = (name, "type") if isinstance(block.get(name), dict) else (name, i, "type")
                found.append((at, f"dataset type {why}"))
    trl = block.get("trl")
    for key in TRL_CODE_KEYS & set(trl or ()) if isinstance(trl, dict) else ():
        values = trl[key] if isinstance(trl[key], list) else [trl[key]]
        for i, value in enumerate(values):
            if value is not None and not (isinstance(value, str) and CODE_REF.fullmatch(value)):
                at = ("trl", key, i) if isinstance(trl[key], list) else ("trl", key)
                found.append((at, f"trl.{key} {why}"))
    return found


def refuse_plugins(cfg: dict, fname: str) -> None:
    """BadInput naming every plugin that is not allowed; called before any plugin import."""
    found = plugin_problems(cfg) + code_ref_problems(cfg)
    if found:
        raise BadInput([Problem(fname, why, key=format_key(at)) for at, why in found])


def trust_problems(block, parents: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, why) for every truthy `trust_remote_code` in the block, nested ones included."""
    found = []
    items = block.items() if isinstance(block, dict) else enumerate(block) if isinstance(block, list) else ()
    for key, value in items:
        if key == "trust_remote_code" and value:
            found.append(((*parents, key), f"trust_remote_code runs code from the model's or dataset's "
                                           f"repository; pass {TRUST_FLAG} to allow it"))
        elif isinstance(value, dict | list):
            found.extend(trust_problems(value, (*parents, key)))
    return found


def block_problems(block, lines: LineMap | None, fname: str, prefix: tuple, root: Path, workspace: Path,
                   trust_remote_code: bool) -> list[Problem]:
    """Every problem of an `axolotl:` block found at `prefix` of a file: paths, plugins and
    (unless trusted) remote code, each with file, line and key."""
    if not isinstance(block, dict):
        return []
    found = resolve_paths(block, root, workspace)[1] + plugin_problems(block) + code_ref_problems(block)
    if not trust_remote_code:
        found += trust_problems(block)
    return [Problem(fname, why, lines.line_for((*prefix, *at)) if lines is not None else None,
                    format_key((*prefix, *at))) for at, why in found]
