"""Rule classifier: one classifier's predictions (or a model's probe scores) as its long table
(classifier, finding, image_id, label, score), the classifier named in the footer."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.probes import LabelPolicy
from cxratlas.io import read_manifest, write_classifier
from cxratlas.logs import setup_logging
from cxratlas.slices.classifiers import ClassifierSpec, normalise_predictions, probe_classifier

setup_logging(snakemake.log[0])
p = snakemake.params
spec = ClassifierSpec(**p.spec)
if spec.probe is not None:
    scores = pd.read_parquet(snakemake.input.scores)
    table = probe_classifier(scores, spec.probe)
else:
    manifest = read_manifest(snakemake.input.manifest)[0].set_index("image_id")
    sample = pd.Index(pd.read_parquet(p.sample, columns=["image_id"])["image_id"])
    table = normalise_predictions(spec, manifest, sample, LabelPolicy(**p.labels))
write_classifier(table, snakemake.output.table, spec.name)
