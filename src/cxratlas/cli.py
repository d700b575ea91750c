"""`cxr-atlas`: the package's command line (the workflow itself runs through Snakemake)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cxratlas import __version__


def _demo_data(args: argparse.Namespace) -> int:
    from cxratlas.demo.phantom import generate_demo

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

    models = _config_models(args.configs)
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
        source = entry.get("config_from")
        if isinstance(source, dict) and source.get("weights") and not source.get("revision"):
            try:  # the repo a tower's config comes from (CheXagent-2's XraySigLIP)
                other = snapshot_download(source["weights"], allow_patterns=["*config.json"])
            except Exception as exc:
                print(f"# {name}: config_from {source['weights']}: cannot resolve ({exc})",
                      file=sys.stderr)  # fmt: skip
                failed += 1
                continue
            pins[name]["config_from"] = {
                "weights": source["weights"],
                "revision": os.path.basename(other.rstrip("/")),
            }
    print(yaml.safe_dump({"models": pins}, sort_keys=False), end="")
    return 1 if failed else 0


def _config_models(paths: list[str]) -> dict:
    """The `models` sections of config files, later files winning, as Snakemake merges them."""
    import yaml

    models: dict = {}
    for path in paths:
        with open(path) as fh:
            models.update((yaml.safe_load(fh) or {}).get("models", {}))
    return models


def _verify_models(args: argparse.Namespace) -> int:
    """Golden vectors: write them, or compare a run with them (cosine >= MIN_COSINE)."""
    from pathlib import Path

    from cxratlas.embed.verify import MIN_COSINE, Films, verify_models

    out = Path(args.out)
    films = Films.from_folder(Path(args.images)) if args.images else Films.phantoms(out / "films")
    against = Path(args.against) if args.against else None
    rows = verify_models(_config_models(args.configs), films, out, args.device, against)
    for row in rows:
        print("  ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))  # fmt: skip
    print(f"golden vectors of {len(rows)} model(s) and {len(films.paths)} film(s) in {out}",
          file=sys.stderr)  # fmt: skip
    failed = [r["model"] for r in rows if r.get("ok") is False]
    if failed:
        print(f"below cosine {MIN_COSINE} against {against}: {failed}", file=sys.stderr)
        return 1
    return 0


def _check_privacy(args: argparse.Namespace) -> int:
    """Scan outputs for the values of identifier columns of the source tables."""
    from cxratlas.ingest.manifest import read_table
    from cxratlas.ingest.privacy import find_identifiers

    values: set[str] = set()
    for table in args.table:
        df = read_table(table)
        absent = [c for c in args.columns if c not in df.columns]
        if absent:
            print(f"{table}: column(s) {absent} not found; columns are {list(df.columns)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        for col in args.columns:
            values.update(df[col].dropna().astype(str).str.strip())
    hits = find_identifiers(args.paths, values, min_length=args.min_length)
    for hit in hits:
        print(f"{hit['file']}: {hit['where']}: {hit['value']!r}")
    n_values = len([v for v in values if len(v) >= args.min_length])
    print(f"checked {n_values} identifier values under {', '.join(args.paths)}: "
          f"{len(hits)} found", file=sys.stderr)  # fmt: skip
    return 1 if hits else 0


def _view(args: argparse.Namespace) -> int:
    """Open the atlas in Embedding Atlas (or export a static bundle)."""
    from cxratlas.atlas.viewer import ViewerError, viewer_command

    try:
        cmd = viewer_command(args.atlas, host=args.host, port=args.port, export=args.export,
                             static=args.static, model=args.model)  # fmt: skip
    except ViewerError as exc:
        print(f"cxr-atlas view: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cxr-atlas view: serving on {args.host}: anyone who reaches this port can query "
              "every row (the server has no login)", file=sys.stderr)  # fmt: skip
    print(" ".join(cmd), file=sys.stderr)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    # Become the server (exec), not its parent: a signal to this process then stops the
    # server itself, and no orphan keeps serving every row after we are gone.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(cmd[0], cmd)
    except OSError as exc:  # a moved venv's broken shebang, say
        print(f"cxr-atlas view: cannot start {cmd[0]}: {exc}", file=sys.stderr)
        return 127


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
    verify = sub.add_parser(
        "verify-models",
        help="embed a few fixed films with each configured model in float32 and in the run's "
        "dtype: write golden vectors, or compare this machine's with earlier ones",
    )
    verify.add_argument("configs", nargs="+", help="config files whose models to verify")
    verify.add_argument("--out", default="results/verify", help="where the vectors go")
    verify.add_argument(
        "--images", help="a folder of films (default: four seeded phantoms written to OUT/films)"
    )
    verify.add_argument(
        "--against", help="golden vectors from an earlier run: exit 1 if any cosine is lower"
    )
    verify.add_argument("--device", default="auto", help="auto | cpu | cuda")
    verify.set_defaults(func=_verify_models)
    check = sub.add_parser(
        "check-privacy",
        help="look for identifier values (names, MRNs, ...) of the source tables in the outputs",
    )
    check.add_argument("paths", nargs="+", help="folders or files to scan, e.g. results logs")
    check.add_argument(
        "--table", action="append", required=True, help="a source table with them; repeatable"
    )
    check.add_argument("--columns", nargs="+", required=True, help="its identifier columns")
    check.add_argument(
        "--min-length", type=int, default=4, help="skip shorter values (they match by chance)"
    )
    check.set_defaults(func=_check_privacy)
    view = sub.add_parser(
        "view", help="open the atlas in Embedding Atlas, one linked view per model (offline)"
    )
    view.add_argument(
        "atlas", nargs="?", default="results/atlas/atlas.parquet", help="with state.json beside it"
    )
    view.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    view.add_argument("--port", type=int, default=5055, help="port (default: %(default)s)")
    view.add_argument(
        "--export", metavar="DIR", help="write a static bundle (folder or .zip), do not serve"
    )
    view.add_argument(
        "--model",
        help="show this model's map alone, its cluster names drawn on the map (Embedding "
        "Atlas draws one set of map labels on every view, so the linked views carry none)",
    )
    view.add_argument("--static", help=argparse.SUPPRESS)  # another frontend build (tests)
    view.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    view.set_defaults(func=_view)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
