"""Every figure is saved here: atomically (a temporary sibling renamed into place, so a failed job
never leaves a complete-looking file), in the format its suffix names, and, when asked, checked
for readability first (`figure_check`). Apart from `io` so that a job that draws nothing never
reaches matplotlib (tests/test_envs.py follows every import a rule's script can reach)."""

from __future__ import annotations

import os
from pathlib import Path

from cxratlas.io import atomic_path


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure atomically, in the format its suffix names. With
    `CXR_ATLAS_FIGURE_CHECKS` set to a folder, the figure's layout check (`figure_check`: text
    outside or over text, legends over data, contrast, cut CIs) is written there first."""
    from cxratlas.figure_check import CHECKS_ENV, record

    if os.environ.get(CHECKS_ENV):
        tight = savefig_kwargs.get("bbox_inches") == "tight"
        record(fig, path, tight=tight, folder=os.environ[CHECKS_ENV])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix[1:], **savefig_kwargs)
