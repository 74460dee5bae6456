"""Token counts for `data.rehearsal.unit: tokens`: a row weighs what the profile's base
tokenizer makes of it, the chat template applied (the sequence Axolotl trains on, prompt
included), so long general examples and short facts are not counted alike.

Rendering the chat template is the slow part (~250 µs a row here, batched), so counts are
cached in the workspace, `cache/token_counts/<tokenizer>.json`: {row hash: tokens}, keyed by
the SHA-256 of the row's canonical JSON and, in the file name, of the tokenizer's files (a
hub id stands for itself). The tokenizer is loaded only when a count is missing."""

from __future__ import annotations

import json
from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import atomic_write_json, sha256_bytes
from cl_toolkit.training.profiles import Profile

CACHE = ("cache", "token_counts")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "tokenizer.model", "vocab.json", "merges.txt")


def row_key(row: dict) -> str:
    return sha256_bytes(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8"))[:20]


class TokenCounter:
    """Counts tokens of chat rows with one tokenizer, through the cache; `pool_row` memoises
    a pool's rows; `save` writes the new counts back."""

    def __init__(self, where: str, name: str, cache_file: Path):
        self.where, self.name, self.cache_file = where, name, cache_file
        self._tok = None
        self._counts: dict[str, int] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        self._new = 0
        self._memo: dict[tuple[str, int], int] = {}

    def rows(self, rows: list[dict]) -> list[int]:
        keys = [row_key(r) for r in rows]
        missing = {k: r for k, r in zip(keys, rows, strict=True) if k not in self._counts}
        if missing:
            tok = self._tokenizer()
            texts = [tok.apply_chat_template(r["messages"], tokenize=False) if getattr(tok, "chat_template", None)
                     else "\n".join(m["content"] for m in r["messages"]) for r in missing.values()]
            ids = tok(texts, add_special_tokens=False)["input_ids"]
            self._counts.update({k: len(x) for k, x in zip(missing, ids, strict=True)})
            self._new += len(missing)
        return [self._counts[k] for k in keys]

    def pool_row(self, pool, index: int) -> int:
        key = (pool.label, index)
        if key not in self._memo:
            self._memo[key] = self.rows(pool.rows([index]))[0]
        return self._memo[key]

    def save(self) -> None:
        if self._new:
            atomic_write_json(self.cache_file, dict(sorted(self._counts.items())))
            self._new = 0

    def _tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer  # heavy: only for a count not cached

            try:
                self._tok = AutoTokenizer.from_pretrained(self.where)
            except (OSError, ValueError) as e:
                raise BadInput(f"data.rehearsal.unit: tokens: cannot load the tokenizer of profile {self.name}'s base "
                               f"{self.where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self._tok


def tokenizer_fingerprint(profile: Profile) -> str:
    """The SHA-256 of a local base's tokenizer files, else of the hub id."""
    if not profile.base_is_local:
        return sha256_bytes(profile.base_model.encode())
    parts = [name.encode() + b"\0" + (Path(profile.base_model) / name).read_bytes()
             for name in _TOKENIZER_FILES if (Path(profile.base_model) / name).is_file()]
    return sha256_bytes(b"\0\0".join(parts))


def token_counter(profile: Profile, workspace: Path) -> TokenCounter:
    """The counter of `profile`'s base tokenizer, with the workspace's cache; BadInput when
    the local base is not there."""
    where = profile.base_model
    if profile.base_is_local and not Path(where).is_dir():
        raise BadInput(f"data.rehearsal.unit: tokens counts with the tokenizer of profile {profile.name}'s base, "
                       f"which is not built yet: {where} (clt tiny-model builds the tiny one)")
    fingerprint = tokenizer_fingerprint(profile)[:16]
    return TokenCounter(str(where), profile.name, Path(workspace).joinpath(*CACHE, f"{fingerprint}.json"))
