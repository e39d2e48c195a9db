"""`contnet report <dir>... [--out DIR] [--target KEY=VALUE] [--metric KEY]`.

Thin: parse arguments, call contnet.report.make_report, map problems to exit
code 2 with one readable line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contnet report",
        description="Aggregate run or multirun directories: mean ± std over seeds, "
                    "time to target, report.md, report.csv, runs.csv and PNG curves.")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="run or multirun directories (searched recursively)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report files (default: the first DIR)")
    parser.add_argument("--target", action="append", default=[], metavar="KEY=VALUE",
                        help="time-to-target threshold, e.g. train/loss=0.05 or val/acc=0.9 "
                             "(repeatable; default: the worst group mean of the first metric's final value)")
    parser.add_argument("--metric", action="append", default=[], metavar="KEY",
                        help="metric to show in the table, e.g. val/acc (repeatable; "
                             "default: val/loss or train/loss plus other val/test metrics)")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                        help="extra config keys (fnmatch) to ignore when grouping, e.g. trainer.device")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    return parser


def _fail(message: str) -> int:
    print(f"contnet report: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:      # unreadable files: one warning line each on stderr, then go on
        logging.basicConfig(level=logging.WARNING, format="contnet report: warning: %(message)s")

    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        return _fail(f"no such directory: {', '.join(missing)} (give a run or multirun directory, "
                     "e.g. outputs/multirun/<date>/<time>)")

    from contnet.report import MetricNotLoggedError, NoRunsError, make_report, parse_target

    try:
        targets = [parse_target(t) for t in args.target]
    except ValueError as exc:
        return _fail(str(exc))
    try:
        make_report(args.dirs, out_dir=args.out, targets=targets, metrics=args.metric,
                    ignore=args.ignore, plots=not args.no_plots)
    except NoRunsError as exc:
        return _fail(f"{exc} (did the sweep write anything yet?)")
    except MetricNotLoggedError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        return _fail(f"cannot write the report: {exc} (choose a writable folder with --out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
