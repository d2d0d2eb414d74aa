"""``kdspectra`` command line: the paper's effective rank for your own embeddings.

``kdspectra rank FILE.npy`` loads an N×D matrix (rows = samples), centres it and prints
the entropy effective rank the paper uses (and, on request, the Roy–Vetterli variant,
always labelled). ``kdspectra stage-times RESULTS_DIR`` prints which stage of a finished
workflow run cost what, from Snakemake's ``benchmark:`` files. Bad input is a user error,
not a bug: it prints one line naming the file and the problem and exits with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdspectra.errors import KdspectraError
from kdspectra.io import load_npy, save_csv, save_figure
from kdspectra.spectrum import VARIANT_LABELS, effective_rank_from_singular_values, singular_values

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdspectra", description="Spectral geometry of embeddings (kdspectra)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rank = sub.add_parser(
        "rank",
        help="effective rank of an N×D .npy embedding matrix",
        description="Centre the matrix (subtract column means), take its singular values "
        "in float64 and print the effective rank.",
    )
    rank.add_argument("file", type=Path, help="a .npy file holding an N×D numeric matrix")
    rank.add_argument(
        "--variant",
        choices=("entropy", "roy_vetterli", "both"),
        default="entropy",
        help="entropy: p ∝ σ² (the paper's, default); roy_vetterli: p ∝ σ (RankMe-style)",
    )
    rank.add_argument("--plot", type=Path, help="also plot the spectrum σ_i/σ_1 to this image")
    stages = sub.add_parser(
        "stage-times",
        help="per-stage time of a finished run, from its benchmark files",
        description="Aggregate Snakemake's benchmark files of a run (RESULTS_DIR/benchmarks/"
        "<stage>/...) per stage: jobs, total/median/max seconds, peak RSS, share of the total.",
    )
    stages.add_argument("run_dir", type=Path, help="a run's results folder, e.g. results/demo")
    stages.add_argument("--csv", type=Path, help="also write the table as CSV to this file")
    return parser


def _rank(args: argparse.Namespace) -> int:
    emb = load_npy(args.file, ndim=2, finite=True)
    s = singular_values(emb)
    print(f"{args.file}: {emb.shape[0]} rows × {emb.shape[1]} columns (centred)")
    variants = ("entropy", "roy_vetterli") if args.variant == "both" else (args.variant,)
    for v in variants:
        er = effective_rank_from_singular_values(s, v)
        print(f"{VARIANT_LABELS[v]}: {er:.4f}")
    if args.plot is not None:
        from kdspectra.figures import DPI, fig1  # matplotlib only when a plot is asked for

        fig = fig1({args.file.stem: s}, title=f"Singular value spectrum of {args.file.name}")
        save_figure(fig, args.plot, dpi=DPI)  # format from the suffix: .png, .pdf, .svg
        print(f"spectrum plot: {args.plot}")
    return 0


def _stage_times(args: argparse.Namespace) -> int:
    from kdspectra.stagetimes import stage_times, to_markdown  # pandas only when asked for

    table = stage_times(args.run_dir)
    print(to_markdown(table, title=f"Per-stage time of {args.run_dir}"), end="")
    if args.csv is not None:
        save_csv(args.csv, table)
        print(f"table: {args.csv}")
    return 0


COMMANDS = {"rank": _rank, "stage-times": _stage_times}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kdspectra`` script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except (KdspectraError, ValueError, OSError) as exc:
        print(f"kdspectra {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
