"""scripts/sd_hrnet_kd_study.py: the held-out study of the distillation's components, run at
the smoke profile on 300-W (skipped without the data)."""

import importlib.util

import pytest

from lmklib.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("sd_hrnet_kd_study",
                                              REPO_ROOT / "scripts" / "sd_hrnet_kd_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


@pytest.mark.usefixtures("one_thread")
def test_study_rows_and_cache(w300_root, tmp_path, monkeypatch):
    # pruned at the paper's threshold: one smoke epoch on 32 faces leaves no threshold that keeps
    # at most half the tiny supernet's parameters (measured: 0.55 at best)
    from lmklib.papers import sd_hrnet_lin2023 as T
    monkeypatch.setitem(T.PROFILES["smoke"]["slim"], "params_ratio", None)
    args = ["--data-root", str(w300_root.parent), "--profile", "smoke", "--val", "16",
            "--epochs", "1", "--variants", "0", "8", "--tune-seeds", "0", "1", "--cache", str(tmp_path)]
    table = study.main(args)
    plain, drawn = "S-HRNet (heatmap loss only)", "teacher + masks drawn, none applied (one student)"
    assert list(table["variant"]) == ["HRSuperNet", "teacher", plain, plain, drawn, drawn]
    assert table["seed"].tolist()[2:] == [0, 1, 0, 1]
    assert table["NME (%)"].map(lambda s: all(float(v) > 0 for v in s.split(" / "))).all()
    P = T.resolve_profile("smoke")
    cached = sorted(p.name for p in tmp_path.rglob("*.pt"))
    assert cached == [f"supernet_{study.settings_key(P, 'supernet', 'slim')}.pt",
                      f"teacher_{study.settings_key(P, 'teacher')}.pt"]
    again = study.main(args)                      # the cached networks: the same numbers
    assert again["NME (%)"].tolist() == table["NME (%)"].tolist()
    # another lambda is another search, cached beside the first; the teacher is reused
    study.main(args[:8] + ["--variants", "0", "--slim-l1", "1e-3", "--cache", str(tmp_path)])
    P["slim"]["l1"] = 1e-3
    assert sorted(p.name for p in tmp_path.rglob("*.pt")) == sorted(
        cached + [f"supernet_{study.settings_key(P, 'supernet', 'slim')}.pt"])
