import subprocess
import sys

import pandas as pd


def test_demo_data_command(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxratlas.cli",
            "demo-data",
            "--out",
            str(out),
            "-n",
            "20",
            "--outlier-fraction",
            "0.1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 20 phantoms" in proc.stdout and "2 planted outliers" in proc.stdout
    df = pd.read_csv(out / "manifest.csv")
    assert len(df) == 20 and all((out / p).exists() for p in df["path"])
