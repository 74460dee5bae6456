"""The continual-learning benchmark's outputs: the JSON document with every number, Markdown
tables (mean ± std over seeds, differences labelled against the noise, compute per
experience, the cost-matched view) and a plot (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.bench.stats import GENERAL, METRICS
from cl_toolkit.core.files import atomic_write_json, atomic_write_text

LABELS = {"acc": "ACC", "bwt": "BWT", "forgetting": "forgetting", "plasticity_mean": "plasticity"}
COST_BOUND = 1.5  # training tokens per experience, as a multiple of naive's, that counts as bounded


def _order(doc: dict) -> list[str]:
    """Strategies in the order they were asked for (the JSON file sorts its keys)."""
    return [n for n in doc["settings"]["strategies"] if n in doc["strategies"]]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}"


def pm(m: dict, signed: bool = False) -> str:
    """A mean_std result in points of %: `53 ± 4`, or `53` with one seed."""
    if m["mean"] is None:
        return "—"
    mean = f"{m['mean'] * 100:+.0f}" if signed else f"{m['mean'] * 100:.0f}"
    return mean if m["std"] is None else f"{mean} ± {m['std'] * 100:.0f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head), *map(_row, rows)]


def summary_table(doc: dict) -> str:
    """One row per strategy, the headline suite's metrics, general knowledge (after the last
    experience, and its drop from the base) and compute: mean ± std over the seeds."""
    suite = doc["stream"]["suites"][0]
    general = doc["stream"]["general"][:1]
    head = ["strategy", "seeds", *(f"{LABELS[m]}" for m in METRICS)]
    head += [x for g in general for x in (f"general ({g})", "general drop")]
    head += [f"tokens / experience vs {doc['comparison']['reference']}", "training s"]
    rows = []
    for name in _order(doc):
        s, c = doc["strategies"][name], doc["comparison"]["strategies"][name]
        cells = [name, str(len(s["seeds"]))] + [pm(s["metrics"][suite][m], signed=m == "bwt") for m in METRICS]
        for g in general:
            cells += [pm(s[GENERAL][g]["final"]), pm(s[GENERAL][g]["drop"])] if g in s[GENERAL] else ["—", "—"]
        ratio = c["max_tokens_vs_reference"]
        cells += ["—" if ratio is None else f"≤ {ratio:.2f}×", _seconds(s["totals"]["train_seconds"])]
        rows.append(cells)
    return "\n".join(_table(head, rows))


def _seconds(m: dict) -> str:
    if m["mean"] is None:
        return "—"
    return f"{m['mean']:.0f}" if m["std"] is None else f"{m['mean']:.0f} ± {m['std']:.0f}"


def comparison_table(doc: dict) -> str:
    """Each strategy minus the reference, in points, labelled within / beyond noise."""
    comp = doc["comparison"]
    keys = [*METRICS, *(f"general:{g}" for g in doc["stream"]["general"][:1])]
    head = ["strategy", *(f"Δ {LABELS.get(k, k.replace('general:', 'general ('))}" + (")" if k.startswith("general") else "")
                          for k in keys)]
    rows = []
    for name in _order(doc):
        if name == comp["reference"]:
            continue
        deltas = comp["strategies"][name]["deltas"]
        rows.append([name, *(_delta(deltas[k]) for k in keys if k in deltas)])
    return "\n".join(_table(head, rows))


def _delta(d: dict) -> str:
    if d["delta"] is None:
        return "—"
    noise = "" if d["noise"] is None else f" (noise {d['noise'] * 100:.0f})"
    return f"{d['delta'] * 100:+.0f}{noise}: {d['label']}"


def compute_table(doc: dict) -> str:
    """Per strategy: optimizer steps, training tokens and seconds of each experience (mean over
    the seeds), tokens as a multiple of the reference's, and the totals."""
    names = [e["name"] for e in doc["stream"]["experiences"]]
    head = ["strategy", "measure", *names, "total"]
    rows = []
    for name in _order(doc):
        s, c = doc["strategies"][name], doc["comparison"]["strategies"][name]
        for key, label in (("optimizer_steps", "optimizer steps"), ("training_tokens", "training tokens"),
                           ("train_seconds", "training process s")):
            rows.append([name, label, *(_num(v) for v in s["compute"][key]), _num(s["totals"][key]["mean"])])
        rows.append([name, f"tokens vs {doc['comparison']['reference']}",
                     *("—" if r is None else f"{r:.2f}×" for r in c["tokens_vs_reference"]), ""])
    return "\n".join(_table(head, rows))


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def matrix_table(doc: dict, suite: str) -> str:
    """Mean R[i][j] over the seeds, one row per (strategy, experience trained)."""
    names = [e["name"] for e in doc["stream"]["experiences"]]
    general = doc["stream"]["general"][:1]
    head = ["strategy", "after", *(f"on {q}" for q in names), *(f"general ({g})" for g in general)]
    base = doc["base"]["accuracy"]
    rows = [["(base)", "—", *map(_pct, base[suite]), *(_pct(base[GENERAL][g]) for g in general)]]
    for name in _order(doc):
        r = doc["strategies"][name]["metrics"][suite]["R"]
        runs = doc["runs"][name]
        for i, q in enumerate(names):
            gen = [sum(run[GENERAL][g][i] for run in runs) / len(runs) for g in general]
            rows.append([name, q, *map(_pct, r[i]), *map(_pct, gen)])
    return "\n".join(_table(head, rows))


def _reused(doc: dict) -> str:
    r = doc.get("reused") or {}
    if not r.get("lines") and not r.get("first_experiences"):
        return ""
    return (f"; {r['lines']} of {r['of']['lines']} lines and {r['first_experiences']} of "
            f"{r['of']['first_experiences']} first experiences were reused from an earlier run in the same work "
            "folder (same inputs), so the minutes are this run's and the seconds per training that run's")


def markdown(doc: dict) -> str:
    st, m, base = doc["stream"], doc["machine"], doc["base"]
    suite = st["suites"][0]
    built = "" if not base.get("local") else ("; base reused" if base["reused"] else
                                                f"; base pretrained in {base['build_seconds']:.0f} s")
    general = ", ".join(f"{k} {v * 100:.0f}%" for k, v in base["accuracy"][GENERAL].items())
    return "\n".join([
        f"# Continual-learning benchmark: {st['name']}", "",
        f"Stream `{st['path']}`: {', '.join(e['name'] for e in st['experiences'])}; seeds "
        f"{', '.join(map(str, doc['settings']['seeds']))}{built}; the base answers the general questions: "
        f"{general or '—'}. {m['nproc']} CPU cores; {doc['wall_seconds'] / 60:.1f} min in all "
        f"(load average at start {m['load_average_at_start'][0]}){_reused(doc)}.", "",
        f"Accuracy in % on the `{suite}` suites, mean ± standard deviation over the seeds; BWT in points "
        "(negative = forgetting). ACC: mean over every experience after the last; forgetting: mean drop "
        "from the best accuracy an experience had to its final one; plasticity: mean accuracy on an "
        "experience right after learning it; general: the general questions after the last experience, "
        "and the drop from the base. Tokens: the most training tokens of any experience, as a multiple "
        f"of {doc['comparison']['reference']}'s in the same experience (≤ {COST_BOUND}× counts as bounded).", "",
        summary_table(doc), "",
        f"## Against {doc['comparison']['reference']}", "",
        "Differences in points; \"within noise\" when no larger than the combined standard deviation "
        "sqrt(sd_a² + sd_b²) of the two strategies' seeds.", "", comparison_table(doc), "",
        "## Compute per experience (mean over the seeds)", "", compute_table(doc), "",
        *[x for s in st["suites"] for x in (f"## Accuracy matrix R[i][j], `{s}` suites (mean over the seeds)", "",
                                            matrix_table(doc, s), "")],
    ])


def plot(doc: dict, path: Path) -> Path:
    """Top: each strategy's mean accuracy matrix (headline suite). Bottom: ACC, forgetting,
    plasticity and general knowledge per strategy, with the seeds' standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _order(doc)
    stream = [e["name"] for e in doc["stream"]["experiences"]]
    suite = doc["stream"]["suites"][0]
    fig = plt.figure(figsize=(max(8, 2.2 * len(names)), 7))
    grid = fig.add_gridspec(2, len(names), height_ratios=[1, 1.3], hspace=0.3)
    for k, name in enumerate(names):
        ax = fig.add_subplot(grid[0, k])
        r = doc["strategies"][name]["metrics"][suite]["R"]
        ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
        for i, row in enumerate(r):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
        ax.set_xticks(range(len(stream)), stream, fontsize=8)
        ax.set_yticks(range(len(stream)), [f"after {q}" for q in stream] if k == 0 else [], fontsize=8)
        ax.set_title(name, fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    general = doc["stream"]["general"][:1]
    bars = [(f"{LABELS[m]}, {suite}", lambda s, m=m: s["metrics"][suite][m]) for m in ("acc", "forgetting", "plasticity_mean")]
    bars += [(f"general ({g}) after the last", lambda s, g=g: s[GENERAL][g]["final"]) for g in general]
    width = 0.8 / len(bars)
    for b, (label, get) in enumerate(bars):
        vals = [get(doc["strategies"][n]) for n in names]
        ax.bar([x + b * width - 0.4 + width / 2 for x in range(len(names))], [(v["mean"] or 0) * 100 for v in vals],
               width, yerr=[(v["std"] or 0) * 100 for v in vals], capsize=2, label=label)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle(f"{doc['stream']['name']}: mean R[i][j] over {len(doc['settings']['seeds'])} seed(s) and metrics "
                 f"(error bars: std), {doc['machine']['nproc']} CPU cores", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def tradeoff_points(doc: dict) -> list[dict]:
    """Each strategy on the stability-plasticity plane (headline suite, mean ± std over the
    seeds, in points): plasticity against BWT, and whether its tokens per experience stay
    within COST_BOUND× the reference's."""
    suite = doc["stream"]["suites"][0]
    out = []
    for name in _order(doc):
        m, c = doc["strategies"][name]["metrics"][suite], doc["comparison"]["strategies"][name]
        if m["bwt"]["mean"] is None:
            continue
        ratio = c["max_tokens_vs_reference"]
        out.append({"strategy": name, "plasticity": m["plasticity_mean"], "bwt": m["bwt"],
                    "bounded": ratio is not None and ratio <= COST_BOUND, "tokens_vs_reference": ratio})
    return out


def tradeoff_plot(doc: dict, path: Path) -> Path:
    """The stability-plasticity plane: a point per strategy (plasticity, BWT) with the seeds'
    standard deviation as error bars; filled where the tokens per experience are bounded
    (≤ COST_BOUND× the reference's), hollow where they are not. A sweep of one knob (the
    anchor strength λ, the rehearsal ratio) reads as a curve across it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for p in tradeoff_points(doc):
        x, y = p["plasticity"], p["bwt"]
        ax.errorbar(x["mean"] * 100, y["mean"] * 100, xerr=(x["std"] or 0) * 100, yerr=(y["std"] or 0) * 100,
                    fmt="o", ms=7, capsize=2, mfc=None if p["bounded"] else "white")
        ax.annotate(p["strategy"], (x["mean"] * 100, y["mean"] * 100), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"plasticity (% of a quarter learned right after it), `{doc['stream']['suites'][0]}` suites")
    ax.set_ylabel("BWT (points; negative = forgetting)")
    ax.set_title(f"{doc['stream']['name']}: stability against plasticity, mean ± std over "
                 f"{len(doc['settings']['seeds'])} seed(s); hollow: tokens > {COST_BOUND}× "
                 f"{doc['comparison']['reference']}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_results(doc: dict, out_dir: Path, stem: str) -> dict[str, Path]:
    """`<stem>.json`, `<stem>.md`, `<stem>.png` (matrices and metrics) and
    `<stem>-tradeoff.png` (the stability-plasticity plane) in `out_dir`."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}.png",
             "tradeoff": out_dir / f"{stem}-tradeoff.png"}
    atomic_write_json(paths["json"], doc)
    atomic_write_text(paths["markdown"], markdown(doc))
    plot(doc, paths["plot"])
    tradeoff_plot(doc, paths["tradeoff"])
    return paths
