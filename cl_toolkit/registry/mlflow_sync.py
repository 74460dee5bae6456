"""Mirror a model line to an MLflow Model Registry: one registered model, one MLflow model
version per version of ours, and the champion and challenger aliases.

Our registry stays the source of truth; MLflow is a window for teams that deploy from it.
A version is matched by its `clt.version` tag, so syncing twice changes nothing, and MLflow's
own version numbers (1, 2, 3 ...) never have to equal ours. Credentials stay in the
environment (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME / _PASSWORD): a tracking URI
that carries a password is refused, and nothing here writes one. MLflow imports lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.registry.db import RegistryStore, VersionRecord
from cl_toolkit.registry.lifecycle import ALIASES

TAG = "clt."  # prefix of every tag we write on MLflow objects


class SyncFailed(CltError):
    """MLflow refused a write (a server's rules, its permissions): exit 1, MLflow's message."""


@dataclass(frozen=True)
class SyncReport:
    """What one sync did."""

    model: str
    registered_model: str
    created: list[str] = field(default_factory=list)  # our versions new in MLflow
    updated: list[str] = field(default_factory=list)  # our versions whose tags changed
    mlflow_versions: dict[str, str] = field(default_factory=dict)  # our version -> MLflow's
    aliases: dict[str, str | None] = field(default_factory=dict)  # alias -> our version


def mlflow_client(tracking_uri: str | None):
    """An MlflowClient for `tracking_uri` (else $MLFLOW_TRACKING_URI); the registry URI is
    $MLFLOW_REGISTRY_URI, else the tracking URI, as MLflow itself decides."""
    if tracking_uri and urlsplit(tracking_uri).password:
        raise BadInput("the tracking URI must not carry a password; set MLFLOW_TRACKING_USERNAME/PASSWORD "
                       "or MLFLOW_TRACKING_TOKEN in the environment")
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise BadInput("MLflow is not installed: pip install 'cl_toolkit[mlflow]'") from None
    return MlflowClient(tracking_uri=tracking_uri)


def version_tags(rec: VersionRecord) -> dict[str, str]:
    """The MLflow tags of one version: its provenance and metrics, all strings."""
    tags = {"version": rec.version, "parent": rec.parent or "", "parents": ",".join(rec.parents),
            "strategy": rec.strategy, "base_model": rec.base_model, "recipe_sha256": rec.recipe_sha256,
            "data_sha256": rec.data_sha256, "status": rec.status, "created_at": rec.created_at,
            "artifact_dir": rec.artifact_dir or ""}
    tags.update({f"metric.{k}": str(v) for k, v in sorted(rec.metrics.items()) if v is not None})
    return {TAG + k: v for k, v in tags.items()}


def source_of(rec: VersionRecord) -> str:
    """Where the version's weights are: the stored copy under the artifact root (a folder, or
    a URL such as s3://, which a remote MLflow server needs: it refuses local paths)."""
    sub = "adapter" if rec.adapter_dir else "merged"
    if rec.artifact_dir:
        return f"{rec.artifact_dir.rstrip('/')}/{sub}"
    return rec.adapter_dir or f"{rec.run_dir}/merged"


def _ensure_registered_model(client, name: str, model: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={TAG + "model": model},
                                       description=f"Mirrored from the cl_toolkit registry (model line {model}).")


def _sync_version(client, name: str, rec: VersionRecord, existing, report: SyncReport) -> str:
    tags = version_tags(rec)
    if existing is None:
        mv = client.create_model_version(name, source=source_of(rec), tags=tags,
                                         description=f"{rec.model} {rec.version} ({rec.strategy})")
        report.created.append(rec.version)
        return str(mv.version)
    changed = {k: v for k, v in tags.items() if existing.tags.get(k) != v}
    for key, value in changed.items():
        client.set_model_version_tag(name, existing.version, key, value)
    if changed:
        report.updated.append(rec.version)
    return str(existing.version)


def sync_mlflow(registry: RegistryStore, model: str, *, tracking_uri: str | None = None,
                name: str | None = None, client=None) -> SyncReport:
    """Mirror `model`'s versions and aliases into MLflow's registered model `name` (default:
    the model line's name). Idempotent; an alias unset here is removed there."""
    versions = registry.versions(model)
    if not versions:
        raise BadInput(f"{model} has no registered versions to sync")
    name = name or model
    if "'" in name:
        raise BadInput(f"an MLflow model name cannot hold a quote: {name!r}")
    client = client or mlflow_client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        return _sync(client, registry, model, name, versions)
    except MlflowException as e:
        raise SyncFailed(f"MLflow refused the sync of {model}: {e.message}") from None


def _sync(client, registry: RegistryStore, model: str, name: str, versions: list[VersionRecord]) -> SyncReport:
    report = SyncReport(model=model, registered_model=name)
    _ensure_registered_model(client, name, model)
    existing = {mv.tags.get(TAG + "version"): mv for mv in client.search_model_versions(f"name = '{name}'")}
    for rec in versions:
        report.mlflow_versions[rec.version] = _sync_version(client, name, rec, existing.get(rec.version), report)
    ours, theirs = registry.aliases(model), client.get_registered_model(name).aliases
    for alias in ALIASES:
        target = ours.get(alias)
        if target:
            client.set_registered_model_alias(name, alias, report.mlflow_versions[target])
        elif alias in theirs:
            client.delete_registered_model_alias(name, alias)
        report.aliases[alias] = target
    return report
