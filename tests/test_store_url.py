"""Choosing where a store lives: option, environment, the workspace's clt.yml, else the
SQLite file; URLs with a password never shown; the PostgreSQL tests say why they skip."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import run_main

from cl_toolkit.core import storeurl
from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.store import store_target
from cl_toolkit.registry.db import registry_target


@pytest.fixture
def ws(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setenv("CLT_HOME", str(ws))
    for name in storeurl.ENV.values():  # set, so that what `clt --store-url` sets is undone after
        monkeypatch.setenv(name, "")
    return ws


def test_the_resolution_order(ws, monkeypatch):
    assert store_target() == storeurl.StoreTarget("sqlite", str(ws.resolve() / "feedback.db"))
    assert registry_target().target == str(ws.resolve() / "registry" / "registry.db")
    (ws / "clt.yml").write_text("stores:\n  feedback: postgresql://team@db/clt\n  registry: shared/reg.db\n")
    assert store_target() == storeurl.StoreTarget("postgresql", "postgresql://team@db/clt")
    assert registry_target().target == str(ws.resolve() / "shared" / "reg.db")  # relative to the workspace
    monkeypatch.setenv("CLT_FEEDBACK_URL", "sqlite:////srv/feedback.db")
    assert store_target() == storeurl.StoreTarget("sqlite", "/srv/feedback.db")
    assert store_target(url="postgres://x@h/d").is_postgres  # the option wins over all


def test_a_bad_config_names_file_line_and_key(ws):
    (ws / "clt.yml").write_text("# stores\nstores:\n  feedback: [1, 2]\n")
    with pytest.raises(BadInput) as e:
        store_target()
    assert (e.value.problems[0].line, e.value.problems[0].key) == (3, "stores.feedback")
    assert str(ws / "clt.yml") in e.value.problems[0].file
    with pytest.raises(BadInput, match="unknown scheme"):
        storeurl.parse("mysql://root:pw@db/x")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://clt:s3cret@db:5432/clt", "postgresql://clt:***@db:5432/clt"),
    ("postgresql://clt@db/clt?password=s3cret&sslmode=require", "postgresql://clt@db/clt?password=***&sslmode=require"),
    ("postgresql://clt@db/clt", "postgresql://clt@db/clt"),
])
def test_passwords_are_masked(url, shown):
    assert storeurl.masked(url) == shown and str(storeurl.parse(url)) == shown


def test_the_store_url_option_opens_postgresql(ws, pg_url, capsys):
    code, _, err = run_main(["--store-url", pg_url, "feedback", "log", "--request-id", "r1", "--input", "q",
                             "--output", "a", "--model-version", "1.0.0"], capsys)
    assert code == 0, err
    assert not (ws / "feedback.db").exists()
    code, out, _ = run_main(["--store-url", pg_url, "feedback", "stats", "--json"], capsys)
    assert code == 0 and json.loads(out)["predictions"] == 1
    assert pg_url.split("?")[0] in json.loads(out)["store"]


def test_without_server_binaries_the_postgresql_tests_say_why(monkeypatch):
    import pg_support

    monkeypatch.setattr(pg_support.shutil, "which", lambda name: None)
    monkeypatch.setattr(pg_support.glob, "glob", lambda pattern: [])
    assert pg_support.find_bin_dir() is None
    assert "no server binaries (initdb, pg_ctl)" in pg_support.why_unavailable()
