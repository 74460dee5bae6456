"""Progress for a person, on stderr: the one writer of progress bars and status lines.

stdout holds a command's result (JSON with --json), so nothing here ever writes to it. On a
terminal a bar is one live line redrawn in place; anywhere else (a pipe, a CI log) it is a
plain line at each tenth of the way or every 10 s, whichever comes first, never more than
one a second, and a last line when it ends.

`quiet_third_party()` keeps other libraries' progress bars and warnings (Hugging Face hub,
transformers, datasets, accelerate, DeepSpeed, torch) out of our output unless CLT_DEBUG is
set; the variables it sets are listed so that a child process (Axolotl, whose own output
goes to the run's log in full) can be given its environment back (`child_env`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable

DEBUG_VAR = "CLT_DEBUG"
EVERY_S = 10.0  # a plain line at least this often while work goes on
EVERY_FRACTION = 0.1  # and one at each tenth of the total
MIN_GAP_S = 1.0  # but plain lines never closer than this (the last one excepted)
REDRAW_S = 0.1  # a live bar is redrawn at most this often
BAR_WIDTH = 20
EARLY = 0.02  # no estimate of the time left before this share of the work (nor before 3 units)

# Set in our own process when not debugging (before the libraries are imported).
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # hub downloads, and transformers' Loading/Writing bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",  # any other tqdm bar
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "ACCELERATE_LOG_LEVEL": "error",
}
# Loggers whose warnings say nothing to a user of this CLI (CPU builds lack torchao's CUDA
# kernels; bitsandbytes looks for hub kernels offline; DeepSpeed logs "Setting accelerator
# to CPU" on stdout, where it would break JSON). Errors still show.
QUIET_LOGGERS = ("torchao", "torch", "torch.utils._pytree", "transformers", "datasets", "accelerate",
                 "peft", "trl", "huggingface_hub", "bitsandbytes", "DeepSpeed", "deepspeed", "axolotl",
                 "filelock", "urllib3", "py.warnings")
STDOUT_LOGGERS = ("DeepSpeed",)  # its handler writes to sys.stdout
_quieted: set[str] = set()  # the QUIET_ENV names this process set (not the user's own)
# The names the toolkit set, passed down to child processes too: a `clt` started by a `clt`
# (or by a test process that ran a command in-process) inherits TQDM_DISABLE and the rest,
# and must still tell them from the user's own choice, or the training process it starts
# would lose the Trainer's bar, which is how training reports its steps in the run's log.
QUIETED_VAR = "CLT_QUIETED"
_lock = threading.RLock()  # one writer at a time: bars, notes, threads of a server
_live: list[Bar] = []  # live bars on the terminal, the newest last


def debugging(environ=None) -> bool:
    return bool((os.environ if environ is None else environ).get(DEBUG_VAR))


class _DropBelow(logging.Filter):
    """A logger filter that survives a library resetting its logger's level at import."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class _ToStderr(logging.Filter):
    """On a logger whose library writes to stdout (DeepSpeed): records at `level` and above
    are written to stderr instead, and none reaches the library's stdout handler."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level
        self.handler = logging.StreamHandler()  # stderr, looked up when it writes
        self.handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            self.handler.stream = sys.stderr
            self.handler.handle(record)
        return False


def quiet_third_party(environ=None) -> bool:
    """Keep third-party bars and warnings out of the output (unless CLT_DEBUG): environment
    for the libraries not imported yet, logging levels and filters, Python's warnings.
    Libraries that log on stdout are sent to stderr either way (stdout is the result).
    Returns True when it quieted anything."""
    environ = os.environ if environ is None else environ
    debug = debugging(environ)
    for name in STDOUT_LOGGERS:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _ToStderr)]:
            logger.removeFilter(f)
        logger.addFilter(_ToStderr(logging.NOTSET if debug else logging.ERROR))
    if debug:  # a parent's quieting is not the user's choice either: undo it
        for key in _inherited(environ) | ({QUIETED_VAR} & set(environ)):
            environ.pop(key, None)
        return False
    _quieted.update(_inherited(environ))
    for key, value in QUIET_ENV.items():
        if key not in environ:
            environ[key] = value
            _quieted.add(key)
    environ[QUIETED_VAR] = ",".join(sorted(_quieted))
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        if not any(isinstance(f, _DropBelow) for f in logger.filters):
            logger.addFilter(_DropBelow(logging.ERROR))
    warnings.simplefilter("ignore")  # the toolkit itself warns through notes, never `warnings`
    return True


def _inherited(environ) -> set[str]:
    """The QUIET_ENV names a parent toolkit process set, from CLT_QUIETED."""
    return {k for k in environ.get(QUIETED_VAR, "").split(",") if k in QUIET_ENV}


def child_env(environ: dict) -> dict:
    """`environ` without what quiet_third_party set, here or in a parent toolkit process: a
    training process logs in full."""
    drop = _quieted | _inherited(environ) | {QUIETED_VAR}
    return {k: v for k, v in environ.items() if k not in drop}


# ---- writing -------------------------------------------------------------------------

def _stream(stream):
    return stream if stream is not None else sys.stderr  # looked up each time (CliRunner swaps it)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def note(message: str, stream=None) -> None:
    """A line for a person on stderr; a live bar is cleared first and drawn again after."""
    out = _stream(stream)
    with _lock:
        live = [b for b in _live if b.out() is out]
        if live:
            out.write("\r\x1b[K")
        out.write(message + "\n")
        for bar in live[-1:]:
            bar.draw(force=True)
        out.flush()


def clock(seconds: float | None) -> str:
    """0:07, 3:25, 1:02:03; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Bar:
    """The progress of one task. `update(done, total, phase=..., eta_s=..., **fields)` as
    it goes (fields such as loss are shown after the count), `finish(message)` at the end.
    As a context manager it finishes itself, saying "failed" when an exception leaves it.

    `heartbeat` keeps a line coming while the work is silent (a child process importing
    for 20 s): a live bar's clock ticks, a plain line comes every EVERY_S. With `phase_lines`
    a plain line also says when the phase changes (never closer than MIN_GAP_S)."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "", stream=None,
                 tty: bool | None = None, heartbeat: bool = False, phase_lines: bool = False,
                 clock_fn: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.done: int | None = None
        self.phase: str | None = None
        self.fields: dict = {}
        self.eta_s: float | None = None
        self._stream, self._clock = stream, clock_fn
        self.tty = _is_tty(self.out()) if tty is None else tty
        self.started = clock_fn()
        self._first: tuple[float, int] | None = None  # (time, done) at the first count: the rate's start
        self._last_line = self._last_draw = float("-inf")
        self._decile = -1
        self._phase_lines, self._pending = phase_lines, False  # a phase change not printed yet
        self._closed = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            with _lock:
                _live.append(self)
        if heartbeat:
            self._ticker = threading.Thread(target=self._tick, name="clt-progress", daemon=True)
            self._ticker.start()

    def out(self):
        return _stream(self._stream)

    # -- state --
    def update(self, done: int | None = None, total: int | None = None, *, phase: str | None = None,
               eta_s: float | None = None, **fields) -> None:
        with _lock:
            if self._closed:
                return
            if total is not None:
                self.total = total
            if done is not None:
                if self._first is None or done < (self.done or 0):
                    self._first = (self._clock(), done)
                self.done = done
                self.eta_s = eta_s
            if phase is not None and phase != self.phase:
                self.phase = phase
                self._pending = self._phase_lines
            self.fields.update({k: v for k, v in fields.items() if v is not None})
            self.draw()

    def elapsed(self) -> float:
        return self._clock() - self.started

    def left(self) -> float | None:
        """Seconds left: the producer's estimate when it gave one, else from the rate so far;
        none over the first steps (the first of a training run can take 40 s alone)."""
        if not self.total or self.done is None or self._first is None or self.done < max(3, EARLY * self.total):
            return None
        if self.eta_s is not None:
            return self.eta_s
        t0, d0 = self._first
        spent, made = self._clock() - t0, self.done - d0
        if made <= 0 or spent <= 0:
            return None
        return (self.total - self.done) * spent / made

    def text(self, graphic: bool = False) -> str:
        """`label: phase  [###...] 12/40 steps (30%)  loss 1.2  0:05 elapsed, 0:11 left`."""
        parts = [self.phase] if self.phase else []
        if self.done is not None:
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            count += f" {self.unit}" if self.unit else ""
            if self.total:
                share = min(max(self.done / self.total, 0.0), 1.0)
                filled = int(share * BAR_WIDTH)
                count = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] " if graphic else "") + f"{count} ({share:.0%})"
            parts.append(count)
        parts += [f"{k} {_fmt(v)}" for k, v in self.fields.items()]
        left = None if self._closed else self.left()
        parts.append(f"{clock(self.elapsed())} elapsed" + (f", {clock(left)} left" if left is not None else ""))
        return f"{self.label}: " + "  ".join(parts)

    # -- drawing --
    def draw(self, force: bool = False) -> None:
        with _lock:
            now = self._clock()
            if self.tty:
                if force or now - self._last_draw >= REDRAW_S:
                    self._last_draw = now
                    width = shutil.get_terminal_size((100, 24)).columns - 1
                    self.out().write("\r" + self.text(graphic=True)[:width] + "\x1b[K")
                    self.out().flush()
                return
            decile = int(self.done * 10 / self.total) if self.total and self.done is not None else -1
            due = (decile > self._decile and self.done) or self._pending or now - self._last_line >= EVERY_S
            if force or (due and now - self._last_line >= MIN_GAP_S):
                self._decile, self._pending = max(self._decile, decile), False
                self._last_line = now
                self.out().write(self.text() + "\n")
                self.out().flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with _lock:
                if self._closed:
                    return
                if self.tty or self._clock() - self._last_line >= EVERY_S:
                    self.draw(force=True)
                elif self._pending:
                    self.draw()

    def finish(self, message: str | None = None) -> None:
        """The last line: `message` (default: the bar as it stands) in place of the live bar."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            out = self.out()
            if self.tty:
                out.write("\r\x1b[K")
                if self in _live:
                    _live.remove(self)
            out.write((f"{self.label}: {message}" if message else self.text(graphic=self.tty)) + "\n")
            out.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.finish()
        else:
            self.finish(f"{'interrupted' if issubclass(kind, KeyboardInterrupt) else 'failed'} "
                        f"after {clock(self.elapsed())}")
        if self._ticker is not None:
            self._ticker.join(timeout=2)
