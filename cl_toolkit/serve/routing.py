"""The router applications use to split traffic between champion and challenger: a stable
hash of the request id, so a request lands on the same arm in every process and machine."""

from __future__ import annotations

import hashlib


def route(request_id: str, challenger_share: float, salt: str = "") -> str:
    """"champion" or "challenger" for a request: stable across processes and machines
    (SHA-256 of salt and id), and raising the share only moves requests to the challenger."""
    if not 0.0 <= challenger_share <= 1.0:
        raise ValueError(f"challenger_share must be between 0 and 1, got {challenger_share!r}")
    digest = hashlib.sha256(f"{salt}\0{request_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2 ** 64  # uniform in [0, 1)
    return "challenger" if point < challenger_share else "champion"
