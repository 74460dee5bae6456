"""The quarterly report's sections as Markdown lines, each from the facts that
`quarterly_report.gather` collected. Accuracies are percentages; every difference between
two accuracies is in percentage points ("pt"), gate reasons included."""

from __future__ import annotations

from cl_toolkit.evaluation.policy import pt as points


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def pt(x: float | None) -> str:
    """A difference of two accuracies, in percentage points: the report's one unit for deltas."""
    return "n/a" if x is None else points(x)


def _cell(x) -> str:
    return "-" if x is None else str(x).replace("|", "\\|").replace("\n", " ")


def _row(*cells) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["", _row(*header), "|" + "---|" * len(header), *(_row(*r) for r in rows)]


def matrix_section(m: dict) -> list[str]:
    """The accuracy matrix as a table: a row per version, a column per suite, then each
    suite's best score, its forgetting (drop from that best at the newest version) and BWT."""
    if not m.get("versions") or not m.get("suites"):
        return ["", "## Accuracy matrix", "", "No suite scores are recorded yet."]
    out = ["", "## Accuracy matrix", "", "| version | " + " | ".join(m["suites"]) + " |",
           "|---|" + "---|" * len(m["suites"])]
    for v in m["versions"]:
        out.append(f"| {v} | " + " | ".join(pct(m["scores"][v][s]) for s in m["suites"]) + " |")
    out.append("| best | " + " | ".join(f"{pct(m['best'][s]['accuracy'])} ({m['best'][s]['version']})"
                                       if s in m["best"] else "n/a" for s in m["suites"]) + " |")
    out.append("| forgetting | " + " | ".join(pt(m["forgetting"][s]) for s in m["suites"]) + " |")
    bwt = "n/a (no quarter learned before the newest version)" if m["bwt"] is None else pt(m["bwt"])
    out += ["", f"Forgetting is each suite's drop from its best-ever score at {m['versions'][-1]}; "
                f"backward transfer (BWT) over the learned quarters: {bwt}."]
    return out


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def feedback_section(fb: dict | None, model: str) -> list[str]:
    """The quarter's production feedback: totals, the rating distribution, per version,
    per version and domain, and the domains with the most complaints."""
    out = ["", "## Production feedback", ""]
    if fb is None:
        return out + [f"No production feedback on {model}'s versions is in the feedback store."]
    out.append(f"Quarter {fb['quarter']} ({fb['since'][:10]} to {fb['until'][:10]}, end excluded): "
               f"{fb['predictions']} predictions, {fb['rated']} rated ({_rate(fb['rated'], fb['predictions'])}), "
               f"mean rating {fb['mean_rating'] if fb['mean_rating'] is not None else 'n/a'}, "
               f"{fb['corrections']} corrections, {fb['complaints']} complaints (rating 2 or less; "
               "a thumb counts as 5, 3 or 1; the most trusted source's rating counts).")
    if fb["other_versions"]:
        out += ["", f"Not counted: {fb['other_versions']} prediction(s) of the quarter by versions that are not "
                    f"{model}'s."]
    dist = fb["rating_distribution"]
    out += ["", "### Rating distribution", *_table(["rating", *dist], [["predictions", *dist.values()]])]
    out += ["", "### Per version", *_table(
        ["version", "predictions", "rated", "mean rating", "corrections", "complaints"],
        [[v, t["predictions"], t["rated"], t["mean_rating"], t["corrections"], t["complaints"]]
         for v, t in fb["by_version"].items()])]
    out += ["", "### Per version and domain", *_table(
        ["version", "domain", "predictions", "rated", "mean rating", "corrections", "complaints"],
        [[c["version"], c["domain"], c["predictions"], c["rated"], c["mean_rating"], c["corrections"], c["complaints"]]
         for c in fb["by_version_domain"]])]
    worst = [d for d in fb["complaints_by_domain"] if d["complaints"]]
    out += ["", "### Domains users complained about most"]
    if not worst:
        return out + ["", "No complaints this quarter."]
    return out + _table(["domain", "complaints", "rated", "complaint rate", "corrections"],
                        [[d["domain"], d["complaints"], d["rated"], pct(d["complaint_rate"]), d["corrections"]]
                         for d in worst])


def _move(e: dict) -> str:
    if e["action"] == "archive":
        return f"{e['to']} archived"
    return f"{e['alias']}: {e['from'] or '-'} → {e['to'] or '-'}"


def alias_history_section(moves: list[dict]) -> list[str]:
    """Every promotion, rollback, alias unset and archive: when, what, who and why."""
    out = ["", "## Alias history", ""]
    if not moves:
        return out + ["No alias has moved yet."]
    return out + ["Promotions, rollbacks and archives, oldest first (the registry's event log)."] + _table(
        ["when (UTC)", "action", "move", "who", "why"],
        [[e["at"][:19].replace("T", " "), e["action"] + (" (forced)" if e["forced"] else ""), _move(e), e["who"],
          e["why"]] for e in moves])


def data_section(versions: list[dict]) -> list[str]:
    """What each version trained on, from its manifest, the kinds of rows apart."""
    rows = []
    for v in versions:
        d = v["data"]
        if d is None:
            rows.append([v["record"].version, "no manifest", "", "", "", "", ""])
            continue
        rehearsal = ", ".join(f"{n} {src}" + (f" ({d['covered'][src][0]} of {d['covered'][src][1]} seen over "
                                                f"{d['epochs']} epochs)" if src in d.get("covered", {}) else "")
                              for src, n in d["rehearsal"].items()) or "0"
        rows.append([v["record"].version, d["new"], d["feedback"], d["history"], rehearsal, d["total"],
                     ", ".join(d["new_sources"] + [f"{s} (feedback)" for s in d["feedback_sources"]])])
    return ["", "## Data used", "",
            "Rows each version trained on: new rows of the quarter, rows extracted from production feedback "
            "(`clt feedback extract`), earlier versions' rows trained on again in full (history) and "
            "rehearsal rows per source, from each run's manifest. A version whose rehearsal was drawn afresh "
            "each epoch (`resample: per_epoch`) shows one epoch's rows, and how many of each source's rows "
            "its epochs replayed."] + _table(
        ["version", "new", "feedback-extracted", "history", "rehearsal", "total", "new data from"], rows)


def loss_section(loss: dict) -> list[str]:
    """A row for every version: how many losses it logged, the first and last, its mean."""
    rows = []
    for s in loss["series"]:
        pts = [] if s["mean_only"] else s["points"]
        rows.append([s["version"], s["logged"], f"{pts[0][1]:.4f}" if pts else "none logged",
                     f"{pts[-1][1]:.4f}" if pts else "none logged",
                     f"{s['train_loss']:.4f}" if s["train_loss"] is not None else "n/a"])
    return ["", "## Training loss", "", f"Every version's logged training loss (x axis: {loss['x']}); a version "
            "that logged none is drawn at its mean (train_loss)."] + _table(
        ["version", "logged points", "first", "last", "mean (train_loss)"], rows)


def _rule_text(suite: str, rule: dict) -> str:
    """A failed gate rule in the report's units: accuracy deltas in pt, not fractions."""
    n, name = rule.get("numbers", {}), rule["rule"]
    if name == "min_accuracy_delta":
        return f"{suite}: accuracy delta {pt(n['delta'])} is below the minimum {pt(n['minimum'])} ({name})"
    if name == "min_learning":
        text = f"{suite}: candidate - parent = {pt(n['delta'])}, below the required {pt(n['minimum'])} ({name})"
        text += " (it learned nothing of this suite)" if n["delta"] <= 0 else ""
        return text + (f"; the gain's one-sided p = {n['p_gain']:.4g}" if n.get("significant") else "")
    if name == "non_inferiority":
        return (f"{suite}: the lower bound of candidate - baseline's interval, {pt(n['low'])}, is below "
                f"{pt(-n['margin'])} (non_inferiority_margin)")
    return rule["message"]


def gate_reasons(g: dict) -> list[str]:
    """Why the gate blocked, each failed rule once, deltas in pt."""
    if not g.get("suites"):
        return list(g.get("reasons", []))
    return [f"{r['rule']}: {_rule_text(v['suite'], r)}" for v in g["suites"] for r in v.get("rules", [])
            if not r["passed"]]


def gate_section(facts: dict) -> list[str]:
    gated = [v for v in facts["versions"] if v["gate"]]
    if not gated:
        return ["", "## Latest gate", "", "No gate has run yet."]
    g = gated[-1]["gate"]
    out = ["", f"## Latest gate: {g['candidate']} against {g['baseline']} — {'PASSED' if g['passed'] else 'BLOCKED'}", "",
           f"Accuracy {pct(g['accuracy']['baseline'])} → {pct(g['accuracy']['candidate'])} "
           f"({pt(g['accuracy']['delta'])}); {len(g['regressions'])} regression(s), "
           f"{len(g['improvements'])} improvement(s)."]
    out += [f"- {reason}" for reason in gate_reasons(g)]
    if g["regressions"]:
        out += _table(["case", "criticality", "input", "expected", g["baseline"], g["candidate"]],
                      [[r["id"], r["criticality"], r["input"], r["expected"], r["baseline_output"],
                        r["candidate_output"]] for r in g["regressions"]])
    return out


def analysis_section(analysis: dict | None, reason: str | None = None) -> list[str]:
    """`clt analyze`'s top three priorities with their numbers and evidence, and the suites
    forgotten (the same facts plan.md shows); the reason when there is nothing to analyse."""
    from cl_toolkit.pipeline.plan import TOP, analysis_lines

    out = ["", "## Analysis", ""]
    if analysis is None:
        return out + [reason or "Nothing to analyse yet."]
    a = analysis
    who = f"{a['version']} ({a['alias']})" if a["alias"] else a["version"]
    fb = a["feedback"]
    out += [f"The top {TOP} priorities of {who} from its stored evaluations ({', '.join(a['suites'])}; versions "
            f"compared: {', '.join(a['versions_compared'])}) and "
            + (f"{fb['quarter']}'s production feedback on {', '.join(fb['versions'])}." if fb else "no production feedback.")
            + f" Ranked by {a['formula']}.", ""]
    out += analysis_lines(a, top=TOP)
    out += ["", "Forgotten suites (below their best-ever score): " + ("; ".join(
        f"{f['suite']} {pct(f['best'])} at {f['best_version']} → {pct(f['now'])} ({pt(-f['drop'])}; cases "
        f"{', '.join(f['evidence']['cases']) or 'n/a'})" for f in a["forgetting"]) or "none") + ".",
            "", f"The plan with commands: `clt analyze {a['model']} --version {a['version']}` "
                f"(workspace/analysis/{a['model']}/{a['version']}/plan.md)."]
    return out
