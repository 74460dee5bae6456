"""The quarterly report of a whole quarter: production feedback, alias history, the data
used, the loss of every version, one unit for deltas; rebuilt (or marked stale) after a
promotion or a rollback.

No training: `build_quarter` makes the workspace a quarter of `clt cycle` and `clt serve`
leaves, through the same functions: real renders of the shipped recipes (manifests, mixes),
`register_run` on losses parsed from Axolotl's log lines, the bundled production logs
imported with `clt feedback import` and extracted with `clt feedback extract`, gate results
from the real policy, and the registry's own promote / archive / rollback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from safetensors.numpy import save_file

from cl_toolkit.core.files import atomic_write_json
from cl_toolkit.evaluation.gate import compare, default_policy
from cl_toolkit.evaluation.policy import gate_verdict, normalise_gate, suite_verdict
from cl_toolkit.feedback.ratings import THUMB_AS_RATING
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.registry import archive, open_registry, promote, record_gate, rollback
from cl_toolkit.training.launch import parse_progress
from cl_toolkit.training.render import render
from cl_toolkit.training.strategies import load_recipe
from cl_toolkit.training.train import register_run, run_dir_for

MODEL = "firefighter"
RECIPES = REPO / "recipes" / MODEL
FEEDBACK = REPO / "data" / MODEL / "feedback_q2.jsonl"
EXTRACTED = "extracted/q2_feedback.jsonl"
Q2_DATA = f'data.train=[{{path: data/firefighter/q2.jsonl}}, {{path: "workspace:{EXTRACTED}"}}]'
LOGGED = {"1.0.0": 20, "1.1.0": 24, "1.2.0": 1}  # losses each version logged; 1.2.0 only one
# production answers of 1.1.0 late in the quarter: (domain, rating, correction); one logged
# by a client that names the line, the way `clt serve` issues it
SERVED_110 = [("hazmat_id", 1, "UN 1203"), ("hazmat_id", 2, None), ("flammability", 5, None),
              ("equipment", 4, None), ("hazmat_id", 1, "Class 7")]


def clt(ws: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLT_HOME": str(ws), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cl_toolkit", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def axolotl_output(n: int, epochs: float) -> list[str]:
    """What Axolotl's trainer prints: a progress bar, n loss records, then the summary."""
    out = []
    for i in range(1, n + 1):
        loss = 3.0 * 0.9 ** i + 0.2
        out.append(f"{100 * i // n}%|####      | {i}/{n} [00:0{i % 10}<00:01,  6.50it/s]"
                   f"{{'loss': {loss:.4f}, 'grad_norm': 1.2503, 'learning_rate': 0.001, 'epoch': {epochs * i / n:.2f}}}")
    out.append(f"{{'train_runtime': 12.51, 'train_samples_per_second': 90.1, 'train_steps_per_second': 5.6, "
               f"'train_loss': 1.2345, 'epoch': {epochs:.1f}}}")
    return out


def trained(ws: Path, recipe: Path, overrides: tuple, reg, n_losses: int):
    """Render the recipe as `clt cycle` does, leave the adapter Axolotl would, register it."""
    lr = load_recipe(recipe, overrides, workspace=ws)
    run = run_dir_for(lr)
    render(lr, run, reg, validate=False)
    adapter = run / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "peft_type": "LORA"}))
    save_file({"lora_A": np.full((2, 4), n_losses, dtype=np.float32)}, str(adapter / "adapter_model.safetensors"))
    infos = [parse_progress(line) for line in axolotl_output(n_losses, lr.recipe.train["num_epochs"])]
    losses = [i for i in infos if i and ("loss" in i or "train_loss" in i)]  # as launch._stream keeps them
    return lr, register_run(lr, reg, run, {"train_seconds": 21.5 + n_losses, "losses": losses})


def _cases(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gated(ws: Path, reg, lr, baseline: str, passed: dict[str, tuple[int, int]]) -> dict:
    """A gate result from the real policy: `passed` is {suite: (baseline passes, candidate
    passes)}, the first cases of each suite passing. Recorded and written as run_gate does."""
    from cl_toolkit.recipe.model import thaw

    gate = thaw(lr.recipe.gate)
    policy = default_policy(gate)
    evals, verdicts = {}, []
    for name, spec in normalise_gate(gate)["suites"].items():  # as the cycle reads them
        path, role = spec["path"], spec["role"]
        cases = _cases(REPO / path)
        pair = []
        for k in passed[name]:
            rows = [{**c, "output": c["expected"] if i < k else "I do not know", "passed": i < k}
                    for i, c in enumerate(cases)]
            pair.append({"cases": rows, "accuracy": k / len(cases), "settings": {}})
        evals[name] = pair
        verdicts.append({**suite_verdict(name, role, pair[0], pair[1], policy), "path": path})
        for version, ev in zip((baseline, lr.recipe.version), pair, strict=True):
            reg.record_score(MODEL, version, name, f"sha-{name}", ev["accuracy"], len(cases), "2026-06-28T00:00:00.000Z")
    verdict = gate_verdict(verdicts)
    result = {"model": MODEL, "candidate": lr.recipe.version, "baseline": baseline, "champion": baseline,
              "suite": "data/firefighter/regression.jsonl", "passed": verdict["passed"], "reasons": verdict["reasons"],
              "policy": policy, **compare(*evals["regression"]), "suites": verdicts}
    record_gate(ws, MODEL, lr.recipe.version, result, who="clt cycle")
    atomic_write_json(run_dir_for(lr) / "gate.json", result)
    return result


def build_quarter(ws: Path) -> Path:
    """1.0.0 released as champion; the quarter's production logs imported and extracted;
    1.1.0 (Q2 + the extracted feedback, continued LoRA) gated and released as challenger,
    then promoted by alice; 1.2.0 (one logged loss) blocked by its gate and archived; bob
    rolls the champion back to 1.0.0; the report written, as `clt report` would."""
    from cl_toolkit.pipeline.quarterly_report import write_report

    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    with open_registry(ws) as reg:
        trained(ws, RECIPES / "1.0.0.yml", (), reg, LOGGED["1.0.0"])
        promote(reg, MODEL, "1.0.0", to="champion", reason="clt cycle: first version (no parent to compare with)",
                who="clt cycle")
    for args in (("feedback", "import", FEEDBACK), ("feedback", "extract", "-o", ws / EXTRACTED)):
        done = clt(ws, *args)
        assert done.returncode == 0, done.stderr
    with open_registry(ws) as reg:
        lr, _ = trained(ws, RECIPES / "1.1.0.yml", (Q2_DATA,), reg, LOGGED["1.1.0"])
        assert gated(ws, reg, lr, "1.0.0", {"regression": (58, 59), "q1": (48, 48), "q2": (6, 45)})["passed"]
        promote(reg, MODEL, "1.1.0", to="challenger", reason="clt cycle: gate passed", who="clt cycle")
        promote(reg, MODEL, "1.1.0", to="champion", reason="A/B: 1.1.0 rated higher over two weeks", who="alice")
        lr, _ = trained(ws, RECIPES / "1.1.0.yml", ("version=1.2.0", "parent=1.1.0"), reg, LOGGED["1.2.0"])
        result = gated(ws, reg, lr, "1.1.0", {"regression": (59, 58), "q1": (48, 48), "q2": (45, 45)})
        assert not result["passed"]
        archive(reg, MODEL, "1.2.0", reason="rejected by the gate: " + "; ".join(result["reasons"]), who="clt cycle")
    with FeedbackStore(ws / "feedback.db") as store:
        for i, (domain, rating, correction) in enumerate(SERVED_110):
            rid = f"srv-{i}"
            version = f"{MODEL}@1.1.0" if i == 0 else "1.1.0"
            store.log_prediction(rid, f"question {i}", f"answer {i}", version, timestamp=f"2026-06-2{i}T10:00:00Z",
                                 domain=domain)
            store.add_feedback(rid, rating=rating, correction=correction, timestamp=f"2026-06-2{i}T11:00:00Z")
        store.log_prediction("other-line", "q", "a", "9.9.9", timestamp="2026-06-25T10:00:00Z", domain="hazmat_id")
    with open_registry(ws) as reg:
        rollback(reg, MODEL, to="1.0.0", reason="users complained about hazmat_id answers", who="bob")
    write_report(ws, MODEL)
    return ws


@pytest.fixture(scope="module")
def quarter_template(tmp_path_factory) -> Path:
    return build_quarter(tmp_path_factory.mktemp("quarter") / "ws")


@pytest.fixture
def quarter(quarter_template, tmp_path) -> Path:
    """A copy of the quarter's workspace of its own (the registry's paths are relative)."""
    ws = tmp_path / "ws"
    shutil.copytree(quarter_template, ws, symlinks=True)
    return ws


def _expected_feedback() -> dict:
    """The bundled logs counted here, independently of the store: the user's rating, or a
    thumb as 5/3/1; a complaint is 2 or less."""
    rows = [json.loads(line) for line in FEEDBACK.read_text().splitlines()]
    dist, complaints, corrections, rated = Counter(), Counter(), 0, 0
    for r in rows:
        fb = r.get("user_feedback") or {}
        rating = fb.get("rating") or THUMB_AS_RATING.get(fb.get("thumbs"))
        dist[str(rating) if rating else "unrated"] += 1
        rated += rating is not None
        complaints[r["metadata"]["domain"]] += bool(rating and rating <= 2)
        corrections += bool(fb.get("correction"))
    return {"n": len(rows), "dist": dist, "complaints": complaints, "corrections": corrections, "rated": rated}


def _section(md: str, title: str) -> str:
    start = md.index(f"\n## {title}\n")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def test_the_feedback_section_counts_the_quarter_per_version_and_domain(quarter):
    from cl_toolkit.pipeline.quarterly_report import gather

    fb, want = gather(quarter, MODEL)["feedback"], _expected_feedback()
    assert (fb["quarter"], fb["since"], fb["until"]) == ("2026Q2", "2026-04-01T00:00:00.000Z", "2026-07-01T00:00:00.000Z")
    v100, v110 = fb["by_version"]["1.0.0"], fb["by_version"]["1.1.0"]
    assert (v100["predictions"], v100["rated"], v100["corrections"]) == (want["n"], want["rated"], want["corrections"])
    assert v110["predictions"] == len(SERVED_110)  # 'firefighter@1.1.0' counts as 1.1.0
    assert (v110["complaints"], v110["corrections"]) == (3, 2)
    assert fb["other_versions"] == 1  # 9.9.9 is not this line's
    served = Counter(str(r) for _, r, _ in SERVED_110)
    assert fb["rating_distribution"] == {k: want["dist"][k] + served[k] for k in ("1", "2", "3", "4", "5", "unrated")}
    complaints = want["complaints"] + Counter(d for d, r, _ in SERVED_110 if r <= 2)
    top = [(d["domain"], d["complaints"]) for d in fb["complaints_by_domain"]][:3]
    assert top == sorted(complaints.items(), key=lambda kv: -kv[1])[:3] and top[0][1] > top[1][1]
    cell = next(c for c in fb["by_version_domain"] if (c["version"], c["domain"]) == ("1.1.0", "hazmat_id"))
    assert (cell["predictions"], cell["complaints"], cell["corrections"]) == (3, 3, 2)
    md = (quarter / "reports" / MODEL / "report.md").read_text()
    section = _section(md, "Production feedback")
    assert f"| 1.0.0 | {want['n']} | {want['rated']} |" in section
    assert f"| {top[0][0]} | {top[0][1]} |" in _section(md, "Production feedback").split("complained about most")[1]


def test_another_quarter_is_chosen_by_hand_and_a_bad_one_is_refused(quarter):
    from cl_toolkit.pipeline.quarterly_report import gather

    assert gather(quarter, MODEL, "2026Q3")["feedback"]["predictions"] == 0
    done = clt(quarter, "report", MODEL, "--quarter", "2026Q3")
    assert done.returncode == 0, done.stderr
    assert "Quarter 2026Q3 (2026-07-01 to 2026-10-01" in (quarter / "reports" / MODEL / "report.md").read_text()
    assert clt(quarter, "registry", "promote", MODEL, "1.1.0", "--reason", "r").returncode == 0
    md = (quarter / "reports" / MODEL / "report.md").read_text()  # rebuilt for the quarter chosen
    assert "Champion: **1.1.0**" in md and "Quarter 2026Q3 (" in md
    done = clt(quarter, "report", MODEL, "--quarter", "2026-06")
    assert done.returncode == 2 and done.stderr.strip() == "error: quarter '2026-06' must look like 2026Q2"


def test_the_alias_history_says_who_moved_what_and_why(quarter):
    md = (quarter / "reports" / MODEL / "report.md").read_text()
    rows = [line for line in _section(md, "Alias history").splitlines() if line.startswith("| 20")]
    moves = [[c.strip() for c in r.strip("|").split(" | ")][1:4] for r in rows]
    assert moves == [["promote", "champion: - → 1.0.0", "clt cycle"],
                     ["promote", "challenger: - → 1.1.0", "clt cycle"],
                     ["promote", "champion: 1.0.0 → 1.1.0", "alice"],
                     ["unset", "challenger: 1.1.0 → -", "alice"],
                     ["archive", "1.2.0 archived", "clt cycle"],
                     ["rollback", "champion: 1.1.0 → 1.0.0", "bob"]]
    assert rows[2].rstrip(" |").endswith("A/B: 1.1.0 rated higher over two weeks")
    assert rows[-1].rstrip(" |").endswith("users complained about hazmat_id answers")


def test_the_data_used_shows_new_feedback_and_rehearsal_rows_apart(quarter):
    manifest = json.loads((quarter / "runs" / f"{MODEL}-1.1.0" / "manifest.json").read_text())
    extract = json.loads((quarter / "extracted" / "q2_feedback.manifest.json").read_text())
    q2_rows = len((REPO / "data" / MODEL / "q2.jsonl").read_text().splitlines())
    fb_rows = extract["output"]["rows"]
    assert fb_rows > 0 and manifest["mix"]["new"] == q2_rows + fb_rows
    reh = manifest["mix"]["rehearsal"]
    md = (quarter / "reports" / MODEL / "report.md").read_text()
    row = next(line for line in _section(md, "Data used").splitlines() if line.startswith("| 1.1.0 |"))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[1:4] == [str(q2_rows), str(fb_rows), "0"]
    assert cells[4] == ", ".join(f"{m['rows']} {src}" for src, m in reh.items()) and cells[5] == str(manifest["mix"]["total"])
    assert f"workspace:{EXTRACTED} (feedback)" in cells[6]
    row100 = next(line for line in _section(md, "Data used").splitlines() if line.startswith("| 1.0.0 |"))
    assert [c.strip() for c in row100.strip("|").split(" | ")][2] == "0"  # 1.0.0 had no feedback yet


def test_every_version_has_its_training_loss_even_with_one_logged_point(quarter):
    md = (quarter / "reports" / MODEL / "report.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("|").split(" | ")]
            for line in _section(md, "Training loss").splitlines() if line.startswith("| 1.")}
    assert {v: int(r[1]) for v, r in rows.items()} == LOGGED
    assert rows["1.2.0"][2] == rows["1.2.0"][3] == f"{3.0 * 0.9 + 0.2:.4f}" and rows["1.2.0"][4] == "1.2345"
    page = (quarter / "reports" / MODEL / "report.html").read_text()
    data = json.loads(re.search(r'id="loss-data">(.*?)</script>', page).group(1))
    assert data["x"] == "epoch" and [len(s["points"]) for s in data["series"]] == list(LOGGED.values())
    from PIL import Image

    with Image.open(quarter / "reports" / MODEL / "plots" / "training_loss.png") as im:
        im.verify()


def test_a_version_that_logged_no_step_loss_is_drawn_at_its_mean_and_one_without_any_says_so():
    from cl_toolkit.pipeline.quarterly_report import loss_curves
    from cl_toolkit.pipeline.report_sections import loss_section
    from cl_toolkit.registry import VersionRecord

    def version(v, metrics, recorded=None):
        rec = VersionRecord(model=MODEL, version=v, parent=None, strategy="initial_lora", base_model="tiny",
                            recipe_sha256="r", data_sha256="d", run_dir="runs/x", adapter_dir=None, metrics=recorded or {})
        return {"record": rec, "metrics": metrics}

    logs = [parse_progress(line) for line in axolotl_output(3, 2.0)]
    loss = loss_curves([version("1.0.0", {"losses": logs, "train_loss": 1.2345}),
                        version("1.1.0", {"losses": logs[-1:], "train_loss": 0.75}),  # the summary alone
                        version("1.2.0", None)])  # no metrics.json, nothing recorded
    series = {s["version"]: s for s in loss["series"]}
    assert loss["x"] == "epoch" and [p[0] for p in series["1.0.0"]["points"]] == [0.67, 1.33, 2.0]
    assert (series["1.1.0"]["points"], series["1.1.0"]["logged"], series["1.1.0"]["mean_only"]) == ([[2.0, 0.75]], 0, True)
    assert (series["1.2.0"]["points"], series["1.2.0"]["mean_only"]) == ([], False)
    rows = [line for line in loss_section(loss) if line.startswith("| 1.")]
    assert rows[1] == "| 1.1.0 | 0 | none logged | none logged | 0.7500 |"
    assert rows[2] == "| 1.2.0 | 0 | none logged | none logged | n/a |"


def test_deltas_are_in_points_only(quarter):
    md = (quarter / "reports" / MODEL / "report.md").read_text()
    gate = _section(md, "Latest gate: 1.2.0 against 1.1.0 — BLOCKED")
    assert "(-1.7 pt)" in gate  # regression 59/60 -> 58/60
    assert "q2: candidate - parent = +0.0 pt, below the required +0.0 pt (min_learning)" in gate
    assert "regression: accuracy delta -1.7 pt is below the minimum +0.0 pt (min_accuracy_delta)" in gate
    for name in ("Latest gate: 1.2.0 against 1.1.0 — BLOCKED", "Accuracy matrix"):
        text = _section(md, name)
        assert not re.search(r"[+-]\d+\.\d+%|[+-]0\.\d{3,}", text), text  # no '-4.0%', no '-0.0400'


def test_promote_and_rollback_rebuild_the_report(quarter):
    report = quarter / "reports" / MODEL
    assert "Champion: **1.0.0**" in (report / "report.md").read_text()
    done = clt(quarter, "registry", "promote", MODEL, "1.1.0", "--reason", "rollback was a mistake", "--who", "carol")
    assert done.returncode == 0, done.stderr
    assert "report rebuilt: " in done.stdout
    md = (report / "report.md").read_text()
    assert "Champion: **1.1.0**" in md and "| carol | rollback was a mistake |" in md
    with open_registry(quarter) as reg:
        newest = reg.events(MODEL)[-1].id
    assert json.loads((report / "report.json").read_text())["last_event_id"] == newest
    done = clt(quarter, "registry", "rollback", MODEL, "--reason", "again", "--who", "dave")
    assert done.returncode == 0 and "Champion: **1.0.0**" in (report / "report.md").read_text()
    assert "<td>dave</td><td>again</td>" in (report / "report.html").read_text()


def test_no_report_marks_it_stale_and_the_next_report_clears_it(quarter):
    report = quarter / "reports" / MODEL
    done = clt(quarter, "registry", "promote", MODEL, "1.1.0", "--reason", "try again", "--no-report")
    assert done.returncode == 0, done.stderr
    why = json.loads((report / "stale.json").read_text())["reason"]
    assert why == f"champion 1.0.0 -> 1.1.0 (promote) after it was built; run `clt report {MODEL}`"
    assert why in done.stderr and "Champion: **1.0.0**" in (report / "report.md").read_text()
    assert (report / "report.md").read_text().startswith(f"> **Stale:** {why}\n")
    assert '<div class="stale" id="stale">Stale: champion 1.0.0 -&gt; 1.1.0 (promote)' in (report / "report.html").read_text()
    done = clt(quarter, "report", MODEL)
    assert done.returncode == 0 and not (report / "stale.json").exists()
    assert 'id="stale"' not in (report / "report.html").read_text()


def test_a_rebuild_that_fails_marks_the_report_stale_with_the_error(quarter):
    with open_registry(quarter) as reg:
        kept = Path(reg.require(MODEL, "1.2.0").artifact_dir)  # the registry's copy is what is read
    (kept / "metrics.json").write_text("{not json")
    done = clt(quarter, "registry", "promote", MODEL, "1.1.0", "--reason", "broken run folder")
    assert done.returncode == 0, done.stderr  # the move stands
    with open_registry(quarter) as reg:
        assert reg.alias(MODEL, "champion") == "1.1.0"
    why = json.loads((quarter / "reports" / MODEL / "stale.json").read_text())["reason"]
    assert why.startswith("champion 1.0.0 -> 1.1.0 (promote) after it was built, and rebuilding it failed: ")
    assert "JSONDecodeError" in why and "Traceback" not in done.stderr


def test_a_line_without_a_report_gets_none_after_a_move(quarter):
    shutil.rmtree(quarter / "reports")
    done = clt(quarter, "registry", "promote", MODEL, "1.1.0", "--reason", "no report yet")
    assert done.returncode == 0 and "report" not in done.stdout + done.stderr
    assert not (quarter / "reports").exists()


def test_a_per_epoch_version_shows_one_epochs_rows_and_what_its_epochs_covered(tmp_path):
    """`resample: per_epoch` writes every epoch into train.jsonl: its totals are over all epochs,
    so the report shows one epoch's rows beside the quarter's new ones, and the coverage."""
    from cl_toolkit.pipeline.quarterly_report import data_used
    from cl_toolkit.pipeline.report_sections import data_section

    mix = {"new": 48, "resample": "per_epoch", "epochs": 20, "total": 20 * 60,
           "rehearsal": {"parent_data": {"rows": 20 * 12, "pool": 48, "seen": {"distinct": 48}}}}
    d = data_used({"mix": mix, "inputs": [{"role": "train", "source": "data/ff/q2.jsonl", "rows": 48}]}, tmp_path, {})
    assert (d["new"], d["rehearsal"], d["total"]) == (48, {"parent_data": 12}, 60)
    record = type("Rec", (), {"version": "1.1.0"})()
    [row] = [line for line in data_section([{"record": record, "data": d}]) if line.startswith("| 1.1.0 |")]
    assert "| 12 parent_data (48 of 48 seen over 20 epochs) | 60 |" in row
    once = data_used({"mix": {**mix, "resample": "once", "total": 60, "rehearsal": {"parent_data": {"rows": 12}}}},
                     tmp_path, {})
    assert (once["rehearsal"], once["total"], once["covered"]) == ({"parent_data": 12}, 60, {})
