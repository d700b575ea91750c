"""The min_cluster_size sweep: a plateau on well-separated groups, the workflow's own clusters
reproduced at the configured setting, and a loud warning when most images are noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.analysis.cluster_stability import cluster_stability, stability_plot, sweep_sizes
from cxratlas.reduce.cpu import CPUBackend


def _map(Y: np.ndarray, mcs: int) -> pd.DataFrame:
    return pd.DataFrame({"x": Y[:, 0], "y": Y[:, 1], "cluster": CPUBackend().hdbscan(Y, mcs, None)})


def test_sweep_sizes_bracket_the_configured_value():
    assert sweep_sizes(10, 400) == [2, 5, 8, 10, 15, 20, 30, 40]
    assert sweep_sizes(10, 40) == [2, 5, 8, 10, 15, 20]  # never above n // 2


def test_separated_groups_are_a_plateau_and_reproduce_the_workflow(tmp_path):
    rng = np.random.default_rng(0)
    Y = np.concatenate([rng.normal(c, 0.3, (100, 2)) for c in ((0, 0), (8, 0), (0, 8))])
    table, verdict = cluster_stability(_map(Y, 10), "m", 10, None, 0.5)
    at = table.set_index("min_cluster_size")
    assert at.at[10, "clusters"] == 3 and at.at[10, "ari_with_workflow"] == 1.0
    assert at.at[10, "configured"] and at["configured"].sum() == 1
    assert verdict.startswith("m: a plateau at min_cluster_size 10")
    assert table["noise_share"].min() >= 0 and table["noise_share"].max() <= 1
    stability_plot(table, verdict, str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_mostly_noise_is_a_warning_on_the_console(capfd):
    rng = np.random.default_rng(1)
    Y = rng.uniform(size=(60, 2))
    reduced = _map(Y, 30)
    table, _ = cluster_stability(reduced, "m", 30, None, 0.1)
    noise = table.loc[table["configured"], "noise_share"].iloc[0]
    err = capfd.readouterr().err
    assert (noise > 0.1) == ("WARNING: m:" in err and "max_noise" in err)
    assert noise > 0.1  # uniform points at min_cluster_size 30 of 60: mostly noise
