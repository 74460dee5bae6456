"""The standard continual-learning metrics of an accuracy matrix (the benchmark's and the gate's).

R[i][j] is the accuracy on experience j after training on experience i (T experiences,
0-based here). Definitions as in Lopez-Paz & Ranzato 2017 (ACC, BWT) and Chaudhry et al.
2018 (forgetting); plasticity is the diagonal: accuracy on an experience right after
learning it. Everything is a fraction in [0, 1] (BWT in [-1, 1])."""

from __future__ import annotations


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def final_accuracy(r: list[list[float]]) -> float:
    """ACC: mean accuracy over every experience after the last one was learned."""
    return _mean(r[-1])


def backward_transfer(r: list[list[float]]) -> float | None:
    """BWT = mean over j < T-1 of R[T-1][j] - R[j][j]; negative is forgetting. None for T = 1."""
    last = len(r) - 1
    return _mean([r[last][j] - r[j][j] for j in range(last)])


def forgetting_per_experience(r: list[list[float]]) -> list[float]:
    """f_j = max over l in [j, T-2] of R[l][j], minus R[T-1][j]: the drop from the best
    accuracy ever reached on j (before the last experience) to the final one; negative
    when the final accuracy is the best yet."""
    last = len(r) - 1
    return [round(max(r[i][j] for i in range(j, last)) - r[last][j], 6) for j in range(last)]


def forgetting(r: list[list[float]]) -> float | None:
    """Average forgetting over every experience but the last. None for T = 1."""
    return _mean(forgetting_per_experience(r))


def plasticity(r: list[list[float]]) -> list[float]:
    """R[j][j]: accuracy on each experience right after learning it."""
    return [r[j][j] for j in range(len(r))]


def summarize(r: list[list[float]]) -> dict:
    """Every metric of one accuracy matrix (square, T x T)."""
    if not r or any(len(row) != len(r) for row in r):
        raise ValueError(f"the accuracy matrix must be square and non-empty, got {r!r}")
    plastic = plasticity(r)
    return {"R": r, "acc": final_accuracy(r), "bwt": backward_transfer(r), "forgetting": forgetting(r),
            "forgetting_per_experience": forgetting_per_experience(r), "plasticity": plastic,
            "plasticity_mean": _mean(plastic)}


# ---- a model line's matrix: every version x every named suite ---------------------------
# The benchmark's R is square (one experience per row). A model line's matrix is not: rows
# are versions in order, columns named suites, some cells missing, and a suite is "learned"
# at the version whose recipe gave it role `learning`. The two functions below are the
# benchmark's definitions with row j replaced by the suite's learned_at row; on a square
# matrix with learned_at[j] = j they equal forgetting_per_experience and backward_transfer.

def line_forgetting(r: list[list[float | None]], start: list[int | None]) -> list[float | None]:
    """Per column j: the best accuracy in rows start[j] .. T-2 minus the final row's (the
    drop from the best-ever score); None when the final cell or every earlier one is missing.
    start[j] None means from the first row."""
    last = len(r) - 1
    out: list[float | None] = []
    for j in range(len(r[0]) if r else 0):
        earlier = [r[i][j] for i in range((start[j] or 0), last) if r[i][j] is not None]
        out.append(round(max(earlier) - r[last][j], 6) if earlier and r[last][j] is not None else None)
    return out


def line_backward_transfer(r: list[list[float | None]], learned_at: list[int | None]) -> float | None:
    """BWT over the learned columns: mean of R[T-1][j] - R[learned_at[j]][j] for every column
    learned before the final row; None when there is none."""
    last = len(r) - 1
    gaps = [r[last][j] - r[i][j] for j, i in enumerate(learned_at)
            if i is not None and i < last and r[last][j] is not None and r[i][j] is not None]
    return _mean(gaps)
