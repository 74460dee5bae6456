"""`clt registry check`: is every recorded artifact present with its recorded SHA-256, does
every alias name an active version, do the aliases agree with the history, and is every
stored local path relative to the workspace (artifact root), so the workspace can move?"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.registry.artifacts import store_for_dir
from cl_toolkit.registry.db import RegistryStore, VersionRecord


@dataclass
class CheckReport:
    """Problems fail the check; notes (leftovers of interrupted registers) do not."""

    versions: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_registry(reg: RegistryStore) -> CheckReport:
    """Every problem and note of the registry (see CheckReport)."""
    report = CheckReport()
    integrity = reg.integrity()
    if integrity != "ok":
        report.problems.append(f"{reg.path}: database integrity check: {integrity}")
    recs = reg.versions()
    for rec in recs:
        _check_version(reg, rec, report)
    for stored in reg.stored_versions():
        _check_stored_paths(reg, stored, report)
    _check_aliases(reg, {(r.model, r.version): r for r in recs}, report)
    _note_orphans(reg, {(r.model, r.version) for r in recs}, report)
    for model, candidate, baseline in reg.legacy_gates():
        report.notes.append(f"{model} {candidate}: gate against {baseline} recorded before schema 4 (legacy: no "
                            f"adapter hashes, so promotion cannot check the weights it gated)")
    return report


def _check_version(reg: RegistryStore, rec: VersionRecord, report: CheckReport) -> None:
    name = f"{rec.model} {rec.version}"
    report.versions += 1
    if rec.adapter_dir and "://" not in rec.adapter_dir and not (Path(rec.adapter_dir) / "adapter_config.json").is_file():
        report.problems.append(f"{name}: adapter_dir {rec.adapter_dir} has no adapter_config.json")
    if not rec.artifact_dir:
        report.notes.append(f"{name}: registered before artifacts were copied; its files live only in {rec.run_dir}")
        return
    files = reg.artifact_files(rec.model, rec.version)
    if not files:
        report.problems.append(f"{name}: no artifact hashes recorded for {rec.artifact_dir}")
    store = store_for_dir(rec.artifact_dir)
    for f in files:
        report.files += 1
        got = store.sha256(rec.artifact_dir, f.path)
        if got is None:
            report.problems.append(f"{name}: {f.path} is missing from {rec.artifact_dir}")
        elif got != f.sha256:
            report.problems.append(f"{name}: {f.path} changed (SHA-256 {got[:12]}, recorded {f.sha256[:12]})")


def _escapes(stored: str, base: Path) -> bool:
    """A stored local path that is absolute, or relative but leading out of `base`."""
    if Path(stored).is_absolute():
        return True
    return not (base / stored).resolve().is_relative_to(base.resolve())


def _check_stored_paths(reg: RegistryStore, rec: VersionRecord, report: CheckReport) -> None:
    """Every local path is kept relative to the workspace (artifact root): an absolute one
    breaks when the workspace is copied or moved, one leading out of it was never its own."""
    name = f"{rec.model} {rec.version}"
    paths = [("run_dir", rec.run_dir, reg.workspace, "the workspace")]
    local_copy = rec.artifact_dir and reg.local_root and "://" not in rec.artifact_dir
    if local_copy:
        paths.append(("artifact_dir", rec.artifact_dir, reg.local_root, "the artifact root"))
    if rec.adapter_dir and "://" not in rec.adapter_dir:
        base = (reg.local_root, "the artifact root") if local_copy else (reg.workspace, "the workspace")
        paths.append(("adapter_dir", rec.adapter_dir, *base))
    for key, stored, base, where in paths:
        if _escapes(stored, base):
            how = "is absolute, not relative to" if Path(stored).is_absolute() else "leads outside"
            report.problems.append(f"{name}: stored {key} {stored} {how} {where} ({base}); "
                                   f"it breaks when the workspace is moved")


def replay_aliases(events) -> dict[tuple[str, str], str]:
    """The aliases the history implies: {(model, alias): version}."""
    out: dict[tuple[str, str], str] = {}
    for e in events:
        if e.action in ("promote", "rollback"):
            out[(e.model, e.alias)] = e.version
        elif e.action == "unset":
            out.pop((e.model, e.alias), None)
    return out


def _check_aliases(reg: RegistryStore, recs: dict, report: CheckReport) -> None:
    actual = {(m, a): v for m, table in reg.aliases().items() for a, v in table.items()}
    for (model, alias), version in sorted(actual.items()):
        rec = recs.get((model, version))
        if rec is None:
            report.problems.append(f"{model} {alias} names {version}, which is not registered")
        elif rec.status != "active":
            report.problems.append(f"{model} {alias} names {version}, which is {rec.status}")
    if replay_aliases(reg.events()) != actual:
        report.problems.append("the aliases disagree with the history's promote/rollback events")


def _note_orphans(reg: RegistryStore, known: set[tuple[str, str]], report: CheckReport) -> None:
    store = reg.artifacts
    for model in store.children():
        for entry in store.children(model):
            if entry.startswith(".staging-"):
                report.notes.append(f"{model}/{entry}: staging folder of an interrupted register "
                                    f"(safe to delete when no register is running)")
            elif (model, entry) not in known:
                report.notes.append(f"{model}/{entry}: artifact folder no version names "
                                    f"(an interrupted register; the next register of {entry} replaces it)")
