"""Which part of SD-HRNet's triple distillation costs accuracy on clean faces in short runs?

    python scripts/sd_hrnet_kd_study.py --data-root ../shared/data [--profile quick]
        [--val 200] [--epochs 4 8] [--cache DIR]

Measured on a held-out split, not the test set: ``--val`` of the 300-W training faces are kept
out, the profile's supernet (Eq. 2 search) and teacher train on the rest (cached in ``--cache``,
so a second run only fine-tunes), and the slimmed network is fine-tuned from the supernet's
weights with each variant of ``04_sd_hrnet``'s recipe for each of ``--epochs``:

* S-HRNet: the heatmap loss alone (the undistilled baseline);
* at the paper's 300-W weights (``PAPER_KD_300W``: lambda1 = 4, lambda2 = 1, a mask on every
  student input): teacher + peers, unmasked (the two students stay identical: the teacher term
  alone); the teacher term with masked inputs (one student): the masks' own cost; the full
  scheme (teacher, peers, masks), also at lambda1 = 1 and with gentler masks (on half the
  faces; or sides up to 30 % instead of 50 %); the teacher term, one student, unmasked; and the
  same with the masks' random numbers drawn but no mask applied (the control for the masked
  run's different augmentation stream);
* the full scheme with masks on a quarter of the faces, sides up to 30 %; the profile's own
  distillation settings; and lambda1 = 1 with those masks and the teacher term weighed 2 or 4.

``--variants`` picks some of them by number (0-12, in this order); ``--slim-l1`` searches with
another Eq. 2 lambda (each cached network is keyed on the settings it was trained with); ``--tune-seeds`` fine-tunes
each with several seeds (data order, augmentation, masks; the supernet stays the one of
``--seed``), so a difference can be set against the spread between seeds.

Prints one row per variant and epoch count: the students' NME (%, inter-ocular, the profile's
decoding) on the held-out faces and the training seconds.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lmklib import paths
from lmklib.data.cache import digest
from lmklib.data.catalog import get_entry
from lmklib.papers import sd_hrnet_lin2023 as T
from lmklib.papers.sd_hrnet_lin2023 import distillation, slimming
from lmklib.train import load_checkpoint, save_checkpoint

_PAPER = T.PAPER_KD_300W                  # lambda1 = 4, lambda2 = 1, a mask on every student input
_OCC = _PAPER["occlusion"]
_QUARTER = {**_OCC, "p": 0.25, "max_frac": 0.3}   # masks on a quarter of the inputs, sides up to 30 %
VARIANTS = {   # name -> (distill() switches or None for the plain fine-tuning, distill settings)
    "S-HRNet (heatmap loss only)": (None, {}),
    "teacher + peers, unmasked": (dict(masked=False), _PAPER),
    "teacher + masks (one student)": (dict(peers=False), _PAPER),
    "teacher + peers + masks (the paper's 300-W lambdas)": (dict(), _PAPER),
    "teacher + peers + masks (lambda1 = 1)": (dict(), {**_PAPER, "lambda1": 1.0}),
    "teacher + peers + masks on half the faces": (dict(), {**_PAPER, "occlusion": {**_OCC, "p": 0.5}}),
    "teacher + peers + masks, sides up to 30 %": (dict(), {**_PAPER, "occlusion": {**_OCC, "max_frac": 0.3}}),
    "teacher, unmasked (one student)": (dict(peers=False, masked=False), _PAPER),
    # the masked run's random draws without the masks (p = 0): tells the masks' own effect
    # from the change in the augmentation stream that drawing them causes
    "teacher + masks drawn, none applied (one student)": (dict(peers=False),
                                                          {**_PAPER, "occlusion": {**_OCC, "p": 0.0}}),
    "teacher + peers + masks on a quarter of the faces, sides up to 30 %": (
        dict(), {**_PAPER, "occlusion": _QUARTER}),
    "the profile's distillation": (dict(), {}),
    # the teacher term weighed more (the paper: lambda2 = 1 on 300-W, 0.1 on COFW and WFLW)
    "teacher x2 + peers (lambda1 = 1) + masks on a quarter, sides up to 30 %": (
        dict(), {**_PAPER, "lambda1": 1.0, "lambda2": 2.0, "occlusion": _QUARTER}),
    "teacher x4 + peers (lambda1 = 1) + masks on a quarter, sides up to 30 %": (
        dict(), {**_PAPER, "lambda1": 1.0, "lambda2": 4.0, "occlusion": _QUARTER}),
}


def settings_key(P: dict, *parts: str) -> str:
    """12 hex digits of the profile settings a cached network was trained with (the input, the
    heatmaps, the loss, the batch, and ``parts``), so that a changed profile trains anew
    instead of reusing a network trained otherwise."""
    used = {k: P[k] for k in ("size", "n_train", "sigma", "loss", "batch_size", *parts)}
    return digest(used)[:12]


def trained(path: Path, build, train_fn):
    """A network trained by ``train_fn`` (or its state loaded from ``path``)."""
    model = build()
    if path.exists():
        model.load_state_dict(load_checkpoint(path))
        return model.eval()
    model = train_fn(model)
    save_checkpoint(path, model.state_dict())
    return model.eval()


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--val", type=int, default=200, help="training faces held out")
    ap.add_argument("--epochs", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--variants", type=int, nargs="+", default=list(range(len(VARIANTS))))
    ap.add_argument("--seed", type=int, default=0, help="networks and data order")
    ap.add_argument("--tune-seeds", type=int, nargs="+", default=None,
                    help="fine-tuning seeds (default: --seed)")
    ap.add_argument("--split-seed", type=int, default=123, help="which faces are held out")
    ap.add_argument("--cache", default=".cache/sd_hrnet_kd_study")
    ap.add_argument("--slim-l1", type=float, default=None,
                    help="Eq. 2's lambda for the search (default: the profile's)")
    args = ap.parse_args(argv)

    P = T.resolve_profile(args.profile)
    if args.slim_l1 is not None:
        P["slim"]["l1"] = args.slim_l1
    root = paths.data_root(args.data_root, must_exist=True)
    found = get_entry("300w").find(root)
    if found is None:
        raise SystemExit(f"sd_hrnet_kd_study: no 300-W under {root}")
    faces = T.w300_faces(found, "train", P, P["n_train"])
    order = np.random.default_rng(args.split_seed).permutation(len(faces))
    val, train = faces.subset(order[:args.val]), faces.subset(order[args.val:])
    cache = Path(args.cache) / f"{args.profile}_val{args.val}_split{args.split_seed}_seed{args.seed}"
    cache.mkdir(parents=True, exist_ok=True)

    def nme(model) -> float:
        return 100 * float(T.inter_ocular_nme(T.predict(model, val, P), val).mean())

    supernet = trained(cache / f"supernet_{settings_key(P, 'supernet', 'slim')}.pt",
                       lambda: T.make_supernet(P, seed=args.seed),
                       lambda m: slimming.search(m, train, P, seed=args.seed)[0])
    teacher = trained(cache / f"teacher_{settings_key(P, 'teacher')}.pt",
                      lambda: T.make_teacher(P, seed=args.seed),
                      lambda m: T.train_plain(m, train, P, P["teacher"], seed=args.seed)[0])
    threshold = slimming.profile_threshold(supernet, P)
    kept = slimming.summary(supernet, slimming.slim(supernet, threshold), P["size"])
    print(f"search lambda {P['slim']['l1']:g}: threshold {threshold:.4g} keeps "
          f"{kept['slimmed_ops']} of {kept['supernet_ops']} operations, "
          f"{kept['slimmed_blocks']} of {kept['supernet_blocks']} blocks", flush=True)
    rows = [{"variant": "HRSuperNet", "epochs": None, "NME (%)": f"{nme(supernet):.2f}"},
            {"variant": "teacher", "epochs": None, "NME (%)": f"{nme(teacher):.2f}"}]
    for epochs in args.epochs:
        for i, (name, (switches, settings)) in enumerate(VARIANTS.items()):
            if i not in args.variants:
                continue
            cfg = copy.deepcopy(P)
            cfg["distill"].update(settings, epochs=epochs)
            for tune in args.tune_seeds or [args.seed]:
                t0 = time.perf_counter()
                student = slimming.slim(supernet, threshold)
                if switches is None:
                    models = [T.fine_tune(student, train, cfg, seed=tune)[0]]
                else:
                    pair, _ = distillation.distill(student, teacher, train, cfg, seed=tune,
                                                   **switches)
                    models = [m for m in (pair.s1, pair.s2) if m is not None]
                rows.append({"variant": name, "epochs": epochs, "seed": tune,
                             "NME (%)": " / ".join(f"{nme(m):.2f}" for m in models),
                             "train s": round(time.perf_counter() - t0)})
                print(rows[-1], flush=True)
    print(f"\n300-W training faces, {len(val)} held out (split seed {args.split_seed}; {args.profile} "
          f"profile, seed {args.seed}):")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
