"""merge_adapters through Axolotl on the tiny model (1 epoch each): 1.0.0 trained by
`clt train`, then a merge_adapters 1.1.0 by `clt train` and 1.1.1 by `clt cycle --until
register`, both scored with the real evaluation code; each registers the merged adapter,
whose delta is the chosen weight's combination of the fresh adapter's and the parent's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, clt_proc, trained_workspace
from merge_support import deltas

from cl_toolkit.core.files import sha256_file

pytestmark = pytest.mark.slow
RECIPES = REPO / "recipes" / "firefighter"
ONE_EPOCH = ["--set", "train.num_epochs=1"]
MERGE = ["--set", "strategy=merge_adapters", "--set", "merge={weights: [0.3, 0.7]}",
         "--set", "data.rehearsal.ratio=0.2", "--set", "train.learning_rate=0.003", *ONE_EPOCH]


@pytest.fixture(scope="module")
def line(tmp_path_factory, tiny_model_dir):
    ws = trained_workspace(tmp_path_factory.mktemp("merge_adapters") / "ws", tiny_model_dir,
                           (RECIPES / "1.0.0.yml", *ONE_EPOCH), (RECIPES / "1.1.0.yml", *MERGE))
    proc = clt_proc(ws, "cycle", RECIPES / "1.1.0.yml", *MERGE, "--set", "version=1.1.1", "--until", "register")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws


@pytest.mark.parametrize("version", ["1.1.0", "1.1.1"])
def test_merge_adapters_trains_merges_and_registers(line, version):
    from cl_toolkit.registry import open_registry

    with open_registry(line) as reg:
        rec, parent = reg.require("firefighter", version), reg.require("firefighter", "1.0.0")
    run = line / "runs" / f"firefighter-{version}"
    assert rec.strategy == "merge_adapters" and rec.parent == "1.0.0"
    m = json.loads((run / "manifest.json").read_text())["merge"]
    registered = Path(rec.adapter_dir) / "adapter_model.safetensors"  # the registry's copy of the merge
    assert sha256_file(registered) == sha256_file(run / "adapter" / "adapter_model.safetensors") == m["merged_sha256"]
    assert m["parent"]["version"] == "1.0.0" and m["fresh"]["path"] == f"runs/firefighter-{version}/fresh_adapter"
    assert [g["weight"] for g in m["grid"]] == [0.3, 0.7]
    for g in m["grid"]:  # real accuracies on the held-out slice and the parent's suites (q2 is learning)
        assert sorted(g["scores"]) == ["holdout", "q1", "regression"]
        assert all(0.0 <= v <= 1.0 for v in g["scores"].values())
        old = (g["scores"]["q1"] + g["scores"]["regression"]) / 2
        assert g["score"] == pytest.approx((g["scores"]["holdout"] + old) / 2, abs=1e-6)
    best = max(m["grid"], key=lambda g: g["score"])
    assert m["weight"] == best["weight"] == rec.metrics["merge_weight"]
    base = parent.base_model
    df, dp, dm = (deltas(d, base) for d in (run / "fresh_adapter", parent.adapter_dir, rec.adapter_dir))
    w = m["weight"]
    assert set(dm) == set(df)
    assert all(np.abs(dm[k] - (w * df[k] + (1 - w) * dp[k])).max() < 1e-5 for k in df)
