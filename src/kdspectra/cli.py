"""``kdspectra`` command line: the paper's effective rank for your own embeddings.

``kdspectra geometry EMB`` reads an N×D matrix (rows = samples) from ``.npy``, ``.npz``,
``.pt``/``.pth``, ``.safetensors``, ``.parquet`` or ``.csv`` (:mod:`kdspectra.data.embedding_files`)
and prints every metric of :mod:`kdspectra.metrics.geometry` as a table, or as one JSON object
with ``--json``; ``kdspectra geometry A B …`` compares several matrices, one row per file
(``--json``: a list of objects); ``--labels`` adds the per-class effective rank,
``--reference`` (e.g. the teacher's embeddings of the same images) adds linear CKA and the
mean cosine to it.
``kdspectra rank EMB`` is the short alias: the entropy effective rank the paper uses (and,
on request, the Roy–Vetterli variant, always labelled). ``kdspectra stage-times RESULTS_DIR``
prints which stage of a finished workflow run cost what, from the jobs' benchmark
files. Bad input is a user error, not a bug: it prints one line naming the file and the
problem and exits with status 2, without a traceback. ``kdspectra --version`` prints the
package version and the commit of the code (the provenance footer's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from kdspectra.data.embedding_files import SUFFIXES, read_embeddings, read_labels
from kdspectra.errors import KdspectraError
from kdspectra.io import save_csv, save_figure
from kdspectra.metrics.catalog import BY_NAME
from kdspectra.metrics.spectrum import (
    VARIANT_LABELS,
    effective_rank_from_singular_values,
    singular_values,
)

EXIT_USAGE = 2
FORMATS = ", ".join(SUFFIXES)

# What each metric of ``kdspectra geometry`` measures (kdspectra.metrics.catalog's help).
METRIC_HELP = {name: metric.help for name, metric in BY_NAME.items()}


class _VersionAction(argparse.Action):
    """``--version``: the package version and the code's commit, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from kdspectra import __version__
        from kdspectra.report.provenance import NOT_A_CHECKOUT, git_commit

        commit = git_commit(Path(__file__).resolve().parent)
        code = NOT_A_CHECKOUT if NOT_A_CHECKOUT in commit else f"commit {commit}"
        print(f"kdspectra {__version__} ({code})")
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdspectra", description="Spectral geometry of embeddings (kdspectra)."
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version and the commit, then exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rank = sub.add_parser(
        "rank",
        help="effective rank of an N×D embedding matrix (the short form of geometry)",
        description="Centre the matrix (subtract column means), take its singular values "
        f"in float64 and print the effective rank. Reads {FORMATS}.",
    )
    rank.add_argument("file", type=Path, help=f"an N×D numeric matrix ({FORMATS})")
    rank.add_argument("--key", help="the array / tensor / columns to read when a file has several")
    rank.add_argument(
        "--variant",
        choices=("entropy", "roy_vetterli", "both"),
        default="entropy",
        help="entropy: p ∝ σ² (the paper's, default); roy_vetterli: p ∝ σ (RankMe-style)",
    )
    rank.add_argument("--plot", type=Path, help="also plot the spectrum σ_i/σ_1 to this image")
    _geometry_parser(sub)
    stages = sub.add_parser(
        "stage-times",
        help="per-stage time of a finished run, from its benchmark files",
        description="Aggregate Snakemake's benchmark files of a run (RESULTS_DIR/benchmarks/"
        "<stage>/...) per stage: jobs, total/median/max seconds, peak RSS, share of the total.",
    )
    stages.add_argument("run_dir", type=Path, help="a run's results folder, e.g. results/demo")
    stages.add_argument("--csv", type=Path, help="also write the table as CSV to this file")
    fixture = sub.add_parser(
        "corruptions-fixture",
        help="a synthetic (NOT CIFAR-C) corruption archive of a prepared test split",
        description="Write a tar in the CIFAR-10-C layout (SYNTHETIC-C/<corruption>.npy, "
        "labels.npy) from DATA/test_images.npy and test_labels.npy, for tests and offline "
        "demos (kdspectra.data.corruption_fixture); prints its md5 for "
        "datasets.<name>.corruptions.",
    )
    fixture.add_argument("--data", type=Path, required=True, help="e.g. results/data/digits")
    fixture.add_argument("--out", type=Path, required=True, help="the .tar to write")
    fixture.add_argument("--seed", type=int, default=0, help="seed of the random corruptions")
    return parser


def _geometry_parser(sub: argparse._SubParsersAction) -> None:
    geo = sub.add_parser(
        "geometry",
        help="every geometry metric of one or several N×D embedding matrices",
        description="Effective rank (raw and L2), RankMe, participation ratio, stable rank, "
        "α-ReQ, uniformity; per-class effective rank with --labels; linear CKA and mean "
        f"cosine with --reference. Reads {FORMATS}. Several files: one table, one row "
        "per file (--labels and --reference then apply to every file).",
    )
    geo.add_argument(
        "files", type=Path, nargs="+", metavar="file", help=f"N×D numeric matrices ({FORMATS})"
    )
    geo.add_argument("--key", help="array / tensor name, or comma-separated table columns")
    geo.add_argument("--labels", type=Path, help="N class labels (any format above)")
    geo.add_argument("--reference", type=Path, help="row-paired N×D' matrix, e.g. the teacher's")
    geo.add_argument("--reference-key", help="--key for the reference file")
    geo.add_argument(
        "--alpha-fit", type=int, nargs=2, default=(10, 100), metavar=("LO", "HI"),
        help="α-ReQ fit range [LO, HI) of 1-based indices (default 10 100)",
    )  # fmt: skip
    geo.add_argument("--seed", type=int, default=0, help="seed of uniformity's subsample")
    geo.add_argument(
        "--json", action="store_true", help="print JSON instead: an object, or a list of them"
    )
    geo.add_argument(
        "--plot", type=Path, help="also plot the spectrum (log-log; several files: overlaid)"
    )


def _json_value(value: object) -> object:
    """JSON has no NaN: an undefined metric (e.g. α with too few points) becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _shown(value: object) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _warn_alpha_window(path: Path, metrics: dict, alpha_fit: tuple[int, int]) -> None:
    """Say when the α-ReQ window reaches past the rank: α then describes fewer eigenvalues."""
    lo, hi = alpha_fit
    points = int(metrics["alpha_req_points"])
    if points >= hi - lo:
        return
    rank = f"rank {lo + points - 1}" if points else f"rank below {lo}"
    print(
        f"kdspectra geometry: warning: {path}: the α-ReQ fit window [{lo}, {hi}) extends past "
        f"the matrix's {rank}; α is fitted on {points} eigenvalue(s), not {hi - lo} "
        "(choose a window inside the rank with --alpha-fit LO HI)",
        file=sys.stderr,
    )


WIDTHS_DIFFER = "n/a (widths differ)"  # cos_to_reference of a reference of another width
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _check_geometry_options(args: argparse.Namespace) -> None:
    """Refuse option values the metrics cannot use, naming the option and the value."""
    if args.seed < 0:
        raise KdspectraError(f"argument --seed: expected an integer >= 0, found {args.seed}")
    lo, hi = args.alpha_fit
    if not 1 <= lo < hi:
        raise KdspectraError(
            f"argument --alpha-fit: expected LO HI with 1 <= LO < HI, found {lo} {hi}"
        )
    if args.reference_key is not None and args.reference is None:
        raise KdspectraError(
            f"argument --reference-key: {args.reference_key!r} given without --reference"
        )
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise KdspectraError(
            f"argument --plot: expected a {', '.join(PLOT_SUFFIXES)} file, found {str(args.plot)!r}"
        )


def _file_geometry(path: Path, args: argparse.Namespace) -> tuple[dict, object]:
    """One file's row (file, n, dim, dtype, every metric) and its centred singular values.

    Both matrices are rescaled first (:func:`kdspectra.metrics.geometry.unit_scale`):
    every metric is scale-invariant, and rows near 1e±200 would otherwise overflow or
    read as "no variance". A reference of another width gives CKA (any widths) and
    ``cos_to_reference`` = "n/a (widths differ)".
    """
    from kdspectra.metrics.geometry import geometry_metrics, linear_cka, unit_scale

    emb = read_embeddings(path, args.key)
    x = unit_scale(emb.array)
    labels = None if args.labels is None else read_labels(args.labels, len(x))
    ref = None
    if args.reference is not None:
        ref = unit_scale(read_embeddings(args.reference, args.reference_key).array)
        if len(ref) != len(x):
            raise KdspectraError(
                f"{args.reference}: expected {len(x)} rows (one per row of {path}), "
                f"found {len(ref)}"
            )
    same_width = ref is not None and ref.shape[1] == x.shape[1]
    s = singular_values(x)
    metrics = geometry_metrics(
        x, labels, ref if same_width else None, alpha_fit=tuple(args.alpha_fit),
        seed=args.seed, centred_sv=s,
    )  # fmt: skip
    if ref is not None and not same_width:
        metrics |= {"linear_cka": linear_cka(x, ref), "cos_to_reference": WIDTHS_DIFFER}
    _warn_alpha_window(path, metrics, tuple(args.alpha_fit))
    n, dim = x.shape
    return {"file": str(path), "n": n, "dim": dim, "dtype": emb.dtype} | metrics, s


def _print_one(row: dict) -> None:
    print(f"{row['file']}: {row['n']} rows × {row['dim']} columns, {row['dtype']}")
    for name, value in row.items():
        if name not in ("file", "n", "dim", "dtype"):
            print(f"  {name:<26} {_shown(value):>10}   {METRIC_HELP.get(name, '')}")


def _print_many(rows: list[dict]) -> None:
    """One row per file, one column per metric (a metric some files lack shows —)."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    cells = [[_shown(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(columns, widths, strict=True))))  # fmt: skip
    for r in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths, strict=True))))  # fmt: skip


def _plot_geometry(args: argparse.Namespace, spectra: dict[str, object]) -> None:
    if len(spectra) == 1:
        from kdspectra.report.geometry_plot import save_spectrum_plot  # matplotlib only when asked

        (name, s), *_ = spectra.items()
        save_spectrum_plot(s, args.plot, title=f"Spectrum of {Path(name).name}",
                           alpha_fit=tuple(args.alpha_fit))  # fmt: skip
    else:
        from kdspectra.report.figures import DPI, fig1

        fig = fig1({Path(k).name: v for k, v in spectra.items()}, title="Singular value spectra")
        save_figure(fig, args.plot, dpi=DPI)
    print(f"spectrum plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)


def _geometry(args: argparse.Namespace) -> int:
    _check_geometry_options(args)
    rows, spectra = [], {}
    for path in args.files:
        try:
            row, spectra[str(path)] = _file_geometry(path, args)
        except MemoryError as exc:
            raise KdspectraError(f"{path}: its metrics do not fit in memory") from exc
        rows.append(row)
    if args.json:
        objects = [{k: _json_value(v) for k, v in row.items()} for row in rows]
        if len(rows) == 1:  # one file: one object, as before several files were accepted
            objects[0].pop("file")
        print(json.dumps(objects[0] if len(rows) == 1 else objects, indent=2))
    elif len(rows) == 1:
        _print_one(rows[0])
    else:
        _print_many(rows)
    if args.plot is not None:
        _plot_geometry(args, spectra)
    return 0


def _rank(args: argparse.Namespace) -> int:
    emb = read_embeddings(args.file, args.key).array
    s = singular_values(emb)
    print(f"{args.file}: {emb.shape[0]} rows × {emb.shape[1]} columns (centred)")
    variants = ("entropy", "roy_vetterli") if args.variant == "both" else (args.variant,)
    for v in variants:
        er = effective_rank_from_singular_values(s, v)
        print(f"{VARIANT_LABELS[v]}: {er:.4f}")
    if args.plot is not None:
        from kdspectra.report.figures import DPI, fig1  # matplotlib only when a plot is asked for

        fig = fig1({args.file.stem: s}, title=f"Singular value spectrum of {args.file.name}")
        save_figure(fig, args.plot, dpi=DPI)  # format from the suffix: .png, .pdf, .svg
        print(f"spectrum plot: {args.plot}")
    return 0


def _stage_times(args: argparse.Namespace) -> int:
    from kdspectra.runtime.stagetimes import stage_times, to_markdown  # pandas only when asked for

    table = stage_times(args.run_dir)
    print(to_markdown(table, title=f"Per-stage time of {args.run_dir}"), end="")
    if args.csv is not None:
        save_csv(args.csv, table)
        print(f"table: {args.csv}")
    return 0


def _corruptions_fixture(args: argparse.Namespace) -> int:
    from kdspectra.data.corruption_fixture import write_fixture
    from kdspectra.data.download import md5sum

    path = write_fixture(args.data, args.out, seed=args.seed)
    print(f"{path}: synthetic corruption archive (not CIFAR-C), md5 {md5sum(path)}")
    return 0


COMMANDS = {
    "geometry": _geometry,
    "rank": _rank,
    "stage-times": _stage_times,
    "corruptions-fixture": _corruptions_fixture,
}


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
