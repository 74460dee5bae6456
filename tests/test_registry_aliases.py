"""Champion and challenger: promotion behind the gate, rollback to the previous champion,
archive, and a history that explains every alias."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_registry_support import add_version, write_gate

from cl_toolkit.core.errors import BadInput, Refused
from cl_toolkit.registry import (
    archive,
    check_registry,
    open_registry,
    promote,
    record_gate,
    rollback,
    weights_sha256,
)

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def reg(empty_workspace):
    with open_registry(empty_workspace) as r:
        for v, p in [("1.0.0", None), ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0"), ("1.3.0", "1.2.0")]:
            add_version(r, empty_workspace, v, p)
        yield r


def passing(candidate, baseline, passed=True):
    return {"candidate": candidate, "baseline": baseline, "passed": passed}


def champion_moves(reg):
    return [(e.action, e.previous, e.version, e.forced) for e in reg.events("ff") if e.alias == "champion"]


def test_the_first_champion_needs_no_gate_and_every_move_is_recorded(reg):
    move = promote(reg, "ff", "1.0.0", reason="first release", who="ana")
    assert (move.previous, move.version, move.changed) == (None, "1.0.0", True)
    assert reg.aliases("ff") == {"champion": "1.0.0"}
    event = reg.events("ff")[-1]
    assert (event.action, event.who, event.why, event.forced) == ("promote", "ana", "first release", False)
    assert not promote(reg, "ff", "1.0.0", reason="again").changed  # nothing to move, nothing logged
    assert len(reg.events("ff")) == 5


def test_promotion_to_champion_needs_a_passing_gate_against_the_champion(reg, empty_workspace):
    promote(reg, "ff", "1.0.0", reason="first")
    with pytest.raises(Refused, match="no gate result against the champion 1.0.0"):
        promote(reg, "ff", "1.1.0", reason="better")
    record_gate(empty_workspace, "ff", "1.1.0", passing("1.1.0", "1.2.0"))  # another baseline: does not count
    with pytest.raises(Refused, match="no gate result"):
        promote(reg, "ff", "1.1.0", reason="better")
    record_gate(empty_workspace, "ff", "1.1.0", passing("1.1.0", "1.0.0", passed=False))
    with pytest.raises(Refused, match="failed its gate"):
        promote(reg, "ff", "1.1.0", reason="better")
    record_gate(empty_workspace, "ff", "1.1.0", passing("1.1.0", "1.0.0"))
    promote(reg, "ff", "1.1.0", reason="better")
    assert reg.aliases("ff") == {"champion": "1.1.0"}
    assert reg.events("ff")[-1].detail == {"gate_baseline": "1.0.0", "gate_legacy": False}


def test_a_hand_written_gate_json_is_not_a_gate(reg, empty_workspace, clt):
    """#18: anyone who can write the run folder could forge a passing gate.json; only the
    registry's own record counts, and a blocked record stays blocked whatever the file says."""
    promote(reg, "ff", "1.0.0", reason="first")
    forged = {**passing("1.1.0", "1.0.0"), "reasons": [], "suites": [], "policy": {}}
    write_gate(empty_workspace / "runs" / "ff-1.1.0", forged)
    with pytest.raises(Refused, match="no gate result against the champion 1.0.0 in the registry"):
        promote(reg, "ff", "1.1.0", reason="forged")
    record_gate(empty_workspace, "ff", "1.1.0", passing("1.1.0", "1.0.0", passed=False))
    with pytest.raises(Refused, match="failed its gate"):
        promote(reg, "ff", "1.1.0", reason="forged")
    code, _, err = clt("registry", "promote", "ff", "1.1.0", "--reason", "forged")  # the CLI: exit 3
    assert code == 3 and "failed its gate against the champion 1.0.0" in err
    assert reg.aliases("ff") == {"champion": "1.0.0"}


def test_an_adapter_swapped_after_its_gate_does_not_promote(reg, empty_workspace):
    promote(reg, "ff", "1.0.0", reason="first")
    record_gate(empty_workspace, "ff", "1.1.0", passing("1.1.0", "1.0.0"), who="gatebot")
    row = reg.gate_record("ff", "1.1.0", "1.0.0")
    cand = reg.require("ff", "1.1.0")
    assert row["candidate_adapter_sha256"] == weights_sha256(cand) and not row["legacy"]
    assert row["baseline_adapter_sha256"] == weights_sha256(reg.require("ff", "1.0.0"))
    weights = Path(cand.adapter_dir) / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit of the gated adapter
    with pytest.raises(Refused, match="1.1.0's weights changed since its gate"):
        promote(reg, "ff", "1.1.0", reason="swapped")
    weights.write_bytes(original)
    champion = Path(reg.require("ff", "1.0.0").adapter_dir) / "extra.bin"
    champion.write_bytes(b"x")  # the baseline it was gated against changed as well
    with pytest.raises(Refused, match="1.0.0's weights changed since its gate"):
        promote(reg, "ff", "1.1.0", reason="swapped")
    champion.unlink()
    promote(reg, "ff", "1.1.0", reason="the gated weights")
    gates = [(e.why, e.detail["passed"]) for e in reg.events("ff") if e.action == "gate"]
    assert gates == [("passed", True)] and reg.events("ff")[-1].detail["gate_legacy"] is False


def test_a_gate_whose_claimed_weights_differ_is_not_recorded(reg, empty_workspace):
    """run_gate hashes the weights before it evaluates; a swap during the gate is refused."""
    claimed = {**passing("1.1.0", "1.0.0"), "adapters": {"candidate": "0" * 64, "baseline": None}}
    with pytest.raises(Refused, match="changed while the gate ran"):
        record_gate(empty_workspace, "ff", "1.1.0", claimed)
    assert reg.gate_record("ff", "1.1.0") is None


def test_record_gate_refuses_what_it_cannot_use(empty_workspace, reg):
    with pytest.raises(BadInput, match="boolean 'passed'"):
        record_gate(empty_workspace, "ff", "1.1.0", {"baseline": "1.0.0", "passed": "yes"})
    with pytest.raises(BadInput, match="is for 1.2.0"):
        record_gate(empty_workspace, "ff", "1.1.0", passing("1.2.0", "1.0.0"))
    with pytest.raises(BadInput, match="not in the registry"):
        record_gate(empty_workspace, "ff", "9.0.0", passing("9.0.0", "1.0.0"))


def test_force_skips_the_gate_and_is_recorded(reg):
    promote(reg, "ff", "1.0.0", reason="first")
    move = promote(reg, "ff", "1.2.0", reason="hotfix", force=True)
    assert move.forced and champion_moves(reg)[-1] == ("promote", "1.0.0", "1.2.0", True)


def test_challenger(reg):
    promote(reg, "ff", "1.0.0", reason="first")
    promote(reg, "ff", "1.1.0", to="challenger", reason="A/B")  # no gate for a challenger
    with pytest.raises(BadInput, match="is the champion"):
        promote(reg, "ff", "1.0.0", to="challenger", reason="no")
    record_gate(None, "ff", "1.1.0", passing("1.1.0", "1.0.0"))
    promote(reg, "ff", "1.1.0", reason="won the A/B")
    assert reg.aliases("ff") == {"champion": "1.1.0"}  # a champion is no longer the challenger
    assert reg.events("ff")[-1].action == "unset"
    promote(reg, "ff", "1.2.0", to="challenger", reason="next A/B")
    assert rollback(reg, "ff", to="1.2.0", reason="1.1.0 misbehaves").previous == "1.1.0"
    assert reg.aliases("ff") == {"champion": "1.2.0"}
    assert check_registry(reg).ok
    with pytest.raises(BadInput, match="alias must be"):
        promote(reg, "ff", "1.2.0", to="production", reason="x")


def test_rollback_goes_back_through_earlier_champions(reg):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        promote(reg, "ff", v, reason=f"ship {v}", force=True)
    assert rollback(reg, "ff", reason="bad answers").version == "1.1.0"
    assert rollback(reg, "ff", reason="still bad").version == "1.0.0"
    with pytest.raises(BadInput, match="no earlier champion"):
        rollback(reg, "ff", reason="again")
    promote(reg, "ff", "1.3.0", reason="ship", force=True)
    assert rollback(reg, "ff", reason="bad").version == "1.0.0"
    assert rollback(reg, "ff", to="1.2.0", reason="pick one").previous == "1.0.0"
    assert champion_moves(reg)[-3:] == [("promote", "1.0.0", "1.3.0", True), ("rollback", "1.3.0", "1.0.0", False),
                                         ("rollback", "1.0.0", "1.2.0", False)]
    assert check_registry(reg).ok


def test_rollback_needs_a_champion_and_a_valid_target(reg):
    with pytest.raises(BadInput, match="no champion"):
        rollback(reg, "ff", reason="x")
    promote(reg, "ff", "1.0.0", reason="first")
    with pytest.raises(BadInput, match="already the champion"):
        rollback(reg, "ff", to="1.0.0", reason="x")
    with pytest.raises(BadInput, match="not in the registry"):
        rollback(reg, "ff", to="7.0.0", reason="x")
    with pytest.raises(BadInput, match="a reason is required"):
        rollback(reg, "ff", to="1.1.0", reason="  ")


def test_archive(reg):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        promote(reg, "ff", v, reason="ship", force=True)
    with pytest.raises(BadInput, match="is the champion"):
        archive(reg, "ff", "1.2.0", reason="x")
    assert archive(reg, "ff", "1.1.0", reason="leaks answers") is True
    assert archive(reg, "ff", "1.1.0", reason="again") is False
    assert reg.require("ff", "1.1.0").status == "archived"
    with pytest.raises(BadInput, match="is archived"):
        promote(reg, "ff", "1.1.0", to="challenger", reason="x")
    assert rollback(reg, "ff", reason="bad").version == "1.0.0"  # the archived one is skipped
    assert check_registry(reg).ok
