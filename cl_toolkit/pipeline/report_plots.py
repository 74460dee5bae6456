"""The quarterly report's plots, as PNG files: the accuracy matrix as a heat map, accuracy
per domain across versions, every version's training loss, the data used per version, and
the lineage graph. Each reads the facts `quarterly_report.gather` collected."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.core.files import atomic_write_bytes


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
    """Every version's logged training loss on one axis; each point marked, so a version
    that logged a single loss still shows (its summary loss, when it logged none)."""
    loss = facts["loss"]
    if not any(s["points"] for s in loss["series"]):
        return None
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for s in loss["series"]:
        if s["points"]:
            xs, ys = zip(*s["points"], strict=True)
            ax.plot(xs, ys, marker="x" if s["mean_only"] else "o", markersize=3 + 3 * s["mean_only"],
                    label=f"{s['version']} ({'mean only' if s['mean_only'] else f'{len(xs)} logged'})")
    ax.set_xlabel(loss["x"])
    ax.set_ylabel("training loss")
    ax.set_title("Training loss of every version")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "training_loss.png")


def plot_mix(facts: dict, out: Path) -> Path | None:
    """Training rows per version, stacked: new, feedback-extracted, history, each rehearsal source."""
    rows = [(v["record"].version, v["data"]["parts"]) for v in facts["versions"] if v["data"]]
    if not rows:
        return None
    plt = _fig()
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    labels = list(dict.fromkeys(k for _, parts in rows for k in parts))
    bottom = [0] * len(rows)
    for label in labels:
        vals = [p.get(label, 0) for _, p in rows]
        ax.bar([v for v, _ in rows], vals, bottom=bottom, label=label)
        bottom = [b + x for b, x in zip(bottom, vals, strict=True)]
    ax.set_ylabel("training rows")
    ax.set_title("Data used per version")
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


def write_plots(facts: dict, out: Path) -> dict[str, Path | None]:
    """Every plot into `out`; a plot with nothing to show is None."""
    return {"matrix": plot_matrix(facts, out), "domains": plot_domains(facts, out), "losses": plot_losses(facts, out),
            "mix": plot_mix(facts, out), "lineage": plot_lineage(facts, out)}
