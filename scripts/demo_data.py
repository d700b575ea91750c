"""Rule demo_data: generate the phantom CXR set and its manifest."""

from pathlib import Path

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.demo.phantom import generate_demo
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params.demo
generate_demo(
    Path(snakemake.output.manifest).parent,
    n_images=p["n_images"],
    seed=p["seed"],
    image_size=p["image_size"],
    outlier_fraction=p["outlier_fraction"],
)
