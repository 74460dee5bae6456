"""The training launch command, built as pure data (asserted exactly in tests), and the
environment it runs in.

One node's command for a topology (processes per node x nodes, this node's rank, the
rendezvous host and port) under `accelerate launch` or `torchrun`. The engine comes from
the rendered Axolotl config: a `deepspeed:` JSON gives accelerate's DeepSpeed flags; an
`fsdp_config:` is applied by Axolotl itself inside each process (it exports accelerate's
FSDP variables from that block), so the launcher only starts the processes (`--multi_gpu`),
and passing accelerate's own FSDP flags too would set a second, conflicting copy.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.core.progress import Bar, child_env, debugging, note
from cl_toolkit.core.secret_scan import redact
from cl_toolkit.training.determinism import DETERMINISM_ENV

# Settings every Axolotl process needs here (measured: docs/environment.md): telemetry off
# (else the process hangs after training retrying it), no W&B unless a recipe asks, no hub.
TRAIN_ENV = {
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
    **DETERMINISM_ENV,  # reproducible runs (determinism.py)
}
LAUNCHERS = ("accelerate", "torchrun")
DEFAULT_PORT = 29500  # torch.distributed's and accelerate's default rendezvous port
TRAIN_MODULE = ["-m", "axolotl.cli.train"]
# OMP/MKL threads of a CPU training process: the profile's `launcher.threads`, overridden by
# this variable. On a shared 2-core machine a second busy job makes an unpinned run ~10x
# slower (its threads mostly wait); a hidden-64 model gains nothing from a second thread.
THREADS_VAR = "CLT_TRAIN_THREADS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Topology:
    """Where one node's share of a training job runs. None means: the profile's value."""

    nproc: int | None = None  # processes on this node (one per GPU)
    nnodes: int | None = None  # machines in the job
    node_rank: int = 0  # this machine's rank, 0 on the one with the rendezvous
    master_addr: str | None = None  # host of node 0; required with several nodes
    master_port: int | None = None  # rendezvous port on node 0 (default 29500 with several nodes)
    launcher: str = "accelerate"  # accelerate | torchrun

    @property
    def world_size(self) -> int:
        return (self.nproc or 1) * (self.nnodes or 1)


@dataclass(frozen=True)
class LaunchPlan:
    """The command of one node and the variables it needs on top of train_env()."""

    argv: list[str]
    env: dict = field(default_factory=dict)


def fill_topology(launcher: dict, topology: Topology | None = None) -> Topology:
    """`topology` with its unset process and node counts taken from a profile's launcher block."""
    t = topology or Topology()
    return replace(t, nproc=t.nproc or int(launcher.get("num_processes", 1)),
                   nnodes=t.nnodes or int(launcher.get("num_machines", 1)))


def resolve_topology(launcher: dict, topology: Topology | None = None) -> Topology:
    """Fill the unset parts of `topology` from a profile's launcher block, then check it."""
    t = fill_topology(launcher, topology)
    problems = []
    if t.launcher not in LAUNCHERS:
        problems.append(f"--launcher must be one of {', '.join(LAUNCHERS)}, not {t.launcher!r}")
    if t.nproc < 1 or t.nnodes < 1:
        problems.append("--nproc and --nnodes must be at least 1")
    if not 0 <= t.node_rank < t.nnodes:
        problems.append(f"--node-rank {t.node_rank} must be between 0 and {t.nnodes - 1} (--nnodes {t.nnodes})")
    if t.nnodes > 1 and not t.master_addr:
        problems.append(f"--master-addr (the host of node 0) is required with --nnodes {t.nnodes}")
    if t.master_port is not None and not 0 < t.master_port < 65536:
        problems.append(f"--master-port {t.master_port} is not a port")
    if problems:
        raise BadInput("\n".join(problems))
    if t.nnodes > 1 and t.master_port is None:
        t = replace(t, master_port=DEFAULT_PORT)
    return t


def _bin(name: str) -> str:
    """`name` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def accelerate_bin() -> str:
    return _bin("accelerate")


def torchrun_bin() -> str:
    return _bin("torchrun")


def _accelerate_argv(config: str, launcher: dict, t: Topology, deepspeed: str | None, exe: str) -> list[str]:
    argv = [exe, "launch"]
    cpu, many = bool(launcher.get("cpu")), t.world_size > 1
    if cpu and not many:
        argv.append("--cpu")
    if launcher.get("config_file"):  # the distributed type is the config file's
        argv += ["--config_file", str(launcher["config_file"])]
    elif deepspeed:
        argv += ["--use_deepspeed", "--deepspeed_config_file", str(deepspeed)]
        if t.nnodes > 1:  # each node runs its own command (no pdsh/ssh from node 0)
            argv += ["--deepspeed_multinode_launcher", "standard"]
    elif many:  # also on CPU: `--cpu` runs one process whatever --num_processes says
        argv.append("--multi_gpu")
    argv += ["--num_processes", str(t.world_size), "--num_machines", str(t.nnodes)]
    if t.nnodes > 1:
        argv += ["--machine_rank", str(t.node_rank), "--main_process_ip", t.master_addr,
                 "--main_process_port", str(t.master_port)]
    else:
        argv += ["--main_process_ip", t.master_addr] if t.master_addr else []
        argv += ["--main_process_port", str(t.master_port)] if t.master_port else []
    return argv + ["--mixed_precision", launcher.get("mixed_precision", "no"), "--dynamo_backend", "no",
                   *TRAIN_MODULE, config]


def _torchrun_argv(config: str, t: Topology, exe: str) -> list[str]:
    argv = [exe, "--nnodes", str(t.nnodes), "--nproc_per_node", str(t.nproc)]
    if t.nnodes > 1:
        argv += ["--node_rank", str(t.node_rank), "--master_addr", t.master_addr,
                 "--master_port", str(t.master_port)]
    else:
        argv += ["--master_addr", t.master_addr] if t.master_addr else []
        argv += ["--master_port", str(t.master_port)] if t.master_port else []
    return argv + [*TRAIN_MODULE, config]


def plan_launch(config: Path | str, launcher: dict, topology: Topology | None = None, *,
                deepspeed: str | None = None, exe: str | None = None) -> LaunchPlan:
    """The command (and extra environment) that starts this node's share of training.

    `launcher` is a profile's launcher block; `deepspeed` the rendered config's DeepSpeed
    JSON, if any; `exe` replaces the accelerate/torchrun executable (tests)."""
    t = resolve_topology(launcher, topology)
    if launcher.get("cpu") and deepspeed:
        raise BadInput("a CPU profile cannot train with DeepSpeed; drop `deepspeed:` or use a GPU profile")
    if t.launcher == "torchrun":
        argv = _torchrun_argv(str(config), t, exe or torchrun_bin())
    else:
        argv = _accelerate_argv(str(config), launcher, t, deepspeed, exe or accelerate_bin())
    # Several processes on CPU: transformers picks gloo only when told the device is the CPU
    # (accelerate's --cpu would start a single process).
    cpu_dist = bool(launcher.get("cpu")) and (t.world_size > 1 or t.launcher == "torchrun")
    return LaunchPlan(argv, {**({"ACCELERATE_USE_CPU": "true"} if cpu_dist else {}), **thread_pin(launcher)})


def thread_pin(launcher: dict, environ: dict | None = None) -> dict:
    """The thread variables a CPU training process gets: {} when neither the profile's
    `launcher.threads` nor CLT_TRAIN_THREADS says (GPU launches are left alone)."""
    if not launcher.get("cpu"):
        return {}
    value = (os.environ if environ is None else environ).get(THREADS_VAR) or launcher.get("threads")
    if value in (None, ""):
        return {}
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise BadInput(f"{THREADS_VAR} must be a whole number >= 1, not {value!r}")
    return dict.fromkeys(THREAD_VARS, str(n))


def launch_argv(config: Path | str, launcher: dict, topology: Topology | None = None, *,
                deepspeed: str | None = None, accelerate: str | None = None) -> list[str]:
    """`accelerate launch ... -m axolotl.cli.train CONFIG` for a profile's launcher settings."""
    return plan_launch(config, launcher, topology, deepspeed=deepspeed, exe=accelerate).argv


def train_env(base: dict | None = None, workspace: Path | None = None, *, extra: dict | None = None,
              wandb: bool = False) -> dict:
    """The environment of a training process: ours on top of the caller's.

    With `wandb` (a recipe that tracks to W&B) WANDB_MODE is left to the caller, whose
    environment also holds WANDB_API_KEY: keys and tokens are never written anywhere."""
    env = child_env(dict(os.environ if base is None else base))  # the child logs in full
    env.update({k: v for k, v in TRAIN_ENV.items() if not (wandb and k == "WANDB_MODE")})
    env.update(extra or {})
    if workspace is not None:  # keep Hugging Face caches inside the workspace
        env.setdefault("HF_HOME", str(Path(workspace) / ".hf"))
    return env


# ---- running the launch command -------------------------------------------------------

# What the training process prints (recorded: tests/fixtures/axolotl_train.log):
# the HF Trainer's log dicts, `{'loss': '4.07', ..., 'epoch': '0.625'}` (Axolotl 0.19 prints
# the numbers as strings), the Trainer's own tqdm bar without a description,
# `  5%|▌         | 8/150 [00:00<00:05, 24.29it/s]` (the other bars, `Tokenizing Prompts
# ...: 60/60 [...`, have one), and Axolotl's `Maximum number of steps set at 150`, which
# comes before the first step: the total is the output's.
_LOSS = re.compile(r"\{'(?:loss|train_runtime)':[^}]*\}")
_TRAIN_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[(\d[\d:]*)<(\?|\d[\d:]*)")
_MAX_STEPS = re.compile(r"Maximum number of steps set at (\d+)")
# Axolotl's log lines that start a phase worth naming while no step is counted yet.
PHASES = (
    ("Loading raw datasets", "preparing the data"),
    ("Loading prepared dataset", "loading the prepared data"),
    ("Loading weights", "loading the model"),
    ("Starting trainer", "training"),
    ("Training completed", "saving"),
    ("Copying non-model files", "merging"),  # axolotl merge-lora
)


class TrainingFailed(CltError):
    exit_code = 1


def _seconds(clock_text: str) -> float | None:
    """tqdm's 00:05 / 1:02:03 as seconds; None for '?'."""
    if not clock_text or clock_text == "?":
        return None
    total = 0.0
    for part in clock_text.split(":"):
        total = total * 60 + int(part)
    return total


def parse_progress(line: str) -> dict | None:
    """What one line of Axolotl's output says about progress: a log record ({'loss': ...,
    'epoch': ...} or the final {'train_loss': ...}, numbers as floats); the Trainer's bar
    ({"step", "steps", "elapsed_s", "eta_s"}); the step total ({"steps"}); or a phase."""
    m = _LOSS.search(line)
    if m:
        try:
            return {k: float(v) if isinstance(v, int | float | str) and _num(v) else v
                    for k, v in ast.literal_eval(m.group(0)).items()}
        except (ValueError, SyntaxError):
            return None
    m = _TRAIN_BAR.match(line)
    if m:
        return {"step": int(m.group(1)), "steps": int(m.group(2)), "elapsed_s": _seconds(m.group(3)),
                "eta_s": _seconds(m.group(4))}
    m = _MAX_STEPS.search(line)
    if m:
        return {"steps": int(m.group(1))}
    for marker, phase in PHASES:
        if marker in line:
            return {"phase": phase}
    return None


def _num(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


class TrainingProgress:
    """Feeds parsed output into a bar: step/total, loss, elapsed, time left (the Trainer's own
    estimate). A bar whose total differs from Axolotl's announced step count (an evaluation
    loop's) is not the training's and is ignored."""

    def __init__(self, bar: Bar, first_phase: str = "starting (imports, data, model)"):
        self.bar = bar
        self.steps: int | None = None
        bar.update(phase=first_phase)

    def __call__(self, info: dict) -> None:
        if "phase" in info:
            self.bar.update(phase=info["phase"])
        elif "step" in info:
            if self.steps is not None and info["steps"] != self.steps:
                return
            self.bar.update(info["step"], info["steps"], phase="training", eta_s=info["eta_s"])
        elif "steps" in info:
            self.steps = info["steps"]
            self.bar.update(total=info["steps"])
        elif "loss" in info:
            self.bar.update(loss=info["loss"])


def _stream(proc: subprocess.Popen, log_path: Path, on_line: Callable[[str], None]) -> None:
    """Copy the child's output to the log in full (secrets masked), line by line (tqdm's
    carriage returns end a line too), handing each line to `on_line`."""
    buf = b""
    with open(log_path, "w", encoding="utf-8") as log:
        while chunk := proc.stdout.read1(65536) if proc.stdout else b"":
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for raw in parts:
                line = redact(raw.decode("utf-8", "replace"))
                if line.strip():
                    log.write(line + "\n")
                    on_line(line)
            log.flush()
        if buf:
            line = redact(buf.decode("utf-8", "replace"))
            log.write(line + "\n")
            on_line(line)


def run_training(argv: list[str], run_dir: Path, workspace: Path, on_progress: Callable[[dict], None], *,
                 env: dict | None = None, wandb: bool = False, log_name: str = "train.log",
                 label: str | None = None, what: str = "training", log_dir: Path | None = None,
                 preflight: Callable[[], object] | None = None) -> dict:
    """Run the launch command with a progress bar on stderr (the child's whole output goes to
    logs/`log_name`, and with CLT_DEBUG to stderr too); raise TrainingFailed with the log's
    tail on failure. `on_progress` also gets every parsed record. The log goes to `log_dir`
    (default run_dir/logs) when run_dir is a scratch folder that will be removed.
    `preflight` (a deferred config check) runs in a thread while the process starts: if it
    raises, the process is stopped and its error is raised; success waits for it."""
    log_path = (log_dir or run_dir / "logs") / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses: list[dict] = []
    echo = debugging()
    start = time.monotonic()
    with Bar(label or f"{what} {run_dir.name}", unit="steps", heartbeat=True, phase_lines=True) as bar:
        feed = TrainingProgress(bar, *([] if what == "training" else ["starting (imports, model)"]))

        def on_line(line: str) -> None:
            if echo:
                note(line)
            info = parse_progress(line)
            if info:
                if "loss" in info or "train_loss" in info:
                    losses.append(info)
                feed(info)
                on_progress(info)

        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=run_dir,
                                env=train_env(workspace=workspace, extra=env, wandb=wandb), start_new_session=True)
        failed: list[BaseException] = []
        checker = threading.Thread(target=_preflight, args=(preflight, proc, failed), daemon=True)
        try:
            checker.start()
            _stream(proc, log_path, on_line)
            code = proc.wait()
            checker.join()
        except BaseException:  # Ctrl-C or our own crash: stop the whole training process group
            _kill(proc)
            raise
        if failed:
            raise failed[0]
        seconds = time.monotonic() - start
        if code != 0:
            tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise TrainingFailed(f"{what} failed (exit {code}); log: {log_path}\n{tail}")
        bar.finish(_summary(bar, seconds))
    return {"train_seconds": round(seconds, 2), "losses": losses}


def _preflight(check: Callable[[], object] | None, proc: subprocess.Popen, failed: list) -> None:
    """Run `check`; on an error keep it and stop the training process, which has no use."""
    if check is None:
        return
    try:
        check()
    except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
        failed.append(e)
        _kill(proc)


def _summary(bar: Bar, seconds: float) -> str:
    steps = f"{bar.done} steps, " if bar.done else ""
    loss = f"last loss {bar.fields['loss']:.4g}, " if isinstance(bar.fields.get("loss"), float) else ""
    return f"done: {steps}{loss}{seconds:.1f} s"


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
