"""Same shipped weights, same seed, same machine: bit-identical runs, in two fresh processes.

Each process trains the tiny VPT-NSP² and DMNSP recipes for two short tasks and prints a digest of
every accuracy and every trained tensor; the digests must agree to the bit. (Across machines they
need not: benchmarks/machine_spread.py measures how far they move.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nscl.paths import repo_root

SCRIPT = r"""
import hashlib, json, sys, tempfile
from pathlib import Path
import torch
from nscl.presets import dmnsp_experiment, nsp2_experiment
from nscl.results.reproducibility import state_tensors
from nscl.experiment.result import slug

out = {}
root = Path(tempfile.mkdtemp())
for family, experiment, name in (("nsp2", nsp2_experiment("tiny", "vit", controls=False), "VPT-NSP²"),
                                 ("dmnsp", dmnsp_experiment("tiny", joint=False), "DMNSP")):
    experiment.with_run(max_tasks=2, epochs=1, progress=False)
    result = experiment.run_all(seeds=[0], only=[name], run_root=root / family)[1][(name, 0)]
    state = torch.load(root / family / slug(name) / "seed0" / "checkpoint.pt", weights_only=False)["method"]
    h = hashlib.sha256(result.accuracy.tobytes())
    found = list(state_tensors(state))
    for key, value in found:
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    out[family] = {"digest": h.hexdigest()[:16], "tensors": len(found), "weights": result.extras["backbone_weights"],
                   "last": result.metrics.last_accuracy}
print("RESULT", json.dumps(out))
"""


def _run_once() -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_two_fresh_processes_give_bit_identical_runs():
    first, second = _run_once(), _run_once()
    for family in ("nsp2", "dmnsp"):
        assert first[family]["tensors"] > 5, f"{family}: the digest covers no trained tensors"
        assert first[family]["weights"].startswith("tiny-"), f"{family}: no shipped backbone recorded"
    assert first == second
