"""Read-only views of the registry: a model line's summary, its lineage tree, its history
(and the alias moves alone, for the quarterly report), and the `model_registry.json` export."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.semver import parse as parse_semver
from cl_toolkit.registry.artifacts import store_for_dir
from cl_toolkit.registry.db import RegistryStore, VersionRecord, now


def _by_semver(recs: list[VersionRecord]) -> list[VersionRecord]:
    return sorted(recs, key=lambda r: parse_semver(r.version))


def model_versions(reg: RegistryStore, model: str) -> list[VersionRecord]:
    recs = reg.versions(model)
    if not recs:
        known = ", ".join(reg.models()) or "none"
        raise BadInput(f"no versions of {model!r} are registered (models: {known})")
    return _by_semver(recs)


def _aliases_of(reg: RegistryStore, model: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, version in reg.aliases(model).items():
        out.setdefault(version, []).append(alias)
    return out


def read_artifact(rec: VersionRecord, rel: str) -> bytes | None:
    """A file of a version: its artifact copy, else its run folder; None if neither has it."""
    if rec.artifact_dir:
        data = store_for_dir(rec.artifact_dir).read_bytes(rec.artifact_dir, rel)
        if data is not None:
            return data
    path = Path(rec.run_dir) / rel
    return path.read_bytes() if path.is_file() else None


def artifact_file(rec: VersionRecord, rel: str) -> Path:
    """A local path to a file of a version: its local artifact copy, else its run folder."""
    if rec.artifact_dir and "://" not in rec.artifact_dir and (Path(rec.artifact_dir) / rel).is_file():
        return Path(rec.artifact_dir) / rel
    return Path(rec.run_dir) / rel


def summary(reg: RegistryStore, model: str, recent: int = 10) -> dict:
    """A model line: its aliases, versions and latest events."""
    recs, held = model_versions(reg, model), _aliases_of(reg, model)
    return {"model": model, "aliases": reg.aliases(model),
            "versions": [{"version": r.version, "parent": r.parent, "strategy": r.strategy, "status": r.status,
                          "aliases": held.get(r.version, []), "created_at": r.created_at} for r in recs],
            "recent_events": [asdict(e) for e in reg.events(model)[-recent:]]}


def version_detail(reg: RegistryStore, model: str, version: str) -> dict:
    """One version in full: its record, the aliases it holds and its artifact files."""
    return {**asdict(reg.require(model, version)),
            "aliases": [a for a, v in reg.aliases(model).items() if v == version],
            "artifacts": [asdict(f) for f in reg.artifact_files(model, version)]}


def lineage(reg: RegistryStore, model: str, version: str | None = None) -> list[dict]:
    """The family tree of a model line (of one version: its ancestors and descendants)."""
    recs, held = model_versions(reg, model), _aliases_of(reg, model)
    by_version = {r.version: r for r in recs}
    children: dict[str | None, list[VersionRecord]] = {}
    for r in recs:
        children.setdefault(r.parent if r.parent in by_version else None, []).append(r)
    keep = set(by_version)
    if version:
        reg.require(model, version)
        keep = _ancestors(by_version, version) | _descendants(children, version)

    def node(r: VersionRecord) -> dict:
        return {"version": r.version, "strategy": r.strategy, "status": r.status, "aliases": held.get(r.version, []),
                "merged_from": list(r.parents[1:]), "created_at": r.created_at,
                "children": [node(c) for c in children.get(r.version, []) if c.version in keep]}

    return [node(r) for r in children.get(None, []) if r.version in keep]


def _ancestors(by_version: dict[str, VersionRecord], version: str) -> set[str]:
    out, todo = set(), [version]
    while todo:
        v = todo.pop()
        if v in by_version and v not in out:
            out.add(v)
            todo.extend(by_version[v].parents)
    return out


def _descendants(children: dict, version: str) -> set[str]:
    out, todo = set(), [version]
    while todo:
        v = todo.pop()
        out.add(v)
        todo.extend(c.version for c in children.get(v, []))
    return out


def format_lineage(model: str, nodes: list[dict]) -> list[str]:
    """The tree drawn with box characters, aliases in brackets."""
    lines = [model]

    def walk(items: list[dict], prefix: str) -> None:
        for i, n in enumerate(items):
            last = i == len(items) - 1
            tags = [*(f"[{a}]" for a in n["aliases"]), *(["(archived)"] if n["status"] != "active" else [])]
            merged = f"  + merges {', '.join(n['merged_from'])}" if n["merged_from"] else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{n['version']}  {n['strategy']}{merged}"
                         + (f"  {' '.join(tags)}" if tags else ""))
            walk(n["children"], prefix + ("    " if last else "│   "))

    walk(nodes, "")
    return lines


def history(reg: RegistryStore, model: str) -> list[dict]:
    model_versions(reg, model)
    return [asdict(e) for e in reg.events(model)]


ALIAS_ACTIONS = ("promote", "rollback", "unset", "archive")


def alias_history(reg: RegistryStore, model: str) -> list[dict]:
    """Every move of the line's aliases, and every archive, oldest first: what moved from
    which version to which, who did it, when and why (the registry's append-only events)."""
    return [{"id": e.id, "at": e.at, "action": e.action, "alias": e.alias, "from": e.previous, "to": e.version,
             "who": e.who, "why": e.why, "forced": e.forced}
            for e in reg.events(model) if e.action in ALIAS_ACTIONS]


def last_event_id(reg: RegistryStore, model: str) -> int | None:
    """The id of the line's newest event: a report built before it is out of date."""
    events = reg.events(model)
    return events[-1].id if events else None


def format_event(e: dict) -> str:
    move = f"{e['alias']}: {e['previous'] or '-'} -> {e['version'] or '-'}" if e["alias"] else (e["version"] or "")
    forced = "  FORCED" if e["forced"] else ""
    return f"{e['at']}  {e['who']:<10} {e['action']:<8} {move}{forced}  {e['why']}".rstrip()


def _pick(sources: list[dict], *keys: str):
    """The first value found under any key; {"candidate": x, ...} values give x."""
    for src in sources:
        for key in keys:
            value = src.get(key)
            if isinstance(value, dict) and "candidate" in value:
                value = value["candidate"]
            if value is not None:
                return value
    return None


def _training_data(manifest: dict) -> dict | None:
    if not manifest:
        return None
    files = [{"file": i.get("source"), "role": i.get("role"), "examples": i.get("rows")}
             for i in manifest.get("inputs", [])]
    total = manifest.get("outputs", {}).get("data/train.jsonl", {}).get("rows")
    return {"files": files, "examples": total}


def export_version(reg: RegistryStore, rec: VersionRecord, held: dict[str, list[str]]) -> dict:
    raw = read_artifact(rec, "manifest.json")
    manifest = json.loads(raw) if raw else {}
    gate = reg.gate_result(rec.model, rec.version) or {}  # the registry's record, never a file
    hours = round(rec.train_seconds / 3600, 4) if rec.train_seconds is not None else None
    return {"version": rec.version, "release_date": rec.created_at[:10], "base_model": rec.base_model,
            "training_data": _training_data(manifest), "parent_model": rec.parent,
            "training_type": rec.strategy, "training_duration_hours": hours,
            "accuracy": _pick([gate, rec.metrics], "accuracy", "candidate_accuracy", "eval_accuracy"),
            "improvements": _pick([gate, rec.metrics], "improvements"),
            "regressions": _pick([gate, rec.metrics], "regressions"),
            "gate_passed": gate.get("passed"), "gate_baseline": gate.get("baseline"),
            "status": rec.status, "aliases": held.get(rec.version, []),
            "recipe_sha256": rec.recipe_sha256, "data_sha256": rec.data_sha256}


def export_model(reg: RegistryStore, model: str) -> dict:
    """`model_registry.json`: every version of a model line with its provenance and results."""
    recs, held = model_versions(reg, model), _aliases_of(reg, model)
    return {"model": model, "exported_at": now(), "aliases": reg.aliases(model),
            "versions": [export_version(reg, r, held) for r in recs]}
