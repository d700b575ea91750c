"""Make this checkout's package the one every rule imports, in any software environment.

Snakemake puts scripts/ on sys.path; every rule script (and rules/common.smk) imports this module
first. Putting src/ first on sys.path is not enough: an editable install of another checkout
(`pip install -e`) registers an import hook that answers before sys.path is searched, so a user
with two clones would run the other clone's code. A hook of our own, placed first, answers for
`cxratlas` and its submodules from this checkout.
"""

import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
PACKAGE = "cxratlas"


class ThisCheckout(importlib.abc.MetaPathFinder):
    """Finds `cxratlas` (and, through its __path__, every submodule) under this checkout."""

    def find_spec(self, name, path=None, target=None):
        if name == PACKAGE:
            return importlib.machinery.PathFinder.find_spec(name, [SRC])
        if name.startswith(PACKAGE + "."):
            return importlib.machinery.PathFinder.find_spec(name, path)
        return None


if SRC in sys.path:
    sys.path.remove(SRC)
sys.path.insert(0, SRC)
if not any(isinstance(f, ThisCheckout) for f in sys.meta_path):
    sys.meta_path.insert(0, ThisCheckout())
# a copy imported before this point (a .pth file, a site hook) is dropped, so ours loads next
for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
    where = getattr(sys.modules[name], "__file__", None) or ""
    if not os.path.realpath(where).startswith(SRC + os.sep):
        del sys.modules[name]
