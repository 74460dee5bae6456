"""Token counts for `data.rehearsal.unit: tokens`: a row weighs what the profile's base
tokenizer makes of it, the chat template applied (the sequence Axolotl trains on, prompt
included), so long general examples and short facts are not counted alike.

Counting is fast next to reading the rows (the tiny tokenizer: ~30 µs a row, batched), so
counts are memoised for one build only, per pool and row, and nothing is cached on disk."""

from __future__ import annotations

from pathlib import Path

from cl_toolkit.core.errors import BadInput
from cl_toolkit.training.profiles import Profile


class TokenCounter:
    """Counts tokens of chat rows with one tokenizer; `pool_row` memoises a pool's rows."""

    def __init__(self, tokenizer, name: str):
        self.tokenizer, self.name = tokenizer, name
        self._memo: dict[tuple[str, int], int] = {}

    def text(self, row: dict) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(row["messages"], tokenize=False)
        return "\n".join(m["content"] for m in row["messages"])

    def rows(self, rows: list[dict]) -> list[int]:
        if not rows:
            return []
        ids = self.tokenizer([self.text(r) for r in rows], add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def pool_row(self, pool, index: int) -> int:
        key = (pool.label, index)
        if key not in self._memo:
            self._memo[key] = self.rows(pool.rows([index]))[0]
        return self._memo[key]


def token_counter(profile: Profile) -> TokenCounter:
    """The counter of `profile`'s base tokenizer; BadInput when it cannot be loaded."""
    from transformers import AutoTokenizer  # heavy: only for unit: tokens

    where = profile.base_model
    if profile.base_is_local and not Path(where).is_dir():
        raise BadInput(f"data.rehearsal.unit: tokens counts with the tokenizer of profile {profile.name}'s base, "
                       f"which is not built yet: {where} (clt tiny-model builds the tiny one)")
    try:
        tok = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise BadInput(f"data.rehearsal.unit: tokens: cannot load the tokenizer of profile {profile.name}'s base "
                       f"{where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return TokenCounter(tok, str(where))
