"""A reduction depends on the set of images and their vectors, never on the order their rows
arrive in (the shard ledger's history): the same vectors in another row order give the same map,
clusters, outlier scores and neighbours, bit for bit, on the exact path and on the large-matrix
path (PCA, k-means cells, landmarks); the landmarks and the pixel PCA's fit images are chosen
by id. tests/test_map_order.py checks the same on a real archive, end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import procrustes

from cxratlas.io import embedding_table, read_embeddings, write_parquet
from cxratlas.reduce import KnnSettings, ReduceSettings, reduce_embeddings
from cxratlas.reduce.order import RowOrder, canonical_order, read_canonical
from cxratlas.reduce.stability import MapUpdate, PreviousMap


def _vectors(seed: int = 0):
    """Six groups of 50 and 12 scattered outliers in 48-D, with three exact duplicate pairs:
    their distances tie, so only the ids can say which twin is listed first."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 48))
    X = np.concatenate([c + 0.5 * rng.normal(size=(50, 48)) for c in centres])
    X = np.concatenate([X, 1.5 * rng.normal(size=(12, 48))]).astype(np.float32)
    X[[301, 120, 7]] = X[[300, 121, 8]]
    ids = [f"img-{i:04d}" for i in rng.permutation(len(X))]  # ids unrelated to the rows' order
    return X, ids


def _by_id(r, ids) -> dict[str, np.ndarray]:
    """A result's per-row values keyed by image id: neighbours as ids, in their order."""
    ids = np.asarray(ids, object)
    return {"xy": r.xy, "cluster": r.cluster, "outlier": r.outlier, "pagerank": r.pagerank,
            "neighbours": ids[r.knn_idx], "distances": r.knn_dist}  # fmt: skip


def _in_order(values: dict[str, np.ndarray], ids, to) -> dict[str, np.ndarray]:
    where = pd.Index(ids).get_indexer(to)
    return {k: v[where] for k, v in values.items()}


LARGE = ReduceSettings(
    k=10, min_cluster_size=10, trust_sample=150, pca=16, landmarks=150,
    knn=KnnSettings(exact_max=100, cell_size=40),
)  # fmt: skip


@pytest.mark.parametrize("settings", [ReduceSettings(k=10, min_cluster_size=10), LARGE],
                         ids=["exact", "pca-cells-landmarks"])  # fmt: skip
def test_the_same_vectors_in_any_row_order_give_the_same_reduction(settings):
    X, ids = _vectors()
    orders = [np.random.default_rng(seed).permutation(len(X)) for seed in (1, 2)]
    runs = []
    for p in orders:
        idp = [ids[i] for i in p]
        r = reduce_embeddings(X[p].copy(), settings, ids=idp)
        assert (r.knn_idx[:, 0] == np.arange(len(X))).all()  # positions in the caller's rows
        runs.append(_in_order(_by_id(r, idp), idp, ids))
    a, b = runs
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert len(set(a["cluster"].tolist()) - {-1}) >= 4
    if settings is LARGE:  # the large-matrix path was taken
        assert r.quality["knn"]["method"].startswith("cells") and r.quality["pca"]
        assert r.quality["landmarks"]["n"] == 150
    # the control: without ids the rows are taken as given, and the maps move
    plain = [reduce_embeddings(X[p].copy(), settings).xy[np.argsort(p)] for p in orders]
    assert procrustes(plain[0], plain[1])[2] > 1e-4


def test_the_canonical_order_is_a_seeded_hash_of_the_ids():
    ids = [f"id{i}" for i in range(500)]
    shuffled = [ids[i] for i in np.random.default_rng(0).permutation(500)]
    in_order = [ids[i] for i in canonical_order(ids, 42)]
    assert [shuffled[i] for i in canonical_order(shuffled, 42)] == in_order
    assert in_order != sorted(ids) and in_order != ids  # neither the ids' own order nor the input's
    assert [ids[i] for i in canonical_order(ids, 7)] != in_order  # another seed, another order
    order = RowOrder.of(in_order, 500, 42)
    assert order.by_id and order.rows is None  # already canonical: X is not copied
    with pytest.raises(ValueError, match="'id3' appears twice"):
        RowOrder.of([*ids[:4], "id3"], 5, 42)
    with pytest.raises(ValueError, match="4 image ids for 5 embeddings"):
        RowOrder.of(ids[:4], 5, 42)


def test_colliding_hashes_are_ordered_by_id(monkeypatch):
    import cxratlas.ingest.sample as sample

    monkeypatch.setattr(sample, "seeded_hash", lambda v, seed: np.array([5, 1, 5, 5, 0], np.uint64))
    ids = ["d", "b", "c", "a", "e"]
    assert [ids[i] for i in canonical_order(ids, 0)] == ["e", "b", "a", "c", "d"]


def test_landmarks_are_chosen_by_id_and_stay_landmarks_as_the_archive_grows():
    from cxratlas.reduce.landmarks import landmark_rows

    def landmarks(ids, m=100):
        return {ids[i] for i in canonical_order(ids, 42)[landmark_rows(len(ids), m, 42, True)]}

    ids = [f"img{i}" for i in range(1000)]
    first = landmarks(ids)
    assert len(first) == 100 and first == landmarks(ids[::-1])  # any row order
    grown = landmarks([*ids, *(f"new{i}" for i in range(200))])
    entered = grown - set(ids)
    assert grown - entered <= first  # no earlier image becomes one
    assert len(first - grown) == len(entered) < 40  # each new landmark displaced one old one


def test_extend_places_new_images_alike_in_any_row_order():
    X, ids = _vectors()
    s = ReduceSettings(k=10, min_cluster_size=10, update="extend", extend_check_max=10)
    old = reduce_embeddings(X[:250].copy(), s.but(update="full"), ids=ids[:250])
    prev = PreviousMap(np.asarray(ids[:250], object), old.xy.astype(np.float64),
                       old.cluster.astype(np.int64), int(old.cluster.max()) + 1)  # fmt: skip
    placed = []
    for seed in (1, 2):
        p = np.random.default_rng(seed).permutation(len(X))
        idp = [ids[i] for i in p]
        update = MapUpdate(idp, prev, s)
        assert not update.recompute  # placed only: no UMAP
        r = reduce_embeddings(X[p].copy(), s, update=update, ids=idp)
        placed.append(_in_order({"xy": r.xy, "cluster": r.cluster}, idp, ids))
    assert np.array_equal(placed[0]["xy"], placed[1]["xy"])
    assert np.array_equal(placed[0]["cluster"], placed[1]["cluster"])
    assert np.array_equal(placed[0]["xy"][:250], old.xy)  # earlier images kept exactly


def test_embeddings_are_read_straight_into_canonical_order(tmp_path):
    X, ids = _vectors()
    p = np.random.default_rng(3).permutation(len(X))
    write_parquet(embedding_table(ids, X, {"model": "m"}), tmp_path / "a.parquet")
    write_parquet(embedding_table([ids[i] for i in p], X[p], {"model": "m"}),
                  tmp_path / "b.parquet")  # fmt: skip
    ids_a, A, meta = read_canonical(tmp_path / "a.parquet", 42)
    ids_b, B, _ = read_canonical(tmp_path / "b.parquet", 42)
    assert ids_a == ids_b and np.array_equal(A, B) and meta["model"] == "m"
    assert ids_a == [ids[i] for i in canonical_order(ids, 42)]
    assert np.array_equal(A, X[canonical_order(ids, 42)])
    with pytest.raises(ValueError, match="no permutation"):
        read_embeddings(tmp_path / "a.parquet", rows=np.zeros(len(X), np.int64))


def test_the_pixel_pca_is_fitted_on_images_chosen_by_id():
    from cxratlas.embed.models import embedder_class
    from cxratlas.ingest.sample import RANK, seeded_hash

    ids = pd.Series([f"img{i}" for i in range(40)])
    ledger = pd.DataFrame({"image_id": ids, "path": "/x/" + ids, RANK: seeded_hash(ids, 0)})
    entry = {"kind": "pixels", "image_size": 8, "pca": 4, "pca_fit_n": 10}
    kind = embedder_class("px", entry)
    fresh = ledger.sort_values(RANK)  # a fresh ledger: rank order
    grown = pd.concat([fresh.iloc[::2], fresh.iloc[1::2]])  # the same images in other shards
    rows = kind.fit_rows(fresh, entry)["image_id"].tolist()
    assert rows == kind.fit_rows(grown, entry)["image_id"].tolist()
    assert rows == fresh["image_id"].head(10).tolist()  # the lowest ranks, in rank order


def test_a_pixel_vector_does_not_depend_on_the_images_in_its_batch(tmp_path):
    """Which images share a batch is the ledger's history (a shard's last batch may hold one);
    the PCA projection gives each image the same vector, bit for bit, in any batch."""
    from PIL import Image

    from cxratlas.embed.models.pixels import PixelEmbedder

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40), np.uint8)) for _ in range(40)]
    entry = {"kind": "pixels", "image_size": 32, "pca": 24}
    PixelEmbedder.fit("px", entry, images, 0, tmp_path / "state.npz")
    model = PixelEmbedder("px", entry, state_path=str(tmp_path / "state.npz"))
    batch = np.stack([model.preprocess(img) for img in images])
    whole = model.embed(batch)
    for size in (1, 2, 3, 5, 17):
        parts = [model.embed(batch[s : s + size]) for s in range(0, len(batch), size)]
        assert np.array_equal(np.concatenate(parts), whole), size
    reference = (batch - model.mean) @ model.components.T  # what BLAS gives: within rounding
    assert np.allclose(whole, reference, rtol=1e-4, atol=1e-4)
