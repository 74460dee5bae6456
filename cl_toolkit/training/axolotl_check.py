"""Judge a rendered config with Axolotl's own validators, and catch what Axolotl would not.

Axolotl silently drops keys it does not know; we reject them (with the nearest known key
as a hint). Then the config goes through `AxolotlInputConfig.model_validate`,
`validate_config` (with the capabilities of the profile's target hardware) and
`normalize_config`, exactly as `axolotl train` does.

Importing Axolotl's schema takes seconds (it pulls in torch, transformers and accelerate),
so imports are lazy, and a config that passed is remembered: `check_fingerprint` hashes
everything the outcome depends on (the config's bytes, the base model's config.json, a
DeepSpeed JSON, the target hardware, the versions of Axolotl and the libraries it judges
with, the few environment variables it reads); the same fingerprint passes again without
importing anything. Only passes are cached, so an error is always Axolotl's current one."""

from __future__ import annotations

import copy
import difflib
import json
import os
from importlib import metadata
from pathlib import Path

from cl_toolkit import __version__
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_json, sha256_bytes, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.recipe.passthrough import refuse_plugins

RENDERED = "axolotl.yml (rendered)"
# what Axolotl's verdict depends on besides the config: its own code and the libraries its
# validators call (pydantic; transformers reads the model config; torch sets capabilities)
JUDGES = ("axolotl", "pydantic", "transformers", "torch", "peft", "accelerate")
ENV_READ = ("WORLD_SIZE", "LOCAL_RANK")  # normalize_config reads these
CHECKED, CACHED = "checked", "cached"


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


def axolotl_version() -> str:
    return _version("axolotl")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def unknown_key_message(key: str, known: set[str]) -> str:
    """What to say about a key Axolotl does not know: the nearest known one, when close."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"Axolotl {axolotl_version()} does not know this key and would silently ignore it{hint}"


def schema_keys(plugins: list | None = None, cache_dir: Path | None = None) -> set[str]:
    """Every top-level key Axolotl's schema (extended by `plugins`) knows. With a
    `cache_dir`, the set is kept there per Axolotl, pydantic and toolkit version and plugin
    list, so the next call imports nothing; without one, Axolotl's schema is imported."""
    plugins = sorted(set(plugins or ()))
    refuse_plugins({"plugins": plugins}, RENDERED)
    facts = {"plugins": plugins, "versions": {n: _version(n) for n in ("axolotl", "pydantic")} | {"cl_toolkit": __version__}}
    path = Path(cache_dir) / f"{sha256_bytes(json.dumps(facts, sort_keys=True).encode())}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return set(json.loads(path.read_text(encoding="utf-8"))["keys"])
        except (ValueError, KeyError, TypeError, OSError):
            pass  # unreadable: judge again and rewrite it
    keys = known_keys(_input_config_class({"plugins": plugins} if plugins else {}))
    if path is not None:
        atomic_write_json(path, {**facts, "keys": sorted(keys)})
    return keys


def unknown_keys(keys, plugins: list | None = None, cache_dir: Path | None = None) -> dict[str, str]:
    """{key: message} for each top-level key that Axolotl's schema (extended by `plugins`)
    does not know (`schema_keys`: imports Axolotl's schema unless the set is cached)."""
    known = schema_keys(plugins, cache_dir)
    return {k: unknown_key_message(k, known) for k in sorted(keys) if k not in known}


def unknown_key_problems(cfg: dict) -> list[Problem]:
    """Top-level keys that Axolotl's schema does not know (it would drop them silently)."""
    return [Problem(RENDERED, why, key=k) for k, why in unknown_keys(cfg, cfg.get("plugins")).items()]


def target_capabilities(cpu: bool, num_processes: int) -> tuple[dict, dict]:
    """The hardware the profile targets, not the machine rendering it."""
    import torch

    env = {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]}
    if cpu:
        return {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 0, "compute_capability": None}, env
    return {"bf16": True, "fp8": False, "tf32": True, "n_gpu": num_processes, "compute_capability": "sm_90"}, env


def _model_config_file(cfg: dict, offline_model_config: Path | None) -> Path | None:
    """The base model's config.json that normalize_config reads, when it is a local file."""
    source = offline_model_config or cfg.get("base_model_config") or cfg.get("base_model")
    if not source:
        return None
    path = Path(source)
    path = path / "config.json" if path.is_dir() else path
    return path if path.is_file() else None


RUN_DIR = "<run folder>"


def check_fingerprint(cfg: dict, *, cpu: bool, num_processes: int, offline_model_config: Path | None = None,
                      run_dir: Path | None = None) -> str | None:
    """A SHA-256 of everything Axolotl's verdict on `cfg` depends on; None when that cannot
    be known without Axolotl (a hub model with no local config, remote code). The run
    folder's own paths (`run_dir`: the data file, the prepared-data and output folders, none
    of which exists yet when a first render is judged) are hashed as a placeholder, so the
    same config rendered into another folder passes at once."""
    model_config = _model_config_file(cfg, offline_model_config)
    if model_config is None or "trust_remote_code" in json.dumps(cfg):
        return None
    deepspeed = cfg.get("deepspeed")
    facts = {
        "config": _without_run_dir(cfg, run_dir), "cpu": cpu, "num_processes": num_processes,
        "model_config": [str(model_config), sha256_file(model_config)],
        "deepspeed": sha256_file(deepspeed) if isinstance(deepspeed, str) and Path(deepspeed).is_file() else None,
        "versions": {name: _version(name) for name in JUDGES} | {"cl_toolkit": __version__},
        "env": {name: os.environ.get(name) for name in ENV_READ},
    }
    return sha256_bytes(json.dumps(facts, sort_keys=True, default=str).encode())


def _without_run_dir(cfg: dict, run_dir: Path | None) -> dict:
    if run_dir is None:
        return cfg
    text = json.dumps(cfg, sort_keys=True, default=str)
    return json.loads(text.replace(json.dumps(str(run_dir))[1:-1], RUN_DIR))


def validate_with_axolotl(cfg: dict, *, cpu: bool, num_processes: int = 1, offline_model_config: Path | None = None,
                          cache_dir: Path | None = None, run_dir: Path | None = None) -> str:
    """Run Axolotl's validators on `cfg`; BadInput with one problem per error. With a
    `cache_dir`, a config whose fingerprint passed before passes again at once (`run_dir`:
    the folder the config was rendered for, see check_fingerprint). Returns CACHED or CHECKED."""
    fingerprint = check_fingerprint(cfg, cpu=cpu, num_processes=num_processes, offline_model_config=offline_model_config,
                                    run_dir=run_dir) if cache_dir else None
    stamp = Path(cache_dir) / f"{fingerprint}.json" if fingerprint else None
    if stamp is not None and stamp.is_file():
        return CACHED
    _run_validators(cfg, cpu=cpu, num_processes=num_processes, offline_model_config=offline_model_config)
    if stamp is not None:
        atomic_write_json(stamp, {"fingerprint": fingerprint, "axolotl": axolotl_version(), "passed_at": utc_now()})
    return CHECKED


def _run_validators(cfg: dict, *, cpu: bool, num_processes: int, offline_model_config: Path | None) -> None:
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
