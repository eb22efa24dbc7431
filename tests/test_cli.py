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
