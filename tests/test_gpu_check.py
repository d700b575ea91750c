"""The prepared GPU check stays runnable: its --smoke mode runs every section on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_prints_its_table():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--smoke"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("| check | measurement | value |")[1]
    for check in (
        "2 read vs inference",
        "3 torch exact kNN",
        "4 reduce end to end",
        "5 torch UMAP layout",
        "6 bf16 vs fp32",
    ):
        assert f"| {check} |" in table, check
    import re

    recall = float(re.search(r"3 torch exact kNN .*recall ([0-9.]+)", table).group(1))
    assert recall >= 0.9999  # torch exact kNN against the CPU's exact search
    drift = [float(c) for c in re.findall(r"6 bf16 vs fp32 .*cosine min ([0-9.]+)", table)]
    assert len(drift) == 5 and min(drift) > 0.9  # every seed class, bf16 close to fp32
