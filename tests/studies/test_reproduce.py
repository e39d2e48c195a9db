"""conf/experiment presets (every claim at its scales), `contnet reproduce` on the study runner (make reproduce-paper),
and REPORT.md rendered from the raw results."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from contnet.studies import artifact, reproduce, runner
from contnet.studies.claims import CLAIMS, claim_by_key
from contnet.studies.reproduce_report import claim_table, write_report
from tests.helpers import REPO
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
    from contnet.validation import problems

    name = f"{preset}_{scale}"
    assert "seed" in _sweep_params(name), "every claim preset sweeps its seeds"
    first = {}                                  # a job for every value of every swept key
    for job in reproduce.expand(name, []):
        for o in job:
            first.setdefault(o, tuple(job))
    for job in sorted(set(first.values())):
        cfg = compose([f"experiment={name}", *job])
        assert problems(cfg) == [], job
        if scale == "cpu":
            assert cfg.trainer.device == "cpu"


def test_expand_is_hydras_sweep_with_the_command_lines_values_in_place():
    jobs = reproduce.expand("seq2d_skips_cpu", [])
    assert len(jobs) == 10 and jobs[0] == ["model.pattern=dense", "seed=0"] and jobs[1][1] == "seed=1"
    jobs = reproduce.expand("seq2d_skips_cpu", ["seed=3", "trainer.max_steps=5"])
    assert jobs == [["model.pattern=dense", "seed=3", "trainer.max_steps=5"],
                    ["model.pattern=resnet", "seed=3", "trainer.max_steps=5"]]


@pytest.mark.parametrize("preset,scale", TUNED)
def test_tuned_claim_presets_compose_per_arm(preset, scale):
    """A tuned claim preset: every arm composes and validates; at least 3 final seeds; lr tuned in every arm."""
    from contnet.validation import problems

    cfg = compose([f"experiment={preset}_{scale}"])
    arms = {k: v for k, v in cfg.tune.arms.items() if v is not None}
    assert len(cfg.tune.seeds) >= 3 and len(arms) >= 2
    for arm in arms.values():
        assert "optimizer.lr" in arm.space
        armed = compose([f"experiment={preset}_{scale}", *arm.overrides])
        assert problems(armed) == [] and armed.trainer.device == "cpu"


def test_claim_d_compares_solo_and_lora_each_at_its_own_lr():
    cfg = compose(["experiment=tune_solo_e2e_cpu"])
    arms = {k: v for k, v in cfg.tune.arms.items() if v is not None}
    assert set(arms) == {"solo", "lora"} and arms["solo"].space == arms["lora"].space   # the same search, own result
    assert cfg.model.name == "smollm2-135m" and cfg.trainer.max_steps <= 100


def test_every_claim_has_a_sweep_at_both_scales():
    for claim in CLAIMS:
        for scale in ("cpu", "paper"):
            assert any(scale in s.scales for s in claim.sweeps), (claim.key, scale)


@pytest.mark.parametrize("preset,scale", SWEEPS)
def test_statistical_presets_run_five_seeds(preset, scale):
    seeds = str(_sweep_params(f"{preset}_{scale}")["seed"]).split(",")
    assert len(seeds) == (1 if preset == "solo_e2e" else 5)       # the papers report single LM runs


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


def test_dry_run_lists_every_sweep(capsys):
    assert reproduce.main(["--dry-run", "--scale", "paper"]) == 0
    out = capsys.readouterr().out
    for preset, scale in SWEEPS + TUNED:
        if scale == "paper":
            assert f"experiment={preset}_paper" in out
    assert reproduce.main(["--dry-run", "--claims", "solo"]) == 0
    assert "contnet tune experiment=tune_solo_e2e_cpu" in capsys.readouterr().out


def test_contnet_reproduce_is_a_subcommand(capsys):
    from contnet.cli.main import main, usage
    assert "reproduce" in usage()
    assert main(["reproduce", "--dry-run", "--claims", "seq2d"]) == 0
    out = capsys.readouterr().out
    assert "train -m experiment=seq2d_equiv_cpu" in out and "experiment=npacs" not in out
    assert main(["reproduce", "--claims", "nope"]) == 2
    assert "unknown claim" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ REPORT.md from raw results

def _row(claim: str, setting: str, arm: str, seed: int, final: dict, status: str = "completed") -> dict:
    return {"run": f"{claim}/{setting}/{arm}/{seed}", "arm": arm, "claim": claim, "setting": setting, "seed": seed,
            "status": status, "final": final, "params": 100, "first_train_loss": 1.0, "choices": {}, "overrides": []}


def _study(tmp_path, rows: list[dict], claims: dict) -> None:
    artifact.write_rows(tmp_path, rows)
    artifact.write_meta(tmp_path, "contnet reproduce", artifact.environment(), 125.0, scale="cpu", claims=claims)


def test_report_is_rendered_from_the_artifact_alone(tmp_path):
    rows = [_row("npacs", "digits_ae", opt, s, {"test/loss": loss + s / 1000, "train/loss": 0.1})
            for opt, loss in (("adam", 0.30), ("cadam", 0.20), ("rmsprop", 0.30), ("crmsprop", 0.35))
            for s in range(3)]
    rows.append(_row("npacs", "digits_ae", "cadam", 3, {"test/loss": math.nan}, status="diverged"))
    _study(tmp_path, rows, {"npacs": {"selected": True, "budget": ["`tune_npacs_digits_ae_cpu`: tuned"]},
                            "parc": {"selected": True, "problems": ["optimizer=parc has not landed"]}})
    text = write_report(tmp_path).read_text()
    assert "2.1 min (125 s)" in text and "**Budget.** `tune_npacs_digits_ae_cpu`: tuned." in text
    assert "| (a) NPACS: C-Adam / C-RMSProp vs Adam / RMSProp | partial: 12 of 13 runs completed | 12/13 | 4 | " \
           "did not hold |" in text           # C-Adam better, C-RMSProp worse: 1 of 2 is no majority
    assert "| (b) PARC vs Adam on a classifier and an autoencoder | not run: optimizer=parc has not landed |" in text
    assert "| (c) Sequential2D: equivalence and skip-connection variants | not run: not selected" in text
    assert "C-Adam's final test/loss: lower than Adam's on digits_ae" in text
    assert "C-RMSProp's final test/loss: higher than RMSProp's on digits_ae" in text
    assert "| digits_ae | cadam | 3/4 | – | 0.201 ± 0.001 | – |" in text
    assert reproduce.main(["--report-only", "--out", str(tmp_path)]) == 0       # the same text again
    assert (tmp_path / "REPORT.md").read_text() == text


def test_report_only_without_results_is_one_line(tmp_path, capsys):
    assert reproduce.main(["--report-only", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "meta.json is missing" in err and "run `contnet reproduce`" in err
    assert not (tmp_path / "none").exists()


def test_claim_tables_are_formatted_by_report_render():
    """REPORT.md's tables and cells come from contnet.report.render (as in `contnet report`), not a copy."""
    from contnet.report.render import fmt_mean_std, markdown_table
    from contnet.report.stats import mean_std
    claim = claim_by_key("parc")
    values = [12345.678, 12346.5, 12344.0]
    cells = {"mnist1d": {"parc": {"values": {k: values for k in claim.metrics}, "runs": 3, "completed": 3,
                                  "params": 1000}}}
    row = ["mnist1d", "parc", "3/3", *[("1,000" if k == "params" else fmt_mean_std(mean_std(values)))
                                       for k in claim.metrics]]
    assert claim_table(claim, cells) == markdown_table(["setting", "arm", "runs ok", *claim.metrics], [row])


def test_equivalence_check_is_exact():
    eq = reproduce.seq2d_extra()["equivalence"]
    assert eq["max_abs_diff"] == 0.0 and eq["params_mlp"] == eq["params_seq2d"]


# ------------------------------------------------------------------------------------ end to end

def test_a_plain_claim_runs_in_process_and_a_rerun_does_nothing(tmp_path, monkeypatch):
    """Claim (c) cut to 1 seed × 3 steps: its sweeps expanded into runs, run here, rows + meta + REPORT.md beside
    them; run again, the runner finds every summary done and trains nothing."""
    args = ["--claims", "seq2d", "--out", str(tmp_path), "--", "seed=0", "trainer.max_steps=3"]
    assert reproduce.main(args) == 0
    rows = artifact.read_rows(tmp_path)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert {r["arm"] for r in rows} == {"nn.Sequential MLP", "seq2d(mlp)", "seq2d(dense)", "seq2d(resnet)"}
    assert all(not r["run"].startswith("/") and r["claim"] == "seq2d" and r["setting"] == "digits" for r in rows)
    assert all("experiment=seq2d_skips_cpu" in r["overrides"] for r in rows if r["arm"] == "seq2d(dense)")
    meta = artifact.read_meta(tmp_path)
    assert meta["claims"]["seq2d"]["extra"]["equivalence"]["max_abs_diff"] == 0.0
    text = (tmp_path / "REPORT.md").read_text()
    assert "| (c) Sequential2D: equivalence and skip-connection variants | ran | 4/4 | 1 | held |" in text
    assert "`seq2d_equiv_cpu`: 2 runs, 300 steps of batch 64, then seed=0 trainer.max_steps=3" in text

    trained = []
    monkeypatch.setattr(runner, "run_in_process", lambda run, root, **kw: trained.append(run) or {})
    assert reproduce.main(args) == 0 and trained == []
    assert artifact.read_rows(tmp_path) == rows


@pytest.mark.slow
def test_smoke_run_writes_report(tmp_path):
    """The tuned path end to end: claim (a) tiny (2 arms × 2 trials, then 2 seeds each, 20 steps) through the tuner."""
    assert reproduce.main(["--smoke", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "not run: not selected" in text and "**Budget.** `tune_npacs_digits_ae_cpu`: tuned, 4 arms" in text
    assert "worth 12 full runs" in text
    assert (tmp_path / "npacs" / "tune_npacs_digits_ae" / "report.md").is_file()     # tuned values per arm
    assert "| (a) NPACS: C-Adam / C-RMSProp vs Adam / RMSProp | ran | 4/4 | 2 |" in text
    rows = artifact.read_rows(tmp_path)
    assert {r["arm"] for r in rows} == {"adam", "cadam"} and all("/final/" in r["run"] for r in rows)
    assert all(any(o.startswith("optimizer.lr=") for o in r["overrides"]) for r in rows)     # the tuned values
    assert json.loads((tmp_path / "meta.json").read_text())["scale"] == "smoke"


def test_the_committed_report_is_its_artifact_rendered(tmp_path):
    """docs/results/reproduce-cpu/REPORT.md is what --report-only renders from the runs.jsonl + meta.json beside it:
    a number edited by hand in the report (or a row in the artifact) fails here."""
    import shutil
    committed = REPO / "docs" / "results" / "reproduce-cpu"
    if not (committed / artifact.META).is_file():
        pytest.skip("no committed cpu-scale run yet")
    for name in (artifact.RUNS, artifact.META):
        shutil.copy(committed / name, tmp_path / name)
    assert write_report(tmp_path).read_text() == (committed / "REPORT.md").read_text()


def test_jobs_put_the_language_model_claim_alone_and_pass_the_rest_of_the_command_line():
    keys = ["npacs", "parc", "seq2d", "solo"]
    assert reproduce.partition(keys, 2) == [["solo"], ["npacs", "parc", "seq2d"]]
    assert reproduce.partition(keys, 3) == [["solo"], ["npacs", "seq2d"], ["parc"]]
    assert reproduce.partition(["npacs", "parc"], 2) == [["npacs"], ["parc"]]
    assert reproduce.partition(keys, 1) == [["solo", "npacs", "parc", "seq2d"]]
    argv = ["--claims", "npacs,solo", "--jobs=2", "--out", "x", "--", "seed=0"]
    assert reproduce.without(argv, "--claims", "--jobs") == ["--out", "x", "--", "seed=0"]
