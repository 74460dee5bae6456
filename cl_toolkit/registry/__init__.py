"""The model registry: every trained version, where it came from, and where its files are;
aliases champion and challenger moved by promote and rollback; an append-only history."""

from cl_toolkit.registry.check import CheckReport, check_registry
from cl_toolkit.registry.db import Event, RegistryStore, VersionRecord, open_registry
from cl_toolkit.registry.lifecycle import (
    ALIASES,
    AliasMove,
    archive,
    previous_champion,
    promote,
    record_gate,
    rollback,
    weights_sha256,
)
from cl_toolkit.registry.views import artifact_file, export_model, lineage, read_artifact, summary

__all__ = [
    "ALIASES", "AliasMove", "CheckReport", "Event", "RegistryStore", "VersionRecord", "archive",
    "artifact_file", "check_registry", "export_model", "lineage", "open_registry", "previous_champion",
    "promote", "read_artifact", "record_gate", "rollback", "summary", "weights_sha256",
]
