"""Compare the headline numbers of two report folders (``lmk reproduce`` outputs).

    python scripts/compare_results.py OLD_REPORTS NEW_REPORTS [--rename NB.OLD=NEW ...]

For every notebook present in both, every ``results.json`` entry must have the same value and
the same ``dataset`` / ``norm`` / ``unit`` (timings, marked by unit ``s`` or a key ending in
``_seconds``/``_ms``, are skipped: they are measurements of the machine, not of the method).
Prints one line per difference and exits 1 if there is any; used to show that a refactor left
the numbers alone (same seed and profile). ``--rename 03_acn.old_key=new_key`` compares a key
that was deliberately renamed under its new name (its value must still be the same).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TIMING_UNITS = {"s", "ms"}


def _is_timing(key: str, entry: dict) -> bool:
    return entry.get("unit") in TIMING_UNITS or key.endswith(("_seconds", "_ms", "_speedup")) \
        or "speed" in key or "seconds" in key


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(old: Path, new: Path, renames: dict[str, str] | None = None) -> list[str]:
    """The differences between two reports folders, one sentence each."""
    problems = []
    names = sorted(p.parent.name for p in old.glob("*/results.json"))
    if not names:
        return [f"{old}: no */results.json"]
    for name in names:
        path = new / name / "results.json"
        if not path.is_file():
            problems.append(f"{name}: missing in {new}")
            continue
        a = json.loads((old / name / "results.json").read_text())["results"]
        b = json.loads(path.read_text())["results"]
        for key, to in (renames or {}).items():
            nb, _, k = key.partition(".")
            if nb == name and k in a:
                a[to] = a.pop(k)
        for key in sorted(set(a) | set(b)):
            if key not in b or key not in a:
                problems.append(f"{name}.{key}: only in {'old' if key in a else 'new'}")
                continue
            if _is_timing(key, a[key]):
                continue
            for field in ("value", "dataset", "norm", "unit"):
                if not _same(a[key].get(field), b[key].get(field)):
                    problems.append(f"{name}.{key}.{field}: {a[key].get(field)!r} -> "
                                    f"{b[key].get(field)!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rename", nargs="*", default=[], metavar="NB.OLD=NEW",
                    help="a result key renamed on purpose: compare old NB.OLD with new NEW")
    args = ap.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    problems = compare(args.old, args.new, renames)
    for p in problems:
        print(p)
    n = len(list(args.old.glob("*/results.json")))
    print(f"{n} notebooks compared: {'identical' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
