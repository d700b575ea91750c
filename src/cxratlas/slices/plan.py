"""The classifiers' plan-time hook (rules/common.smk): each user classifier checked against the
plan's findings and sample before any job. Apart from `classifiers`, which the classifier jobs
import, since this reads the datasets as the plan does (`ingest`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxratlas.slices.classifiers import check_classifiers, classifier_specs


def plan_classifiers(config: dict[str, Any], plan, datasets: list[dict], check: bool = True):
    """The hook rules/common.smk calls once the plan is made: the run's classifiers, each user
    classifier checked against the plan's findings and sample (`check`: the main process; a
    cluster job only needs the names)."""
    if not check:
        return classifier_specs(config)
    from cxratlas.ingest.plan import proposed_ledger

    def sample_ids() -> pd.Index:
        return pd.Index(proposed_ledger(plan)["image_id"])

    def manifest_ids() -> pd.Index:  # read again only when ids fall outside the sample
        from cxratlas.ingest.datasets import quick_manifest

        return pd.Index(quick_manifest(datasets, config["privacy"])[0]["image_id"])

    return check_classifiers(config, plan.findings, sample_ids, manifest_ids, plan.sample_sha)
