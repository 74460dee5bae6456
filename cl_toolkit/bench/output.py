"""The continual-learning benchmark's outputs: the JSON document with every number, a
Markdown table, and a plot (matplotlib, Agg) of the accuracy matrices and the metrics."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.bench.cl import PHRASINGS
from cl_toolkit.core.files import atomic_write_json, atomic_write_text

LABELS = {"asked": "as trained", "paraphrased": "paraphrased"}


def _order(doc: dict) -> list[str]:
    """Strategies in the order they were asked for (the JSON file sorts its keys)."""
    return [n for n in doc["settings"].get("strategies", doc["strategies"]) if n in doc["strategies"]]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}"


def _signed(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.0f}"


def summary_table(doc: dict) -> str:
    """One row per strategy: ACC, BWT, forgetting and plasticity for both phrasings (in
    points of %), general Q&A after the last experience, training time."""
    head = ["strategy"]
    for p in PHRASINGS:
        head += [f"ACC {LABELS[p]}", "BWT", "forgetting", "plasticity"]
    head += ["general Q&A", "loop s", "process s", "step s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in _order(doc):
        res, cells = doc["strategies"][name], [name]
        for p in PHRASINGS:
            m = res["metrics"][p]
            cells += [_pct(m["acc"]), _signed(m["bwt"]), _pct(m["forgetting"]), _pct(m["plasticity_mean"])]
        cells += [_pct(res["general"][-1]), *(f"{res[k]:.0f}" for k in ("trainer_seconds", "train_seconds", "step_seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matrix_table(doc: dict, phrasing: str) -> str:
    """R[i][j] of every strategy, one row per (strategy, experience trained)."""
    stream = [s["experience"] for s in doc["stream"]]
    head = ["strategy", "after"] + [f"on {q}" for q in stream] + ["general"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = doc["base"]["accuracy"]
    lines.append("| " + " | ".join(["(base)", "—", *map(_pct, base[phrasing]), _pct(base["general"])]) + " |")
    for name in _order(doc):
        for step in doc["strategies"][name]["steps"]:
            cells = [name, f"{step['experience']} ({step['version']})", *map(_pct, step[phrasing]), _pct(step["general"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    s, m = doc["settings"], doc["machine"]
    facts = ", ".join(f"{q['experience']} {q['facts']}" for q in doc["stream"])
    base = doc["base"]
    built = "reused" if base["reused"] else f"built in {base['build_seconds']:.0f} s"
    return "\n".join([
        "# Continual-learning benchmark", "",
        f"Stream: {facts} facts; tiny base pretrained {base['spec']['pretrain_epochs']} epochs ({built}). "
        f"Every training: {s['epochs'] or 'the recipe’s'} epochs at learning rate {s.get('learning_rate') or 'the recipe’s'}; "
        f"seed {s['seed']}; {m['nproc']} CPU cores; "
        f"{doc['wall_seconds'] / 60:.1f} min in all (load average at start {m['load_average_at_start'][0]}).", "",
        "Accuracy in %, BWT in points (negative = forgetting). ACC: mean over every experience after the "
        "last; forgetting: mean drop from the best accuracy an experience ever had to its final one; "
        "plasticity: mean accuracy on an experience right after learning it; general Q&A: exact answers "
        "to the 120 general questions, after the last experience. Seconds, summed over the stream: "
        "loop = Axolotl's training loop, process = the whole training process (imports included), "
        "step = render (merge, teacher log-probs) + process.", "",
        summary_table(doc), "",
        "## Accuracy matrix R[i][j], facts asked as trained", "", matrix_table(doc, "asked"), "",
        "## Accuracy matrix R[i][j], facts paraphrased", "", matrix_table(doc, "paraphrased"), "",
    ])


def plot(doc: dict, path: Path) -> Path:
    """Top: each strategy's accuracy matrix (facts as trained). Bottom: ACC, forgetting and
    plasticity (as trained), ACC paraphrased and general Q&A, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _order(doc)
    stream = [s["experience"] for s in doc["stream"]]
    fig = plt.figure(figsize=(max(8, 2.2 * len(names)), 7))
    grid = fig.add_gridspec(2, len(names), height_ratios=[1, 1.3], hspace=0.3)
    for k, name in enumerate(names):
        ax = fig.add_subplot(grid[0, k])
        r = doc["strategies"][name]["metrics"]["asked"]["R"]
        ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
        for i, row in enumerate(r):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
        ax.set_xticks(range(len(stream)), stream, fontsize=8)
        ax.set_yticks(range(len(stream)), [f"after {q}" for q in stream] if k == 0 else [], fontsize=8)
        ax.set_title(name, fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    bars = [("ACC, as trained", lambda r: r["metrics"]["asked"]["acc"]),
            ("forgetting, as trained", lambda r: r["metrics"]["asked"]["forgetting"] or 0.0),
            ("plasticity, as trained", lambda r: r["metrics"]["asked"]["plasticity_mean"]),
            ("ACC, paraphrased", lambda r: r["metrics"]["paraphrased"]["acc"]),
            ("general Q&A after the last", lambda r: r["general"][-1])]
    width = 0.8 / len(bars)
    for b, (label, get) in enumerate(bars):
        values = [get(doc["strategies"][n]) * 100 for n in names]
        ax.bar([x + b * width - 0.4 + width / 2 for x in range(len(names))], values, width, label=label)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle(f"Continual learning on the tiny model: R[i][j] (facts as trained) and metrics, "
                 f"{doc['machine']['nproc']} CPU cores", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_results(doc: dict, out_dir: Path, stem: str = "cl") -> dict[str, Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png` in `out_dir`."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}.png"}
    atomic_write_json(paths["json"], doc)
    atomic_write_text(paths["markdown"], markdown(doc))
    plot(doc, paths["plot"])
    return paths
