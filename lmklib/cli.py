"""The ``lmk`` command: ``lmk reproduce``, ``lmk list``, ``lmk data``."""

from __future__ import annotations

import argparse
import ast
import sys


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .runner import reproduce

    results = reproduce(args.names, profile=args.profile, seed=args.seed,
                        data_root=args.data_root, reports_root=args.reports,
                        params=dict(args.param), progress=not args.no_progress,
                        notebooks_dir=args.notebooks)
    for r in results:
        status = "ok    " if r.ok else "FAILED"
        print(f"{status} {r.name:28s} {r.seconds:8.1f} s  {r.report_dir}")
        if not r.ok:
            print(f"       {r.error}", file=sys.stderr)
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} notebooks failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runner import NOTEBOOKS_DIR, list_notebooks, notebook_parameters

    for path in list_notebooks(Path(args.notebooks) if args.notebooks else NOTEBOOKS_DIR):
        print(path.stem)
        for name, p in notebook_parameters(path).items():
            print(f"    {name:18s} = {p['default']:<14s} {p['help']}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import catalog
    from .paths import data_root

    root = data_root(args.data_root)
    table = catalog.scan(root)
    print(f"data root: {root}")
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 200,
                                             "display.max_colwidth", 60):
        print(table.to_string(index=False))
    incomplete = table.groupby("dataset", sort=False)["status"].agg(
        lambda st: "missing" if (st == "missing").all() else
        ("partial" if (st != "present").any() else "present"))
    incomplete = incomplete[incomplete != "present"]
    if len(incomplete):
        print("\nNot (fully) present, and how to get them (see also data/README.md):")
    for name, status in incomplete.items():
        entry = catalog.get_entry(name)
        where = entry.find(root) or root / entry.folders[0]
        print(f"\n* {entry.title} [{name}, {status}]; expected in {where}/")
        print(f"    obtain: {entry.how_to_get}")
        print(f"    layout: {entry.layout}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="run notebooks with papermill into reports/")
    p.add_argument("names", nargs="*", help="notebooks (stem or unique prefix); default: all")
    p.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper"])
    p.add_argument("--data-root", default=None, help="default: $LMK_DATA_ROOT or data/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reports", default=None, help="reports folder (default: reports/)")
    p.add_argument("-p", "--param", type=_param, action="append", default=[],
                   metavar="NAME=VALUE", help="set another notebook parameter")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--notebooks", default=None, help="notebook folder (default: notebooks/)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("list", help="list notebooks and their parameters")
    p.add_argument("--notebooks", default=None, help="notebook folder (default: notebooks/)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("data", help="which datasets the data root holds")
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=_cmd_data)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
