"""lmklib.reports: a result's dataset must be one the run found, or say it is generated."""

import json
import os

import pytest

from lmklib import reports
from lmklib.data import fixtures
from lmklib.runner import write_index


@pytest.fixture
def empty_root(tmp_path):
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_refuses_a_real_dataset_the_run_did_not_find(empty_root):
    reports.init("t_guard", data_root=str(empty_root))
    with pytest.raises(ValueError, match=r"'LFW\+Webface' names cuhk_5pt, which the data root"):
        reports.record("nme_lfw_webface_cnn", 4.8, dataset="LFW+Webface")
    with pytest.raises(ValueError, match="names 300w"):
        reports.record("nme_common", 5.0, dataset="300-W common (helen/testset, lfpw/testset)")
    with pytest.raises(ValueError, match="names aflw2000_3d"):
        reports.record("x", 5.0, dataset="AFLW2000-3D")
    assert "nme_lfw_webface_cnn" not in reports._state["results"]


def test_accepts_synthetic_fixture_and_neutral_texts(empty_root):
    reports.init("t_guard", data_root=str(empty_root))
    e = reports.record("nme_synthetic_cnn", 4.8, dataset="synthetic cuhk5 faces (CUHK data absent)")
    assert e["data"] == "synthetic"
    e = reports.record("b", 0.1, dataset="CUHK 5-point fixture test (6 faces, fixture)")
    assert e["data"] == "fixture"
    assert reports.record("speed", 1.0, dataset="batch 16, 1 thread")["data"] == ""


def test_accepts_a_dataset_that_was_found(tmp_path):
    fixtures.write_cuhk_fixture(tmp_path / "root" / "cuhk_5pt", n_train=2, n_test=2)
    reports.init("t_guard", data_root=str(tmp_path / "root"))
    assert reports.record("nme", 4.8, dataset="LFW+Webface")["data"] == "real"
    with pytest.raises(ValueError, match="names 300w"):   # found CUHK does not vouch for 300-W
        reports.record("nme_300w", 4.8, dataset="300-W common")


def test_masked_and_lp_are_their_own_datasets():
    found = {k: False for k in reports.DATASET_NAMES} | {"300w": True}
    reports.check_dataset("300-W common", found)
    with pytest.raises(ValueError, match="names masked_300w$|names masked_300w,"):
        reports.check_dataset("Masked 300-W", found)
    with pytest.raises(ValueError, match="names 300w_lp,"):
        reports.check_dataset("300W-LP", found)


def test_index_never_puts_a_synthetic_number_beside_the_paper(tmp_path):
    folder = tmp_path / "03_acn"
    folder.mkdir()
    paper = {"paper": "acn_chen2020", "key": "k", "value": 2.06, "unit": "%", "source": "Table 2",
             "note": ""}
    results = {"synth": {"value": 4.8, "unit": "%", "dataset": "synthetic faces", "norm": "",
                         "profile": "smoke", "headline": True, "note": "", "paper": paper},
               "real": {"value": 3.0, "unit": "%", "dataset": "LFW+Webface", "norm": "",
                        "profile": "smoke", "headline": True, "note": "", "paper": paper}}
    (folder / "results.json").write_text(json.dumps({"results": results}))
    text = write_index(tmp_path).read_text()
    synth = next(line for line in text.splitlines() if line.startswith("| synth"))
    real = next(line for line in text.splitlines() if line.startswith("| real"))
    assert "(2.06) synthetic: not comparable" in synth and "| synthetic |" in synth
    assert "| 2.06 |" in real and "| real |" in real


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_report_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    """Not mkstemp's private 0600: reports are read by others (a web server, a colleague)."""
    old = os.umask(umask)
    try:
        for path in (reports.atomic_write_text(tmp_path / "a.md", "x"),
                     reports.atomic_write_json(tmp_path / "b.json", {"a": 1}),
                     reports.atomic_write_bytes(tmp_path / "c.png", b"\x89PNG")):
            assert path.stat().st_mode & 0o777 == mode, path
        assert reports._umask() == umask
    finally:
        os.umask(old)


def test_measured_columns_mask_to_the_same_text_whatever_the_times():
    """A displayed table of timings must sanitise to one text for any measured values: pandas
    pads the header to the widest value, so the values' width may not depend on them."""
    import re
    from pathlib import Path

    import numpy as np
    import pandas as pd

    cfg = (Path(__file__).parent / "nbval_sanitize.cfg").read_text()
    rule = re.search(r"\[measured times.*?\nregex: ([^\n]*)\nreplace: ([^\n]*)\n", cfg, re.S)
    pattern, replace = rule.group(1), rule.group(2).replace("\\1", r"\1")

    def shown(seconds):
        table = pd.DataFrame({"method": ["a", "b"], "nme": [1.5, 2.25]})
        table["train s"] = reports.with_unit(seconds, "s")
        return re.sub(pattern, replace, table.to_string())

    assert reports.with_unit([0.0987, 12.0, np.nan], "s")[:2] == ["  0.0987 s", "      12 s"]
    texts = {shown(s) for s in ([0.0987, 0.11], [0.105, 1.23e3], [10.0, 9.5], [123456.0, 0.001])}
    assert len(texts) == 1, texts
