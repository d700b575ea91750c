"""kNN recall as a target the graph meets by itself.

Before the full search, a sample of queries is searched with the configured effort and scored
against exact search in the original space (so PCA's loss and the index's both count). Below
`target_recall`, the effort rises step by step: HNSW `ef_search` or IVF `nprobe` double, and
with PCA the refine factor too, then PCA is dropped and the index rebuilt on the full vectors;
the cells probed (`cells.py`) rise by a quarter, each rung scored from where the sample's true
neighbours lie, with no search, then are bisected back to the fewest that meet the target.
Until the target is met or the ladder's limits are reached, which is then an alert on the
console and in the summary.
On clustered data with isotropic spread (each centre's points differ in all 768 dimensions),
PCA to 128 and HNSW at ef 128 keep 19 % of the true neighbours; this is the guard against that.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from cxratlas.logs import alert
from cxratlas.reduce.knn import (
    KnnSettings,
    build_index,
    exact_search,
    refine_in_full_space,
    sample_recall,
    search_blocks,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effort:
    """One rung of the ladder: search in the PCA space or not, the HNSW ef / IVF nprobe, and
    how many candidates per neighbour are re-ranked in the full space."""

    reduced: bool
    ef: int
    nprobe: int
    refine: int
    both_ways: bool = False  # cells: partner cells compared both ways (cells.py) or one way

    def describe(self, method: str) -> str:
        space = "PCA space" if self.reduced else "full space"
        if method == "cells":  # distances always in the full space; PCA only draws the cells
            ways = "both ways" if self.both_ways else "one way"
            return f"cells, {self.nprobe} nearest probed {ways}"
        knob = {"hnsw": f", ef_search {self.ef}", "ivf": f", nprobe {self.nprobe}"}.get(method, "")
        return f"{method} in the {space}{knob}" + (
            f", refine x{self.refine}" if self.refine > 1 else ""
        )


def ladder(s: KnnSettings, reduced: bool, method: str = "hnsw") -> list[Effort]:
    """The configured effort, then doublings of the method's knob (HNSW ef_search, IVF
    nprobe; exact search has none) and of the refine factor, up to the limits;
    with PCA, two doublings in the PCA space and then the same in the full space. Cells score
    every candidate in the full space, so their ladder is the probe's alone, in steps of a
    quarter (TunedSearch then bisects back to the fewest cells that meet the target)."""
    if method == "cells":  # rungs cost nothing to score (cells_recall): a fine ladder
        probes = [s.cell_probe]
        while probes[-1] < s.max_ef_search:
            probes.append(min(max(probes[-1] + 1, math.ceil(1.25 * probes[-1])), s.max_ef_search))
        return [Effort(False, s.hnsw_ef_search, p, 1) for p in probes]
    ef = method == "hnsw"
    probe = method == "ivf"
    steps = [Effort(reduced, s.hnsw_ef_search, s.ivf_nprobe, s.refine if reduced else 1)]
    while not (reduced and len(steps) >= 3):
        e = steps[-1]
        more = replace(
            e,
            ef=max(e.ef, min(2 * e.ef, s.max_ef_search)) if ef else e.ef,
            nprobe=max(e.nprobe, min(2 * e.nprobe, s.max_ef_search)) if probe else e.nprobe,
            refine=max(e.refine, min(2 * e.refine, s.max_refine)) if reduced else 1,
        )
        if more == e:
            break
        steps.append(more)
    if reduced:
        steps += ladder(s, False, method)
    return steps


def cells_recall(
    cells, queries: np.ndarray, truth: np.ndarray, probe: int, both_ways: bool = False
) -> float:
    """The recall@k that searching `cells` with `probe` gives the sample, without searching:
    the cells score every candidate exactly, so a true neighbour is found exactly when its cell
    is a partner of the query's cell (`CellIndex.partners`; ties between equal distances aside)."""
    partners = cells.partners(probe, both_ways)
    q_cells = np.repeat(cells.cell_of[queries], truth.shape[1])
    compared = np.asarray(partners[q_cells, cells.cell_of[truth.ravel()]]).reshape(truth.shape)
    found = (compared != 0) & (truth != queries[:, None])
    k = truth.shape[1]
    hits = int(np.minimum(found.sum(1), k - 1).sum())  # the query itself left out
    return hits / (len(queries) * max(k - 1, 1))


# What a search scores costs, in ns a vector pair on 2 cores (one 768-d product and its heap
# offers), fitted to searches measured at 100k and 1M on both benchmark generators: one way
# 10.2-11.9 ns; both ways 15.6 ns where each row is offered 20k candidates, 27.4 where 2.4k, as
# each of the two offers replaces a heap entry the more often the fewer candidates there are.
ONE_WAY_NS, BOTH_WAYS_NS, HEAP_REPLACE_NS = 11.0, 14.4, 200.0
BOTH_WAYS_SAVING = 0.15  # both ways only where priced this much cheaper: the fit's error


def priced_ns(cells, probe: int, both_ways: bool, k: int) -> float:
    """The priced cost of a full cells search with `probe` (see ONE_WAY_NS)."""
    pairs = cells.pairs(probe, both_ways)
    if not both_ways:
        return pairs * ONE_WAY_NS
    offered = max(2.0 * pairs / max(len(cells.order), 1), k + 1.0)  # candidates a row
    replaced = min(2.0 * k * math.log(offered / k) / offered, 2.0)  # heap entries replaced a pair
    return pairs * (BOTH_WAYS_NS + HEAP_REPLACE_NS * replaced)


CELLS_MARGIN = 0.01  # the chosen probe's sample recall clears the target by this: the rungs
# are close together and the summary's recall is measured on another sample


class TunedSearch:
    """Finds the least effort that meets the recall target on a query sample, then builds the
    full graph with it. `Xn`: L2-normalised vectors; `Z`: the space searched (Xn, or its PCA)."""

    def __init__(self, Xn, Z, k: int, s: KnnSettings, gpu: bool, seed: int):
        self.Xn, self.Z, self.k, self.s, self.gpu, self.seed = Xn, Z, min(k, len(Xn)), s, gpu, seed
        self.method = s.resolve(len(Xn), gpu)
        rng = np.random.default_rng(seed + 1)  # not the sample the summary's recall uses
        self.queries = np.sort(rng.choice(len(Xn), min(s.recall_sample, len(Xn)), replace=False))
        self.truth = exact_search(Xn[self.queries], Xn, self.k, gpu)[1]
        self.indexes: dict[bool | str, object] = {}  # by space searched; cells
        self.tried: list[dict] = []
        self.chosen_recall = 1.0  # the chosen effort's sample recall (untuned: not measured)

    def _search(self, rows: np.ndarray | None, e: Effort) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "cells":
            return self._cells().search(self.Xn, rows, self.k, e.nprobe, e.both_ways)
        space = self.Z if e.reduced else self.Xn
        want = min(len(space), self.k * e.refine)
        if self.method != "exact" and e.reduced not in self.indexes:
            self.indexes[e.reduced] = build_index(space, self.method, self.s, self.gpu, self.seed)
        index = self.indexes.get(e.reduced)
        if index is not None:
            _tune(index, self.method, e, self.gpu)
        idx, dist = search_blocks(space, rows, want, index, self.gpu)
        if e.refine > 1 or e.reduced:
            idx, dist = refine_in_full_space(self.Xn, idx, self.k, rows=rows)
        elif rows is None:
            idx, dist = idx[:, : self.k], dist[:, : self.k]
        return idx, dist

    def _cells(self):
        """The k-means cells, drawn once on the searched space (PCA's where there is one)."""
        from cxratlas.reduce.cells import CellIndex

        if "cells" not in self.indexes:
            widest = max(self.s.cell_probe, self.s.max_ef_search)
            self.indexes["cells"] = CellIndex.build(self.Z, self.s.cell_size, widest, self.seed)
        return self.indexes["cells"]

    def _sample_recall(self, e: Effort) -> float:
        if self.method == "cells":
            return cells_recall(self._cells(), self.queries, self.truth, e.nprobe, e.both_ways)
        return sample_recall(self._search(self.queries, e)[0], self.truth, self.queries)

    def _ladder(self) -> list[Effort]:
        steps = ladder(self.s, self.Z is not self.Xn, self.method)
        if self.method == "cells":  # probing every cell is exact search, and the last rung
            widest = self._cells().max_probe  # (every cell, or max_ef_search of them)
            steps = [e for e in steps if e.nprobe < widest] + [replace(steps[0], nprobe=widest)]
        return steps

    def choose(self) -> Effort:
        reduced = self.Z is not self.Xn
        steps = self._ladder()
        if (self.method == "exact" and not reduced) or self.s.target_recall <= 0:
            return steps[0]  # exact in the original space has recall 1; 0: no target
        margin = CELLS_MARGIN if self.method == "cells" else 0.0
        need = min(self.s.target_recall + margin, 1.0)
        if self.method == "cells":
            chosen = self._cheaper_cells(steps, need)
            if chosen is not None:
                return chosen
        else:
            for e in steps:
                self.chosen_recall = self._try(e)
                if self.chosen_recall >= need:
                    return e
        alert(log, "kNN recall %.3f stays below the target %.2f at the ladder's limit (%s); "
              "the map's neighbours are approximate: raise reduce.knn.max_ef_search or set "
              "reduce.knn.method: exact", self.tried[-1]["sample_recall"], self.s.target_recall,
              self.tried[-1]["effort"])  # fmt: skip
        # the last effort tried, whose recall was reported: for cells, the most cells both ways
        return replace(steps[-1], both_ways=True) if self.method == "cells" else steps[-1]

    def _cheaper_cells(self, steps: list[Effort], need: float) -> Effort | None:
        """The fewest cells that meet `need` one way and both ways, whichever is priced lower
        (`priced_ns`; both ways by BOTH_WAYS_SAVING); None where neither meets it."""
        met = {}
        for both in (False, True):
            below = None
            for e in (replace(step, both_ways=both) for step in steps):
                self.chosen_recall = self._try(e)
                if self.chosen_recall >= need:
                    e = self._least_probe(below, e, need)
                    met[both] = (priced_ns(self._cells(), e.nprobe, both, self.k), e,
                                 self.chosen_recall)  # fmt: skip
                    break
                below = e
        if not met:
            self.chosen_recall = self.tried[-1]["sample_recall"]
            return None
        both = True in met and (
            False not in met or met[True][0] < (1 - BOTH_WAYS_SAVING) * met[False][0]
        )
        _, e, self.chosen_recall = met[both]
        return e

    def _try(self, e: Effort) -> float:
        recall = self._sample_recall(e)
        self.tried.append({"effort": e.describe(self.method), "sample_recall": recall})
        log.info("kNN effort %s: sample recall %.3f", e.describe(self.method), recall)
        return recall

    def _least_probe(self, below: Effort | None, above: Effort, need: float) -> Effort:
        """The fewest cells that meet `need`, bisected between the last rung below it (or
        none, where the configured probe meets it) and the first above: the full search's cost
        is linear in the probe, and a probe's recall costs nothing to score and only rises
        with it (its partner cells are a superset)."""
        lo, hi = (below.nprobe if below else 0), above.nprobe  # 0: below every probe
        recall = {hi: self.chosen_recall}
        while hi - lo > 1:
            mid = (lo + hi) // 2
            recall[mid] = self._try(replace(above, nprobe=mid))
            lo, hi = (lo, mid) if recall[mid] >= need else (mid, hi)
        self.chosen_recall = recall[hi]
        return replace(above, nprobe=hi)

    def graph(self) -> tuple[np.ndarray, np.ndarray, str, dict]:
        """(indices, distances, method label, tuning report) of the full graph."""
        e = self.choose()
        idx, dist = self._search(None, e)
        met = self.chosen_recall >= self.s.target_recall
        report = {"target": self.s.target_recall, "met": met, "tried": self.tried,
                  "chosen": e.describe(self.method)}  # fmt: skip
        label = self.method + (f"+refine{e.refine}" if e.refine > 1 else "")
        if self.method == "cells":
            label += f"+probe{e.nprobe}"
        elif self.Z is not self.Xn and not e.reduced:
            label += "+pca_dropped"
        return idx, dist, label, report


def _tune(index, method: str, e: Effort, gpu: bool) -> None:
    """Set the search-time knob through FAISS's parameter spaces, which also reach GPU and
    replicated indexes (a GpuIndexIVFFlat is not an IndexIVF)."""
    import faiss

    space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    if method == "hnsw":
        space.set_index_parameter(index, "efSearch", e.ef)
    elif method == "ivf":
        space.set_index_parameter(index, "nprobe", e.nprobe)
