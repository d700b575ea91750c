"""Missing weights, for every seed entry and loader kind: one clear error, naming the entry, the
Hub repo and revision and how to get them, and never the client's retries: the probe counts the
connections opened and the downloads the Hugging Face client is asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SEED = yaml.safe_load((REPO / "config/models/seed.yaml").read_text())["models"]

PROBE = """
import json, socket, sys
import huggingface_hub
from huggingface_hub import file_download
from cxratlas.embed.models import load_embedder, ModelConfigError

calls = {"connect": 0, "download": 0}
_connect = socket.create_connection
def connect(*a, **k):
    calls["connect"] += 1
    return _connect(*a, **k)
socket.create_connection = connect
def counted(fn):
    def call(*a, **k):
        calls["download"] += not k.get("local_files_only")
        return fn(*a, **k)
    return call
huggingface_hub.snapshot_download = counted(huggingface_hub.snapshot_download)
huggingface_hub.hf_hub_download = file_download.hf_hub_download = counted(
    huggingface_hub.hf_hub_download)
name, entry = sys.argv[1], json.loads(sys.argv[2])
try:
    load_embedder(name, entry, device="cpu")
    print(json.dumps({"loaded": True, **calls}))
except ModelConfigError as exc:
    print(json.dumps({"error": str(exc), **calls}))
"""


def _try_load(name: str, tmp_path: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.update(HF_HOME=str(tmp_path / "empty-cache"), **env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, name, json.dumps(SEED[name])],
        capture_output=True, text=True, timeout=120, env=clean, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_clear(result: dict, name: str, why: str) -> None:
    entry = SEED[name]
    assert "error" in result, result
    message = result["error"]
    assert f"model {name!r}" in message
    assert entry["weights"] in message and str(entry["revision"] or "main") in message
    assert "hf download" in message and why in message
    # the client is never asked to download: its retries take a minute and more
    assert result["download"] == 0, result


@pytest.mark.parametrize("name", sorted(SEED))
def test_offline_with_an_empty_cache_says_how_to_get_the_weights(name, tmp_path):
    result = _try_load(name, tmp_path, HF_HUB_OFFLINE="1")
    _assert_clear(result, name, "HF_HUB_OFFLINE")
    assert result["connect"] == 0, result  # offline: not one connection


@pytest.mark.parametrize("name", ["rad_dino", "chexagent", "medimageinsight"])
def test_an_unreachable_hub_fails_at_once(name, tmp_path):
    """No HF_HUB_OFFLINE, but the Hub's host refuses connections (a node without internet):
    one connection is tried, and the error comes without the client's retries."""
    result = _try_load(name, tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    _assert_clear(result, name, "cannot be reached")
    assert result["connect"] == 1, result


def test_a_cached_snapshot_loads_without_the_network(tmp_path, tiny_dinov2):
    """Weights already in the HF cache at the pinned revision load with the network off."""
    revision = "0" * 40
    snap = tmp_path / "hub/models--acme--tiny-dino/snapshots" / revision
    snap.mkdir(parents=True)
    for f in tiny_dinov2.iterdir():
        (snap / f.name).symlink_to(f)
    (tmp_path / "hub/models--acme--tiny-dino/refs").mkdir()
    entry = {"kind": "hf_automodel", "weights": "acme/tiny-dino", "revision": revision,
             "pooling": "cls"}  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", PROBE, "tiny", json.dumps(entry)],
                          capture_output=True, text=True, timeout=120, env=clean)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["loaded"] is True


def test_only_the_shards_holding_the_tower_are_needed(tmp_path):
    """MedGemma's checkpoint is sharded with an index: the tower is read from the shards that
    hold its tensors, and a Hub cache holding only those (and the small JSON files) loads it
    offline; the language model's shards are never asked for."""
    from cxratlas.embed.models.hf import TOWERS
    from cxratlas.embed.models.weights import tower_shards
    from cxratlas.testing import tiny_models

    folder = tiny_models.sharded(tiny_models.medgemma(tmp_path / "mg"), tmp_path / "sharded")
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    needed = tower_shards(weight_map, list(TOWERS["siglip"][1]))
    lm_only = sorted(set(weight_map.values()) - set(needed))
    assert needed and lm_only  # the fixture really splits them
    assert all("vision_tower" not in k for k, f in weight_map.items() if f in lm_only)
    revision = "1" * 40
    snap = tmp_path / "hub/models--acme--medgemma-tiny/snapshots" / revision
    snap.mkdir(parents=True)
    for f in [*folder.glob("*.json"), *(folder / s for s in needed)]:
        (snap / f.name).symlink_to(f)
    (tmp_path / "hub/models--acme--medgemma-tiny/refs").mkdir()
    entry = {**SEED["medgemma"], "weights": "acme/medgemma-tiny", "revision": revision}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", PROBE, "medgemma", json.dumps(entry)],
                          capture_output=True, text=True, timeout=300, env=clean)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "loaded": True,
        "connect": 0,
        "download": 0,
    }
