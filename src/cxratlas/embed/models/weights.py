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

from cxratlas.embed.models.base import ModelConfigError

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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers a TCP connect within `timeout` seconds. Without this
    check, an offline node spends minutes in the client's retries before it says anything."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _how_to_get(name: str, repo: str, revision: str | None, why: str) -> ModelConfigError:
    rev = f" --revision {revision}" if revision else ""
    return ModelConfigError(
        f"model {name!r}: the weights of Hub repo {repo!r} at revision {revision or 'main'!r} "
        f"are not in the local Hugging Face cache, and {why}. Get them on a machine with "
        f"internet: `hf download {repo}{rev}` (export HF_TOKEN first for a gated repo; the "
        "cache is ~/.cache/huggingface, or HF_HOME), copy that cache to the nodes, or download "
        f"to a folder (`hf download {repo}{rev} --local-dir /models/{name}`) and set the "
        f"entry's `weights:` to it"
    )


def local_weights(name: str, entry: dict[str, Any], patterns: list[str] | None = None) -> Path:
    """A local folder holding the entry's weights: the folder it names, the local Hugging Face
    cache, or a download; within seconds, naming entry, repo, revision and the fix, when none
    of them can be had (HF_HUB_OFFLINE, or the Hub unreachable)."""
    weights = entry.get("weights")
    if not weights:
        raise ModelConfigError(
            f"model {name!r}: 'weights' (hub repo id or local folder) is required"
        )
    revision = check_revision(name, entry)  # remote code only from a pinned commit, local too
    path = Path(str(weights).removeprefix("local-dir:")).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or str(weights).startswith((".", "local-dir:")):
        raise ModelConfigError(f"model {name!r}: weights folder {str(path)!r} does not exist")
    from huggingface_hub import snapshot_download

    repo = str(weights).removeprefix("hf-hub:")
    pinned = bool(revision and COMMIT.match(str(revision)))
    if pinned or _offline():  # a commit's cache is final: no network when it is here
        try:
            return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns,
                                          local_files_only=True))  # fmt: skip
        except Exception:  # not cached (or only partly): the Hub, if it can be reached
            pass
    if _offline():
        raise _how_to_get(name, repo, revision, "HF_HUB_OFFLINE is set")
    proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"))
    if not proxied and not hub_reachable():  # behind a proxy only the client can tell
        endpoint = os.environ.get("HF_ENDPOINT") or "huggingface.co"
        raise _how_to_get(name, repo, revision, f"{endpoint} cannot be reached from this node")
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # gated without a token, an unknown repo or revision
        raise ModelConfigError(
            f"model {name!r}: cannot download {repo!r} at revision {revision or 'main'!r} "
            f"({type(exc).__name__}: {exc}). A gated repo needs its licence accepted on the "
            "Hub and HF_TOKEN exported; otherwise check the repo id and the revision"
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
