"""Write the 6-quarter stream's data: the bundled firefighter facts (3 quarters of 48) split
into 6 quarters of 24, each original quarter cut in half in its own order (its rows already
interleave the six topics), with each row's as-trained and paraphrased test cases beside it.
Deterministic: the same bundled files give the same bytes. Run from the repository root:

    python scripts/split_stream.py        # writes benchmarks/streams/firefighter-6q/q1..q6{,_asked,_test}.jsonl

benchmarks/streams/firefighter-6q.yml learns them in order."""

from __future__ import annotations

from pathlib import Path

SOURCE = Path("data/firefighter")
OUT = Path("benchmarks/streams/firefighter-6q")  # not under data/: the tiny tokenizer learns data/**/*.jsonl
KINDS = ("", "_asked", "_test")  # training rows, as-trained cases, paraphrased cases (same order)
PARTS = 2  # each bundled quarter becomes this many


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split() -> dict[Path, str]:
    """Every file to write and its text."""
    out: dict[Path, str] = {}
    for k, quarter in enumerate(("q1", "q2", "q3")):
        files = {kind: lines(SOURCE / f"{quarter}{kind}.jsonl") for kind in KINDS}
        n = len(files[""])
        if any(len(rows) != n for rows in files.values()) or n % PARTS:
            raise SystemExit(f"{quarter}: training and test files must have the same rows, a multiple of {PARTS}")
        size = n // PARTS
        for part in range(PARTS):
            name = f"q{k * PARTS + part + 1}"
            for kind, rows in files.items():
                out[OUT / f"{name}{kind}.jsonl"] = "\n".join(rows[part * size:(part + 1) * size]) + "\n"
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in split().items():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    print(f"wrote {len(split())} files to {OUT}")


if __name__ == "__main__":
    main()
