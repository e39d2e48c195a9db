"""`contnet tune` (contnet/studies/tune.py, trials.py, workers.py): the presets' plan, a seeded study with one
worker picks the same trials every time, a rerun does no work, the pruner stops trials early and the report shows
them, a diverged trial scores +inf, workers share one study within its budget, and bad input is one line, exit 2,
nothing written."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest

from contnet.studies import runner, trials, tune
from tests.helpers import REPO
from tests.helpers.cli import BOTH_CLIS, assert_one_line, cli_inprocess, run_cli
from tests.helpers.config import compose

TINY = ["trainer.max_steps=12", "trainer.eval_every=4"]


def run_tune(out, *args, cli=cli_inprocess):
    res = cli(["tune", "experiment=tune_digits_ae", "--out", str(out), *args, "--", *TINY], REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def journal(out, arm: str) -> list[tuple]:
    storage = trials.open_storage({}, out)
    return [(t.number, t.state.name, t.params, t.value, t.user_attrs.get("steps"))
            for t in trials.load_study(storage, arm).get_trials(deepcopy=False)]


def test_the_presets_plan_keeps_the_tune_table_without_a_hydra_sweeper():
    cfg = compose(["experiment=tune_digits_ae"])
    plan = tune.plan_from(cfg)
    assert list(plan["arms"]) == ["adam", "cadam"] and plan["trials"] == 16 and plan["seeds"] == [0, 1, 2, 3, 4]
    assert plan["full_steps"] == cfg.trainer.max_steps == 600 and plan["sampler"]["seed"] == 0
    assert plan["pruner"]["name"] in trials.PRUNERS and cfg.model.init == "pca"
    assert tune.plan_from(compose(["experiment=tune_digits_ae", "tune.pruner=hyperband"]))["pruner"] == {
        "name": "hyperband", "min_resource": 100, "reduction_factor": 3}
    hydra = compose(["experiment=tune_digits_ae"], hydra_config=True).hydra
    assert hydra.sweeper._target_.endswith("BasicSweeper")       # the Optuna sweeper plugin is gone
    ratio = tune.plan_from(compose(["experiment=tune_ratio_mode"]))
    assert list(ratio["arms"]) == ["intended", "frozen", "nosecant"]


def test_a_seeded_study_picks_the_same_trials_and_a_rerun_does_no_work(tmp_path, monkeypatch):
    args = ["--arms", "cadam", "--trials", "3", "--seeds", "0"]
    run_tune(tmp_path / "a", *args)
    run_tune(tmp_path / "b", *args, "--tune-only")
    a, b = journal(tmp_path / "a", "cadam"), journal(tmp_path / "b", "cadam")
    assert a == b and len(a) >= 3 and len({json.dumps(t[2], sort_keys=True) for t in a}) == len(a)
    for number, state, params, value, steps in a:                # the value is the run's final val/loss
        summary = json.loads((tmp_path / "a" / "tune" / "cadam" / f"trial{number:03d}" / "summary.json").read_text())
        assert summary["seed"] == 100 and summary["steps"] == steps
        if state == "COMPLETE":
            assert summary["final"]["val/loss"] == pytest.approx(value)
    report = (tmp_path / "a" / "report.md").read_text()
    before = json.loads((tmp_path / "a" / "meta.json").read_text())

    def no_run(*a, **k):
        raise AssertionError("a rerun trained a run")
    monkeypatch.setattr(runner, "run_in_process", no_run)
    run_tune(tmp_path / "a", *args)
    assert journal(tmp_path / "a", "cadam") == a
    after = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert after == before and after["invocations"] == 1      # a rerun that did no work leaves the evidence as it was
    rerun = (tmp_path / "a" / "report.md").read_text()
    assert rerun.split("Wall time")[0] == report.split("Wall time")[0]
    assert "in all, over 2 invocation(s) of the command (this one: " in rerun     # the wall time of both, and this one's


def test_pruned_trials_stop_early_count_their_steps_and_show_in_the_report(tmp_path):
    out = tmp_path / "s"
    run_tune(out, "--arms", "adam", "--trials", "4", "--seeds", "0,1", "--pruner", "median", "tune.pruners.median.n_startup_trials=1",
             "tune.pruners.median.n_warmup_steps=0")
    ts = journal(out, "adam")
    pruned = [t for t in ts if t[1] == "PRUNED"]
    assert pruned, ts                                            # this seed prunes (the test would say otherwise)
    for number, state, params, value, steps in ts:
        summary = json.loads((out / "tune" / "adam" / f"trial{number:03d}" / "summary.json").read_text())
        assert (summary["status"] == "pruned") == (state == "PRUNED")
        assert steps == summary["steps"] and (steps < 12 if state == "PRUNED" else steps == 12)
    spent = sum(t[4] for t in ts) / 12
    assert 3 < spent <= 4 and len(ts) > 4                        # a pruned trial leaves room for another
    best = min((t for t in ts if t[1] == "COMPLETE"), key=lambda t: t[3])
    report = (out / "report.md").read_text()
    assert f"{len(ts) - len(pruned)} / {len(pruned)} / 0 / 0" in report and "| adam | " in report
    assert report.count("| pruned |") == len(pruned) and "test/loss" in report
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    finals = [r for r in rows if r["kind"] == "final"]
    assert len(rows) == len(ts) + 2 and [r["seed"] for r in finals] == [0, 1]
    assert all(r["params"] == best[2] and r["status"] == "completed" for r in finals)
    assert sum(r["kind"] == "trial" and r["status"] == "pruned" for r in rows) == len(pruned)


def test_a_diverged_trial_scores_inf_and_costs_the_steps_it_ran(tmp_path):
    plan = tune.plan_from(compose(["experiment=tune_digits_ae"]), 1, [0])
    plan.update(experiment="tune_digits_ae", overrides=[*TINY], run_overrides=["trainer.eval_every=1"],
                arms={"adam": {"overrides": ["optimizer=adam"], "space": {"optimizer.lr": "choice(50.0)"}}},
                pruner={"name": "none"})
    storage = trials.open_storage(plan, tmp_path)
    assert trials.tune_arm(plan, tmp_path, storage, "adam") == 1
    [(number, state, params, value, steps)] = journal(tmp_path, "adam")
    assert state == "COMPLETE" and value == math.inf and steps < 12
    assert json.loads((tmp_path / "tune" / "adam" / "trial000" / "summary.json").read_text())["status"] == "diverged"
    assert trials.best(trials.load_study(storage, "adam").get_trials()) is None   # never the best trial


@pytest.mark.parametrize("args,words", [
    (["experiment=tune_nope"], ["experiment=tune_nope", "no such preset", "tune_digits_ae"]),
    (["experiment=parc_cpu"], ["experiment=parc_cpu", "no `tune:` table", "tune_digits_ae"]),
    (["experiment=tune_digits_ae", "+tune.arms.adam.space.optimizer_lr='interval(1e-4'"],
     ["tune.arms.adam", "optimizer_lr", "does not parse", "interval(a, b)"]),
    (["experiment=tune_digits_ae", "--workers", "0"], ["--workers 0", "1 or more"]),
    (["experiment=tune_digits_ae", "--pruner", "early"], ["pruner 'early'", "median"]),
    (["experiment=tune_digits_ae", "seed=3"], ["seed=3", "--seeds"]),
    (["experiment=tune_digits_ae", "optimizer.lr=1e-3,1e-2"], ["optimizer.lr=1e-3,1e-2", "a sweep", "one value"]),
    (["experiment=tune_digits_ae", "+foo=1"], ["foo=1", "unknown top-level key"]),
    (["experiment=tune_digits_ae", "trainer.max_steps=abc"], ["trainer.max_steps=abc", "integer"]),
])
@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, words, cli):
    res = cli(["tune", *args, "--out", str(tmp_path / "x")], REPO)
    assert_one_line(res, *words)
    assert not (tmp_path / "x").exists()


def test_bad_input_with_workers_ends_the_prestarted_workers_before_they_write(tmp_path):
    """--workers 2 forks worker 1 at the start (it imports while the study is checked): a refused study kills it;
    it wrote nothing, printed nothing, and no process is left behind."""
    import multiprocessing
    res = cli_inprocess(["tune", "experiment=tune_digits_ae", "seed=3", "--workers", "2", "--out",
                         str(tmp_path / "x")], REPO)
    assert_one_line(res, "seed=3", "--seeds")
    assert multiprocessing.active_children() == [] and not (tmp_path / "x").exists()


def test_a_prestarted_worker_whose_study_process_dies_before_starting_it_exits():
    """The forked worker waits for its study folder on a pipe; when the study's process is killed before it sends
    one (or cancels), the worker reads EOF and exits instead of waiting forever."""
    import os
    code = ("import os; from contnet.studies import workers; f = workers.Forked(1, 2); "
            "print(f.proc.pid, flush=True); os._exit(0)")
    pid = int(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the orphaned worker {pid} was still waiting after 60 s")


def test_a_bad_preset_through_a_real_process(tmp_path):
    assert_one_line(run_cli(["tune", "experiment=parc_cpu", "--out", str(tmp_path / "x")], REPO), "no `tune:` table")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["processes", "submitit_local"])
def test_workers_share_each_study_within_its_budget(tmp_path, launcher):
    out = tmp_path / "w"
    run_tune(out, "--arms", "adam,cadam", "--trials", "4", "--seeds", "0,1,2", "--workers", "2", "--launcher",
             launcher, "--pruner", "none")
    for arm in ("adam", "cadam"):
        ts = journal(out, arm)
        done = [t for t in ts if t[1] == "COMPLETE"]
        assert len(done) == 4 and sum(t[1] == "RUNNING" for t in ts) == 0          # none left running
        assert sorted(p.name for p in (out / "tune" / arm).iterdir()) == [f"trial{t[0]:03d}" for t in done]
        for seed in (0, 1, 2):
            assert runner.status(out / "final" / arm / f"seed{seed}") == "completed"
    if launcher == "processes":
        assert (out / "worker1.log").is_file()
    assert json.loads((out / "meta.json").read_text())["workers"] == 2


@pytest.mark.slow
def test_sigterm_stops_the_study_in_one_line_and_a_rerun_finishes_it(tmp_path):
    out = tmp_path / "sig"
    cmd = [sys.executable, "-m", "contnet.cli.main", "tune", "experiment=tune_digits_ae", "--out", str(out),
           "--arms", "adam", "--trials", "2", "--seeds", "0", "trainer.max_steps=3000", "trainer.eval_every=500"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "tune" / "adam" / "trial000" / "metrics.jsonl").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    lines = proc.stderr.read().strip().splitlines()
    assert len(lines) == 1 and "stopped by signal 15" in lines[0], lines
    assert [t[1] for t in journal(out, "adam")] == ["FAIL"]     # not a result: a rerun replaces it
    res = subprocess.run([*cmd[:-2], "trainer.max_steps=30", "trainer.eval_every=10"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [t[1] for t in journal(out, "adam")] == ["FAIL", "COMPLETE", "COMPLETE"]
