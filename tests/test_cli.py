"""`lmk data` reports what the data root holds and how to get what it lacks."""

import pytest

from lmklib import cli
from lmklib.data import fixtures


def test_lmk_data_on_fixture_root(tmp_path, capsys):
    fixtures.write_cuhk_fixture(tmp_path / "cuhk_5pt", n_train=4, n_test=2)
    fixtures.write_aflw2000_fixture(tmp_path / "aflw2000_3d")
    assert cli.main(["data", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert ("cuhk_5pt", "train", "4") in rows and ("cuhk_5pt", "test", "1") in rows  # clean
    assert ("cuhk_5pt", "test_official", "2") in rows
    assert any(r[:2] == ("aflw2000_3d", "test") for r in rows)
    # missing datasets come with where to get them and the layout expected
    assert "Kaggle Facial Keypoints" in out and "training.csv test.csv IdLookupTable.csv" in out


def test_lmk_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def _cuhk_rows(out: str) -> dict[tuple[str, str], str]:
    """``(split, folder) -> table line`` of the cuhk_5pt rows of ``lmk data --check``."""
    return {tuple(line.split()[1:3]): line for line in out.splitlines()
            if line.split()[:1] == ["cuhk_5pt"]}


def test_lmk_data_check_prints_the_table_and_writes_overlays(tmp_path, capsys):
    from lmklib.paths import reports_root

    fixtures.write_cuhk_fixture(tmp_path / "cuhk_5pt", n_train=4, n_test=2)
    fixtures.write_300w_fixture(tmp_path / "300w", n_per_folder=2)
    assert cli.main(["data", "--check", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nme_pct_box" in out and "agreement" in out and "no folder flagged" in out
    rows = _cuhk_rows(out)
    assert set(rows) == {("train_official", "lfw_5590"), ("train_official", "net_7876"),
                         ("test_official", "lfw_5590"), ("test_official", "net_7876"),
                         ("train", "lfw_5590_80px"), ("train", "net_7876"), ("test", "net_7876")}
    written = {p.name for p in (reports_root() / "data_check").glob("*.png")}   # the default
    assert {"cuhk_5pt_train_official_lfw_5590.png", "cuhk_5pt_test_net_7876.png",
            "300w_train_afw.png", "300w_common_helen-testset.png"} <= written
    assert len(written) == 7 + 3 + 2


def test_lmk_data_check_flags_a_folder_whose_pictures_do_not_match_their_labels(tmp_path,
                                                                                capsys):
    """Our lfw_5590 in small: its pictures re-aligned (rotated) under unchanged labels."""
    import numpy as np
    import torch
    from PIL import Image

    from lmklib.data.geometry import rotation_affine, warp_affine

    root = tmp_path / "cuhk_5pt"
    pts = fixtures.write_cuhk_fixture(root, n_train=48, n_test=2)["train"]
    rng = np.random.default_rng(0)
    for i in range(0, 48, 2):                                   # the lfw_5590 training faces
        path = root / "lfw_5590" / f"train_{i:04d}.jpg"
        image = torch.from_numpy(np.array(Image.open(path)))[None]
        angle = rng.choice([-1, 1]) * rng.uniform(6, 12)
        turned = warp_affine(image, rotation_affine(angle, tuple(pts[i].mean(0))), 250,
                             padding="border")
        Image.fromarray(turned[0].numpy()).save(path)
    out_dir = tmp_path / "overlays"
    assert cli.main(["data", "--check", "--data-root", str(tmp_path), "--out",
                     str(out_dir)]) == 0
    out = capsys.readouterr().out
    rows = _cuhk_rows(out)
    assert rows["train_official", "lfw_5590"].rstrip().endswith("FLAG")
    assert "FLAG cuhk_5pt/train_official/lfw_5590: labels fit the images worse" in out
    assert not rows["train_official", "net_7876"].rstrip().endswith("FLAG")
    # the clean protocol's 80 px copies were made from the unturned pictures: nothing flagged
    assert not any(rows[k].rstrip().endswith("FLAG")
                   for k in (("train", "lfw_5590_80px"), ("train", "net_7876")))
    assert (out_dir / "cuhk_5pt_train_official_lfw_5590.png").is_file()


# --------------------------------------------------------------------------- one-line errors
def _one_notebook(folder):
    import nbformat

    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("profile = 'quick'  # smoke|quick|paper\nseed = 0  # seed\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / "a_one.ipynb")
    return folder


def test_lmk_data_says_the_root_is_missing(tmp_path, capsys, monkeypatch):
    from lmklib import paths

    assert cli.main(["data", "--data-root", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (f"lmk data: error: data root {tmp_path / 'nope'} does not "
                                       "exist (the datasets' parent folder; see data/README.md)\n")
    monkeypatch.delenv("LMK_DATA_ROOT", raising=False)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)   # a checkout without data/: allowed
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"data root: {tmp_path / 'data'} is missing (the default;")
    assert "Kaggle Facial Keypoints" in out   # and still says where each dataset goes


def test_unknown_notebook_is_one_line(tmp_path, capsys):
    nbs = _one_notebook(tmp_path / "nbs")
    assert cli.main(["reproduce", "zzz", "--notebooks", str(nbs), "--reports",
                     str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == ("lmk reproduce: error: notebook 'zzz' matches nothing; "
                                       "available: ['a_one']\n")


def test_unwritable_reports_folder_is_one_line(tmp_path, capsys):
    nbs = _one_notebook(tmp_path / "nbs")
    (tmp_path / "file").write_text("")
    assert cli.main(["reproduce", "--notebooks", str(nbs), "--reports",
                     str(tmp_path / "file" / "reports")]) == 2
    assert capsys.readouterr().err == (f"lmk reproduce: error: reports folder "
                                       f"{tmp_path / 'file' / 'reports'} is not writable: "
                                       "Not a directory\n")


def test_an_unexpected_error_is_one_line_naming_its_type(tmp_path, capsys, monkeypatch):
    from lmklib import runner

    def broken(*args, **kwargs):
        raise RuntimeError("boom\n  second line")

    monkeypatch.setattr(runner, "reproduce", broken)
    assert cli.main(["reproduce"]) == 2
    assert capsys.readouterr().err == "lmk reproduce: error: RuntimeError: boom second line\n"


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    """``lmk list | head -1``: the reader went away; no traceback, exit 141 (128 + SIGPIPE)."""
    import subprocess
    import sys

    nbs = _one_notebook(tmp_path / "nbs")
    proc = subprocess.Popen([sys.executable, "-m", "lmklib.cli", "list", "--notebooks", str(nbs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()   # before lmk writes anything: its first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b""
