"""The sample against the archive: SMDs against hand-computed values, a stratified draw shown
balanced on its strata, a planted biased sample flagged with a console warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxratlas.analysis.representativeness import (
    binary_smd,
    continuous_smd,
    love_plot,
    sample_balance,
    warn_imbalance,
)


def _archive(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image_id": [f"i{i}" for i in range(n)], "path": [f"{i}.png" for i in range(n)],
        "view_position": rng.choice(["PA", "AP", "LATERAL"], n, p=[0.5, 0.3, 0.2]),
        "site": rng.choice(["A", "B"], n), "age": rng.normal(55, 15, n).round(),
        "effusion": pd.array(rng.choice([1, 0, pd.NA], n, p=[0.2, 0.6, 0.2]), "Int8"),
    })  # fmt: skip


def test_smds_match_hand_computed_values():
    assert binary_smd(0.3, 0.2) == pytest.approx(0.1 / np.sqrt((0.21 + 0.16) / 2))
    a, b = pd.Series([1.0, 2, 3, 4]), pd.Series([2.0, 3, 4, 5])
    assert continuous_smd(a, b) == pytest.approx(-1 / np.sqrt(5 / 3))  # both variances 5/3
    assert binary_smd(0.0, 0.0) == 0.0


def test_a_stratified_draw_is_balanced_on_its_strata_and_its_table_adds_up():
    from cxratlas.ingest.sample import draw_sample

    archive = _archive()
    drawn = draw_sample(archive, 300, seed=1, stratify_by=["view_position"])
    table = sample_balance(archive.set_index("image_id"), pd.Index(drawn["image_id"]),
                           ("effusion",), ("site",))  # fmt: skip
    view = table[table["variable"] == "view_position"].set_index("level")
    assert (view["smd"].abs() < 0.02).all()  # proportional allocation
    assert (view["n_sample"] + view["n_rest"] == view["n_archive"]).all()
    assert view["n_sample"].sum() == 300 and view["tvd"].iloc[0] < 0.01
    effusion = table.set_index("variable").loc["effusion"]
    known = archive["effusion"].dropna()
    assert effusion["n_archive"] == int(known.sum()) and effusion["archive"] == known.mean()
    assert not table["imbalanced"].any()


def test_a_biased_sample_is_flagged_on_the_console_and_in_the_table(capfd, tmp_path):
    archive = _archive()
    by_site = archive.groupby("site")["image_id"].apply(list)
    biased = pd.Index(by_site["A"][:250] + by_site["B"][:50])
    table = sample_balance(archive.set_index("image_id"), biased, ("effusion",), ("site",))
    site = table[table["variable"] == "site"].set_index("level")
    assert site.at["A", "sample"] == pytest.approx(250 / 300) and site["imbalanced"].all()
    lines = warn_imbalance(table, strata=["view_position"])
    assert any(line.startswith("sample imbalance: site=A: 83.3% of the sample") for line in lines)
    assert "WARNING: sample imbalance: site=A" in capfd.readouterr().err
    love_plot(table, str(tmp_path / "love.png"))
    assert (tmp_path / "love.png").stat().st_size > 5000


def test_a_sample_leaving_out_a_few_rows_flags_no_imbalance_against_them(capfd):
    """250 of 252 rows drawn, the 2 left out both site B and LATERAL: their SMDs stay in the
    table, none is an imbalance (an SMD against 2 rows is noise); 20 rows left out are judged."""
    from cxratlas.analysis.representativeness import MIN_REST

    archive = _archive(252, seed=3)
    rest = archive[(archive["site"] == "B") & (archive["view_position"] == "LATERAL")][:2]
    drawn = pd.Index(archive.loc[~archive.index.isin(rest.index), "image_id"])
    table = sample_balance(archive.set_index("image_id"), drawn, ("effusion",), ("site",))
    assert table["smd"].abs().max() > 1 and not table["imbalanced"].any()
    assert warn_imbalance(table, strata=["site"]) == []
    assert "WARNING" not in capfd.readouterr().err
    left = archive.index[archive["site"] == "B"][:MIN_REST]  # 20 of site B left out: judged
    drawn = pd.Index(archive["image_id"].drop(left))
    table = sample_balance(archive.set_index("image_id"), drawn, (), ("site",))
    assert table.loc[table["variable"] == "site", "imbalanced"].all()


def test_the_whole_archive_as_sample_compares_nothing():
    archive = _archive(100)
    table = sample_balance(archive.set_index("image_id"), pd.Index(archive["image_id"]),
                           ("effusion",), ("site",))  # fmt: skip
    assert table["smd"].isna().all() and (table["n_rest"] == 0).all()
    assert not table["imbalanced"].any()


def test_an_smd_past_1_is_drawn_at_the_edge_with_its_value(monkeypatch, tmp_path):
    """A subgroup chosen on a column (view AP, age >= 60) differs from the rest by SMDs well
    past 1: drawn at 1 as a triangle with the value beside it, inside the frame, not clipped
    to a plain dot at 1 that reads as "1"."""
    import cxratlas.analysis.representativeness as rep
    from cxratlas.figure_check import check_figure

    seen = {}

    def keep(fig, path, **kwargs):
        seen["texts"] = [t.get_text() for ax in fig.axes for t in ax.texts]
        seen["drawn"] = sum(len(c.get_offsets()) > 0 for ax in fig.axes for c in ax.collections)
        seen["problems"] = check_figure(fig, tight=True).problems

    monkeypatch.setattr(rep, "save_figure", keep)
    table = pd.DataFrame({"variable": ["age", "sex", "view_position"],
                          "kind": ["numeric", "category", "category"],
                          "level": [None, "F", "AP"], "smd": [1.773, 0.05, -2.681],
                          "imbalanced": [True, False, True]})  # fmt: skip
    rep.love_plot(table, str(tmp_path / "love.png"))
    assert sorted(seen["texts"]) == ["1.77", "2.68"] and seen["problems"] == []
    assert seen["drawn"] == 2  # the dots below 1 and the triangles at 1
    table["smd"] = [0.5, 0.05, -0.2]
    rep.love_plot(table, str(tmp_path / "love.png"))
    assert seen["texts"] == []
