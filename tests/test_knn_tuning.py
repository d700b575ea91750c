"""kNN recall as a target: torch's exact search equals FAISS's, and the tuner raises the search
effort until a sample meets the target, on a generator built to make PCA lose neighbours."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from cxratlas.reduce.cells import CellIndex
from cxratlas.reduce.knn import KnnSettings, exact_search, knn_recall, l2_normalise
from cxratlas.reduce.torch_knn import torch_exact_knn
from cxratlas.reduce.tuning import (
    BOTH_WAYS_SAVING,
    TunedSearch,
    cells_recall,
    ladder,
    priced_ns,
    sample_recall,
)


def isotropic_centres(n: int, d: int, centres: int, seed: int = 0) -> np.ndarray:
    """Points around random centres with isotropic spread in every dimension: a point's true
    neighbours differ from the others in all d dimensions, so PCA onto the centres' span keeps
    the cluster but loses who is nearest within it (the hard case for PCA + HNSW)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    X = c[rng.integers(0, centres, n)] + rng.normal(scale=0.6, size=(n, d))
    return l2_normalise(X.astype(np.float32))


def test_torch_exact_knn_equals_faiss_exact_search():
    X = isotropic_centres(3000, 48, 10)
    sims, idx = torch_exact_knn(X, X, 15, base_block=700, query_block=1100)  # blocks cross
    f_sims, f_idx = faiss.knn(X, X, 15, metric=faiss.METRIC_INNER_PRODUCT)
    assert (idx == f_idx).mean() > 0.999  # a float tie may order two equal neighbours apart
    assert np.abs(sims - f_sims).max() < 1e-5
    q_sims, q_idx = torch_exact_knn(X[:7], X, 4000)  # k above n: all n, best first
    assert q_idx.shape == (7, 3000) and (np.diff(q_sims, axis=1) <= 1e-6).all()


def test_the_ladder_doubles_effort_then_drops_pca():
    s = KnnSettings(hnsw_ef_search=128, refine=3, max_ef_search=1024, max_refine=24)
    steps = ladder(s, reduced=True, method="hnsw")
    assert [(e.reduced, e.ef, e.refine) for e in steps[:3]] == [
        (True, 128, 3), (True, 256, 6), (True, 512, 12)]  # fmt: skip
    assert all(not e.reduced and e.refine == 1 for e in steps[3:])
    assert steps[-1].ef == 1024 and len(ladder(s, False, "hnsw")) == 4  # 128 .. 1024
    assert [e.refine for e in ladder(s, True, "exact")] == [3, 6, 12, 1]  # then exact, full


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_the_tuner_meets_the_target_where_pca_loses_neighbours(method):
    X = isotropic_centres(4000, 128, 20)
    Z = l2_normalise(X @ np.linalg.qr(np.random.default_rng(1).normal(size=(128, 12)))[0])
    s = KnnSettings(method=method, hnsw_ef_search=16, refine=2, recall_sample=300)
    idx0, *_ = TunedSearch(X, Z, 15, replace(s, target_recall=0), False, 0).graph()
    tuned = TunedSearch(X, Z, 15, s, False, 0)
    idx, dist, label, report = tuned.graph()
    before, after = knn_recall(X, idx0, 500), knn_recall(X, idx, 500)
    # the tuner stopped at the target on its sample; other queries agree within sampling error
    assert report["tried"][-1]["sample_recall"] >= 0.95
    assert before < 0.6 and after >= 0.93, (before, after, report)
    assert report["met"] and len(report["tried"]) >= 2 and "full space" in report["chosen"]
    assert (idx[:, 0] == np.arange(len(X))).all() and (np.diff(dist, axis=1) >= -1e-6).all()


def test_a_target_out_of_reach_is_a_warning_on_the_console(capfd):
    X = isotropic_centres(1500, 64, 5)
    s = KnnSettings(method="hnsw", hnsw_m=4, hnsw_ef_search=1, max_ef_search=1, refine=1,
                    hnsw_ef_construction=4, target_recall=0.999, recall_sample=200)  # fmt: skip
    *_, report = TunedSearch(X, X, 15, s, False, 0).graph()
    assert not report["met"]
    err = capfd.readouterr().err
    assert "WARNING: kNN recall" in err and "below the target 1.00" in err


def test_cells_probing_every_cell_is_exact_search():
    X = isotropic_centres(2500, 64, 8)
    cells = CellIndex.build(X, cell_size=100, max_probe=1024, seed=0)
    assert cells.cells == 25 and sorted(cells.order.tolist()) == list(range(2500))
    assert (cells.nearest[:, 0] == np.arange(25)).all()  # each cell probes itself first
    idx, dist = cells.search(X, None, 15, probe=25)
    f_sims, f_idx = faiss.knn(X, X, 15, metric=faiss.METRIC_INNER_PRODUCT)
    assert (idx == f_idx).mean() > 0.999 and np.abs((1 - dist) - f_sims).max() < 1e-5
    rows = np.array([3, 2400, 17])  # a query sample answers as the full search does
    s_idx, _ = cells.search(X, rows, 15, probe=25)
    assert (s_idx == idx[rows]).all()
    few, few_d = cells.search(X, rows, 15, probe=1)  # one cell: neighbours from it alone
    own = [set(cells.members([cells.cell_of[q]])) for q in rows]
    assert all(set(r) <= o for r, o in zip(few, own, strict=True))
    assert (np.diff(few_d, axis=1) >= -1e-6).all()


def test_partner_cells_are_compared_both_ways_once(monkeypatch):
    X = isotropic_centres(3000, 32, 6)
    cells = CellIndex.build(X, cell_size=100, max_probe=64, seed=0)
    partners = cells.partners(3, both_ways=True)
    assert (partners != partners.T).nnz == 0  # a pair is compared for both its cells
    one_way = {(a, int(b)) for a in range(cells.cells) for b in cells.nearest[a, :3]}
    pairs = zip(*partners.nonzero(), strict=True)
    reverse_only = [(a, b) for a, b in pairs if (a, b) not in one_way]
    assert reverse_only  # so both ways finds more than each cell's own probe
    idx, dist = cells.search(X, None, 10, probe=3, both_ways=True)
    for q in range(0, 3000, 7):  # each row's exact 10 nearest among its partners' rows
        c = cells.cell_of[q]
        cand = cells.members(partners.indices[partners.indptr[c] : partners.indptr[c + 1]])
        sims = X[cand] @ X[q]
        assert set(idx[q]) == set(cand[np.argsort(-sims)[:10]]), q
        assert np.abs(np.sort(1 - dist[q]) - np.sort(sims)[-10:]).max() < 1e-5
    assert (idx[:, 0] == np.arange(3000)).all() and (np.diff(dist, axis=1) >= -1e-6).all()
    rows = np.arange(5, 3000, 11)
    assert (cells.search(X, rows, 10, 3, both_ways=True)[0] == idx[rows]).all()  # a sample agrees
    one, _ = cells.search(X, None, 10, probe=3, both_ways=False)  # each cell's own 3 nearest
    for q in rows:
        cand = cells.members(cells.nearest[cells.cell_of[q], :3])
        assert set(one[q]) == set(cand[np.argsort(-(X[cand] @ X[q]))[:10]]), q
    assert (one[:, 0] == np.arange(3000)).all()
    monkeypatch.setattr("cxratlas.reduce.cells.CANDIDATE_BLOCK", 150)  # groups of 1-2 cells
    monkeypatch.setattr("cxratlas.reduce.cells.QUERY_BLOCK", 40)
    blocked = cells.search(X, None, 10, probe=3, both_ways=True)
    assert (blocked[0] == idx).all() and np.abs(blocked[1] - dist).max() < 1e-5


def test_a_row_with_fewer_candidates_than_k_is_padded_with_itself():
    X = isotropic_centres(60, 8, 3)
    cells = CellIndex.build(X, cell_size=20, max_probe=4, seed=0)
    idx, dist = cells.search(X, None, 40, probe=1, both_ways=True)  # own cell: about 20 rows
    size = np.diff(cells.starts)[cells.cell_of]
    for q in range(60):
        assert (idx[q, size[q] :] == q).all() and (dist[q, size[q] :] == 2.0).all()
        assert set(idx[q, : size[q]]) == set(cells.members([cells.cell_of[q]]))


def test_cells_tuning_raises_the_probe_until_the_target():
    X = isotropic_centres(6000, 128, 3)  # 3 centres, 60 cells: neighbours spread over many
    Z = l2_normalise(X @ np.linalg.qr(np.random.default_rng(1).normal(size=(128, 12)))[0])
    s = KnnSettings(method="cells", cell_size=100, cell_probe=1, recall_sample=300)
    untuned = TunedSearch(X, Z, 15, replace(s, target_recall=0), False, 0).graph()
    idx, dist, label, report = TunedSearch(X, Z, 15, s, False, 0).graph()
    assert knn_recall(X, untuned[0], 500) < 0.6 <= 0.93 <= knn_recall(X, idx, 500)
    tried = [(int(t["effort"].split(", ")[1].split()[0]), t["effort"].endswith("both ways"),
              t["sample_recall"]) for t in report["tried"]]  # fmt: skip
    recall = {(p, both): r for p, both, r in tried}
    both = report["chosen"].endswith("both ways")
    chosen = int(label.removeprefix("cells+probe"))
    assert [p for p, b, _ in tried if not b][:4] == [1, 2, 3, 4] and {b for _, b, _ in tried} == {
        False, True}  # fmt: skip
    assert report["met"] and recall[chosen, both] >= 0.96
    assert recall[chosen - 1, both] < 0.96  # the fewest cells that meet it, bisected if need be
    least = {b: min(p for p, b_, r in tried if b_ == b and r >= 0.96) for b in (False, True)}
    cells = TunedSearch(X, Z, 15, s, False, 0)._cells()
    cost = {b: priced_ns(cells, least[b], b, 15) for b in least}
    assert both == (cost[True] < (1 - BOTH_WAYS_SAVING) * cost[False])  # the cheaper way
    wide = TunedSearch(X, Z, 15, replace(s, cell_probe=40), False, 0).graph()  # more than needed
    assert wide[2] == label and (wide[0] == idx).all()  # bisected down to the same probe
    assert (idx[:, 0] == np.arange(len(X))).all() and (np.diff(dist, axis=1) >= -1e-6).all()


def test_both_ways_is_priced_cheaper_only_where_rows_see_many_candidates():
    X = isotropic_centres(8000, 32, 2)  # 2 centres, 80 cells of 100
    cells = CellIndex.build(X, cell_size=100, max_probe=80, seed=0)
    few, many = priced_ns(cells, 2, True, 15), priced_ns(cells, 40, True, 15)
    assert few / cells.pairs(2, True) > many / cells.pairs(40, True) > 14.4  # ns a pair
    assert priced_ns(cells, 40, False, 15) == cells.pairs(40, False) * 11.0
    assert cells.pairs(40, True) < cells.pairs(40, False)  # a pair scored once, not twice


def test_a_rungs_recall_is_what_searching_with_it_gives():
    X = isotropic_centres(6000, 64, 4)
    cells = CellIndex.build(X, cell_size=100, max_probe=64, seed=0)
    queries = np.sort(np.random.default_rng(3).choice(len(X), 300, replace=False))
    truth = exact_search(X[queries], X, 15)[1]
    for probe in (1, 3, 8, 60):
        searched = sample_recall(cells.search(X, queries, 15, probe)[0], truth, queries)
        assert abs(cells_recall(cells, queries, truth, probe) - searched) < 1e-3
    assert (
        cells_recall(cells, queries, truth, 1) < 0.8
        and cells_recall(cells, queries, truth, 60) == 1.0
    )


def test_exact_search_on_the_cpu_is_faiss():
    X = isotropic_centres(500, 16, 4)
    sims, idx = exact_search(X, X, 5)
    assert (idx[:, 0] == np.arange(500)).mean() > 0.99 and sims.dtype == np.float32
