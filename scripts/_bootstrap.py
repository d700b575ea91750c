"""Make this checkout's package importable in any software environment (conda, container).

Snakemake puts scripts/ on sys.path; every rule script imports this module first.
"""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
