"""Crash safety and concurrency, with real processes: SIGKILL in the middle of register or
promote leaves a registry that passes `clt registry check` in the old or the new state, and
processes promoting at once leave exactly one champion and a history that explains it."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
from test_registry_support import add_version, clt_process, make_run, python, record, wait_for_pause

from cl_toolkit.registry import open_registry, promote, record_gate
from cl_toolkit.registry.check import replay_aliases

CANDIDATES = ("1.1.0", "1.2.0", "1.3.0", "1.4.0")
REGISTER = """
import sys
from pathlib import Path
from test_registry_support import record
from cl_toolkit.registry import open_registry
with open_registry() as reg:
    reg.register(record(Path(sys.argv[1]), "1.1.0", "1.0.0"))
"""
PROMOTE_LOOP = """
import sys
from cl_toolkit.registry import open_registry, promote
versions = sys.argv[1:]
with open_registry() as reg:
    print("ready", flush=True)
    for i in range(10**6):
        promote(reg, "ff", versions[i % len(versions)], reason=f"loop {i}", force=True)
        if i < 5:  # progress for the test, then silence (nobody drains the pipe)
            print(f"promoted {i}", flush=True)
"""
RACE = """
import os, sys, time
from cl_toolkit.registry import open_registry, promote
go, versions = sys.argv[1], sys.argv[2:]
with open_registry() as reg:
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    moves = sum(promote(reg, "ff", versions[i % len(versions)], reason=f"race {i}", force=True).changed
                for i in range(15))
print(moves)
"""

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def ws(empty_workspace):
    with open_registry(empty_workspace) as reg:
        add_version(reg, empty_workspace, "1.0.0")
        promote(reg, "ff", "1.0.0", reason="first")
    return empty_workspace


def state(ws):
    with open_registry(ws) as reg:
        return [r.version for r in reg.versions("ff")], reg.aliases("ff"), len(reg.events("ff"))


@pytest.fixture
def check_passes(clt):
    """`clt registry check` (in this process: the registry is only files) exits 0; its output."""
    def run() -> str:
        code, out, err = clt("registry", "check")
        assert code == 0, out + err
        return out

    return run


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point, registered", [
    ("after_stage", False), ("after_publish", False), ("before_commit", False), ("registered", True)])
def test_sigkill_during_register(ws, point, registered, check_passes):
    before = state(ws)
    run = make_run(ws, "1.1.0")
    proc = python(REGISTER, ws, str(run), CLT_TEST_PAUSE_AT=point)
    wait_for_pause(proc, point)
    kill(proc)
    notes = check_passes()
    assert ("staging folder of an interrupted register" in notes) == (point == "after_stage")
    assert ("artifact folder no version names" in notes) == (point in ("after_publish", "before_commit"))
    versions, aliases, events = state(ws)
    if registered:
        assert (versions, events) == (["1.0.0", "1.1.0"], before[2] + 1)
        return
    assert (versions, aliases, events) == before
    with open_registry(ws) as reg:  # the leftovers do not stand in the way of a retry
        rec = reg.register(record(run, "1.1.0", "1.0.0"))
    assert (ws / "registry" / "artifacts" / "ff" / "1.1.0" / "recipe.yml").is_file() and rec.artifact_dir
    check_passes()


def test_sigkill_in_the_middle_of_promote_keeps_the_old_champion(ws, check_passes):
    with open_registry(ws) as reg:
        add_version(reg, ws, "1.1.0", "1.0.0")
    before = state(ws)
    proc = clt_process(ws, "registry", "promote", "ff", "1.1.0", "--reason", "x", "--force",
                       CLT_TEST_PAUSE_AT="promote_before_event")
    wait_for_pause(proc, "promote_before_event")
    kill(proc)
    assert state(ws) == before and before[1] == {"champion": "1.0.0"}
    check_passes()


def test_sigkill_at_random_moments_of_a_promote_loop(ws, check_passes):
    with open_registry(ws) as reg:
        for v in ("1.1.0", "1.2.0"):
            add_version(reg, ws, v, "1.0.0")
    rng = random.Random(7)
    for _ in range(3):
        proc = python(PROMOTE_LOOP, ws, "1.0.0", "1.1.0", "1.2.0")
        assert proc.stdout.readline().strip() == "ready"
        # at least 2 promotes committed, whatever the machine's speed; then a random moment
        for i in range(rng.randint(2, 5)):
            assert proc.stdout.readline().strip() == f"promoted {i}"
        time.sleep(rng.uniform(0.0, 0.2))
        kill(proc)
        check_passes()  # includes: the aliases are what the history says
    with open_registry(ws) as reg:
        assert sum(e.action == "promote" for e in reg.events("ff")) > 3


def test_eight_processes_promoting_at_once_leave_one_champion(ws, check_passes):
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    with open_registry(ws) as reg:
        for v in versions[1:]:
            add_version(reg, ws, v, "1.0.0")
    go = ws / "go"
    order = [[versions[i % 4], versions[(i + 1 + i // 4) % 4]] for i in range(8)]
    procs = [python(RACE, ws, str(go), *vs) for vs in order]
    for p in procs:  # every process has its registry open and waits: then they start at once
        assert p.stdout.readline().strip() == "ready", p.stderr.read()[-500:]
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-500:] for o in outs]
    moves = sum(int(o[0]) for o in outs)
    with open_registry(ws) as reg:
        assert reg.conn.execute("SELECT COUNT(*) FROM aliases WHERE model='ff' AND alias='champion'"
                                ).fetchone()[0] == 1
        chain = [e for e in reg.events("ff") if e.alias == "champion"]
        assert len(chain) == 1 + moves  # every move that said it changed something is in the history
        assert all(a.version == b.previous for a, b in zip(chain, chain[1:], strict=False))
        assert reg.alias("ff", "champion") == chain[-1].version == replay_aliases(chain)[("ff", "champion")]
    check_passes()


def test_four_gated_candidates_racing_to_champion_only_one_wins(ws, check_passes):
    with open_registry(ws) as reg:
        for v in CANDIDATES:
            add_version(reg, ws, v, "1.0.0")
            record_gate(ws, "ff", v, {"candidate": v, "baseline": "1.0.0", "passed": True})
    procs = [clt_process(ws, "registry", "promote", "ff", v, "--reason", "race") for v in CANDIDATES]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3, 3, 3], outs  # the others' gates were against a champion that moved
    winner = next(v for v, p in zip(CANDIDATES, procs, strict=True) if p.returncode == 0)
    assert state(ws)[1] == {"champion": winner}
    check_passes()
