"""`--domain` on the feedback store's commands: extract and the annotation export select only
that domain's predictions, record the filter in their manifests, and refuse a domain the
store does not hold, naming the ones it does (exit 2)."""

from __future__ import annotations

import csv
import json

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback import annotate
from cl_toolkit.feedback.extract import extract, manifest_path

DOMAINS = {"hose": 5, "hazmat": 4, "ems": 3}


def _populate(store) -> None:
    """Rated predictions in three domains, plus two without a domain."""
    for domain, n in DOMAINS.items():
        for i in range(n):
            rid = f"{domain}-{i}"
            store.log_prediction(rid, f"{domain} question {i}", f"{domain} answer {i}", "1.0.0",
                                 timestamp=f"2025-04-01T00:00:{i:02d}Z", domain=domain,
                                 confidence=0.2 if i % 2 else 0.9)
            store.add_feedback(rid, rating=1 if i == 0 else 5)
    for i in range(2):
        store.log_prediction(f"none-{i}", f"plain question {i}", f"plain answer {i}", "1.0.0",
                             timestamp="2025-04-01T00:01:00Z")
        store.add_feedback(f"none-{i}", rating=5)


def _questions(path) -> list[str]:
    return [r["messages"][0]["content"] for r in read_jsonl(path)]


def test_extract_keeps_only_the_domains_asked_for(store, tmp_path):
    _populate(store)
    m = extract(store, tmp_path / "hazmat.jsonl", domains=["hazmat"])
    assert _questions(tmp_path / "hazmat.jsonl") == [f"hazmat question {i}" for i in (1, 2, 3)]
    assert m["counts"]["selected"] == 4 and m["filters"]["domains"] == ["hazmat"]
    on_disk = json.loads(manifest_path(tmp_path / "hazmat.jsonl").read_text())
    assert on_disk["filters"]["domains"] == ["hazmat"]
    both = extract(store, tmp_path / "two.jsonl", domains=["ems", "hazmat", "ems"])
    assert both["filters"]["domains"] == ["ems", "hazmat"] and both["counts"]["selected"] == 7
    everything = extract(store, tmp_path / "all.jsonl")
    assert everything["filters"]["domains"] == [] and everything["counts"]["selected"] == 14


def test_extract_refuses_an_unknown_domain_naming_the_known_ones(store, tmp_path):
    _populate(store)
    with pytest.raises(BadInput, match=r"unknown domain 'hazmatt'; the domains of the feedback store .*: ems, hazmat, hose$"):
        extract(store, tmp_path / "x.jsonl", domains=["hazmat", "hazmatt"])
    assert not (tmp_path / "x.jsonl").exists() and not manifest_path(tmp_path / "x.jsonl").exists()


def test_cli_extract_domain(fws, store, tmp_path, capsys):
    _populate(store)
    out = tmp_path / "ems.jsonl"
    code, stdout, _ = run_main(["feedback", "extract", "-o", str(out), "--domain", "ems", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["filters"]["domains"] == ["ems"]
    assert _questions(out) == ["ems question 1", "ems question 2"]
    code, _, err = run_main(["feedback", "extract", "-o", str(tmp_path / "y.jsonl"), "--domain", "fire"], capsys)
    assert code == 2 and "unknown domain 'fire'" in err and "ems, hazmat, hose" in err
    assert "Traceback" not in err


def _csv_ids(path) -> list[str]:
    return [r["request_id"] for r in csv.DictReader(open(path, encoding="utf-8-sig"))]


def test_annotation_export_samples_only_the_domain_and_records_it(store, tmp_path):
    _populate(store)
    out = tmp_path / "batch.csv"
    r = annotate.export_batch(store, out, 10, domains=["hose"], seed=2)
    # hose holds five predictions: every stratum draws from them alone, even when short
    assert sorted(_csv_ids(out)) == [f"hose-{i}" for i in range(5)]
    assert r["rows"] == 5 and r["domains"] == ["hose"]
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["kind"] == "annotation-export" and manifest["filters"]["domains"] == ["hose"]
    assert manifest["filters"]["n"] == 10 and manifest["batch"] == r["batch"]
    assert manifest["output"]["rows"] == 5 and sum(manifest["by_stratum"].values()) == 5
    # the rest of the store is still unsampled: a second batch for the other domains finds it
    rest = annotate.export_batch(store, tmp_path / "rest.csv", 20, domains=["ems", "hazmat"])
    assert sorted(_csv_ids(tmp_path / "rest.csv")) == sorted(
        [f"ems-{i}" for i in range(3)] + [f"hazmat-{i}" for i in range(4)])
    assert rest["domains"] == ["ems", "hazmat"]


def test_annotation_export_refuses_an_unknown_domain(store, tmp_path):
    _populate(store)
    with pytest.raises(BadInput, match="unknown domain 'rescue'; the domains of .*: ems, hazmat, hose"):
        annotate.export_batch(store, tmp_path / "b.csv", 5, domains=["rescue"])
    assert not (tmp_path / "b.csv").exists()
    assert store.count("annotation_samples") == 0


def test_cli_annotate_export_domain(fws, store, tmp_path, capsys):
    _populate(store)
    out = tmp_path / "b.csv"
    code, stdout, _ = run_main(["feedback", "annotate-export", "-n", "3", "-o", str(out),
                                "--domain", "ems", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["domains"] == ["ems"]
    assert sorted(_csv_ids(out)) == ["ems-0", "ems-1", "ems-2"]
    code, _, err = run_main(["feedback", "annotate-export", "-o", str(tmp_path / "c.csv"),
                             "--domain", "EMS"], capsys)
    assert code == 2 and "unknown domain 'EMS'" in err and "ems, hazmat, hose" in err


def test_an_empty_store_has_no_domain(store, tmp_path):
    with pytest.raises(BadInput, match="unknown domain 'hose'; the feedback store .* has no domain at all"):
        extract(store, tmp_path / "x.jsonl", domains=["hose"])
