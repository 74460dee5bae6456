"""The repository's documents stand on their own and say what the code does: no file points
at a document outside the repository, every example in docs/formats.md is read by the code
that reads such files, the layers in docs/architecture.md are the ones tests/test_layers.py
enforces, and every relative link in the Markdown files leads to a file."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import REPO
from project import make_project
from test_layers import LAYERS

from cl_toolkit.evaluation.suite import MATCH_KINDS, parse_suite
from cl_toolkit.feedback.extract import FORMATS
from cl_toolkit.feedback.records import records_from_import_row
from cl_toolkit.training.mix import read_chat_jsonl
from cl_toolkit.training.strategies import load_recipe

# spelled in two halves, so this file does not match itself
OUTSIDE_DOCUMENTS = ("DESIGN" + ".md", ".." + "/shared")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def test_no_file_refers_to_a_document_outside_the_repository():
    files = tracked_files()
    assert "README.md" in files and "cl_toolkit/core/files.py" in files  # we see the real list
    hits = [f"{path}: {needle}" for path in files if (REPO / path).is_file()
            for needle in OUTSIDE_DOCUMENTS if needle.encode() in (REPO / path).read_bytes()]
    assert hits == []


def section(doc: str, heading: str) -> str:
    """The text under a `## ` or `### ` heading, up to the next heading of any level."""
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    m = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, f"docs/{doc} has no heading {heading!r}"
    return m[1]


def blocks(doc: str, heading: str, lang: str) -> list[str]:
    found = [body for kind, body in FENCE.findall(section(doc, heading)) if kind == lang]
    assert found, f"no {lang} example under {heading!r} in docs/{doc}"
    return found


def test_the_feedback_row_example_imports():
    (line,) = blocks("formats.md", "The feedback row", "json")
    prediction, feedback = records_from_import_row(json.loads(line), now="2025-01-01T00:00:00.000Z")
    assert prediction[0] == "req-000123" and prediction[1] == "2025-04-01T12:00:00.000Z"
    assert prediction[5:9] == ("exposure_limits", 0.62, 180.0, None)  # the column keys
    assert json.loads(prediction[9]) == {"station": "7"}  # the rest of the metadata, kept
    assert feedback[1:6] == ("user", 2, None, "The NIOSH IDLH for ammonia is 300 ppm.", "off by ten")


def test_the_training_example_is_read_and_the_export_formats_are_what_extract_writes(tmp_path):
    (line,) = blocks("formats.md", "The training example", "json")
    (tmp_path / "train.jsonl").write_text(line, encoding="utf-8")
    (row,) = read_chat_jsonl(tmp_path / "train.jsonl")
    prompt, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
    shown = blocks("formats.md", "Export formats", "json")
    assert shown == [FORMATS[fmt](prompt, answer, None) for fmt in ("chat", "alpaca", "completion")]


def test_the_suite_cases_are_a_valid_suite_using_every_listed_matcher():
    (text,) = blocks("formats.md", "The regression suite case", "json")
    cases = parse_suite(text.encode(), "formats.md")
    assert [c.id for c in cases] == ["reg-001", "reg-002", "reg-003"]
    listed = re.findall(r"^\| `(\w+)` \| (?:the answer|a judge)", section("formats.md", "The regression suite case"),
                        re.MULTILINE)
    assert sorted(listed) == sorted(MATCH_KINDS)  # the table names every matcher, no other


def test_the_recipe_example_validates_with_its_workspace_path(tmp_path):
    (text,) = blocks("formats.md", "The recipe", "yaml")
    root, ws = make_project(tmp_path / "proj"), tmp_path / "ws"
    (ws / "extracted").mkdir(parents=True)
    (ws / "extracted" / "q2-feedback.jsonl").write_text(
        (REPO / "data" / "firefighter" / "q2.jsonl").read_text().splitlines()[0] + "\n")
    path = root / "recipes" / "firefighter" / "1.2.0.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    recipe = load_recipe(path, workspace=ws).recipe
    assert (recipe.model, recipe.version, recipe.parent, recipe.strategy) == (
        "firefighter", "1.2.0", "1.1.0", "continued_lora")
    assert recipe.data.train[1] == {"path": "workspace:extracted/q2-feedback.jsonl", "max_rows": 500}
    owned = set(json.loads((REPO / "cl_toolkit/recipe/recipe.schema.json").read_text())["properties"])
    table = set(re.findall(r"^\| `(\w+)(?:\.\w+)?` \|", section("formats.md", "The recipe"), re.MULTILINE))
    assert table == owned  # every top-level key we own is described


def test_the_layers_described_are_the_layers_enforced():
    text = section("architecture.md", "The layers")
    rows = re.findall(r"^\| (\d) \| `(\w+)` \|", text, re.MULTILINE)
    assert {name: int(rank) for rank, name in rows} == LAYERS


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(REPO).as_posix()
                                                       for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_lead_to_files(doc):
    base = (REPO / doc).parent
    targets = [t.split("#")[0] for t in LINK.findall((REPO / doc).read_text(encoding="utf-8"))
               if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert [t for t in targets if not (base / t).exists()] == []
