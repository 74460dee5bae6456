"""Champion and challenger, as the registry names them, loaded and kept current.

A watcher thread reads the model line's aliases every `interval` seconds. When they moved
(promote, rollback), it loads what is new (a version already loaded is reused: a promoted
challenger does not load twice) and then swaps the whole Arms snapshot at once. A request
reads the snapshot once, so it is answered and logged by one consistent pair, and requests
in flight finish on the models they started with.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.registry import VersionRecord, open_registry, weights_sha256
from cl_toolkit.serve.engine import Served, load_version
from cl_toolkit.serve.routing import route

MAX_PINNED = 2  # versions loaded for LINE-VERSION requests besides the arms (least recent dropped)


@dataclass(frozen=True)
class Arms:
    """What serves a model line right now."""

    model: str
    champion: Served
    challenger: Served | None  # None: no challenger set, or a share of 0
    share: float  # of requests routed to the challenger when there is one
    salt: str = ""
    fingerprints: dict = field(default_factory=dict)  # version -> its system_fingerprint

    def pick(self, request_id: str) -> tuple[str, Served]:
        """("champion" | "challenger", the version that answers) for a request id."""
        if self.challenger is None:
            return "champion", self.champion
        arm = route(request_id, self.share, self.salt)
        return arm, self.challenger if arm == "challenger" else self.champion

    @property
    def versions(self) -> dict[str, str | None]:
        return {"champion": self.champion.version,
                "challenger": self.challenger.version if self.challenger else None}


def fingerprint(rec: VersionRecord) -> str | None:
    """A version's system_fingerprint: `fp_` and the first 16 hex digits of the hash the gate
    records of its weights (registry.weights_sha256); None when its adapter is gone."""
    sha = weights_sha256(rec)
    return None if sha.startswith("missing:") else f"fp_{sha[:16]}"


def read_targets(workspace: Path | None, model: str, share: float) -> dict[str, VersionRecord | None]:
    """The records the aliases point at now (no challenger when the share is 0)."""
    with open_registry(workspace) as reg:
        champion = reg.lookup(model, "champion")
        if champion is None:
            raise BadInput(f"{model} has no champion in the registry ({reg.path}); "
                           f"promote a version first (clt registry promote)")
        return {"champion": champion, "challenger": reg.lookup(model, "challenger") if share > 0 else None}


class ArmWatcher:
    """Loads the arms and swaps them when the registry's aliases move."""

    def __init__(self, workspace: Path | None, model: str, *, share: float, salt: str = "",
                 device: str | None = None, interval: float = 2.0,
                 loader: Callable[[VersionRecord, str | None], Served] = load_version):
        self.workspace, self.model, self.share, self.salt = workspace, model, share, salt
        self.device, self.interval, self.loader = device, interval, loader
        self.current: Arms | None = None
        # every version a client may name back as LINE@VERSION: the line's registered versions
        # (answers from before a restart carry them too) and every one this server answered with
        self.issued: frozenset[str] = frozenset()
        self.reloads = 0
        self.last_error: str | None = None
        self._failed: dict | None = None  # targets that failed to load: not retried until they move
        self._pinned: dict[str, tuple[Served, str | None]] = {}  # version -> (loaded, fingerprint), oldest first
        self._pin_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> Arms:
        """The first load: errors propagate (a server without a champion does not start)."""
        self._swap(read_targets(self.workspace, self.model, self.share))
        with open_registry(self.workspace) as reg:
            self.issued = self.issued | {rec.version for rec in reg.versions(self.model)}
        return self.current

    def refresh(self) -> bool:
        """One look at the registry; True when the arms changed."""
        targets = read_targets(self.workspace, self.model, self.share)
        wanted = {arm: rec.version if rec else None for arm, rec in targets.items()}
        if wanted == self.current.versions or wanted == self._failed:
            return False
        try:
            self._swap(targets)
        except Exception as e:  # keep serving what we have; say why, once per move
            self._failed, self.last_error = wanted, f"loading {wanted} failed: {type(e).__name__}: {e}"
            print(f"clt serve: {self.last_error}; still serving {self.current.versions}", file=sys.stderr)
            return False
        self.reloads += 1
        print(f"clt serve: aliases moved, now serving {self.current.versions}", file=sys.stderr, flush=True)
        return True

    def pinned(self, version: str) -> tuple[Served, str | None]:
        """(what answers, its system_fingerprint) for a request naming `version` (registered)."""
        arms = self.current
        for served in (arms.champion, arms.challenger):
            if served is not None and served.version == version:
                return served, arms.fingerprints.get(version)
        with self._pin_lock:  # one load at a time; a version named twice loads once
            if version in self._pinned:
                self._pinned[version] = self._pinned.pop(version)  # the most recent last
            else:
                with open_registry(self.workspace) as reg:
                    rec = reg.require(self.model, version)
                self._pinned[version] = (self.loader(rec, self.device), fingerprint(rec))
                while len(self._pinned) > MAX_PINNED:
                    self._pinned.pop(next(iter(self._pinned)))
            return self._pinned[version]

    def _swap(self, targets: dict[str, VersionRecord | None]) -> None:
        have, prints = {}, {}
        if self.current:
            have = {s.version: s for s in (self.current.champion, self.current.challenger) if s}
            prints = self.current.fingerprints
        loaded = {arm: None if rec is None else have.get(rec.version) or self.loader(rec, self.device)
                  for arm, rec in targets.items()}
        prints = {rec.version: prints[rec.version] if rec.version in prints else fingerprint(rec)
                  for rec in targets.values() if rec is not None}
        self.issued = self.issued | prints.keys()  # before the swap: a request may name it at once
        self.current = Arms(self.model, loaded["champion"], loaded["challenger"], self.share, self.salt,
                            prints)
        self._failed = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="clt-serve-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as e:  # the registry may be busy or mid-migration: try next time
                self.last_error = f"reading the registry failed: {type(e).__name__}: {e}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=max(5.0, self.interval * 2))
