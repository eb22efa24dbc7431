"""The ``lmk`` command: ``lmk reproduce``, ``lmk list``, ``lmk data``, ``lmk predict``.

A command that cannot do its job says why in one line on stderr and exits non-zero: 2 for a
request it cannot carry out (unknown notebook or parameter, missing data root, unwritable
reports folder), 1 when notebooks failed, 130 on Ctrl-C (after the runner removed its temporary
folder), 141 when the reader of its output went away (``lmk list | head -1``). A traceback is
for bugs, and ``LMK_TRACEBACK=1`` shows one for anything.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
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

    root = data_root(args.data_root, must_exist=True)   # a named root must be there
    if not root.is_dir():
        print(f"data root: {root} is missing (the default; create it, or pass --data-root or "
              "set $LMK_DATA_ROOT): every dataset below is missing")
    if args.check:
        return _data_check(root, args.out)
    table = catalog.scan(root)
    if root.is_dir():
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


def _data_check(root, out: str | None) -> int:
    """``lmk data --check``: the per-folder table of :mod:`lmklib.data.check` and one overlay PNG
    per folder. Always exit code 0: it is a report; flagged folders are marked FLAG."""
    from pathlib import Path

    import pandas as pd

    from .data import check
    from .paths import reports_root
    from .reports import atomic_write_bytes

    out_dir = Path(out).expanduser().resolve() if out else reports_root() / "data_check"
    print(f"data root: {root}")
    splits = check.check_data_root(root)
    if not splits:
        print(f"nothing to check: none of {sorted(check.CHECK_SPLITS)} is under {root}")
        return 0
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(check.to_frame(splits).to_string(index=False))
    print(f"(nme_pct_box: mean-shape error, % of the box width; agreement: image-label agreement "
          f"against the sibling folders' faces, 1 = perfect; realign_pct_iod: the move that fits "
          f"the image best, % inter-ocular; '-': no sibling folder; 'few': under "
          f"{check.MIN_FACES} faces, never flagged. Rule: the lmklib.data.check docstring)")
    for s in splits:
        if s.error:
            print(f"not checked: {s.dataset}/{s.split}: {s.error}")
    flagged = [(s, c) for s in splits for c in s.folders if c.flagged]
    for s, c in flagged:
        print(f"FLAG {s.dataset}/{s.split}/{c.folder}: " + "; ".join(c.flags))
    if not flagged:
        print("no folder flagged")
    for s in splits:
        for c in s.folders:
            title = (f"{s.dataset} {s.split} {c.folder}: agreement {c.agreement:.3f}, "
                     f"NME {c.nme:.2f} %" + ("  FLAG" if c.flagged else ""))
            atomic_write_bytes(out_dir / check.overlay_name(s.dataset, s.split, c.folder),
                               check.overlay_png(s.data, c.sample, title))
    print(f"overlays (8 random faces per folder): {out_dir}/")
    return 0


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"expected x0,y0,x1,y1 (four numbers), got {text!r}")
    return box


def _cmd_predict(args: argparse.Namespace) -> int:
    """``lmk predict``: per image, ``<stem>.png`` (the points drawn) and ``<stem>.csv`` (one row
    per face: box, then x/y of each point, image pixels) in ``--out``."""
    from pathlib import Path

    import pandas as pd
    from tqdm.auto import tqdm

    from .landmarker import Landmarker, to_array
    from .reports import atomic_write_bytes, atomic_write_text

    lm = Landmarker.load(args.model, name=args.name, reports_root=args.reports)
    out = Path(args.out)
    stems = [Path(p).stem for p in args.images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise ValueError(f"several images are called {', '.join(clash)}: their outputs would "
                         "overwrite each other; predict them in separate runs")
    print(f"{lm}", file=sys.stderr)
    bar = tqdm(args.images, unit="image", disable=args.no_progress or len(args.images) < 2)
    for image in bar:
        pixels, _ = to_array(image, lm.policy.mode)   # decoded once, as predict decodes a path
        boxes = [args.box] if args.box else lm.find_faces(pixels, name=image)
        points = lm.predict(pixels, boxes)
        rows = pd.DataFrame({"face": range(len(points))})
        for j, c in enumerate(("x0", "y0", "x1", "y1")):
            rows[c] = [b[j] for b in boxes]
        for k, name in enumerate(lm.scheme.names):
            rows[f"{name}_x"], rows[f"{name}_y"] = points[:, k, 0], points[:, k, 1]
        stem = Path(image).stem
        atomic_write_text(out / f"{stem}.csv", rows.to_csv(index=False))
        atomic_write_bytes(out / f"{stem}.png", _annotated_png(pixels, boxes, points))
        if len(args.images) == 1:
            print(rows.to_string(index=False))
    print(f"{len(args.images)} image(s): points and drawings in {out.resolve()}/", file=sys.stderr)
    return 0


def _annotated_png(image, boxes, points) -> bytes:
    """The image with each face's box and points drawn, as PNG bytes (no matplotlib)."""
    import io

    from PIL import Image, ImageDraw

    from .landmarker import to_array

    arr, _ = to_array(image, "RGB")
    im = Image.fromarray(arr)
    draw = ImageDraw.Draw(im)
    r = max(1.5, min(im.size) / 150)
    for box, pts in zip(boxes, points):
        draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=max(1, int(r / 1.5)))
        for x, y in pts:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


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
    p.add_argument("--check", action="store_true",
                   help="check each dataset's source folders against each other (labels vs "
                        "pictures, mean-shape error) and write overlay PNGs")
    p.add_argument("--out", default=None,
                   help="folder for the --check overlays (default: reports/data_check/)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("predict", help="run a reproduced model on images (points as CSV + PNG)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="01_ccnn",
                   help="a report name (default 01_ccnn), report folder or model card (.json)")
    p.add_argument("--name", default=None, help="which model of a report that holds several")
    p.add_argument("--box", type=_box, default=None, metavar="x0,y0,x1,y1",
                   help="the face box in the model's box policy (default: detect the faces)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    p.add_argument("--reports", default=None, help="reports folder (default: reports/)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_predict)

    args = parser.parse_args(argv)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run a command; turn the ways it can be stopped into one line and an exit code."""
    try:
        code = args.func(args)
        sys.stdout.flush()   # a closed pipe shows here, not at exit as an "ignored" traceback
        return code
    except KeyboardInterrupt:
        # the run stops here: what is still pending (papermill's last, orphaned cell task) would
        # only log its own traceback on the way out
        logging.disable(logging.CRITICAL)
        print("lmk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at /dev/null so that flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if os.environ.get("LMK_TRACEBACK"):
            raise
        text = " ".join(str(exc).split())   # one line, whatever the message holds
        expected = isinstance(exc, (ValueError, OSError))
        print(f"lmk {args.command}: error: " + (text if expected else
                                                 f"{type(exc).__name__}: {text}"),
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
