"""The Solo study driver: completed runs are skipped, the best screen row per method is picked, tables pool seeds."""
from __future__ import annotations

import json

from contnet import study_solo


def write(run_dir, status="completed", val=1.0, params=10, **final):
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "trainable_params": params, "wall_time_s": 5.0,
                                                      "final": {"val/loss": val, **final}}))


def test_completed_runs_are_skipped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study_solo.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    write(tmp_path / "screen" / "lora-lr2e-3")
    assert study_solo.main(["screen", "lora-lr2e-3", "solo-stride2-lr2e-3", "--root", str(tmp_path)]) == 0
    assert len(calls) == 1 and f"hydra.run.dir={tmp_path / 'screen' / 'solo-stride2-lr2e-3'}" in calls[0]
    assert "trainer.resume=auto" in calls[0] and "peft.placement=stride" in calls[0]


def test_best_rows_and_table(tmp_path):
    write(tmp_path / "screen" / "lora-lr2e-3", val=1.7)
    write(tmp_path / "screen" / "lora-lr6e-3", val=1.6)
    write(tmp_path / "screen" / "solo-first_last-lr2e-3", val=2.6)
    write(tmp_path / "screen" / "solo-stride2-lr2e-3", val=1.5)
    write(tmp_path / "screen" / "full-lr2e-4", status="diverged", val=0.1)
    assert study_solo.best_rows(tmp_path) == ["solo-stride2-lr2e-3", "lora-lr6e-3"]
    for seed, bleu in enumerate((60.0, 62.0)):
        write(tmp_path / "confirm" / f"solo-stride2-lr2e-3-s{seed}", val=1.3 + seed / 100, **{"test/bleu": bleu})
    rows = study_solo.table(tmp_path / "confirm").splitlines()
    assert rows[2].startswith("| solo-stride2-lr2e-3 | 2 | 10 | 1.305 ± 0.007 | 61.000 ± 1.414 |")


def test_unknown_rows_are_refused(capsys):
    assert study_solo.main(["screen", "no-such-row"]) == 2
    assert "unknown study rows" in capsys.readouterr().err
