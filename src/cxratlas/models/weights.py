"""Where a model entry's weights come from: a local folder, or a Hugging Face repo at a revision.

Compute nodes usually have no internet: download once on a login node (`hf download REPO
--revision SHA`, with `HF_TOKEN` for gated repos), then run with `HF_HUB_OFFLINE=1`; the same
calls below then read the local cache.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from .base import ModelConfigError

log = logging.getLogger(__name__)
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def check_revision(name: str, entry: dict[str, Any]) -> str | None:
    """The entry's revision; remote code runs only from a pinned commit."""
    revision = entry.get("revision")
    weights = str(entry.get("weights", ""))
    if entry.get("trust_remote_code") and not (revision and COMMIT.match(str(revision))):
        raise ModelConfigError(
            f"model {name!r}: trust_remote_code needs a pinned 'revision' (a 40-hex commit), "
            "so the code that runs is the code you reviewed"
        )
    if not revision and not os.path.isdir(weights.removeprefix("local-dir:")):
        log.warning(
            "model %r: no pinned revision; %s will load whatever its repo holds today "
            "(pin one with `cxr-atlas pin-models`)",
            name,
            weights,
        )
    return revision


def local_weights(name: str, entry: dict[str, Any], patterns: list[str] | None = None) -> Path:
    """A local folder holding the entry's weights (downloaded or read from the HF cache)."""
    weights = entry.get("weights")
    if not weights:
        raise ModelConfigError(
            f"model {name!r}: 'weights' (hub repo id or local folder) is required"
        )
    path = Path(str(weights).removeprefix("local-dir:")).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or str(weights).startswith((".", "local-dir:")):
        raise ModelConfigError(f"model {name!r}: weights folder {str(path)!r} does not exist")
    from huggingface_hub import snapshot_download

    repo = str(weights).removeprefix("hf-hub:")
    try:
        return Path(
            snapshot_download(repo, revision=check_revision(name, entry), allow_patterns=patterns)
        )
    except Exception as exc:  # offline without a cache, gated without a token, unknown repo
        raise ModelConfigError(
            f"model {name!r}: cannot get {repo!r} at revision {entry.get('revision')!r} "
            f"({type(exc).__name__}: {exc}). On a node without internet, download it first "
            "(see README, 'Model weights') or point 'weights' at a local folder"
        ) from exc


def load_state_dict(path: Path) -> dict[str, Any]:
    """A checkpoint's tensors: safetensors whatever the suffix (MedImageInsight ships `.pt`
    safetensors), else a weights-only torch pickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        import torch

        state = torch.load(str(path), map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
