"""conf/experiment presets (every claim at both scales) and the `contnet reproduce` driver (make reproduce-paper)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contnet import reproduce
from contnet.reproduce.claims import CLAIMS, claim_by_key, compare
from contnet.reproduce.report import analyse, write_report
from tests.helpers import REPO
from tests.helpers.cli import InProcessCommands
from tests.helpers.config import compose

CONF = REPO / "conf" / "experiment"
SWEEPS = sorted({(s.preset, scale) for c in CLAIMS for s in c.sweeps if not s.tuned for scale in s.scales})
TUNED = sorted({(s.preset, scale) for c in CLAIMS for s in c.sweeps if s.tuned for scale in s.scales})


def _sweep_params(preset: str) -> dict:
    raw = yaml.safe_load((CONF / f"{preset}.yaml").read_text())
    return raw.get("hydra", {}).get("sweeper", {}).get("params", {})


@pytest.mark.parametrize("preset,scale", SWEEPS)
def test_every_preset_composes_at_its_scales(preset, scale):
    """Every value of every swept key composes into a config that passes contnet's validation."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from contnet.validation import problems

    name = f"{preset}_{scale}"
    assert (CONF / f"{name}.yaml").is_file(), f"missing conf/experiment/{name}.yaml"
    params = _sweep_params(name)
    assert "seed" in params, "every claim preset sweeps its seeds"
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    values = {o.key_or_group: [str(v) for v in o.sweep_iterator()] if o.is_sweep_override() else [str(o.value())]
              for o in parsed}
    for i in range(max(len(v) for v in values.values())):
        job = [f"{k}={v[i % len(v)]}" for k, v in values.items()]
        cfg = compose([f"experiment={name}", *job])
        assert problems(cfg) == [], job
        if scale == "cpu":
            assert cfg.trainer.device == "cpu"


@pytest.mark.parametrize("preset,scale", TUNED)
def test_tuned_claim_presets_compose_per_arm(preset, scale):
    """A tuned claim preset: every arm composes and validates; 5 final seeds; a stated trial budget."""
    from contnet.tune import plan_from
    from contnet.validation import problems

    name = f"{preset}_{scale}"
    plan = plan_from(compose([f"experiment={name}"]))
    assert len(plan["seeds"]) == 5 and plan["trials"] >= 8 and "adam" in plan["arms"]
    for arm in plan["arms"].values():
        assert "optimizer.lr" in arm["space"]
        cfg = compose([f"experiment={name}", *arm["overrides"]])
        assert problems(cfg) == [] and cfg.trainer.device == "cpu"


def test_every_claim_has_a_sweep_at_both_scales():
    for claim in CLAIMS:
        for scale in ("cpu", "paper"):
            assert any(scale in s.scales for s in claim.sweeps), (claim.key, scale)


@pytest.mark.parametrize("preset,scale", SWEEPS)
def test_statistical_presets_run_five_seeds(preset, scale):
    claim = next(c for c in CLAIMS if any(s.preset == preset for s in c.sweeps))
    seeds = str(_sweep_params(f"{preset}_{scale}")["seed"]).split(",")
    assert len(seeds) == (5 if claim.statistical else 1)


def test_paper_scale_uses_the_authors_settings():
    cfg = compose(["experiment=npacs_ae_paper", "experiment/data=npacs_cifar10", "experiment/arm=npacs_crmsprop"])
    assert cfg.task.name == "cifar10_ae" and cfg.optimizer.name == "crmsprop" and cfg.model.init == "pca"
    assert cfg.model.activation == "sigmoid" and list(cfg.model.widths) == [200, 100, 50]
    assert cfg.optimizer.lr == 5e-4 and cfg.trainer.batch_size == 200 and cfg.trainer.max_steps == 200000
    cfg = compose(["experiment=npacs_ae_paper", "experiment/data=npacs_fashion_mnist"])
    assert len(cfg.model.widths) == 7 and cfg.optimizer.delta_l == 0.008
    cfg = compose(["experiment=parc_paper", "experiment/arm=parc_mnist_ae_parc"])
    assert cfg.task.name == "mnist_ae" and cfg.optimizer.max_arc_len == 0.02 and cfg.trainer.batch_size == 30000
    cfg = compose(["experiment=npacs_parity_paper"])
    assert cfg.task.n_bits == 40 and cfg.trainer.max_steps == 5000 and cfg.optimizer.l_init == 0.2
    cfg = compose(["experiment=solo_e2e_paper"])
    assert cfg.model.name == "gpt2-medium" and cfg.trainer.max_epochs == 5
    cfg = compose(["experiment=solo_e2e_cpu"])
    assert cfg.model.name == "smollm2-135m" and cfg.trainer.max_steps <= 100


def test_dry_run_lists_every_sweep(capsys):
    assert reproduce.main(["--dry-run", "--scale", "paper"]) == 0
    out = capsys.readouterr().out
    for preset, scale in SWEEPS + TUNED:
        if scale == "paper":
            assert f"experiment={preset}_paper" in out


def test_unknown_claim_is_exit_2(capsys):
    assert reproduce.main(["--claims", "nope", "--dry-run"]) == 2
    assert "unknown claim" in capsys.readouterr().err


def test_contnet_reproduce_is_a_subcommand(capsys):
    from contnet.cli.main import main, usage
    assert "reproduce" in usage()
    assert main(["reproduce", "--dry-run", "--claims", "seq2d"]) == 0
    out = capsys.readouterr().out
    assert "train -m experiment=seq2d_equiv_cpu" in out and "experiment=npacs" not in out
    assert main(["reproduce", "--claims", "nope"]) == 2


def test_python_m_contnet_reproduce_still_runs(tmp_path):
    res = subprocess.run([sys.executable, "-m", "contnet.reproduce", "--dry-run", "--claims", "parc"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "contnet.tune experiment=tune_parc_digits_ae_cpu" in res.stdout


def test_claim_tables_are_formatted_by_report_render():
    """REPORT.md's tables and cells come from contnet.report.render (as in `contnet report`), not a copy."""
    from contnet.report.render import fmt_mean_std, markdown_table
    from contnet.reproduce.report import ClaimResult, claim_table
    claim = claim_by_key("parc")
    stat = (12345.678, 0.5, 3)
    cells = {"mnist1d": {"parc": {"metrics": {k: stat for k in claim.metrics}, "runs": 3, "completed": 3,
                                  "params": 1000}}}
    text = claim_table(ClaimResult(claim, status="ran", cells=cells))
    row = ["mnist1d", "parc", "3/3", *[("1,000" if k == "params" else fmt_mean_std(stat)) for k in claim.metrics]]
    assert text == markdown_table(["setting", "arm", "runs ok", *claim.metrics], [row])


# ------------------------------------------------------------------------------------ REPORT.md on synthetic runs

def _fake_run(path: Path, task: str, optimizer: str, seed: int, test_loss: float, status: str = "completed"):
    (path / ".hydra").mkdir(parents=True)
    cfg = {"task": {"name": task}, "optimizer": {"name": optimizer}, "model": {"name": "mlp"}, "seed": seed}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "metrics.jsonl").write_text(json.dumps({"step": 10, "train/loss": test_loss}) + "\n")
    summary = {"status": status, "steps": 10, "seed": seed, "task": task, "model": "mlp", "optimizer": optimizer,
               "peft": "none", "trainable_params": 100, "wall_time_s": 1.0,
               "final": {"test/loss": test_loss, "train/full_loss": test_loss}, "best": {}}
    (path / "summary.json").write_text(json.dumps(summary))


def _sweep_runs(claim, out: Path, skipped: str = ""):
    return [reproduce.SweepRun(claim, s, ["python", "-m", "contnet.cli.main", "train", "-m", f"experiment={s.preset}_cpu"],
                               out / claim.key / s.preset, out / claim.key / f"{s.preset}.log", skipped=skipped)
            for s in claim.sweeps if "cpu" in s.scales]


def test_report_writer_on_synthetic_runs(tmp_path):
    npacs, parc = claim_by_key("npacs"), claim_by_key("parc")
    job = 0
    for opt, losses in (("adam", [0.30, 0.32, 0.31]), ("cadam", [0.20, 0.21, 0.19]),
                        ("rmsprop", [0.30, 0.30, 0.31]), ("crmsprop", [0.35, 0.36, 0.34])):
        for seed, loss in enumerate(losses):
            _fake_run(tmp_path / "npacs" / "tune_npacs_digits_ae" / "final" / str(job), "digits_ae", opt, seed, loss)
            job += 1
    _fake_run(tmp_path / "npacs" / "tune_npacs_digits_ae" / "final" / str(job), "digits_ae", "cadam", 3, math.nan, status="diverged")

    results = [analyse(npacs, _sweep_runs(npacs, tmp_path)[:1], tmp_path, {}),
               analyse(parc, _sweep_runs(parc, tmp_path, skipped="optimizer=parc has not landed"), tmp_path, {})]
    r = results[0]
    assert r.status.startswith("partial: 12 of 13 runs completed")
    assert r.cells["digits_ae"]["cadam"]["metrics"]["test/loss"][0] == pytest.approx(0.20)
    assert r.held == "did not hold"          # C-Adam better on 1, C-RMSProp worse on 1: 1 of 2 is no majority
    assert "C-Adam's mean final test loss was lower than Adam's on 1 of 1 task (by more than one std on 1)" \
        in r.sentence
    assert "C-RMSProp's mean final test loss was lower than RMSProp's on 0 of 1" in r.sentence
    assert results[1].status == "not run: optimizer=parc has not landed"

    path = write_report(results, tmp_path, scale="cpu", wall_s=125.0, argv=["contnet", "reproduce"])
    text = path.read_text()
    assert "2.1 min (125 s)" in text
    assert "| (b) PARC vs Adam on a classifier and an autoencoder | not run: optimizer=parc has not landed |" in text
    assert "0.2 ± 0.01" in text                       # cadam's mean ± std in the claim table
    assert "None available" in text                   # continuation papers publish no numbers
    assert (tmp_path / "npacs" / "report" / "report.md").is_file()   # contnet report per claim
    for claim in (npacs, parc):                         # a summary row per claim, run or not
        assert f"| {claim.title} |" in text


def test_compare_counts_wins_beyond_one_std():
    cells = {"t1": {"new": {"metrics": {"m": (1.0, 0.1, 5)}}, "old": {"metrics": {"m": (2.0, 0.2, 5)}}},
             "t2": {"new": {"metrics": {"m": (1.9, 0.2, 5)}}, "old": {"metrics": {"m": (2.0, 0.2, 5)}}},
             "t3": {"new": {"metrics": {"m": (3.0, 0.2, 5)}}}}
    assert compare(cells, "new", "old", "m") == (2, 2, 1)
    assert compare(cells, "new", "old", "m", lower_better=False) == (2, 0, 0)


def test_solo_verdict_counts_metrics_and_parameters():
    claim = claim_by_key("solo")
    scores = {"test/bleu": 60.0, "test/nist": 7.0, "test/rouge_l": 60.0, "test/cider": 1.5}
    cells = {"smollm2-135m": {
        "solo": {"metrics": {k: (v + 1, math.nan, 1) for k, v in scores.items()}, "params": 100},
        "lora": {"metrics": {k: (v, math.nan, 1) for k, v in scores.items()}, "params": 200}}}
    held, sentence = claim.verdict(cells, {})
    assert held == "held" and "higher than LoRA on 4 of 4 metrics" in sentence and "50% fewer" in sentence


def test_equivalence_check_is_exact():
    eq = reproduce.equivalence_check()
    assert eq["max_abs_diff"] == 0.0 and eq["params_mlp"] == eq["params_seq2d"]


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in-process", "processes"])
def test_smoke_run_writes_report(tmp_path, monkeypatch, processes):
    """The driver end to end: a tuned claim (2 arms × 2 trials, then 2 seeds each, 20 steps), REPORT.md.  The
    fast suite runs the drivers' commands through their mains in this process (tests.helpers.cli.InProcessCommands:
    5 interpreter starts less); `make test-all` also runs them as the processes they are (and tests/test_tune.py's
    tune -> `contnet train -m` processes).  Processes launched by a driver stay in the fast suite elsewhere:
    tests/conf/test_launchers.py (joblib's), tests/bench/test_gpu_check.py (a section per process)."""
    if not processes:
        import contnet.tune
        from contnet.reproduce import driver
        monkeypatch.setattr(driver, "subprocess", InProcessCommands)
        monkeypatch.setattr(contnet.tune, "subprocess", InProcessCommands)
    assert reproduce.main(["--smoke", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert (tmp_path / "npacs" / "report" / "report.md").is_file()
    assert "not run: not selected" in text and "**Budget.** `tune_npacs_digits_ae_cpu`: tuned, 4 arms" in text
    assert (tmp_path / "npacs" / "tune_npacs_digits_ae" / "report.md").is_file()     # tuned values per arm
    assert "| (a) NPACS: C-Adam / C-RMSProp vs Adam / RMSProp | ran | 4/4 | 2 |" in text
    # a rebuild from the folders keeps the numbers and the run's measured wall time
    assert reproduce.main(["--smoke", "--out", str(tmp_path), "--report-only"]) == 0
    rebuilt = (tmp_path / "REPORT.md").read_text()
    assert "measured by the run that produced these folders" in rebuilt and "| ran | 4/4 | 2 |" in rebuilt
