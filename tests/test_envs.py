"""Each rule's script imports only what its conda env provides (`--sdm conda` on a cluster).

Static: from the script, follow every import of this package (module level and inside functions,
since a function's import runs when the job calls it) and collect the third-party packages
reached; each must be in the rule's `envs/*.yaml`. The dev venv holds everything, so without
this a job that imports torch in the torch-free ingest env fails only on a user's cluster.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from test_layout import imported_names

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
# conda package name -> the module it provides, where the two differ
PROVIDES = {"pytorch": "torch", "pillow": "PIL", "scikit-learn": "sklearn", "pyyaml": "yaml",
            "faiss-cpu": "faiss", "faiss-gpu": "faiss", "umap-learn": "umap",
            "open-clip-torch": "open_clip", "pylibjpeg-libjpeg": "libjpeg",
            "cuml": "cuml", "pytorch-gpu": "torch", "matplotlib-base": "matplotlib"}  # fmt: skip
ALWAYS = {"snakemake"}  # the job's own runner, in every env Snakemake builds
# reached, but only run once a guard passed: reduce's `auto` imports the GPU backend only
# after gpu_available() found cuML importable (it is not, in envs/cpu.yaml); torch's kNN only
# on a GPU without FAISS-GPU (knn.exact_search with gpu=True, which the CPU path never passes)
GUARDED = {("envs/cpu.yaml", "cuml"), ("envs/cpu.yaml", "torch")}


def rule_scripts() -> list[tuple[str, str, str]]:
    """(rule, script, env file) for every rule with both, read from rules/*.smk."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./(scripts/[\w.]+)"', block)
            envs = re.findall(r'"\.\./(envs/\w+\.yaml)"', block)
            if "REDUCE_BACKEND.env" in block:  # the backend table picks it: check every one
                from cxratlas.reduce.backend import BACKENDS

                envs = [b.env for b in BACKENDS.values()]
            if name and script:
                for env in envs:  # a rule may pick its env from the config (reduce: cpu/gpu)
                    found.append((name.group(1), script.group(1), env))
    return found


def env_modules(env: str) -> set[str]:
    deps = yaml.safe_load((REPO / env).read_text())["dependencies"]
    names = {re.split(r"[ <>=]", d, maxsplit=1)[0] for d in deps if isinstance(d, str)}
    return {PROVIDES.get(n, n.replace("-", "_")) for n in names} | ALWAYS


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(this package's modules, other top-level packages) that a file imports anywhere."""
    names = imported_names(path)
    ours = {n for n in names if n.split(".")[0] == "cxratlas" and _module_file(n)}
    others = {n.split(".")[0] for n in names} - {"cxratlas", "_bootstrap"}
    return ours, others - set(sys.stdlib_module_names)


def reached(script: Path) -> dict[str, str]:
    """Third-party package -> the first module of ours (or the script) that imports it."""
    out: dict[str, str] = {}
    todo, seen = [(script, "script")], set()
    while todo:
        path, module = todo.pop()
        ours, others = imports_of(path)
        for pkg in others:
            out.setdefault(pkg, module)
        for name in ours - seen:
            seen.add(name)
            todo.append((_module_file(name), name))
    return out


RULES = rule_scripts()


def test_every_rule_script_is_checked():
    names = {r for r, _, _ in RULES}
    assert {"ingest", "embed_shard", "decode_shard", "reduce", "atlas", "probes"} <= names


@pytest.mark.parametrize(("rule", "script", "env"), RULES, ids=[f"{r}-{e}" for r, _, e in RULES])
def test_rule_imports_only_what_its_env_provides(rule, script, env):
    provided = env_modules(env)
    missing = {
        pkg: by
        for pkg, by in reached(REPO / script).items()
        if pkg not in provided and (env, pkg) not in GUARDED
    }
    assert not missing, f"rule {rule} ({script}) runs in {env} but imports {missing}"
