"""Keep tokens and keys out of everything we write: rendered configs, manifests, logs."""

from __future__ import annotations

import os
import re

from cl_toolkit.core.errors import BadInput, Problem

# Keys that only ever hold a credential.
SECRET_KEYS = {"hf_token", "hub_token", "wandb_api_key", "comet_api_key", "mlflow_tracking_token",
               "api_key", "openai_api_key", "aws_secret_access_key", "password", "secret"}
# Values that look like a credential whatever key holds them.
SECRET_VALUE = re.compile(
    r"\bhf_[A-Za-z0-9]{30,}\b|\bsk-[A-Za-z0-9_-]{20,}\b|\bAKIA[0-9A-Z]{16}\b|\bghp_[A-Za-z0-9]{30,}\b"
)
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY|_KEY$", re.I)


def env_secret_values() -> list[str]:
    """Values of environment variables whose names say they are credentials."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def find_secrets(obj, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(key path, reason) for every secret-looking key or value in a nested structure."""
    found = []
    env_values = env_secret_values()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in SECRET_KEYS and v not in (None, "", False, True):
                found.append(((*path, k), "credentials do not belong in recipes or profiles; use the environment"))
            else:
                found.extend(find_secrets(v, (*path, k)))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found.extend(find_secrets(v, (*path, i)))
    elif isinstance(obj, str):
        if SECRET_VALUE.search(obj) or any(s in obj for s in env_values):
            found.append((path, "this value looks like a token or key; it would be written to disk"))
    return found


def refuse_secrets(obj, fname: str) -> None:
    """BadInput if a structure about to be written holds a credential."""
    found = find_secrets(obj)
    if found:
        raise BadInput([Problem(fname, why, key=".".join(map(str, p))) for p, why in found])


def redact(text: str) -> str:
    """Mask credential-looking values and env secrets in free text (logs)."""
    for value in env_secret_values():
        text = text.replace(value, "[REDACTED]")
    return SECRET_VALUE.sub("[REDACTED]", text)
