"""The data catalog: scan() counts on fixture roots and on the real data, present(), load()."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lmklib.data import catalog
from lmklib.data.fixtures import write_aflw2000_fixture, write_all_fixtures
from lmklib.data.transforms import CropToBox


def _rows(df, dataset):
    sub = df[df.dataset == dataset]
    return {r.split: (r.found, r.expected, r.status) for r in sub.itertuples()}


def test_scan_of_an_empty_root_lists_every_dataset_as_missing(tmp_path):
    df = catalog.scan(tmp_path)
    assert list(df.columns) == ["dataset", "split", "found", "expected", "status", "path"]
    assert set(df.dataset) == set(catalog.CATALOG)
    assert (df.status == "missing").all() and (df.found == 0).all()
    assert catalog.present(tmp_path) == dict.fromkeys(catalog.CATALOG)


def test_scan_counts_an_aflw2000_fixture_with_yaw_bins(tmp_path):
    write_aflw2000_fixture(tmp_path / "aflw2000_3d" / "AFLW2000", n=8)
    rows = _rows(catalog.scan(tmp_path), "aflw2000_3d")
    assert rows["test"] == (8, 2000, "partial")
    assert rows["yaw 0-30"] == (3, 1312, "partial")
    assert rows["yaw 30-60"][0] == 2 and rows["yaw 60-90"][0] == 2 and rows["yaw >90"][0] == 1
    found = catalog.present(tmp_path)["aflw2000_3d"]
    assert found == tmp_path / "aflw2000_3d" / "AFLW2000"  # the zip's inner folder is used
    ds = catalog.get_entry("aflw2000_3d").load(tmp_path)
    assert len(ds) == 8 and ds.yaw_bin_counts() == {"0-30": 3, "30-60": 2, "60-90": 2, ">90": 1}


def test_scan_counts_every_written_fixture(tmp_path):
    write_all_fixtures(tmp_path)
    df = catalog.scan(tmp_path)
    got = {(r.dataset, r.split): r.found for r in df.itertuples()}
    assert got[("kaggle", "train")] == 5 and got[("kaggle", "lookup_rows")] == 46
    assert got[("cofw", "train")] == 4 and got[("cofw", "test")] == 3
    assert got[("wflw", "test")] == 6 and got[("wflw", "test/blur")] == 1
    assert got[("300w_lp", "all")] == 8 and got[("300w_lp", "AFW_Flip")] == 2
    assert got[("bioid", "all")] == 3 and got[("bioid", "fgnet20 points")] == 3
    assert got[("celeba", "test")] == 2 and got[("celeba", "all")] == 6
    assert got[("cuhk_5pt", "train")] == 4 and got[("300w", "afw")] == 2
    assert got[("cuhk_5pt", "train_official")] == 4 and got[("cuhk_5pt", "test")] == 1
    present = catalog.present(tmp_path)
    for name in ("kaggle", "cofw", "wflw", "aflw2000_3d", "300w_lp", "bioid", "celeba",
                 "cuhk_5pt", "300w"):
        assert present[name] is not None, name
        ds = catalog.get_entry(name).load(tmp_path)  # every loader reads its fixture
        assert len(ds) > 0 and np.isfinite(ds.landmarks_array()).any()
        # samples (and their meta) collate once cropped to one size: a set may mix frame sizes
        # (the clean CUHK protocol mixes 80 px LFW frames with larger Webface images)
        ds.transform = CropToBox(24)
        batch = next(iter(DataLoader(ds, batch_size=2)))
        assert batch["landmarks"].shape == (2, ds.scheme.num_points, 2), name
        assert batch["image"].dtype == torch.uint8 and batch["box"].shape == (2, 4)


def test_catalog_expected_counts_agree_with_the_loaders():
    from lmklib.data.formats import aflw, celeba, cofw, cuhk, kaggle, w300, wflw

    e = catalog.CATALOG
    assert {k: e["cuhk_5pt"].expected[k] for k in cuhk.EXPECTED_COUNTS} == cuhk.EXPECTED_COUNTS
    assert all(e["300w"].expected[k] == v for k, v in w300.EXPECTED_COUNTS.items())
    assert all(e["kaggle"].expected[k] == kaggle.EXPECTED_COUNTS[k] for k in ("train", "test"))
    assert e["cofw"].expected == cofw.EXPECTED_COUNTS
    assert all(e["wflw"].expected[f"test/{k}"] == v for k, v in wflw.SUBSET_COUNTS.items())
    assert e["celeba"].expected == celeba.EXPECTED_COUNTS
    assert all(e["aflw2000_3d"].expected[f"yaw {k}"] == v
               for k, v in aflw.EXPECTED_YAW_BINS_AFLW2000.items())
    assert sum(aflw.EXPECTED_YAW_BINS_AFLW2000.values()) == e["aflw2000_3d"].expected["test"]
    assert all(e["300w_lp"].expected[k] == v for k, v in aflw.EXPECTED_COUNTS_300WLP.items())
    for entry in e.values():
        entry.loader_class()  # every loader string imports


def test_load_missing_dataset_names_the_folders_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"COFW .* not found: expected one of .*cofw.*caltech"):
        catalog.get_entry("cofw").load(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid"):
        catalog.get_entry("nope")


@pytest.mark.realdata
def test_scan_counts_the_real_data(real_data_root):
    df = catalog.scan(real_data_root)
    cuhk = _rows(df, "cuhk_5pt")
    if cuhk["train"][0] == 0:
        pytest.skip("CUHK data absent")
    assert cuhk["train"] == (10000, 10000, "present") and cuhk["test"] == (2027, 2027, "present")
    assert cuhk["train_official"] == (10000, 10000, "present")
    assert cuhk["test_official"] == (3466, 3466, "present")
    w = _rows(df, "300w")
    if w["afw"][0]:
        assert w["afw"] == (337, 337, "present")
        assert w["helen/trainset"] == (870, 2000, "partial")
        assert w["helen/testset"] == (330, 330, "present")
        assert w["challenge"][2] == "missing"
    assert _rows(df, "mmpose_coco")["wflw"][0] in (0, 4)
