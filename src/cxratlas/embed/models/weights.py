"""Where a model entry's weights come from: a local folder, or a Hugging Face repo at a revision.

Compute nodes usually have no internet: download once on a login node (`hf download REPO
--revision SHA`, with `HF_TOKEN` for gated repos), then run with `HF_HUB_OFFLINE=1`; the same
calls below then read the local cache.
"""

from __future__ import annotations

import json
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


def _how_to_get(
    name: str, repo: str, revision: str | None, why: str, patterns: list[str] | None = None
) -> ModelConfigError:
    rev = f" --revision {revision}" if revision else ""
    if patterns:  # only the files the loader reads (a VLM's tower shards, not its LM's)
        rev += " --include " + " ".join(f'"{p}"' for p in patterns)
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
        raise _how_to_get(name, repo, revision, "HF_HUB_OFFLINE is set", patterns)
    proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"))
    if not proxied and not hub_reachable():  # behind a proxy only the client can tell
        endpoint = os.environ.get("HF_ENDPOINT") or "huggingface.co"
        raise _how_to_get(
            name, repo, revision, f"{endpoint} cannot be reached from this node", patterns
        )
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


CONFIG_FILES = ["*.json"]  # config, processor, safetensors index: kilobytes
INDEX = "model.safetensors.index.json"


def tower_shards(weight_map: dict[str, str], patterns: list[str]) -> list[str]:
    """The shard files of a sharded checkpoint's index that hold a tensor whose name matches
    one of `patterns` (regexes): the only ones a vision tower needs."""
    import re

    compiled = [re.compile(p) for p in patterns]
    return sorted({f for k, f in weight_map.items() if any(c.match(k) for c in compiled)})


def tower_files(name: str, entry: dict[str, Any], patterns: list[str]) -> tuple[Path, list[str]]:
    """A local folder with the entry's config files and the safetensors shards that hold the
    tower's tensors (names matching `patterns`), and those shards' names. A sharded checkpoint
    is read through its index, so the language model's shards are never downloaded (MedGemma:
    about 8.6 GB of which the tower is a fraction); a single-file checkpoint is fetched whole."""
    path = local_weights(name, entry, CONFIG_FILES)
    index = path / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = tower_shards(weight_map, patterns)
        if not shards:
            raise ModelConfigError(
                f"model {name!r}: no tensor named in {index} matches the tower's key patterns "
                f"{patterns}; check `tower` and `key_mapping`"
            )
    else:
        shards = ["model.safetensors"]
    path = local_weights(name, entry, CONFIG_FILES + shards)
    absent = [s for s in shards if not (path / s).is_file()]
    if absent:
        raise ModelConfigError(f"model {name!r}: {path} lacks the tower's shard(s) {absent}")
    return path, shards


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_record(entry: dict[str, Any], path: Path) -> Path:
    """Where the hash of a checkpoint file seen at its first load is kept: per repo (or
    folder), revision and file, under $CXRATLAS_HOME (default ~/.cache/cxratlas)."""
    home = Path(os.environ.get("CXRATLAS_HOME") or "~/.cache/cxratlas").expanduser()
    source = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(entry.get("weights", "")).strip("/"))
    revision = str(entry.get("revision") or "main")
    return home / "sha256" / source / revision / f"{path.name}.sha256"


def check_sha256(name: str, entry: dict[str, Any], path: Path) -> str:
    """The checkpoint file's sha256, checked against the entry's pinned `sha256`, else
    against the hash recorded at its first load (recorded now if there is none; a matching pin
    replaces the record). A file that changed under a study fails loudly, naming both hashes."""
    actual = _sha256(path)
    pinned = entry.get("sha256")
    if pinned and pinned.lower() != actual:
        raise ModelConfigError(
            f"model {name!r}: {path} has sha256 {actual}, but the entry pins {pinned}: the "
            "file is not the one the study was pinned to"
        )
    record = sha256_record(entry, path)
    if record.is_file() and not pinned:  # a pin that matches overrides what was seen before
        seen = record.read_text().strip()
        if seen != actual:
            raise ModelConfigError(
                f"model {name!r}: {path} has sha256 {actual}, but {seen} was recorded at its "
                f"first load ({record}): the file changed; pin `sha256` to the one you mean"
            )
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(actual + "\n")
        os.replace(tmp, record)  # atomic: concurrent first loads write the same value
        log.info("model %r: recorded sha256 %s of %s in %s", name, actual, path, record)
    return actual


def pin_warnings(models: dict[str, dict[str, Any]]) -> list[str]:
    """One line per hub repo an entry reads without a pinned commit (its weights, or the
    repo it takes its config from), for the plan to print before any job."""
    lines = []
    for name, entry in models.items():
        for what, source in (("weights", entry), ("config_from", entry.get("config_from"))):
            if not isinstance(source, dict) or not source.get("weights"):
                continue
            weights = str(source["weights"])
            local = weights.startswith(("/", ".", "~", "local-dir:")) or os.path.isdir(weights)
            if local or COMMIT.match(str(source.get("revision") or "")):
                continue
            lines.append(
                f"model {name!r}: {what} {weights} is not pinned to a commit: a run loads what "
                "the repo holds that day (`cxr-atlas pin-models` prints the commits to pin)"
            )
    return lines
