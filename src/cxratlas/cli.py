"""`cxr-atlas`: the package's command line (the workflow itself runs through Snakemake)."""

from __future__ import annotations

import argparse
import logging
import os
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


def _pin_models(args: argparse.Namespace) -> int:
    """Print a config overlay that pins every hub model without a revision to its current commit."""
    import yaml
    from huggingface_hub import snapshot_download

    models: dict = {}
    for path in args.configs:
        with open(path) as fh:
            models.update((yaml.safe_load(fh) or {}).get("models", {}))
    pins, failed = {}, 0
    for name, entry in models.items():
        weights = str(entry.get("weights", "")).removeprefix("hf-hub:")
        if not weights or entry.get("revision") or weights.startswith(("/", ".", "local-dir:")):
            continue
        try:  # the snapshot folder is named by the commit it holds
            folder = snapshot_download(weights, allow_patterns=["config.json", "*config.json"])
        except Exception as exc:  # gated without a token, offline without a cache, ...
            print(
                f"# {name}: {weights}: cannot resolve ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
            failed += 1
            continue
        pins[name] = {"revision": os.path.basename(folder.rstrip("/"))}
    print(yaml.safe_dump({"models": pins}, sort_keys=False), end="")
    return 1 if failed else 0


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
    pin = sub.add_parser(
        "pin-models",
        help="print a --configfile overlay pinning unpinned hub models to their current commit",
    )
    pin.add_argument("configs", nargs="+", help="config files whose models to pin")
    pin.set_defaults(func=_pin_models)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
