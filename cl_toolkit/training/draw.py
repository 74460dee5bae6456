"""How rehearsal rows are drawn from a pool, and how the budget is shared between pools.

- `passes` / `Passes`: the `resample: once` order, reshuffled full passes over the pool (one shared
  random.Random, consumed exactly as the mix always did, so today's mixes keep their bytes).
- `Cycler`: the `resample: per_epoch` order, a seeded permutation per cycle through the pool,
  produced lazily (a forward Fisher-Yates that stores only the positions it moved), so every
  row is drawn once before any is drawn again and a huge pool costs memory only for what was drawn.
- `allocate`: an integer budget shared by weights (largest remainder, ties to the earlier
  source): equal weights give the even split the mix always used.
- `take_tokens`: rows from a draw order until a token budget is met."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np


def passes(size: int, rng: random.Random) -> Iterator[int]:
    """Indices of reshuffled full passes over range(size), one shuffle a pass, shuffled only when reached."""
    while True:
        order = list(range(size))
        rng.shuffle(order)
        yield from order


class _Draw:
    def peek(self) -> int:
        raise NotImplementedError

    def take(self) -> int:
        raise NotImplementedError

    def take_n(self, n: int) -> list[int]:
        return [self.take() for _ in range(n)]


class Passes(_Draw):
    """`passes` as a draw order with `peek` (resample: once)."""

    def __init__(self, size: int, rng: random.Random):
        self._it, self._next = passes(size, rng), None

    def peek(self) -> int:
        if self._next is None:
            self._next = next(self._it)
        return self._next

    def take(self) -> int:
        value, self._next = self.peek(), None
        return value


class Cycler(_Draw):
    """Draws indices from range(size) without replacement, starting a new seeded permutation
    each time the pool is used up; `peek` looks at the next draw without taking it."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng = size, rng
        self.pos, self.moved, self.cycles = 0, {}, 0
        self._next: tuple[int, int] | None = None  # (the position swapped in, its value)

    def peek(self) -> int:
        if self._next is None:
            if self.pos == self.size:  # a new cycle: a fresh permutation
                self.pos, self.moved, self.cycles = 0, {}, self.cycles + 1
            j = self.rng.randrange(self.pos, self.size)
            self._next = (j, self.moved.get(j, j))
        return self._next[1]

    def take(self) -> int:
        value = self.peek()
        j, _ = self._next
        self.moved[j] = self.moved.pop(self.pos, self.pos)  # position j now holds what was at pos
        if j == self.pos:
            del self.moved[j]
        self.pos, self._next = self.pos + 1, None
        return value


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split by `weights` into integers that sum to it (largest remainder; ties go to
    the earlier entry). Equal weights: total // k each, one more for the first total % k."""
    s = float(sum(weights))
    quotas = [total * w / s for w in weights]
    shares = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def take_tokens(peek: Callable[[], int], take: Callable[[], int], tokens_of: Callable[[int], int],
                budget: float) -> list[int]:
    """Rows from a draw order until `budget` tokens: a row is taken while the total is under
    the budget, unless it would overshoot by more than the total falls short (the first row
    is always taken while the budget is above 0)."""
    picked, total = [], 0
    while total < budget:
        t = tokens_of(peek())
        if picked and total + t - budget > budget - total:
            break
        picked.append(take())
        total += t
    return picked


def coverage(indices: Sequence[int], size: int) -> dict:
    """How often each pool row was drawn: distinct rows, min / max times, histogram {times: rows}."""
    seen = np.bincount(np.asarray(indices, dtype=np.int64), minlength=size) if size else np.zeros(0, np.int64)
    times, rows = np.unique(seen, return_counts=True)
    return {"distinct": int(np.count_nonzero(seen)), "min": int(seen.min()) if size else 0,
            "max": int(seen.max()) if size else 0,
            "histogram": {str(int(t)): int(n) for t, n in zip(times, rows, strict=True)}}
