"""`cxr-atlas`: the package's command line (the workflow itself runs through Snakemake)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__


def _demo_data(args: argparse.Namespace) -> int:
    from .demo.phantom import generate_demo

    df = generate_demo(
        args.out,
        n_images=args.n,
        seed=args.seed,
        image_size=args.size,
        outlier_fraction=args.outlier_fraction,
    )
    counts = df["view_position"].value_counts().to_dict()
    print(
        f"wrote {len(df)} phantoms and {args.out}/manifest.csv; views {counts}; "
        f"{int(df['gt_outlier'].sum())} planted outliers (column gt_outlier)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-atlas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cxr-atlas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo-data", help="generate phantom chest X-rays with planted structure")
    demo.add_argument(
        "--out", default="resources/demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument("-n", type=int, default=400, help="number of images (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--size", type=int, default=256, help="image side in pixels")
    demo.add_argument("--outlier-fraction", type=float, default=0.05)
    demo.set_defaults(func=_demo_data)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
