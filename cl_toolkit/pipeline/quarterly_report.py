"""`clt report MODEL`: what changed this quarter, for the people who ship it.

Markdown and a self-contained HTML page (PNG plots embedded) under
`workspace/reports/<model>/`: the line's accuracy matrix (every version on every named
suite, as a table and a heat map, with forgetting and BWT), accuracy per domain across
versions, the latest gate's
regressions side by side, training-loss curves, the data mix, the lineage graph, and a
pre-deployment checklist whose every item is computed from the registry, manifests and
gate results — nothing in it is typed by hand."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from cl_toolkit.core import semver
from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_bytes, atomic_write_text, sha256_file
from cl_toolkit.registry import VersionRecord, artifact_file, open_registry

MIN_NEW_EXAMPLES = 200


def _vkey(rec: VersionRecord):
    return semver.parse(rec.version)


def _json(rec: VersionRecord, rel: str) -> dict | None:
    path = artifact_file(rec, rel)
    return json.loads(path.read_text()) if path.is_file() else None


def gather(workspace: Path, model: str) -> dict:
    """Every fact the report shows, from the registry and the files beside each version."""
    from cl_toolkit.evaluation.history import load_evolution
    from cl_toolkit.evaluation.matrix import line_matrix
    from cl_toolkit.registry.views import lineage

    with open_registry(workspace) as reg:
        recs = sorted(reg.versions(model), key=_vkey)
        if not recs:
            raise BadInput(f"no versions of {model!r} are registered in {workspace}")
        aliases, tree = reg.aliases(model), lineage(reg, model)
    latest = recs[-1]
    facts = {"model": model, "aliases": aliases, "lineage": tree, "latest": latest.version,
             "versions": [], "evolution": load_evolution(workspace, model)}
    for r in recs:
        facts["versions"].append({"record": r, "manifest": _json(r, "manifest.json"), "metrics": _json(r, "metrics.json"),
                                  "gate": _json(r, "gate.json")})
    facts["matrix"] = line_matrix(workspace, model)
    facts["checklist"] = checklist(facts, recs, aliases)
    return facts


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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


# ---- plots ------------------------------------------------------------------------------

def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_domains(facts: dict, out: Path) -> Path | None:
    from cl_toolkit.evaluation.history import trend

    evals = facts["evolution"]["evaluations"]
    if not evals:
        return None
    suite = max({e["suite_sha256"] for e in evals}, key=lambda s: sum(e["suite_sha256"] == s for e in evals))
    points = trend(facts["evolution"], suite)
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    versions = [p["version"] for p in points]
    for domain in sorted({d for p in points for d in p["per_domain"]}):
        ax.plot(versions, [p["per_domain"].get(domain) for p in points], marker="o", label=domain)
    ax.plot(versions, [p["accuracy"] for p in points], "k--", marker="s", label="overall")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title("Regression-suite accuracy per domain")
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, out / "accuracy_per_domain.png")


def plot_matrix(facts: dict, out: Path) -> Path | None:
    """The accuracy matrix as a heat map: versions down, suites across, each cell labelled."""
    m = facts.get("matrix") or {}
    if not m.get("versions") or not m.get("suites"):
        return None
    import numpy as np

    plt = _fig()
    grid = np.array([[np.nan if m["scores"][v][s] is None else m["scores"][v][s] for s in m["suites"]]
                     for v in m["versions"]], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(m["suites"]) + 2), max(2.2, 0.5 * len(m["versions"]) + 1.4)),
                           dpi=100)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(m["suites"])), m["suites"])
    ax.set_yticks(range(len(m["versions"])), m["versions"])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_xlabel("suite")
    ax.set_ylabel("version")
    ax.set_title("Accuracy matrix (every version on every suite)")
    return _save(plt, fig, out / "accuracy_matrix.png")


def plot_losses(facts: dict, out: Path) -> Path | None:
    curves = {v["record"].version: [x["loss"] for x in (v["metrics"] or {}).get("losses", []) if "loss" in x]
              for v in facts["versions"]}
    curves = {k: c for k, c in curves.items() if c}
    if not curves:
        return None
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for version, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=version)
    ax.set_xlabel("logged step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "training_loss.png")


def _mix_parts(manifest: dict) -> dict[str, int]:
    mix = manifest.get("mix", {})
    parts = {"new": mix.get("new", 0)}
    if mix.get("history"):
        parts["history (ancestors)"] = mix["history"]
    for source, meta in mix.get("rehearsal", {}).items():
        parts[f"rehearsal: {source}"] = meta["rows"]
    return parts


def plot_mix(facts: dict, out: Path) -> Path | None:
    rows = [(v["record"].version, _mix_parts(v["manifest"])) for v in facts["versions"] if v["manifest"]]
    if not rows:
        return None
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    labels = sorted({k for _, p in rows for k in p}, key=lambda k: (k != "new", k))
    bottom = [0] * len(rows)
    for label in labels:
        vals = [p.get(label, 0) for _, p in rows]
        ax.bar([v for v, _ in rows], vals, bottom=bottom, label=label)
        bottom = [b + x for b, x in zip(bottom, vals, strict=True)]
    ax.set_ylabel("training rows")
    ax.set_title("Data mix per version")
    ax.legend(fontsize=7)
    return _save(plt, fig, out / "data_mix.png")


def plot_lineage(facts: dict, out: Path) -> Path:
    plt = _fig()
    pos: dict[str, tuple[float, float]] = {}
    edges: list[tuple[str, str]] = []

    merges: list[tuple[str, str]] = []

    def place(node: dict, depth: int, row: list[int]) -> None:
        pos[node["version"]] = (depth, -row[0])
        row[0] += 1
        merges.extend((src, node["version"]) for src in node["merged_from"])
        for child in node["children"]:
            edges.append((node["version"], child["version"]))
            place(child, depth + 1, row)

    counter = [0]
    labels = {}
    for root in facts["lineage"]:
        place(root, 0, counter)
    _collect_labels(facts["lineage"], labels)
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.7 * len(pos))), dpi=100)
    for (a, b), style in [*((e, "-") for e in edges), *((m, "--") for m in merges if m[0] in pos)]:
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops={"arrowstyle": "->", "color": "#555", "linestyle": style,
                                                              "shrinkA": 18, "shrinkB": 18})
    for version, (x, y) in pos.items():
        ax.text(x, y, labels[version], ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "#dbeafe" if "champion" in labels[version] else "#f3f4f6"})
    ax.set_xlim(-0.7, max(x for x, _ in pos.values()) + 0.7)
    ax.set_ylim(min(y for _, y in pos.values()) - 0.7, 0.7)
    ax.axis("off")
    ax.set_title("Lineage")
    return _save(plt, fig, out / "lineage.png")


def _collect_labels(nodes: list[dict], labels: dict) -> None:
    for n in nodes:
        tags = ", ".join(n["aliases"] + ([n["status"]] if n["status"] != "active" else []))
        labels[n["version"]] = f"{n['version']}\n{n['strategy']}" + (f"\n[{tags}]" if tags else "")
        _collect_labels(n["children"], labels)


def _save(plt, fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ---- documents --------------------------------------------------------------------------

def markdown(facts: dict, plots: dict[str, Path]) -> str:
    a = facts["aliases"]
    lines = [f"# {facts['model']}: quarterly report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Champion: **{a.get('champion') or '-'}**, "
             f"challenger: **{a.get('challenger') or '-'}**, newest: **{facts['latest']}**.", "",
             "## Pre-deployment checklist", ""]
    lines += [f"- [{'x' if c['ok'] else ' '}] {c['item']} — {c['evidence']}" for c in facts["checklist"]]
    lines += ["", "## Versions", "", "| version | parent | strategy | status | accuracy | train rows | train s |",
              "|---|---|---|---|---|---|---|"]
    for v in facts["versions"]:
        r = v["record"]
        lines.append(f"| {r.version} | {r.parent or '-'} | {r.strategy} | {r.status} | {_pct(_accuracy(facts, r.version))} "
                     f"| {(v['manifest'] or {}).get('mix', {}).get('total', '-')} | {r.train_seconds or 0:.0f} |")
    lines += _matrix_section(facts.get("matrix") or {})
    lines += _gate_section(facts)
    for title, key in (("Accuracy matrix heat map", "matrix"), ("Accuracy per domain", "domains"), ("Training loss", "losses"), ("Data mix", "mix"),
                       ("Lineage", "lineage")):
        if plots.get(key):
            lines += ["", f"## {title}", "", f"![{title}](plots/{plots[key].name})"]
    return "\n".join(lines) + "\n"


def _matrix_section(m: dict) -> list[str]:
    """The accuracy matrix as a table: a row per version, a column per suite, then each
    suite's best score, its forgetting (drop from that best at the newest version) and BWT."""
    if not m.get("versions") or not m.get("suites"):
        return ["", "## Accuracy matrix", "", "No suite scores are recorded yet."]
    out = ["", "## Accuracy matrix", "", "| version | " + " | ".join(m["suites"]) + " |",
           "|---|" + "---|" * len(m["suites"])]
    for v in m["versions"]:
        out.append(f"| {v} | " + " | ".join(_pct(m["scores"][v][s]) for s in m["suites"]) + " |")
    out.append("| best | " + " | ".join(f"{_pct(m['best'][s]['accuracy'])} ({m['best'][s]['version']})"
                                       if s in m["best"] else "n/a" for s in m["suites"]) + " |")
    out.append("| forgetting | " + " | ".join(_pt(m["forgetting"][s]) for s in m["suites"]) + " |")
    bwt = "n/a (no quarter learned before the newest version)" if m["bwt"] is None else _pt(m["bwt"])
    out += ["", f"Forgetting is each suite's drop from its best-ever score at {m['versions'][-1]}; "
                f"backward transfer (BWT) over the learned quarters: {bwt}."]
    return out


def _pt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pt"


def _gate_section(facts: dict) -> list[str]:
    gated = [v for v in facts["versions"] if v["gate"]]
    if not gated:
        return ["", "## Latest gate", "", "No gate has run yet."]
    g = gated[-1]["gate"]
    out = ["", f"## Latest gate: {g['candidate']} against {g['baseline']} — {'PASSED' if g['passed'] else 'BLOCKED'}", "",
           f"Accuracy {_pct(g['accuracy']['baseline'])} → {_pct(g['accuracy']['candidate'])} "
           f"({g['accuracy']['delta']:+.1%}); {len(g['regressions'])} regression(s), "
           f"{len(g['improvements'])} improvement(s)."]
    out += [f"- {reason}" for reason in g.get("reasons", [])]
    if g["regressions"]:
        out += ["", "| case | criticality | input | expected | " + g["baseline"] + " | " + g["candidate"] + " |",
                "|---|---|---|---|---|---|"]
        for r in g["regressions"]:
            cells = [r["id"], r["criticality"], r["input"], str(r["expected"]), r["baseline_output"], r["candidate_output"]]
            out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return out


def html_page(md_text: str, plots: dict[str, Path]) -> str:
    """A self-contained page: the Markdown's content as HTML, plots inlined as data URIs."""
    body, in_table = [], False
    for line in md_text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split(" | ")]
            if set(line) <= set("|-"):
                continue
            tag = "th" if not in_table else "td"
            body.append(("<table>" if not in_table else "") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            in_table = True
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("!["):
            name = line.split("(plots/")[1].rstrip(")")
            data = base64.b64encode(next(p for p in plots.values() if p and p.name == name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- ["):
            ok = line.startswith("- [x]")
            body.append(f"<p class='{'ok' if ok else 'no'}'>{'✔' if ok else '✘'} {html.escape(line[6:])}</p>")
        elif line.strip():
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.ok{color:#166534}.no{color:#b91c1c}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(workspace: Path, model: str, html: bool = True) -> dict[str, Path]:
    """Write report.md (and report.html) with their plots; returns the paths."""
    facts = gather(workspace, model)
    out = workspace / "reports" / model
    plots_dir = out / "plots"
    plots = {"matrix": plot_matrix(facts, plots_dir), "domains": plot_domains(facts, plots_dir),
             "losses": plot_losses(facts, plots_dir),
             "mix": plot_mix(facts, plots_dir), "lineage": plot_lineage(facts, plots_dir)}
    md_text = markdown(facts, plots)
    paths = {"markdown": atomic_write_text(out / "report.md", md_text)}
    if html:
        paths["html"] = atomic_write_text(out / "report.html", html_page(md_text, plots))
    atomic_write_text(out / "checklist.json", json.dumps(facts["checklist"], indent=2) + "\n")
    return paths
