"""``kdspectra`` command line: the paper's effective rank for your own embeddings.

``kdspectra rank FILE.npy`` loads an N×D matrix (rows = samples), centres it and prints
the entropy effective rank the paper uses (and, on request, the Roy–Vetterli variant,
always labelled). Bad input is a user error, not a bug: it prints one line naming the
file and the problem and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdspectra.errors import KdspectraError
from kdspectra.io import load_npy, save_figure
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kdspectra`` script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return _rank(args)
    except (KdspectraError, ValueError, OSError) as exc:
        print(f"kdspectra {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
