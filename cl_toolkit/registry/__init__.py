"""The model registry: every trained version, where it came from, and where its files are."""

from .store import RegistryStore, VersionRecord, open_registry

__all__ = ["RegistryStore", "VersionRecord", "open_registry"]
