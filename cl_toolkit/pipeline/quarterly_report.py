"""`clt report MODEL`: what changed this quarter, for the people who ship it.

Markdown and a self-contained HTML page (PNG plots embedded) under
`workspace/reports/<model>/`: the line's accuracy matrix (every version on every named
suite, as a table and a heat map, with forgetting and BWT), the quarter's production
feedback (per version and domain, the rating distribution, corrections, the domains users
complained about most), the alias history (promotions, rollbacks: who and why), the data
each version used (new, feedback-extracted, history and rehearsal rows apart), the training
loss of every version, accuracy per domain, the latest gate's regressions side by side, the
lineage graph, and a pre-deployment checklist whose every item is computed from the
registry, manifests and gate results — nothing in it is typed by hand. Every delta is in
percentage points ("pt").

`report.json` beside them says what the report was built from (the registry's newest event,
the quarter); after a promotion or rollback `refresh_after_move` rebuilds an existing report,
or marks it stale with the reason (`stale.json` and a banner on both pages)."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json, atomic_write_text, sha256_file
from cl_toolkit.core.timefmt import utc_now
from cl_toolkit.pipeline.report_sections import (
    alias_history_section,
    analysis_section,
    data_section,
    feedback_section,
    gate_section,
    loss_section,
    matrix_section,
)
from cl_toolkit.pipeline.report_sections import pct as _pct
from cl_toolkit.registry import VersionRecord, artifact_file, open_registry

MIN_NEW_EXAMPLES = 200
# workspace folders that never hold a feedback extract (and may be large): not searched
_NOT_EXTRACTS = {"runs", "models", "registry", "evals", "cycles", "reports"}
EXTRACT_KIND = "feedback-extract"  # the `kind` of an extract's manifest (feedback/extract.py)


def _vkey(rec: VersionRecord):
    return semver.parse(rec.version)


def _json(rec: VersionRecord, rel: str) -> dict | None:
    path = artifact_file(rec, rel)
    return json.loads(path.read_text()) if path.is_file() else None


def report_dir(workspace: Path, model: str) -> Path:
    return workspace / "reports" / model


def gather(workspace: Path, model: str, quarter: str | None = None) -> dict:
    """Every fact the report shows, from the registry, the feedback store and the files
    beside each version. `quarter` ('2026Q2') chooses the feedback window; default: the
    quarter of the line's newest prediction."""
    from cl_toolkit.evaluation.history import load_evolution
    from cl_toolkit.evaluation.matrix import line_matrix
    from cl_toolkit.registry.views import alias_history, last_event_id, lineage

    with open_registry(workspace) as reg:
        recs = sorted(reg.versions(model), key=_vkey)
        if not recs:
            raise BadInput(f"no versions of {model!r} are registered in {workspace}")
        aliases, tree = reg.aliases(model), lineage(reg, model)
        moves, last_event = alias_history(reg, model), last_event_id(reg, model)
    extracts = extract_index(workspace)
    facts = {"model": model, "aliases": aliases, "lineage": tree, "latest": recs[-1].version, "versions": [],
             "evolution": load_evolution(workspace, model), "alias_history": moves, "last_event_id": last_event}
    for r in recs:
        manifest, metrics = _json(r, "manifest.json"), _json(r, "metrics.json")
        facts["versions"].append({"record": r, "manifest": manifest, "metrics": metrics, "gate": _json(r, "gate.json"),
                                  "data": data_used(manifest, workspace, extracts)})
    facts["loss"] = loss_curves(facts["versions"])
    facts["feedback"] = production_feedback(workspace, model, [r.version for r in recs], quarter)
    facts["matrix"] = line_matrix(workspace, model)
    facts["checklist"] = checklist(facts, recs, aliases)
    facts["analysis"], facts["analysis_reason"] = line_analysis(workspace, model, aliases)
    return facts


def line_analysis(workspace: Path, model: str, aliases: dict) -> tuple[dict | None, str | None]:
    """`clt analyze` of the champion for the Analysis section, or why there is none."""
    from cl_toolkit.pipeline.analysis import analyze

    if not aliases.get("champion"):
        return None, f"{model} has no champion to analyse yet."
    try:
        return analyze(workspace, model, aliases["champion"]), None
    except BadInput as e:  # e.g. scores without their evaluation files: the report still builds
        return None, f"The champion {aliases['champion']} cannot be analysed: {e}"


# ---- facts from the run folders and the feedback store ---------------------------------

def extract_index(workspace: Path) -> dict[str, dict]:
    """{output SHA-256: manifest} of every feedback extract kept in the workspace, so a
    training input can be told to have come from production feedback by its hash."""
    index: dict[str, dict] = {}
    if not workspace.is_dir():
        return index
    for top in workspace.iterdir():
        if top.name in _NOT_EXTRACTS:
            continue
        found = [top] if top.is_file() else top.rglob("*.manifest.json") if top.is_dir() else []
        for path in found:
            if path.name.endswith(".manifest.json"):
                _index_extract(path, index)
    return index


def _index_extract(path: Path, index: dict) -> None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not an extract's manifest: nothing to learn from it
    if isinstance(manifest, dict) and manifest.get("kind") == EXTRACT_KIND:
        sha = manifest.get("output", {}).get("sha256")
        if sha:
            index[sha] = manifest


def _is_feedback(entry: dict, extracts: dict) -> bool:
    if entry.get("sha256") in extracts:
        return True
    source = str(entry.get("source", ""))
    if source.startswith("workspace:"):
        return False  # a workspace extract would have been indexed by its hash
    beside = Path(source).with_name(Path(source).stem + ".manifest.json")  # an extract outside the workspace
    if beside.is_file() and entry.get("sha256"):
        found: dict = {}
        _index_extract(beside, found)
        return entry["sha256"] in found
    return False


def data_used(manifest: dict | None, workspace: Path, extracts: dict) -> dict | None:
    """What a version trained on, from its manifest: its new rows split into those
    extracted from production feedback and the rest, rows trained on again in full
    (history), and the rehearsal rows of each source."""
    if not manifest:
        return None
    mix = manifest.get("mix", {})
    train = [i for i in manifest.get("inputs", []) if i.get("role") == "train"]
    feedback = [i for i in train if _is_feedback(i, extracts)]
    fb_rows = sum(int(i.get("rows") or 0) for i in feedback)
    new = int(mix.get("new", 0))
    # resample: per_epoch writes every epoch out: one epoch's rows are what compares with `new`
    epochs = int(mix.get("epochs") or 1) if mix.get("resample") == "per_epoch" else 1
    rehearsal = {src: int(meta.get("rows", 0)) // epochs for src, meta in mix.get("rehearsal", {}).items()}
    covered = {src: (meta["seen"]["distinct"], int(meta.get("pool", 0)))
               for src, meta in mix.get("rehearsal", {}).items() if epochs > 1 and "seen" in meta}
    parts = {"new": new - fb_rows, "feedback-extracted": fb_rows}
    if mix.get("history"):
        parts["history (ancestors, in full)"] = int(mix["history"])
    parts.update({f"rehearsal: {src}": n for src, n in rehearsal.items()})
    return {"new": new - fb_rows, "feedback": fb_rows, "feedback_sources": [i["source"] for i in feedback],
            "new_sources": [i["source"] for i in train if i not in feedback], "history": int(mix.get("history") or 0),
            "rehearsal": rehearsal, "total": int(mix.get("total", sum(parts.values()))) // epochs, "parts": parts,
            "epochs": epochs, "covered": covered}


def loss_curves(versions: list[dict]) -> dict:
    """Every version's logged training losses (none is dropped), on one x axis: epochs when
    every logged point says its epoch, else the logged step's number. A version that logged
    no step loss (a run shorter than Axolotl's logging_steps) shows the trainer's mean
    `train_loss` as its one point, marked `mean_only`."""
    series = []
    for v in versions:
        metrics = v["metrics"] or {}
        logged = [x for x in metrics.get("losses", []) if "loss" in x]
        end = next((x for x in metrics.get("losses", []) if "train_loss" in x), {})
        mean = metrics.get("train_loss", v["record"].metrics.get("train_loss"))
        series.append({"version": v["record"].version, "logged": logged, "train_loss": mean, "end": end})
    by_epoch = all("epoch" in x for s in series for x in s["logged"] or ([s["end"]] if s["end"] else []))
    for s in series:
        logged, end = s.pop("logged"), s.pop("end")
        s["points"] = [[float(x["epoch"]) if by_epoch else i, float(x["loss"])] for i, x in enumerate(logged, start=1)]
        s["logged"], s["mean_only"] = len(logged), not logged and s["train_loss"] is not None
        if s["mean_only"]:
            s["points"] = [[float(end.get("epoch", 1)) if by_epoch else 1, float(s["train_loss"])]]
    return {"x": "epoch" if by_epoch else "logged step", "series": series}


def production_feedback(workspace: Path, model: str, versions: list[str], quarter: str | None) -> dict | None:
    """The quarter's feedback on the line's versions (None: the workspace has no store)."""
    from cl_toolkit.feedback.store import open_store, store_target
    from cl_toolkit.feedback.summary import newest_quarter, quarter_feedback, quarter_window

    if quarter:
        quarter_window(quarter)  # a malformed quarter is refused even without a store
    if not store_target(workspace).exists():
        return None
    with open_store(workspace) as store:
        chosen = quarter or newest_quarter(store, model, versions)
        return quarter_feedback(store, model, versions, chosen) if chosen else None


def _accuracy(facts: dict, version: str) -> float | None:
    evals = [e for e in facts["evolution"]["evaluations"] if e["version"] == version]
    return evals[-1]["accuracy"] if evals else None


def _verify_outputs(rec: VersionRecord, manifest: dict | None) -> bool:
    if not manifest:
        return False
    for rel, meta in manifest.get("outputs", {}).items():
        path = artifact_file(rec, rel)
        if path.is_file() and sha256_file(path) != meta["sha256"]:
            return False
    return bool(manifest.get("inputs")) and all(len(i.get("sha256", "")) == 64 for i in manifest["inputs"])


def checklist(facts: dict, recs: list[VersionRecord], aliases: dict) -> list[dict]:
    """The pre-deployment checklist of the newest version, each item computed."""
    v = facts["versions"][-1]
    rec, manifest, gate = v["record"], v["manifest"], v["gate"]
    new = (manifest or {}).get("mix", {}).get("new", 0)
    parent = next((r for r in recs if r.version == rec.parent), None)
    acc, parent_acc = _accuracy(facts, rec.version), _accuracy(facts, rec.parent) if rec.parent else None
    critical = [r for r in (gate or {}).get("regressions", []) if r["criticality"] == "critical"]
    rollback = [r.version for r in recs if r.version != rec.version and r.status == "active"]
    items = [
        ("at least 200 new training examples", new >= MIN_NEW_EXAMPLES, f"{new} new examples"),
        ("data versioned with SHA-256", _verify_outputs(rec, manifest),
         f"{len((manifest or {}).get('inputs', []))} inputs hashed, outputs verified" if manifest else "no manifest"),
        ("gate passed with zero critical regressions", bool(gate and gate["passed"] and not critical),
         f"gate {'passed' if gate and gate['passed'] else 'missing or blocked'}, {len(critical)} critical regression(s)"
         if rec.parent else "first version: no baseline to gate against"),
        ("accuracy at least the parent's", acc is not None and parent_acc is not None and acc >= parent_acc,
         f"{_pct(acc)} vs parent {_pct(parent_acc)}"),
        ("rollback target exists", bool(rollback), f"active earlier versions: {', '.join(rollback) or 'none'}"),
        ("model versioned with lineage", rec.parent is None or parent is not None,
         f"{rec.version} ← {rec.parent}" if rec.parent else f"{rec.version} is the first version"),
    ]
    return [{"item": i, "ok": ok, "evidence": ev} for i, ok, ev in items]


# ---- documents --------------------------------------------------------------------------

def markdown(facts: dict, plots: dict[str, Path | None]) -> str:
    a = facts["aliases"]
    lines = [f"# {facts['model']}: quarterly report", "",
             f"Generated {utc_now()[:16].replace('T', ' ')} UTC. Champion: **{a.get('champion') or '-'}**, "
             f"challenger: **{a.get('challenger') or '-'}**, newest: **{facts['latest']}**. "
             "Deltas are in percentage points (pt).", "",
             "## Pre-deployment checklist", ""]
    lines += [f"- [{'x' if c['ok'] else ' '}] {c['item']} — {c['evidence']}" for c in facts["checklist"]]
    lines += ["", "## Versions", "", "| version | parent | strategy | status | aliases | accuracy | train rows | train s |",
              "|---|---|---|---|---|---|---|---|"]
    held = {}
    for alias, version in a.items():
        held.setdefault(version, []).append(alias)
    for v in facts["versions"]:
        r = v["record"]
        lines.append(f"| {r.version} | {r.parent or '-'} | {r.strategy} | {r.status} | {', '.join(held.get(r.version, [])) or '-'} "
                     f"| {_pct(_accuracy(facts, r.version))} | {(v['data'] or {}).get('total', '-')} "
                     f"| {r.train_seconds or 0:.0f} |")
    lines += matrix_section(facts.get("matrix") or {}) + _image(plots, "matrix", "Accuracy matrix heat map")
    lines += feedback_section(facts["feedback"], facts["model"])
    lines += alias_history_section(facts["alias_history"])
    lines += data_section(facts["versions"]) + _image(plots, "mix", "Data used per version")
    lines += loss_section(facts["loss"]) + _image(plots, "losses", "Training loss of every version")
    lines += gate_section(facts)
    lines += analysis_section(facts.get("analysis"), facts.get("analysis_reason"))
    for title, key in (("Accuracy per domain", "domains"), ("Lineage", "lineage")):
        if plots.get(key):
            lines += ["", f"## {title}", *_image(plots, key, title)]
    return "\n".join(lines) + "\n"


def _image(plots: dict[str, Path | None], key: str, title: str) -> list[str]:
    return ["", f"![{title}](plots/{plots[key].name})"] if plots.get(key) else []


def write_report(workspace: Path, model: str, html: bool = True, quarter: str | None = None) -> dict[str, Path]:
    """Write report.md (and report.html) with their plots, and report.json (what they were
    built from); a stale mark left by an earlier move is cleared. Returns the paths."""
    from cl_toolkit.pipeline.report_html import html_page
    from cl_toolkit.pipeline.report_plots import write_plots

    facts = gather(workspace, model, quarter)
    out = report_dir(workspace, model)
    plots = write_plots(facts, out / "plots")
    md_text = markdown(facts, plots)
    paths = {"markdown": atomic_write_text(out / "report.md", md_text)}
    if html:
        paths["html"] = atomic_write_text(out / "report.html", html_page(md_text, plots, facts["loss"]))
    atomic_write_text(out / "checklist.json", json.dumps(facts["checklist"], indent=2) + "\n")
    fb = facts["feedback"]
    atomic_write_json(out / "report.json", {
        "model": model, "generated_at": utc_now(), "aliases": facts["aliases"],
        "last_event_id": facts["last_event_id"], "quarter": fb["quarter"] if fb else None,
        "quarter_given": quarter is not None, "html": html})
    (out / "stale.json").unlink(missing_ok=True)
    return paths


# ---- after a promotion or a rollback ----------------------------------------------------

STALE_MARK = "<!-- clt: stale -->"


def mark_stale(workspace: Path, model: str, reason: str) -> Path:
    """Say on the report itself that it no longer matches the registry, and why:
    `stale.json`, and a banner at the top of report.md and report.html."""
    out = report_dir(workspace, model)
    stamp = atomic_write_json(out / "stale.json", {"model": model, "since": utc_now(), "reason": reason})
    md, page = out / "report.md", out / "report.html"
    if md.is_file():
        text = md.read_text(encoding="utf-8").split(STALE_MARK + "\n", 1)[-1]
        atomic_write_text(md, f"> **Stale:** {reason}\n{STALE_MARK}\n{text}")
    if page.is_file():
        from cl_toolkit.pipeline.report_html import stale_banner

        atomic_write_text(page, stale_banner(page.read_text(encoding="utf-8"), reason))
    return stamp


def refresh_after_move(workspace: Path, model: str, move: str, *, regenerate: bool = True) -> dict:
    """After `move` (e.g. "champion 1.0.0 -> 1.1.0 (promote)"): rebuild the line's report when
    one exists, with the quarter it was built for when that was chosen by hand; else (or
    when rebuilding fails) mark it stale with the reason. The move itself is never undone."""
    out = report_dir(workspace, model)
    if not (out / "report.md").is_file():
        return {"status": "none"}
    how = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if not regenerate:
        reason = f"{move} after it was built; run `clt report {model}`"
        return {"status": "stale", "reason": reason, "stale": mark_stale(workspace, model, reason)}
    try:
        paths = write_report(workspace, model, html=how.get("html", True),
                             quarter=how.get("quarter") if how.get("quarter_given") else None)
    except Exception as e:  # noqa: BLE001 - the move is committed; the report says why it is old
        reason = f"{move} after it was built, and rebuilding it failed: {type(e).__name__}: {e}"
        return {"status": "stale", "reason": reason, "stale": mark_stale(workspace, model, reason)}
    return {"status": "refreshed", "paths": paths}
