"""Progress a person can follow: the parser on a recorded Axolotl run, the one stderr writer
(plain lines off a terminal, a live bar on one), a real training-like child process whose
whole output goes to the log while stderr gets the bar, and CLT_DEBUG's switch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from cl_toolkit.core import progress
from cl_toolkit.core.progress import Bar, child_env, clock, note, quiet_third_party
from cl_toolkit.training.launch import (
    TrainingFailed,
    TrainingProgress,
    parse_progress,
    run_training,
)

FIXTURE = Path(__file__).parent / "fixtures" / "axolotl_train.log"  # `clt train recipes/firefighter/1.0.0.yml`


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def parsed(path: Path = FIXTURE) -> list[dict]:
    return [info for line in path.read_text(encoding="utf-8").splitlines() if (info := parse_progress(line))]


# ---- the parser, on a recorded run ------------------------------------------------------

def test_the_recorded_run_gives_steps_total_loss_and_time_left():
    infos = parsed()
    assert {"steps": 150} in infos  # Axolotl announces the total before the first step
    steps = [i for i in infos if "step" in i]
    assert {i["steps"] for i in steps} == {150}  # the dataset bars (60/60 examples, 21/21 weights) are not steps
    assert steps[-1]["step"] == 150 and [i["step"] for i in steps] == sorted(i["step"] for i in steps)
    first = next(i for i in steps if i["step"] == 1)
    assert first["elapsed_s"] == 0 and first["eta_s"] == 18  # `1/150 [00:00<00:18, 8.12it/s]`
    assert steps[0]["eta_s"] is None  # `0/150 [00:00<?, ?it/s]`: no estimate yet
    losses = [i for i in infos if "loss" in i]
    assert len(losses) == 30 and losses[0]["loss"] == 4.07 and losses[-1]["loss"] == 0.2409
    assert losses[0]["epoch"] == 0.625  # Axolotl 0.19 prints numbers as strings
    assert next(i for i in infos if "train_loss" in i)["train_loss"] == 0.9391
    phases = [i["phase"] for i in infos if "phase" in i]
    assert phases.index("preparing the data") < phases.index("training") < phases.index("saving")


def test_lines_that_are_not_progress_give_nothing():
    assert parse_progress("Tokenizing Prompts (num_proc=1): 100%|██████████| 60/60 [00:00<00:00, 172.38 examples/s]") is None
    assert parse_progress("trainable params: 178,176 || all params: 571,712") is None
    assert parse_progress(" 12%|█▏        | 3/25 [01:02:03<1:00:00,  1.2s/it]") == {
        "step": 3, "steps": 25, "elapsed_s": 3723, "eta_s": 3600}


def test_the_training_bar_follows_the_recorded_run():
    out, fake = io.StringIO(), FakeClock()
    bar = Bar("training ff-1.0.0", unit="steps", stream=out, tty=False, clock_fn=fake)
    feed = TrainingProgress(bar)
    for info in parsed():
        fake.now += 0.2
        feed(info)
    assert bar.done == 150 and bar.total == 150 and bar.fields["loss"] == 0.2409
    assert bar.phase == "saving"
    bar.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "training ff-1.0.0: starting (imports, data, model)  0:00 elapsed"
    assert 10 <= len(lines) <= 14  # a line a tenth, not one per step or per log record
    assert lines[-1].startswith("training ff-1.0.0: saving  150/150 steps (100%)  loss 0.2409  ")


def test_an_evaluation_loop_bar_is_not_taken_for_the_training():
    bar = Bar("t", stream=io.StringIO(), tty=False)
    feed = TrainingProgress(bar)
    feed({"steps": 40})
    feed({"step": 10, "steps": 40, "elapsed_s": 1.0, "eta_s": 3.0})
    feed({"step": 2, "steps": 5, "elapsed_s": 0.0, "eta_s": 1.0})  # an eval pass: 5 batches
    assert (bar.done, bar.total, bar.left()) == (10, 40, 3.0)


# ---- the writer --------------------------------------------------------------------------

def test_plain_lines_come_at_each_tenth_and_every_ten_seconds_not_at_every_step():
    out, fake = io.StringIO(), FakeClock()
    bar = Bar("evaluating toy 1.0.0 on smoke", 200, unit="cases", stream=out, tty=False, clock_fn=fake)
    for done in range(1, 201):
        fake.now += 0.5  # 100 s in all
        bar.update(done)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12  # one per tenth (plus the first count and the last line), not 200
    assert lines[0] == "evaluating toy 1.0.0 on smoke: 1/200 cases (0%)  0:00 elapsed"
    assert "20/200 cases (10%)" in lines[1] and "0:10 elapsed, 1:30 left" in lines[1]
    assert lines[-1] == "evaluating toy 1.0.0 on smoke: 200/200 cases (100%)  1:40 elapsed"
    assert not any("\r" in line or "\x1b" in line for line in lines)


def test_a_slow_task_without_a_total_still_says_something_every_ten_seconds():
    out, fake = io.StringIO(), FakeClock()
    bar = Bar("merging ff 1.0.0", stream=out, tty=False, clock_fn=fake)
    for _ in range(61):  # 30 s of updates every half second
        bar.update(phase="loading")
        fake.now += 0.5
    assert out.getvalue().splitlines() == [
        "merging ff 1.0.0: loading  0:00 elapsed", "merging ff 1.0.0: loading  0:10 elapsed",
        "merging ff 1.0.0: loading  0:20 elapsed", "merging ff 1.0.0: loading  0:30 elapsed"]


def test_phase_changes_get_a_line_when_asked_but_never_two_within_a_second():
    out, fake = io.StringIO(), FakeClock()
    bar = Bar("starting clt serve ff", stream=out, tty=False, phase_lines=True, clock_fn=fake)
    bar.update(phase="opening the feedback store")
    fake.now += 0.2
    bar.update(phase="loading ff 1.1.0")  # too soon after the last line: it waits
    fake.now += 1.0
    bar.update(phase="loading ff 1.1.0")  # the same phase, later: the waiting line comes now
    bar.finish("ready")
    assert out.getvalue().splitlines() == [
        "starting clt serve ff: opening the feedback store  0:00 elapsed",
        "starting clt serve ff: loading ff 1.1.0  0:01 elapsed", "starting clt serve ff: ready"]


def test_time_left_comes_from_the_rate_since_the_first_count():
    fake = FakeClock()
    bar = Bar("x", 100, stream=io.StringIO(), tty=False, clock_fn=fake)
    fake.now += 20  # 20 s of loading before the first count must not slow the estimate
    bar.update(0)
    fake.now += 5
    bar.update(2, eta_s=3600.0)
    assert bar.left() is None  # no guess over the first steps (a first step can take 40 s alone)
    fake.now += 5
    bar.update(25)
    assert bar.left() == pytest.approx(30.0)
    bar.update(30, eta_s=7.0)  # the producer's own estimate wins
    assert bar.left() == 7.0


def test_a_live_bar_redraws_in_place_and_a_note_does_not_tear_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the line is cut to the terminal's width
    out, fake = io.StringIO(), FakeClock()
    with Bar("training ff", 10, unit="steps", stream=out, tty=True, clock_fn=fake) as bar:
        for step in range(1, 4):
            fake.now += 1
            bar.update(step, loss=1.0 / step)
        note("a line for a person", stream=out)
    text = out.getvalue()
    assert text.count("\n") == 2  # the note and the final line; every redraw is a carriage return
    assert "\rtraining ff: [######..............] 3/10 steps (30%)  loss 0.3333" in text
    assert "\r\x1b[Ka line for a person\n" in text  # the bar is cleared before the note, then drawn again
    assert text.endswith("training ff: [######..............] 3/10 steps (30%)  loss 0.3333  0:03 elapsed\n")
    assert progress._live == []


def test_a_bar_left_by_an_exception_says_so():
    out = io.StringIO()
    with pytest.raises(RuntimeError), Bar("teacher log-probs", 8, stream=out, tty=False) as bar:
        bar.update(2)
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("teacher log-probs: failed after 0:0")


def test_clock_format():
    assert [clock(s) for s in (0, 7.4, 205, 3723, None, -1)] == ["0:00", "0:07", "3:25", "1:02:03", "?", "?"]


# ---- a real child process ---------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    print("[2026-12-02 07:37:00,977] [WARNING] [torchao] Failed to load _C_mxfp8.so", flush=True)
    print("Tokenizing Prompts (num_proc=1): 100%|##| 60/60 [00:00<00:00, 172.38 examples/s]", flush=True)
    print("[INFO] [axolotl.utils.data.sft] Maximum number of steps set at 20", flush=True)
    print("[INFO] [axolotl.train] Starting trainer...", flush=True)
    for step in range(1, 21):
        sys.stderr.write(f"\\r {step * 5:3d}%|#| {step}/20 [00:{step // 10:02d}<00:{(20 - step) // 10:02d}, 9.9it/s]")
        sys.stderr.flush()
        if step % 5 == 0:
            print("\\n{'loss': '%.3f', 'grad_norm': '1.2', 'epoch': '%.2f'}" % (4.0 / step, step / 20), flush=True)
        time.sleep(0.01)
    print("\\n{'train_runtime': '0.3', 'train_loss': '1.5', 'epoch': '1.0'}", flush=True)
    print("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123 leaked", flush=True)
    if len(sys.argv) > 1:
        print("Traceback (most recent call last):\\nRuntimeError: CUDA out of memory (pretend)", flush=True)
        sys.exit(3)
""")


@pytest.fixture
def child(tmp_path) -> Path:
    script = tmp_path / "fake_axolotl.py"
    script.write_text(CHILD)
    return script


def test_a_training_child_logs_everything_while_stderr_gets_only_the_bar(child, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    seen = []
    outcome = run_training([sys.executable, str(child)], tmp_path, tmp_path, seen.append, label="training toy")
    out, err = capsys.readouterr()
    assert out == ""  # stdout is the command's result, never progress
    assert [x["loss"] for x in outcome["losses"] if "loss" in x] == [0.8, 0.4, 0.267, 0.2]
    assert outcome["losses"][-1]["train_loss"] == 1.5
    assert any(i.get("step") == 20 for i in seen)
    assert "training toy: starting" in err and "training toy: done: 20 steps, last loss 0.2" in err
    assert "torchao" not in err and "Tokenizing" not in err and "hf_abc" not in err
    log = (tmp_path / "logs" / "train.log").read_text()
    assert "[torchao] Failed to load" in log and "Tokenizing Prompts" in log and " 20/20 [" in log
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in log  # secrets are masked in the log too


def test_a_failed_child_shows_the_tail_of_its_log(child, tmp_path, capsys):
    with pytest.raises(TrainingFailed) as e:
        run_training([sys.executable, str(child), "fail"], tmp_path, tmp_path, lambda info: None, label="training toy")
    assert "exit 3" in str(e.value) and "RuntimeError: CUDA out of memory (pretend)" in str(e.value)
    assert str(tmp_path / "logs" / "train.log") in str(e.value)
    assert "training toy: failed after" in capsys.readouterr().err


def test_clt_debug_echoes_the_child_output_too(child, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLT_DEBUG", "1")
    run_training([sys.executable, str(child)], tmp_path, tmp_path, lambda info: None, label="training toy")
    err = capsys.readouterr().err
    assert "[torchao] Failed to load" in err and "Tokenizing Prompts" in err and "training toy: done" in err


# ---- third-party noise and CLT_DEBUG ------------------------------------------------------

NOISY = textwrap.dedent("""
    import warnings
    from cl_toolkit.core.progress import quiet_third_party
    quiet_third_party()
    from huggingface_hub.utils import tqdm
    for _ in tqdm(range(3), desc="Fetching files"):
        pass
    from deepspeed.utils import logger
    logger.warning("Setting accelerator to CPU")  # what DeepSpeed logs on a CPU machine, on stdout
    warnings.warn("a library's UserWarning")
    import logging
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward")
    logging.getLogger("transformers.modeling_utils").error("a real error still shows")
""")


def _noisy(debug: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in progress.QUIET_ENV and k != "CLT_DEBUG"}
    env.update(PYTHONPATH=str(REPO), **({"CLT_DEBUG": "1"} if debug else {}))
    return subprocess.run([sys.executable, "-c", NOISY], capture_output=True, text=True, env=env, timeout=120)


def test_third_party_bars_and_warnings_stay_out_unless_clt_debug():
    quiet, loud = _noisy(debug=False), _noisy(debug=True)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert quiet.stdout == "" and loud.stdout == ""  # DeepSpeed logs on stdout: that would break --json
    [only] = quiet.stderr.strip().splitlines()  # errors still show, in the library's own format
    assert only.endswith("a real error still shows")
    for noise in ("Fetching files", "a library's UserWarning", "Failed to load CPU gemm_4bit_forward",
                  "Setting accelerator to CPU"):
        assert noise in loud.stderr


@pytest.fixture
def logging_restored():
    """quiet_third_party sets logger levels and filters of this process: put them back."""
    import logging

    names = progress.QUIET_LOGGERS + progress.STDOUT_LOGGERS
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    yield
    for n, (level, filters) in saved.items():
        logging.getLogger(n).setLevel(level)
        logging.getLogger(n).filters[:] = filters


def test_a_child_gets_its_environment_back(monkeypatch, logging_restored):
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    environ = {"TRANSFORMERS_VERBOSITY": "info"}  # the user's own choice stays
    monkeypatch.setattr(progress, "_quieted", set())
    assert quiet_third_party(environ) is True
    assert environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and environ["TQDM_DISABLE"] == "1"
    # the Trainer's bar and log dicts are how training reports its steps: the child needs them
    assert child_env(environ) == {"TRANSFORMERS_VERBOSITY": "info"}
    assert quiet_third_party({"CLT_DEBUG": "1"}) is False


def test_a_grandchild_gets_its_environment_back_too(monkeypatch, logging_restored):
    """A `clt` started by a `clt` (or by a process that ran a command in-process) inherits the
    quieting; it must not take it for the user's own choice and pass it to training."""
    monkeypatch.delenv("CLT_DEBUG", raising=False)
    monkeypatch.setattr(progress, "_quieted", set())
    parent = {"TRANSFORMERS_VERBOSITY": "info", "PATH": "/bin"}
    quiet_third_party(parent)
    monkeypatch.setattr(progress, "_quieted", set())  # a new process: nothing set here yet
    inherited = dict(parent)
    assert quiet_third_party(inherited) is True
    assert child_env(inherited) == {"TRANSFORMERS_VERBOSITY": "info", "PATH": "/bin"}
    # and a debugging grandchild is loud: the parent's quieting is undone
    debug = dict(parent, CLT_DEBUG="1")
    quiet_third_party(debug)
    assert "TQDM_DISABLE" not in debug and "HF_HUB_DISABLE_PROGRESS_BARS" not in debug
    assert debug["TRANSFORMERS_VERBOSITY"] == "info"


def test_a_real_command_keeps_stdout_clean_json_with_json(tmp_path):
    """`clt tiny-model --json` saves a model through transformers, whose "Writing model
    shards" bar leaked before; stdout is the JSON alone, and CLT_DEBUG brings the bar back."""
    env = {k: v for k, v in os.environ.items() if k not in progress.QUIET_ENV and k != "CLT_DEBUG"}
    env.update(PYTHONPATH=str(REPO), CLT_HOME=str(tmp_path / "ws"), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-c", "from cl_toolkit.cli import run; run()", "tiny-model", "--json",
            "--pretrain-epochs", "0"]
    quiet = subprocess.run([*argv, str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["vocab_size"] > 0
    assert "Writing model shards" not in quiet.stderr
    loud = subprocess.run([*argv, str(tmp_path / "b")], capture_output=True, text=True, timeout=300,
                          env={**env, "CLT_DEBUG": "1"})
    assert loud.returncode == 0 and json.loads(loud.stdout)["vocab_size"] > 0
    assert "Writing model shards" in loud.stderr
