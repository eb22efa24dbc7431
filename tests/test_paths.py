"""lmklib.paths: a data root someone named must exist; only the default may be absent."""

import pytest

from lmklib import paths


def test_a_named_data_root_must_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LMK_DATA_ROOT", raising=False)
    assert paths.data_root(tmp_path, must_exist=True) == tmp_path
    with pytest.raises(FileNotFoundError, match=f"^data root {tmp_path / 'nope'} does not exist"):
        paths.data_root(tmp_path / "nope", must_exist=True)
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=f"^data root {tmp_path / 'f'} is a file"):
        paths.data_root(tmp_path / "f", must_exist=True)
    # without must_exist it only says where the root is (catalog scans, loaders' messages)
    assert paths.data_root(tmp_path / "nope") == tmp_path / "nope"


def test_the_environment_variable_counts_as_named(tmp_path, monkeypatch):
    monkeypatch.setenv("LMK_DATA_ROOT", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"^\$LMK_DATA_ROOT .*nope does not exist"):
        paths.data_root(must_exist=True)
    assert paths.data_root(tmp_path, must_exist=True) == tmp_path   # the argument wins


def test_only_the_default_may_be_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("LMK_DATA_ROOT", raising=False)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    assert paths.data_root(must_exist=True) == tmp_path / "data"
    assert paths.data_root("", must_exist=True) == tmp_path / "data"   # the notebooks' default
