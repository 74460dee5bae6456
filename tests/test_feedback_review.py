"""`clt feedback review`: selecting an incident's predictions, a review driven through a
real pseudo-terminal (stopped halfway, then resumed), and the same from answer files."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback import review
from cl_toolkit.feedback.extract import extract
from cl_toolkit.feedback.review import Selection

INCIDENT_ROWS = [  # request id, time, metadata
    ("before", "2025-07-01T09:59:59Z", {"incident": "INC-7"}),
    ("r1", "2025-07-01T10:00:00Z", {"incident": "INC-7", "tags": ["night", "garage"]}),
    ("r2", "2025-07-01T10:30:00Z", {"tags": ["garage"]}),
    ("r3", "2025-07-01T11:00:00Z", {"incident": "INC-7"}),
    ("after", "2025-07-01T12:00:00Z", {"incident": "INC-8"}),
]
WINDOW = ["--since", "2025-07-01T10:00:00Z", "--until", "2025-07-01T12:00:00Z"]


@pytest.fixture
def incident(store):
    for rid, ts, meta in INCIDENT_ROWS:
        store.log_prediction(rid, f"What do we do about {rid}?", f"Recommendation {rid}.", "1.0.0",
                             timestamp=ts, confidence=0.8, domain="ems", metadata=meta)
    return store


def test_selection_by_window_tag_and_ids(incident, tmp_path):
    assert review.select(incident, Selection(since="2025-07-01T10:00:00Z",
                                             until="2025-07-01T12:00:00Z")) == ["r1", "r2", "r3"]
    assert review.select(incident, Selection(tags=("incident=INC-7",))) == ["before", "r1", "r3"]
    assert review.select(incident, Selection(tags=("garage",))) == ["r1", "r2"]
    assert review.select(incident, Selection(tags=("garage", "incident=INC-7"))) == ["r1"]
    assert review.select(incident, Selection(tags=("domain=ems",)))[-1] == "after"  # a column
    ids = tmp_path / "ids.txt"
    ids.write_text("# the pager log\nr3\n\nafter  # late\nghost\n", encoding="utf-8")
    assert review.read_ids(ids) == ("r3", "after", "ghost")
    assert review.select(incident, Selection(request_ids=review.read_ids(ids))) == ["r3", "after"]
    with pytest.raises(BadInput, match="select the incident"):
        review.select(incident, Selection())


DEADLINE = 60.0  # seconds: generous, for a loaded machine; no step waits for a fixed time


def _as_a_terminal_session() -> None:
    """In the child: the pty becomes its controlling terminal, and Ctrl-C means what it means
    at a person's terminal. A test run started in the background (`cmd &` without job
    control) inherits SIGINT ignored, and an ignored SIGINT stays ignored across exec."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in this process, whoever started the test run."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


class Terminal:
    """`clt ARGS` on a pseudo-terminal: expect() reads until a text shows, send() types.
    Every step waits for the program's own output, so how fast the machine is never matters."""

    def __init__(self, args: list[str], env: dict):
        master, slave = pty.openpty()
        # a session of its own with the pty as its controlling terminal, so Ctrl-C works
        self.proc = subprocess.Popen([sys.executable, "-m", "cl_toolkit", *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     preexec_fn=_as_a_terminal_session)
        os.close(slave)
        self.fd, self.seen, self.pos = master, b"", 0

    def _read(self, deadline: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError:  # EIO: the other side closed
            return b""

    def expect(self, text: str) -> None:
        """Read until `text` shows (after what earlier expects consumed)."""
        deadline = time.monotonic() + DEADLINE
        while (at := self.seen.find(text.encode(), self.pos)) < 0:
            chunk = self._read(deadline)
            if not chunk:
                raise AssertionError(f"{text!r} never came (the program ended or {DEADLINE:.0f} s "
                                     f"passed); the terminal showed:\n{self.seen.decode(errors='replace')}")
            self.seen += chunk
        self.pos = at + len(text)

    def interrupt(self) -> None:
        """One Ctrl-C, as a person types it; the program must say it stopped."""
        self.send("\x03")
        self.expect("interrupted")

    def send(self, data: str) -> None:
        os.write(self.fd, data.encode())

    def close(self) -> int:
        deadline = time.monotonic() + DEADLINE
        while chunk := self._read(deadline):
            self.seen += chunk
        os.close(self.fd)
        return self.proc.wait(timeout=DEADLINE)


def _env(fws) -> dict:
    return {**os.environ, "CLT_HOME": str(fws), "TERM": "dumb", "CLT_DEBUG": ""}


def test_a_review_in_a_terminal_stops_halfway_and_resumes_where_it_stopped(incident, fws):
    term = Terminal(["feedback", "review", "INC-7", *WINDOW, "--reviewer", "ana"], _env(fws))
    term.expect("3 to review, 0 already reviewed")
    term.expect("Query:       What do we do about r1?")
    term.expect("Recommended: Recommendation r1.")
    term.expect("Rating 1-5")
    term.send("7\n")  # not a rating: asked again
    term.expect("whole number 1-5")
    term.expect("Rating 1-5")
    term.send("2\n")
    term.expect("What actually happened")
    term.send("The patient needed a second crew.\n")
    term.expect("What should have been recommended")
    term.send("Send two crews.\n")
    term.expect("saved.")
    term.expect("[2/3] r2")
    term.expect("Rating 1-5")
    term.send("s\n")  # skipped: asked again next time
    term.expect("[3/3] r3")
    term.expect("Rating 1-5")
    term.send("q\n")
    term.expect("1 reviewed, 1 skipped, 2 remaining; run the same command to continue")
    assert term.close() == 0
    fb = incident.get_feedback("r1")[0]
    assert (fb["source"], fb["rating"], fb["correction"]) == ("incident", 2, "Send two crews.")
    assert fb["notes"] == "incident INC-7: The patient needed a second crew."
    assert incident.conn.execute("SELECT incident, request_id, what_happened, reviewer FROM "
                                 "incident_reviews").fetchall() == [
        ("INC-7", "r1", "The patient needed a second crew.", "ana")]

    term = Terminal(["feedback", "review", "INC-7", *WINDOW], _env(fws))
    term.expect("2 to review, 1 already reviewed")
    term.expect("[1/2] r2")
    term.expect("Rating 1-5")
    term.send("5\n")
    term.expect("What actually happened")
    term.send("\n")
    term.expect("What should have been recommended")
    term.send("\n")
    term.expect("[2/2] r3")
    term.expect("Rating 1-5")
    term.send("\x04")  # Ctrl-D: stops like q
    term.expect("1 reviewed, 0 skipped, 1 remaining")
    assert term.close() == 0
    assert "r1" not in term.seen.decode()  # reviewed before: not asked again
    fb = incident.get_feedback("r2")[0]
    assert (fb["rating"], fb["correction"], fb["notes"]) == (5, None, "incident INC-7")
    assert review.pending(incident, "INC-7", ["r1", "r2", "r3"]) == ["r3"]

    term = Terminal(["feedback", "review", "INC-7", *WINDOW], _env(fws))
    term.expect("[1/1] r3")
    term.expect("Rating 1-5")  # the prompt is out: the program is waiting for the answer
    term.interrupt()  # Ctrl-C at once: what was saved stays saved, nothing else is
    assert term.close() == 130
    assert review.pending(incident, "INC-7", ["r1", "r2", "r3"]) == ["r3"]
    assert incident.get_feedback("r3") == [] and incident.count("incident_reviews") == 2


def test_terminal_input_reads_one_line_after_its_prompt(tmp_path):
    out = io.StringIO()
    typed_r, typed_w = os.pipe()
    os.write(typed_w, b"2\nSend two crews\n")
    try:
        assert review.terminal_input("Rating 1-5: ", out, typed_r) == "2"
        assert out.getvalue() == "Rating 1-5: "
        assert review.terminal_input("Correction: ", out, typed_r) == "Send two crews"
        os.write(typed_w, b"no newline")
        os.close(typed_w)
        assert review.terminal_input("x: ", out, typed_r) == "no newline"  # Ctrl-D mid-line
        with pytest.raises(EOFError):  # Ctrl-D at the start of a line
            review.terminal_input("x: ", out, typed_r)
    finally:
        os.close(typed_r)


def _waiting_in_the_kernel(tid: int) -> bool:
    """The thread sleeps in a system call other than a lock (the GIL is a futex)."""
    task = Path(f"/proc/self/task/{tid}")
    state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    wchan = (task / "wchan").read_text()
    return state == "S" and wchan not in ("", "0") and "futex" not in wchan


def test_a_ctrl_c_that_interrupts_no_system_call_still_stops_the_prompt(ctrl_c_raises):
    """The lost Ctrl-C, made certain: SIGINT is handled on another thread while the prompt
    waits, so the waiting call is not interrupted - as with input() when Ctrl-C lands
    between its prompt and its read. The wait must still end in KeyboardInterrupt."""
    typed_r, typed_w = os.pipe()
    main, done, typed = threading.get_native_id(), threading.Event(), threading.Event()

    def ctrl_c():
        deadline = time.monotonic() + DEADLINE
        while not _waiting_in_the_kernel(main) and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.raise_signal(signal.SIGINT)  # handled on this thread
        if not done.wait(DEADLINE):  # never noticed: type a line so the wait (and test) ends
            typed.set()
            os.write(typed_w, b"3\n")

    helper = threading.Thread(target=ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):  # started inside: no stray Ctrl-C ends the run
            helper.start()
            review.terminal_input("Rating 1-5: ", io.StringIO(), typed_r)
        done.set()
        # the KeyboardInterrupt came from the Ctrl-C itself, not later at the next key typed
        assert not typed.is_set(), "Ctrl-C was noticed only when the next line was typed"
    finally:
        done.set()
        if helper.is_alive():
            helper.join()
        os.close(typed_r)
        os.close(typed_w)


def test_answers_from_a_csv_file(incident, tmp_path, capsys):
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "request_id,rating,what_happened,should_have_recommended\n"
        'r1,1,"Crew went in, roof came down",Defensive attack only\n'
        "r2,,,\n"
        "r3,4,As advised,\n"
        "after,5,out of window,\n"
        "r2,six,,\n", encoding="utf-8")
    code, out, err = run_main(["feedback", "review", "INC-7", *WINDOW, "--answers", str(answers),
                               "--json"], capsys)
    assert code == 2  # two rows rejected; the good ones are stored
    r = json.loads(out)
    assert (r["answers"], r["blank"], r["rejected"], r["remaining"]) == (2, 1, 2, 1)
    assert f"{answers}:5: 'after' is not in this incident's selection" in err
    assert f"{answers}:6: rating 'six' is not a whole number 1-5" in err
    assert incident.get_feedback("r1")[0]["correction"] == "Defensive attack only"
    assert incident.get_feedback("r3")[0]["notes"] == "incident INC-7: As advised"
    assert incident.get_feedback("after") == []
    # incident corrections train the next version (they outrank users, not experts)
    incident.add_feedback("r1", rating=5, source="user")
    extract(incident, tmp_path / "train.jsonl")
    assert {m["messages"][1]["content"] for m in read_jsonl(tmp_path / "train.jsonl")} == {
        "Defensive attack only", "Recommendation r3."}


def test_answers_from_a_yaml_file_need_no_selection(incident, tmp_path, capsys):
    answers = tmp_path / "answers.yaml"
    answers.write_text("answers:\n"
                       "  - {request_id: r2, rating: 3, what_happened: late, correction: sooner}\n"
                       "  - {request_id: ghost, rating: 2}\n", encoding="utf-8")
    code, out, err = run_main(["feedback", "review", "INC-9", "--answers", str(answers)], capsys)
    assert code == 2 and f"{answers}:3: unknown request_id 'ghost'" in err
    fb = incident.get_feedback("r2")[0]
    assert (fb["rating"], fb["correction"], fb["notes"]) == (3, "sooner", "incident INC-9: late")
    again = run_main(["feedback", "review", "INC-9", "--answers", str(answers)], capsys)
    assert again[0] == 2 and incident.count("incident_reviews") == 1  # idempotent


def test_without_a_terminal_a_review_needs_an_answers_file(incident, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run_main(["feedback", "review", "INC-7", *WINDOW], capsys)
    assert code == 2 and "--answers FILE" in err
    code, _, err = run_main(["feedback", "review", "INC-7", "--since", "yesterday"], capsys)
    assert code == 2 and "--since" in err
    code, _, err = run_main(["feedback", "review", " ", *WINDOW, "--answers", __file__], capsys)
    assert code == 2 and "incident name" in err
