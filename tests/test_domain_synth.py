"""`clt synth --domain`: a scenario names its domain in a front matter block; a folder of
scenarios generates only for the scenarios of the domains asked for, each manifest records
the scenario's domain and the filter, and a domain no scenario declares is exit 2 naming
those that are declared. A scripted OpenAI-compatible server on loopback answers."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)
from test_feedback_endpoint import FakeOpenAI, pairs_reply

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import sha256_file
from cl_toolkit.feedback.extract import manifest_path
from cl_toolkit.feedback.synth_remote import load_scenario, load_scenarios

FAST = ["--attempts", "1", "--timeout", "5"]


@pytest.fixture
def scenarios(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "ev_fire.md").write_text("---\ndomain: hazmat_id\n---\n# EV fire in a garage\n\nA battery car "
                                       "burns on level 2.\n", encoding="utf-8")
    (folder / "silo.md").write_text("---\ndomain: rescue\n---\n# Grain silo entrapment\n\nA worker is "
                                    "trapped in a silo.\n", encoding="utf-8")
    (folder / "tanker.md").write_text("---\ndomain: hazmat_id\n---\n# Tanker rollover\n\nA fuel tanker "
                                      "lies on its side.\n", encoding="utf-8")
    (folder / "plain.md").write_text("# No domain\n\nA scenario without front matter.\n", encoding="utf-8")
    return folder


def test_the_front_matter_names_the_domain_and_is_not_sent(scenarios):
    s = load_scenario(scenarios / "ev_fire.md")
    assert s.domain == "hazmat_id" and s.title == "EV fire in a garage"
    assert s.text.startswith("# EV fire") and "domain:" not in s.text
    assert s.sha256 == sha256_file(scenarios / "ev_fire.md")  # the whole file, front matter included
    assert load_scenario(scenarios / "plain.md").domain is None


def test_a_bad_front_matter_names_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\ndomain: hazmat\ncolour: red\n---\n# T\n\ntext\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.md:3: \[colour\] unknown key"):
        load_scenario(bad)
    bad.write_text("---\ndomain: [a, b]\n---\n# T\n\ntext\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.md:2: \[domain\] must be a non-empty string"):
        load_scenario(bad)


def test_a_folder_keeps_the_scenarios_of_the_domains_asked_for(scenarios):
    assert [s.path.name for s in load_scenarios(scenarios)] == ["ev_fire.md", "plain.md", "silo.md", "tanker.md"]
    assert [s.path.name for s in load_scenarios(scenarios, ["hazmat_id"])] == ["ev_fire.md", "tanker.md"]
    assert [s.path.name for s in load_scenarios(scenarios / "silo.md", ["rescue"])] == ["silo.md"]
    with pytest.raises(BadInput, match=r"unknown domain 'ems'; the domains of the scenarios in .*: hazmat_id, rescue$"):
        load_scenarios(scenarios, ["ems", "rescue"])
    with pytest.raises(BadInput, match="unknown domain 'rescue'"):
        load_scenarios(scenarios / "ev_fire.md", ["rescue"])
    # a folder skips scenarios that declare no domain; one such file takes the one domain given
    assert "plain.md" not in [s.path.name for s in load_scenarios(scenarios, ["hazmat_id", "rescue"])]
    assert [s.domain for s in load_scenarios(scenarios / "plain.md", ["ems"])] == ["ems"]
    with pytest.raises(BadInput, match=r"plain.md: declares no domain, and --domain names 2"):
        load_scenarios(scenarios / "plain.md", ["ems", "rescue"])


def test_cli_synth_domain_generates_for_that_domain_only(fws, store, scenarios, capsys):
    script = [pairs_reply([("How do we cool the battery pack?", "With sustained water on the pack.")]),
              pairs_reply([("How far do we evacuate from the tanker?", "At least 300 m upwind.")])]
    with FakeOpenAI(script) as api:
        code, stdout, stderr = run_main(["synth", "--scenario", str(scenarios), "--domain", "hazmat_id",
                                         "-n", "1", "--base-url", api.base_url, "--model", "m",
                                         "--json", *FAST], capsys)
    assert code == 0, stderr
    manifests = json.loads(stdout)
    assert [m["scenario"]["title"] for m in manifests] == ["EV fire in a garage", "Tanker rollover"]
    assert len(api.requests) == 2
    sent = [r["body"]["messages"][1]["content"] for r in api.requests]
    assert "EV fire" in sent[0] and "Tanker" in sent[1] and not any("silo" in t.lower() for t in sent)
    for m in manifests:
        out = fws / "synthetic" / m["output"]["path"]
        assert m["scenario"]["domain"] == "hazmat_id" and m["filters"] == {"domains": ["hazmat_id"]}
        assert json.loads(manifest_path(out).read_text()) == m and len(read_jsonl(out)) == 1
        assert m["generation"]["n"] == 1 and "domains" not in m["generation"]


def test_cli_synth_unknown_domain_and_one_output_for_several(fws, store, scenarios, tmp_path, capsys):
    code, _, err = run_main(["synth", "--scenario", str(scenarios), "--domain", "water_rescue",
                             "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], capsys)
    assert code == 2 and "unknown domain 'water_rescue'" in err and "hazmat_id, rescue" in err
    assert "Traceback" not in err
    code, _, err = run_main(["synth", "--scenario", str(scenarios), "--domain", "hazmat_id", "-o",
                             str(tmp_path / "x.jsonl"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], capsys)
    assert code == 2 and "2 scenarios were chosen" in err and not (tmp_path / "x.jsonl").exists()


def test_cli_synth_one_undeclared_scenario_takes_the_domain_given(fws, store, scenarios, tmp_path, capsys):
    """The form `clt analyze`'s plan writes: one scenario file, one --domain, one output."""
    out = tmp_path / "synthetic_ems.jsonl"
    with FakeOpenAI([pairs_reply([("What is a normal adult pulse?", "60 to 100 beats a minute.")])]) as api:
        code, stdout, stderr = run_main(["synth", "--scenario", str(scenarios / "plain.md"), "--domain", "ems",
                                         "-n", "1", "-o", str(out), "--base-url", api.base_url, "--model", "m",
                                         "--json", *FAST], capsys)
    assert code == 0, stderr
    m = json.loads(stdout)
    assert m["scenario"]["domain"] == "ems" and m["filters"] == {"domains": ["ems"]}
    assert json.loads(manifest_path(out).read_text())["scenario"]["domain"] == "ems" and len(read_jsonl(out)) == 1
