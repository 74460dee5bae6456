"""Champion and challenger: moving an alias forward (promote) or back (rollback), archiving
a version, and the gate results promotion depends on.

Each move is one transaction that updates one alias row and appends its event, so the
aliases and the history can never disagree. Nothing is copied: rollback is a row update.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Refused
from cl_toolkit.core.files import sha256_file
from cl_toolkit.registry.db import (
    RegistryStore,
    VersionRecord,
    check_names,
    open_registry,
    pause_point,
)

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class AliasMove:
    """What a promote or rollback did."""

    model: str
    alias: str
    version: str
    previous: str | None
    changed: bool
    forced: bool = False


def _reason(reason: str) -> str:
    if not (reason or "").strip():
        raise BadInput("a reason is required (--reason TEXT): the history says why every move happened")
    return reason.strip()


def _active(reg: RegistryStore, model: str, version: str) -> VersionRecord:
    check_names(model, version)
    rec = reg.require(model, version)
    if rec.status != "active":
        raise BadInput(f"{model} {version} is {rec.status}; it cannot hold an alias")
    return rec


def promote(reg: RegistryStore, model: str, version: str, *, to: str = "champion", reason: str,
            who: str | None = None, force: bool = False) -> AliasMove:
    """Point alias `to` at `version`. To champion it needs a passing gate result against the
    current champion (none needed for the first), unless `force` (recorded as forced)."""
    if to not in ALIASES:
        raise BadInput(f"alias must be one of {', '.join(ALIASES)}, not {to!r}")
    why = _reason(reason)
    with reg.transaction():
        reg.lock_line(model)
        rec = _active(reg, model, version)
        current = reg.alias(model, to)
        if current == version:
            return AliasMove(model, to, version, current, changed=False)
        if to == "challenger" and reg.alias(model, "champion") == version:
            raise BadInput(f"{model} {version} is the champion; it cannot also be the challenger")
        gate = None
        if to == "champion" and current and not force:
            gate = require_passing_gate(reg, rec, current)
        reg.set_alias(model, to, version)
        pause_point("promote_before_event")
        reg.append_event(model, "promote", version=version, alias=to, previous=current, who=who, why=why,
                         forced=force, detail={"gate_baseline": gate.get("baseline"), "gate_legacy": gate["legacy"]} if gate else {})
        if to == "champion" and reg.alias(model, "challenger") == version:
            reg.set_alias(model, "challenger", None)  # a champion is no longer a challenger
            reg.append_event(model, "unset", alias="challenger", previous=version, who=who,
                             why=f"promoted to champion: {why}")
    return AliasMove(model, to, version, current, changed=True, forced=force)


def rollback(reg: RegistryStore, model: str, *, to: str | None = None, reason: str,
             who: str | None = None) -> AliasMove:
    """Move champion back to `to`, by default to the champion before the current one."""
    why = _reason(reason)
    check_names(model, to)
    with reg.transaction():
        reg.lock_line(model)
        current = reg.alias(model, "champion")
        if current is None:
            raise BadInput(f"{model} has no champion to roll back")
        target = to or previous_champion(reg, model)
        if target is None:
            raise BadInput(f"{model} has no earlier champion to roll back to; name one with --to VERSION")
        if target == current:
            raise BadInput(f"{model} {target} is already the champion")
        _active(reg, model, target)
        reg.set_alias(model, "champion", target)
        reg.append_event(model, "rollback", version=target, alias="champion", previous=current, who=who, why=why)
        if reg.alias(model, "challenger") == target:
            reg.set_alias(model, "challenger", None)
            reg.append_event(model, "unset", alias="challenger", previous=target, who=who,
                             why=f"became champion by rollback: {why}")
    return AliasMove(model, "champion", target, current, changed=True)


def champion_stack(events) -> list[str]:
    """Replay the champion's history: promote pushes, rollback pops back to its target."""
    stack: list[str] = []
    for e in events:
        if e.alias != "champion":
            continue
        if e.action == "promote":
            stack.append(e.version)
        elif e.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e.version:
                stack.append(e.version)
    return stack


def previous_champion(reg: RegistryStore, model: str) -> str | None:
    """The latest earlier champion that is still active and is not the current one."""
    stack = champion_stack(reg.events(model))
    current = stack[-1] if stack else None
    for version in reversed(stack[:-1]):
        rec = reg.get(model, version)
        if version != current and rec and rec.status == "active":
            return version
    return None


def archive(reg: RegistryStore, model: str, version: str, *, reason: str, who: str | None = None) -> bool:
    """Retire a version: it keeps its files and history but can no longer hold an alias.
    Returns False when it was archived already."""
    why = _reason(reason)
    with reg.transaction():
        reg.lock_line(model)
        rec = reg.require(model, version)
        if rec.status == "archived":
            return False
        held = [a for a, v in reg.aliases(model).items() if v == version]
        if held:
            raise BadInput(f"{model} {version} is the {' and '.join(held)}; move the alias first")
        reg.set_status(model, version, "archived")
        reg.append_event(model, "archive", version=version, who=who, why=why)
    return True


def weights_sha256(rec: VersionRecord) -> str:
    """What the version's weights are, as one hash: for an adapter folder, the SHA-256 of
    every file's relative path and bytes (symlinks are not followed: they hash as their
    target's name); for full weights, of the base model's reference. The gate records it,
    and promotion recomputes it: an adapter swapped after its gate does not promote."""
    if rec.adapter_dir and Path(rec.adapter_dir).is_dir():
        root = Path(rec.adapter_dir)
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
            rel = path.relative_to(root).as_posix()
            content = f"symlink:{os.readlink(path)}" if path.is_symlink() else sha256_file(path)
            digest.update(f"{rel}\0{content}\n".encode())
        return digest.hexdigest()
    if rec.adapter_dir:  # recorded but gone: nothing to hash, and nothing that can pass a check
        return "missing:" + rec.adapter_dir
    return hashlib.sha256(f"base:{rec.base_model}".encode()).hexdigest()


def require_passing_gate(reg: RegistryStore, rec: VersionRecord, champion: str) -> dict:
    """The passing gate of rec against champion, as the registry recorded it (a gate.json in
    a run folder counts for nothing: anyone can write one). Refused (exit 3) when there is
    none, it did not pass, or the candidate's (or champion's) weights are not the ones gated.
    Rows from before schema 4 carry no hashes: they count, marked legacy in the event."""
    row = reg.gate_record(rec.model, rec.version, baseline=champion)
    if row is None:
        raise Refused(f"{rec.model} {rec.version} has no gate result against the champion {champion} in the "
                      f"registry; run the gate (a gate.json file is not a gate), or pass --force with a reason")
    if not row["passed"]:
        raise Refused(f"{rec.model} {rec.version} failed its gate against the champion {champion}; "
                      f"promotion blocked (--force overrides, and is recorded)")
    if not row["legacy"]:
        for who, version, gated in (("candidate", rec.version, row["candidate_adapter_sha256"]),
                                    ("champion", champion, row["baseline_adapter_sha256"])):
            if weights_sha256(reg.require(rec.model, version)) != gated:
                raise Refused(f"{rec.model} {version}'s weights changed since its gate (the {who}'s adapter hash "
                              f"no longer matches the one gated); run the gate again")
    return {**row["result"], "legacy": row["legacy"]}


def record_gate(workspace: Path | None, model: str, candidate: str, gate_result: dict,
                *, who: str | None = None) -> None:
    """Store a gate result (`{"baseline": V, "passed": bool, ...}`) for a registered
    candidate; promotion to champion looks only here. The registry hashes both versions'
    weights itself; when the result says which hashes were evaluated (`adapters`), a
    mismatch (weights replaced while the gate ran) is refused."""
    if not isinstance(gate_result, dict) or not isinstance(gate_result.get("passed"), bool):
        raise BadInput("a gate result must be a dict with a boolean 'passed'")
    if gate_result.get("candidate", candidate) != candidate:
        raise BadInput(f"gate result is for {gate_result.get('candidate')}, not {candidate}")
    baseline = gate_result.get("baseline")
    suites = {s["suite"]: s.get("suite_sha256") for s in gate_result.get("suites", []) if isinstance(s, dict)}
    if not suites and gate_result.get("suite_sha256"):
        suites = {"regression": gate_result["suite_sha256"]}
    with open_registry(workspace) as reg, reg.transaction():
        hashes = {"candidate": weights_sha256(reg.require(model, candidate)),
                  "baseline": weights_sha256(reg.require(model, baseline)) if baseline else None}
        claimed = gate_result.get("adapters") or {}
        for role, sha in hashes.items():
            if role in claimed and claimed[role] != sha:
                raise Refused(f"{model} {gate_result.get(role)}: its weights changed while the gate ran; "
                              f"the verdict is not recorded")
        reg.insert_gate(model, candidate, baseline, gate_result["passed"], gate_result,
                        candidate_adapter_sha256=hashes["candidate"], baseline_adapter_sha256=hashes["baseline"],
                        suites=suites, policy=gate_result.get("policy") or {})
        reg.append_event(model, "gate", version=candidate, who=who,
                         why="passed" if gate_result["passed"] else "blocked",
                         detail={"baseline": baseline, "passed": gate_result["passed"],
                                 "candidate_adapter_sha256": hashes["candidate"]})
