"""Feedback tokens: proof that whoever posts feedback on an answer received that answer.

A token is the HMAC-SHA256 of the answer's request id under a key kept in the workspace
(``feedback_token.key``, 32 random bytes as hex, mode 0600, created on first use). The
server hands the token out with every answer and ``/v1/feedback`` accepts feedback only
with the token of its request id. Deleting the key file invalidates every token issued.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cl_toolkit.core.errors import CltError
from cl_toolkit.core.files import PRIVATE_MODE
from cl_toolkit.core.workspace import workspace_dir

KEY_NAME = "feedback_token.key"
KEY_BYTES = 32
PREFIX = "ft1."  # the token format's version: a new format gets a new prefix


def key_path(workspace: str | os.PathLike | None = None) -> Path:
    return workspace_dir(workspace) / KEY_NAME


def _read_key(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:  # readable by others: take that away before use
        os.chmod(path, PRIVATE_MODE)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise CltError(f"{path}: not a feedback-token key (remove it to make a new one; "
                       f"tokens already handed out stop working)")
    return key


def load_key(workspace: str | os.PathLike | None = None) -> bytes:
    """The workspace's key, created 0600 on first use. Two processes that create it at the
    same moment end up with the same key: it is written aside and linked into place."""
    path = key_path(workspace)
    if path.exists():
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with open(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


class FeedbackTokens:
    """Signs and checks the feedback tokens of request ids under one key."""

    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def for_workspace(cls, workspace: str | os.PathLike | None = None) -> FeedbackTokens:
        return cls(load_key(workspace))

    def sign(self, request_id: str) -> str:
        mac = hmac.new(self._key, request_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + mac

    def verify(self, request_id: str, token: str) -> bool:
        """Whether `token` is this request id's token (constant-time comparison)."""
        return hmac.compare_digest(self.sign(request_id).encode(), token.encode("utf-8", "replace"))
