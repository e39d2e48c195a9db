"""Bad inputs fail before any work with one line `error: <key>=<value>: <what is allowed>` and exit 2.

Most cases run `contnet train`'s main() in-process (same code path as the console script up to Hydra);
a few run the real CLI as a subprocess.
"""
from __future__ import annotations

import pytest

from contnet.registry import ConfigError
from tests.helpers.cli import BOTH_CLIS, run_cli
from tests.helpers.config import compose, compose_option
from tests.helpers.runs import run_inprocess

# (overrides, the key=value the line must start with, words of what is allowed)
BAD_INPUTS = [
    (["optimizer.lr=-1"], "optimizer.lr=-1", "> 0"),
    (["optimizer.lr=0"], "optimizer.lr=0", "> 0"),
    (["optimizer.lr=abc"], "optimizer.lr=abc", "a number"),
    (["optimizer.lr=null"], "optimizer.lr=null", "> 0"),
    (["optimizer=sgd", "optimizer.lr=1e-3,-2"], "optimizer.lr=-2", "> 0"),     # a sweep value
    (["trainer.batch_size=0"], "trainer.batch_size=0", "integer > 0"),
    (["trainer.batch_size=-5"], "trainer.batch_size=-5", "integer > 0"),
    (["trainer.batch_size=2.5"], "trainer.batch_size=2.5", "integer > 0"),
    (["trainer.eval_every=-1"], "trainer.eval_every=-1", ">= 0"),
    (["trainer.checkpoint_every=-10"], "trainer.checkpoint_every=-10", ">= 0"),
    (["trainer.max_steps=0"], "trainer.max_steps=0", "integer > 0"),
    (["trainer.max_epochs=null"], "trainer.max_steps=null", "max_epochs"),
    (["trainer.device=tpu"], "trainer.device=tpu", "auto, cpu, cuda"),
    (["trainer.precision=fp8"], "trainer.precision=fp8", "fp32, bf16, fp16"),
    (["trainer.compile=maybe"], "trainer.compile=maybe", "true or false"),
    (["trainer.grad_clip=-1"], "trainer.grad_clip=-1", ">= 0"),
    (["trainer.resume=/nonexistent/run"], "trainer.resume=/nonexistent/run", "checkpoints/last.pt"),
    (["optimizer=cadam", "optimizer.l_init=1.5"], "optimizer.l_init=1.5", "[0, 1]"),
    (["optimizer=crmsprop", "optimizer.l_init=-0.1"], "optimizer.l_init=-0.1", "[0, 1]"),
    (["optimizer=parc", "optimizer.lambda_init=2"], "optimizer.lambda_init=2", "[0, 1]"),
    (["optimizer=cadam", "optimizer.delta_l=0"], "optimizer.delta_l=0", "> 0"),
    (["optimizer.betas=[0.9,1.5]"], "optimizer.betas=[0.9,1.5]", "[0, 1)"),
    (["optimizer.eps=0"], "optimizer.eps=0", "> 0"),
    (["optimizer=sgd", "optimizer.momentum=-0.1"], "optimizer.momentum=-0.1", ">= 0"),
    (["optimizer.weight_decay=-1e-4"], "optimizer.weight_decay=-0.0001", ">= 0"),
    (["peft=lora", "peft.r=0"], "peft.r=0", "integer > 0"),
    (["peft=solo", "peft.rank=-3"], "peft.rank=-3", "integer > 0"),
    (["peft=lora", "peft.dropout=1.5"], "peft.dropout=1.5", "[0, 1)"),
    (["task.val_frac=1.2"], "task.val_frac=1.2", "[0, 1)"),
    (["task=mnist1d", "task.num_samples=0"], "task.num_samples=0", "integer > 0"),
    (["model.width=0"], "model.width=0", "integer > 0"),
    (["model.activation=5"], "model.activation=5", "one of relu, sigmoid"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma=0", "> 0"),
    (["logger=wandb", "logger.mode=sometimes"], "logger.mode=sometimes", "online, offline, disabled"),
    (["seed=-1"], "seed=-1", "integer >= 0"),
    (["seed=abc"], "seed=abc", "integer >= 0"),
    (["optimizer.foo=1"], "optimizer.foo=1", "its keys are: name, lr"),        # from AdamConfig's fields
    (["+optimizer.foo=1"], "optimizer.foo=1", "its keys are: name, lr"),       # added with +: ours
    (["+foo=1"], "foo=1", "unknown top-level key"),
    (["optimizer.name=nope"], "optimizer.name=nope", "choose one of: adam"),  # registry
    (["logger.name=slack"], "logger.name=slack", "jsonl, tensorboard, wandb"),
    (["optimizer=adamm"], "optimizer=adamm", "choose one of: adam"),
    (["optimizer.lr=[1"], "optimizer.lr=[1", "cannot parse"),
]


def test_the_table_is_big_enough():
    assert len(BAD_INPUTS) >= 20


@pytest.mark.parametrize("overrides,key,allowed", BAD_INPUTS, ids=[" ".join(b[0]) for b in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_key_and_nothing_is_written(overrides, key, allowed, tmp_path,
                                                                      monkeypatch, capsys):
    from contnet.cli.train import main
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    rc = main([f"hydra.run.dir={run_dir}", "trainer.progress=false", *overrides])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {key}: "), lines[0]
    assert allowed in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []           # no run dir, no summary.json, no checkpoints


# options that the default model=mlp cannot serve (their builders refuse it): composed with a language model
NEED_A_LANGUAGE_MODEL = {("peft", "lora"): ["model=tiny-gpt2", "task=e2e"],
                         ("peft", "solo"): ["model=tiny-gpt2", "task=e2e"], ("task", "e2e"): ["model=tiny-gpt2"],
                         ("task", "webnlg"): ["model=tiny-gpt2"], ("task", "dart"): ["model=tiny-gpt2"]}


def test_every_option_of_every_group_passes_validation():
    """Each group option composed into the default config (an adapter or a text task with a language model, which
    it needs: with model=mlp it is refused, as its builder would), and every experiment preset."""
    from contnet.cli.main import config_groups
    from contnet.validation import problems
    for group, options in config_groups().items():
        for option in options:
            partner = NEED_A_LANGUAGE_MODEL.get((group, option))
            if partner is None:
                assert problems(compose_option(group, option)) == [], (group, option)
                continue
            assert problems(compose([f"{group}={option}", *partner])) == [], (group, option)
            assert "model=mlp" in problems(compose_option(group, option))[0], (group, option)


def test_engine_validates_too_before_building_anything(tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer.batch_size=0: "):
        run_inprocess(["trainer.batch_size=0"], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_several_problems_are_counted_on_the_one_line():
    from contnet.validation import validate
    with pytest.raises(ConfigError, match=r"^optimizer.lr=-1: .*\(and 1 more problem\)$"):
        validate(compose(["optimizer.lr=-1", "trainer.batch_size=0"]))


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_cli_hydra_error_is_one_line(tmp_path, cli):
    res = cli(["train", f"hydra.run.dir={tmp_path / 'r'}", "trainer.bogus=3"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: trainer.bogus=3: unknown key for trainer=default; its keys are: name, max_epochs")
    assert not (tmp_path / "r").exists()


def test_full_traceback_only_with_hydra_full_error(tmp_path, monkeypatch):
    from contnet.cli.train import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match=r"^optimizer.lr=-1: "):      # raised, so Python prints the traceback
        main([f"hydra.run.dir={tmp_path / 'r'}", "optimizer.lr=-1"])
    assert not (tmp_path / "r").exists()


def test_cli_multirun_with_one_bad_value_starts_no_job(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(["train", "-m", f"hydra.sweep.dir={sweep}", "trainer.max_steps=5", "trainer.batch_size=32,0"],
                  tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: trainer.batch_size=0: must be an integer > 0"
    assert not sweep.exists()
