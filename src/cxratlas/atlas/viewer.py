"""`cxr-atlas view`: the Embedding Atlas command for an atlas file and its linked-view state.

Every column the viewer needs is precomputed (x/y, neighbours, PageRank, thumbnails), so it
neither computes nor downloads anything: the lean install of embedding-atlas serves it offline.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from cxratlas.io import ATLAS_IMAGE, AtlasModelColumns, atlas_models, atlas_view_files


class ViewerError(RuntimeError):
    """The atlas, its state or the viewer is missing; the message says what to do."""


def _models(state: dict) -> list[str]:
    return [c["data"]["x"].removeprefix("x_") for c in state["charts"].values()
            if c.get("type") == "embedding"]  # fmt: skip


def _executable() -> list[str]:
    found = shutil.which("embedding-atlas") or shutil.which(
        "embedding-atlas", path=os.path.dirname(sys.executable)
    )
    if not found:
        raise ViewerError(
            "embedding-atlas is not installed; the lean install serves our precomputed atlas: "
            "pip install --no-deps embedding-atlas==0.26.0 && pip install click inquirer duckdb "
            "fastapi uvicorn uvloop websockets narwhals cryptography platformdirs"
        )
    return [found]


def viewer_command(
    atlas: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 5055,
    export: str | None = None,
    static: str | None = None,
    model: str | None = None,
) -> list[str]:
    """The embedding-atlas command line: the first model's view from the CLI flags, every model's
    linked view from state.json; the image column's PageRank is passed, never computed. With
    `model`, that model's map alone, its cluster names drawn on it (`--labels`)."""
    atlas = Path(atlas)
    state_path = atlas.with_name("state.json")
    labels = None
    if model is not None:
        state_path, labels = atlas_view_files(atlas.parent, model)
        if atlas.is_file() and model not in atlas_models(atlas):
            raise ViewerError(f"{atlas} holds no model {model!r}; it has {atlas_models(atlas)}")
    for path, what in ((atlas, "atlas"), (state_path, "state"), (labels, "map labels")):
        if path is not None and not path.is_file():
            raise ViewerError(f"{path}: {what} not found; run the workflow first (snakemake)")
    state = json.loads(state_path.read_text())
    models = _models(state)
    if not models or models[0] not in atlas_models(atlas):
        raise ViewerError(
            f"{state_path} does not match {atlas} (no x_<model> column for its views)"
        )
    c = AtlasModelColumns(models[0])
    cmd = [
        *_executable(), str(atlas),
        "--x", c.x, "--y", c.y, "--neighbors", c.neighbors,
        "--image", ATLAS_IMAGE, "--pagerank", c.pagerank, "--text", "image_id",
        "--state", str(state_path),
        "--host", host, "--port", str(port), "--no-auto-port",
    ]  # fmt: skip
    if labels is not None:
        cmd += ["--labels", str(labels)]
    if static:
        cmd += ["--static", static]
    if export:
        cmd += ["--export-application", export]
    return cmd
