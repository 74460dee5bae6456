"""`clt registry sync-mlflow`: our versions and champion/challenger aliases mirrored into a
real local MLflow Model Registry (SQLite backend store), idempotently."""

from __future__ import annotations

import json

import pytest
from test_registry_support import add_version

from cl_toolkit.core.errors import BadInput
from cl_toolkit.registry import archive, open_registry, promote, rollback

mlflow = pytest.importorskip("mlflow")
from cl_toolkit.registry.mlflow_sync import sync_mlflow  # noqa: E402


@pytest.fixture
def reg(empty_workspace):
    with open_registry(empty_workspace) as r:
        for v, p in [("1.0.0", None), ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0")]:
            add_version(r, empty_workspace, v, p)
        promote(r, "ff", "1.0.0", reason="first release")
        promote(r, "ff", "1.1.0", to="challenger", reason="A/B")
        yield r


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def mirrored(uri, name="ff"):
    client = mlflow.MlflowClient(tracking_uri=uri)
    versions = {mv.tags["clt.version"]: mv for mv in client.search_model_versions(f"name = '{name}'")}
    aliases = {a: versions_by_number(versions)[str(n)] for a, n in client.get_registered_model(name).aliases.items()}
    return versions, aliases


def versions_by_number(versions):
    return {str(mv.version): v for v, mv in versions.items()}


def test_versions_and_aliases_are_mirrored_with_their_provenance(reg, uri):
    report = sync_mlflow(reg, "ff", tracking_uri=uri)
    assert report.created == ["1.0.0", "1.1.0", "1.2.0"] and report.updated == []
    assert report.mlflow_versions == {"1.0.0": "1", "1.1.0": "2", "1.2.0": "3"}
    versions, aliases = mirrored(uri)
    assert aliases == {"champion": "1.0.0", "challenger": "1.1.0"}
    rec = reg.get("ff", "1.1.0")
    tags = versions["1.1.0"].tags
    assert versions["1.1.0"].source == rec.adapter_dir
    assert (tags["clt.parent"], tags["clt.strategy"], tags["clt.status"]) == ("1.0.0", "continued_lora", "active")
    assert (tags["clt.recipe_sha256"], tags["clt.data_sha256"]) == (rec.recipe_sha256, rec.data_sha256)
    assert tags["clt.metric.train_loss"] == "1.5"


def test_a_second_sync_changes_nothing_and_alias_moves_follow(reg, uri):
    sync_mlflow(reg, "ff", tracking_uri=uri)
    again = sync_mlflow(reg, "ff", tracking_uri=uri)
    assert (again.created, again.updated) == ([], [])
    promote(reg, "ff", "1.1.0", reason="won the A/B", force=True)  # the challenger alias is unset here
    archive(reg, "ff", "1.2.0", reason="superseded")
    report = sync_mlflow(reg, "ff", tracking_uri=uri)
    assert report.updated == ["1.2.0"] and report.aliases == {"champion": "1.1.0", "challenger": None}
    versions, aliases = mirrored(uri)
    assert aliases == {"champion": "1.1.0"}
    assert versions["1.2.0"].tags["clt.status"] == "archived"
    rollback(reg, "ff", reason="regression in production")
    sync_mlflow(reg, "ff", tracking_uri=uri)
    assert mirrored(uri)[1] == {"champion": "1.0.0"}
    assert len(mirrored(uri)[0]) == 3


def test_cli_sync_mlflow(reg, uri, clt, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, out, err = clt("registry", "sync-mlflow", "ff", "--name", "firefighter-prod", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["registered_model"] == "firefighter-prod" and data["created"] == ["1.0.0", "1.1.0", "1.2.0"]
    assert mirrored(uri, "firefighter-prod")[1] == {"champion": "1.0.0", "challenger": "1.1.0"}
    code, out, _ = clt("registry", "sync-mlflow", "ff", "--tracking-uri", uri, "--name", "firefighter-prod")
    assert code == 0 and out.strip() == "firefighter-prod: 3 versions (0 new, 0 updated); champion=1.0.0, challenger=1.1.0"


def test_credentials_in_the_uri_and_unknown_models_are_refused(reg, uri):
    with pytest.raises(BadInput, match="must not carry a password"):
        sync_mlflow(reg, "ff", tracking_uri="https://ana:s3cret@mlflow.example.com")
    with pytest.raises(BadInput, match="no registered versions"):
        sync_mlflow(reg, "nope", tracking_uri=uri)


def test_mlflow_refusals_are_one_message_not_a_traceback(reg, clt, monkeypatch):
    from mlflow.exceptions import MlflowException

    class Refusing:
        def get_registered_model(self, name):
            raise MlflowException(f"Registered Model with name={name} not found")

        def create_registered_model(self, *args, **kwargs):
            raise MlflowException("PERMISSION_DENIED: user cannot create models")

    monkeypatch.setattr("cl_toolkit.registry.mlflow_sync.mlflow_client", lambda uri: Refusing())
    code, _, err = clt("registry", "sync-mlflow", "ff", "--tracking-uri", "https://mlflow.example.com")
    assert code == 1 and "MLflow refused the sync of ff: PERMISSION_DENIED" in err and "Traceback" not in err
