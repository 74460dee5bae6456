"""Training one domain's data: a recipe source `{path: EXTRACT, domain: D}` is accepted when
the manifest beside the file (written by `clt feedback extract --domain D`) records only D
and still matches the file; validation names file, line and key otherwise, and the mix's
manifest lists the domains with the input."""

from __future__ import annotations

import copy
import json

import pytest
from project import BASE_RECIPE, line_of, write_recipe

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.extract import extract, manifest_path
from cl_toolkit.feedback.store import open_store
from cl_toolkit.recipe.domain_source import manifest_beside
from cl_toolkit.registry import open_registry
from cl_toolkit.training.mix import build_mix
from cl_toolkit.training.strategies import load_recipe

EXTRACT = "workspace:extracted/{}.jsonl"


@pytest.fixture
def extracts(proj):
    """hazmat.jsonl (--domain hazmat), two.jsonl (--domain hazmat --domain ems) and
    all.jsonl (no filter), extracted from a store with three domains."""
    ws = proj / "ws"
    with open_store(ws) as store:
        for domain in ("hazmat", "ems", "hose"):
            for i in range(4):
                rid = f"{domain}-{i}"
                store.log_prediction(rid, f"{domain} question {i}?", f"{domain} answer {i}.", "1.0.0",
                                     timestamp=f"2025-04-01T00:00:0{i}Z", domain=domain)
                store.add_feedback(rid, rating=5)
        for name, domains in (("hazmat", ["hazmat"]), ("two", ["hazmat", "ems"]), ("all", [])):
            extract(store, ws / "extracted" / f"{name}.jsonl", domains=domains)
    return ws / "extracted"


def _recipe(proj, source: dict, where: str = "train"):
    data = copy.deepcopy(BASE_RECIPE)
    if where == "train":
        data["data"]["train"] = [source]
    else:
        data["data"]["rehearsal"]["sources"] = [source]
    return write_recipe(proj, data)


def test_the_manifest_convention_is_the_extracts(tmp_path):
    assert manifest_beside(tmp_path / "x.jsonl") == manifest_path(tmp_path / "x.jsonl")


def test_a_domain_extract_trains_and_the_mix_records_its_domain(proj, extracts):
    lr = load_recipe(_recipe(proj, {"path": EXTRACT.format("hazmat"), "domain": "hazmat"}))
    with open_registry(lr.workspace) as reg:
        mix = build_mix(lr, reg)
    assert mix.counts["new"] == 4
    assert {m["content"] for r in mix.new_rows for m in r["messages"] if m["role"] == "user"} == {
        f"hazmat question {i}?" for i in range(4)}
    train = [i for i in mix.inputs if i["role"] == "train"]
    assert train == [{"role": "train", "source": "workspace:extracted/hazmat.jsonl", "sha256": train[0]["sha256"],
                      "rows": 4, "domains": ["hazmat"]}]
    # a source without domain: is recorded as before, with no domains key
    assert all("domains" not in i for i in mix.inputs if i["role"] == "rehearsal")
    # a list names several; the file may hold fewer of them
    lr = load_recipe(_recipe(proj, {"path": EXTRACT.format("two"), "domain": ["ems", "hazmat", "hose"]}))
    with open_registry(lr.workspace) as reg:
        assert build_mix(lr, reg).inputs[0]["domains"] == ["ems", "hazmat"]


def test_clt_data_build_lists_the_domain_in_mix_json(proj, extracts, clt):
    path = _recipe(proj, {"path": EXTRACT.format("hazmat"), "domain": "hazmat"}, where="rehearsal")
    code, _, err = clt("data", "build", path, "-o", proj / "out")
    assert code == 0, err
    inputs = json.loads((proj / "out" / "mix.json").read_text())["inputs"]
    assert [i["domains"] for i in inputs if i["source"] == "workspace:extracted/hazmat.jsonl"] == [["hazmat"]]


@pytest.mark.parametrize("name, domain, message", [
    ("all", "hazmat", "records no domain filter: the file holds every domain"),
    ("two", "hazmat", "the file holds domain(s) ems, hazmat"),
    ("hazmat", "ems", "the file holds domain(s) hazmat"),
])
def test_a_source_that_is_not_that_domains_data_is_refused_at_its_line(proj, extracts, name, domain, message):
    path = _recipe(proj, {"path": EXTRACT.format(name), "domain": domain})
    with pytest.raises(BadInput) as e:
        load_recipe(path)
    line = line_of(path.read_text(), "domain:")
    assert f"{path.name}:{line}: [data.train[0].domain] domain {domain}: " in str(e.value)
    assert message in str(e.value)


def test_an_extract_without_a_manifest_or_edited_since_is_refused(proj, extracts, clt):
    path = _recipe(proj, {"path": EXTRACT.format("hazmat"), "domain": "hazmat"})
    with open(extracts / "hazmat.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hose q?"},
                                         {"role": "assistant", "content": "hose a."}]}) + "\n")
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and "[data.train[0].domain]" in err and "the file changed since hazmat.manifest.json" in err
    manifest_path(extracts / "hazmat.jsonl").unlink()
    code, _, err = clt("recipe", "validate", path)
    assert code == 2 and "no manifest beside it (hazmat.manifest.json)" in err


def test_the_domain_key_is_a_name_or_a_list_of_names(proj, extracts):
    for bad in (3, "", []):
        with pytest.raises(BadInput, match=r"\[data.train\[0\].domain\]"):
            load_recipe(_recipe(proj, {"path": EXTRACT.format("hazmat"), "domain": bad}))
