"""Benchmark evaluation: batched greedy generation against one prompt at a time.

    python benchmarks/bench_eval.py [--cases 500] [--batch-size 16] [--max-new-tokens 32] [--threads 1]

Both modes answer the same generated suite (the bundled regression cases repeated with new
ids) with the tiny base model plus a fresh LoRA adapter (no training), measured side by
side in one run. Target (issue #4): batched is at least 5x faster than one at a time.
Printed: seconds, generated tokens, tokens per second, cases per second, peak memory, the
speed-up, and how many answers the two modes agree on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, too

from cl_toolkit.evaluation.evaluate import score_cases, summarize  # noqa: E402
from cl_toolkit.evaluation.generate import generate, load_model, torch_threads  # noqa: E402
from cl_toolkit.evaluation.suite import load_suite  # noqa: E402
from cl_toolkit.training.tiny_model import TinySpec, build_tiny_model, bundled_corpus  # noqa: E402

SPEEDUP_TARGET = 5.0


def write_suite(path: Path, n: int) -> Path:
    """`n` cases: the bundled regression suite repeated, each copy with new ids."""
    base = [json.loads(line) for line in (ROOT / "data" / "firefighter" / "regression.jsonl").read_text().splitlines()
            if line.strip()]
    rows = [{**base[i % len(base)], "id": f"{base[i % len(base)]['id']}-r{i // len(base)}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_model(tmp: Path) -> tuple[str, str]:
    """The tiny base and a fresh (untrained) LoRA adapter on every linear layer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tmp / "tiny-llama"
    build_tiny_model(base, TinySpec(), bundled_corpus(ROOT))
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(tmp / "adapter")
    return str(base), str(tmp / "adapter")


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args) -> tuple[str, bool]:
    with tempfile.TemporaryDirectory(prefix="bench_eval.") as tmp_name:
        tmp = Path(tmp_name)
        suite = load_suite(write_suite(tmp / "suite.jsonl", args.cases))
        lm = load_model(*make_model(tmp), device=args.device)
        inputs = [c.input for c in suite.cases]
        with torch_threads(args.threads):
            generate(lm, inputs[:4], batch_size=4, max_new_tokens=4)  # warm-up, not timed
            batched = generate(lm, inputs, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
            single = generate(lm, inputs, batch_size=1, max_new_tokens=args.max_new_tokens)
    acc = summarize(score_cases(suite.cases, batched.outputs))["accuracy"]
    same = sum(a == b for a, b in zip(batched.outputs, single.outputs, strict=True))
    speedup = single.seconds / batched.seconds
    rows = [("mode", "batch", "cases", "seconds", "tokens", "tokens/s", "cases/s", "peak MiB", "target", "result")]
    for name, gen, bs in (("batched", batched, args.batch_size), ("one at a time", single, 1)):
        rows.append((name, bs, args.cases, f"{gen.seconds:.2f}", sum(gen.new_tokens), f"{gen.tokens_per_second:,.0f}",
                     f"{args.cases / gen.seconds:,.1f}", f"{gen.peak_memory_mb:,.0f}", "", ""))
    rows.append(("speed-up (batched vs one at a time)", "", "", "", "", "", f"{speedup:.1f}x", "",
                 f">= {SPEEDUP_TARGET:.0f}x", "PASS" if speedup >= SPEEDUP_TARGET else "FAIL"))
    footer = (f"device {lm.device}, torch threads {args.threads or 'default'}, max_new_tokens "
              f"{args.max_new_tokens}, greedy; answers identical in both modes: {same}/{args.cases}; "
              f"accuracy of the untrained model: {100 * acc:.1f}%")
    return _table(rows) + "\n" + footer, speedup >= SPEEDUP_TARGET


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for both modes (0: torch's default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, ok = run(args)
    print(table)
    print(f"(whole benchmark {time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
