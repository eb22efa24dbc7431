"""lmklib.papers.quickstart: the fixture stand-in data does not outlive its datasets or the run."""

import gc
import subprocess
import sys
from pathlib import Path

from lmklib.papers import quickstart


def test_fixture_folder_lives_as_long_as_its_datasets(tmp_path):
    pairs = quickstart.fixture_datasets()
    folder = pairs[0]["train"].fixture_folder.path
    assert folder.is_dir() and folder.name.startswith("lmk-fixtures-")
    test = pairs[1]["test"]
    del pairs
    gc.collect()
    assert test[0]["image"].shape[0] in (1, 3)   # still decodable: one dataset holds the folder
    del test
    gc.collect()
    assert not folder.exists()


def test_fixture_folder_is_removed_when_the_process_exits():
    """As in the notebook's kernel, which keeps the datasets to its end."""
    code = ("from lmklib.papers import quickstart\n"
            "pairs = quickstart.fixture_datasets()\n"
            "print(pairs[0]['train'].fixture_folder.path)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert not Path(out.strip()).exists()


def test_a_given_folder_is_the_callers(tmp_path):
    pairs = quickstart.fixture_datasets(tmp_path / "fx")
    del pairs
    gc.collect()
    assert (tmp_path / "fx" / "cuhk_5pt").is_dir()
