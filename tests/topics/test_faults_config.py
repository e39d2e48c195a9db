"""Issue 21, config level: a switch that cannot act in the composed config is refused in one line, inputs that
ended in a traceback are one line, `--cfg job` checks what it prints, and the errors a builder used to find
only while a job ran are found by the pre-flight check of every sweep job (before any job runs).

Every refusal: `error: <key>=<value>: <what is allowed / how to fix>` on stderr, exit 2, nothing written.
"""
from __future__ import annotations

import pytest

from contnet.errors import ConfigError
from tests.helpers.cli import BOTH_CLIS, cli_inprocess, run_cli
from tests.helpers.config import compose

LM = ["model=tiny-gpt2", "task=e2e", "task.synthetic=true", "task.scale=smoke"]     # no data files, no download


def one_line(res, start: str, *words: str, code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith(f"error: {start}"), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def train(tmp_path, *args, cli=cli_inprocess):
    return cli(["train", f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.progress=false", *args],
               tmp_path)


# --- switches that cannot act in the composed config ---------------------------------------------------------

INERT = [
    # peft.pairs is read only by placement=pairs
    ([*LM, "peft=solo", "peft.pairs=[[0,2]]"],
     "peft.pairs=[[0,2]]: only read with peft.placement=pairs (placement is stride)", ["peft.placement=pairs"]),
    ([*LM, "peft=solo", "peft.target=3"],
     "peft.target=3: only read with peft.placement=first_last (placement is stride)", ["peft.placement=first_last"]),
    # an empty list used to train the default network
    (["model.widths=[]"], "model.widths=[]: ", ["non-empty", "null"]),
    (["task=digits_ae", "model.ae_widths=[]"], "model.ae_widths=[]: ", ["non-empty", "null"]),
    (["model=seq2d", "model.widths=[]"], "model.widths=[]: ", ["non-empty", "null"]),
    # ratio_mode is read only by the secant predictor
    (["optimizer=cadam", "optimizer.ratio_mode=intended"],
     "optimizer.ratio_mode=intended: only read by the secant predictor", ["optimizer.secant=true"]),
    (["optimizer=continuation", "optimizer.ratio_mode=intended"], "optimizer.ratio_mode=intended: ", ["secant"]),
    # a continuation optimizer moves λ; with a language model only Solo's long skips read it
    ([*LM, "optimizer=cadam", "peft=lora"], "optimizer=cadam: ", ["peft=lora", "nothing reads", "peft=solo"]),
    ([*LM, "optimizer=crmsprop", "peft=full"], "optimizer=crmsprop: ", ["peft=full", "nothing reads"]),
    ([*LM, "optimizer=parc", "peft=none"], "optimizer=parc: ", ["peft=none", "nothing reads"]),
    ([*LM, "optimizer=continuation", "peft=lora"], "optimizer=continuation: ", ["nothing reads"]),
    ([*LM, "optimizer=cadam", "peft=solo", "peft.lambda_mode=trainable"],
     "peft.lambda_mode=trainable: ", ["optimizer=cadam", "peft.lambda_mode=scheduled"]),
    ([*LM, "optimizer=cadam", "peft=solo", "peft.lambda_driver=ramp"],
     "peft.lambda_driver=ramp: ", ["optimizer=cadam", "both"]),
    ([*LM, "optimizer=adamw", "peft=solo", "peft.lambda_driver=external"],
     "peft.lambda_driver=external: ", ["optimizer=adamw", "nothing moves"]),
    # model.init=auto would log (and use) the closed-form λ=0 start of a run that starts at λ=1
    (["task=digits_ae", "optimizer=cadam", "optimizer.l_init=1"],
     "optimizer.l_init=1: ", ["model.init=auto", "λ=0", "model.init=default", "model.init=pca"]),
    (["task=digits_ae", "optimizer=parc", "optimizer.lambda_init=1"], "optimizer.lambda_init=1: ", ["model.init=auto"]),
]


@pytest.mark.parametrize("args,start,words", INERT, ids=[" ".join(a[0]) for a in INERT])
def test_a_switch_that_cannot_act_is_refused_in_one_line(tmp_path, args, start, words):
    one_line(train(tmp_path, *args), start, *words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow          # the in-process test above is in the fast suite; a real process per kind: test_bad_inputs
def test_a_switch_that_cannot_act_is_refused_by_the_real_cli_too(tmp_path):
    one_line(train(tmp_path, "model.widths=[]", cli=run_cli), "model.widths=[]: ", "null")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    [],                                                          # contnet train
    ["optimizer=cadam"], ["optimizer=cadam", "optimizer.secant=false"],     # ratio_mode at its default: no noise
    ["optimizer=cadam", "optimizer.secant=true", "optimizer.ratio_mode=intended"],
    ["optimizer=parc", "task=digits_ae"], ["optimizer=cadam", "task=digits_ae", "optimizer.l_init=0.5"],
    ["optimizer=cadam", "task=digits_ae", "optimizer.l_init=1", "model.init=default"],
    ["optimizer=cadam", "task=digits", "optimizer.l_init=1"],   # a classifier: init=auto is the standard init
    [*LM, "peft=solo", "optimizer=cadam"], [*LM, "peft=solo", "optimizer=adamw"], [*LM, "peft=lora"],
    [*LM, "peft=solo", "peft.placement=pairs", "peft.pairs=[[0,2],[1,4]]"],
    [*LM, "peft=solo", "peft.placement=first_last", "peft.target=3"],
    ["model.widths=[16]"], ["model=resnet"], ["model=seq2d", "task=digits_ae"],
    ["seed=9223372036854775807"],
])
def test_what_can_act_passes(args):
    from contnet.validation import validate
    validate(compose(args))


# --- inputs that used to end in a traceback -----------------------------------------------------------------

@pytest.mark.parametrize("pairs,words", [
    ("[[0,2,5]]", ["[0,2,5]", "3 elements"]),
    ("[[0]]", ["[0]", "1 element"]),
    ("[[3,4]]", ["[3,4]", "j ≥ i + 2"]),
    ("[[-1,2]]", ["[-1,2]", "0 ≤ i"]),
    ("[[0,9]]", ["4 blocks"]),                   # tiny-gpt2 has 4 decoder blocks: was found only by the builder
])
def test_a_malformed_solo_pair_is_one_line(tmp_path, pairs, words):
    one_line(train(tmp_path, *LM, "peft=solo", "peft.placement=pairs", f"peft.pairs={pairs}"),
             "peft.", *words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow          # the in-process test above is in the fast suite; a real process per kind: test_bad_inputs
def test_a_malformed_solo_pair_is_one_line_in_the_real_cli(tmp_path):
    one_line(train(tmp_path, *LM, "peft=solo", "peft.placement=pairs", "peft.pairs=[[0,2,5]]", cli=run_cli),
             "peft.pairs=[[0,2,5]]: ")
    res = run_cli(["params", *LM, "peft=solo", "peft.placement=pairs", "peft.pairs=[[0,2,5]]"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().startswith("contnet params: error: peft.pairs=[[0,2,5]]: "), res.stderr


@pytest.mark.parametrize("seed", ["18446744073709551616", "9223372036854775808", str(10 ** 30), "-1", "1.5"])
def test_a_seed_outside_the_64_bit_range_is_one_line(tmp_path, seed):
    one_line(train(tmp_path, f"seed={seed}"), f"seed={seed}: ", "integer >= 0", "9223372036854775807")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow          # the in-process test above is in the fast suite; a real process per kind: test_bad_inputs
def test_a_huge_seed_is_one_line_in_the_real_cli(tmp_path):
    one_line(train(tmp_path, "seed=18446744073709551616", cli=run_cli), "seed=18446744073709551616: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_a_run_dir_name_too_long_is_one_line(tmp_path, cli):
    long = "a" * 300
    res = cli(["train", f"hydra.run.dir={tmp_path / long}", "trainer.max_steps=2"], tmp_path)
    one_line(res, "hydra.run.dir=", "300", "255", "shorter")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing/" + "a" * 300, "b" * 256, "/".join(["c" * 200] * 25)])
def test_a_run_or_sweep_dir_too_long_is_one_line(tmp_path, where):
    for args in (["train", f"hydra.run.dir={tmp_path / where}"],
                 ["train", "-m", f"hydra.sweep.dir={tmp_path / where}", "seed=0,1"]):
        key = args[-2 if "-m" in args else -1].split("=")[0]
        one_line(cli_inprocess([*args, "trainer.max_steps=2", "trainer.progress=false"], tmp_path), f"{key}=",
                 "shorter")
        assert list(tmp_path.iterdir()) == []


# --- --cfg prints only a config that would run ------------------------------------------------------------------

@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "all"], ["-c", "job"], ["--cfg=job"],
                                   ["--cfg", "job", "--resolve"], ["--cfg", "job", "-p", "optimizer"]])
def test_cfg_refuses_an_invalid_config_like_a_run(tmp_path, flags):
    res = cli_inprocess(["train", *flags, "optimizer.lr=-1"], tmp_path)
    one_line(res, "optimizer.lr=-1: must be a number > 0")
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cli", BOTH_CLIS)
def test_cfg_job_checks_every_job_of_a_sweep_and_still_prints_a_valid_one(tmp_path, cli):
    one_line(cli_inprocess(["train", "--cfg", "job", "-m", "trainer.batch_size=32,0"], tmp_path),
             "trainer.batch_size=0: ")
    ok = cli(["train", "--cfg", "job", "optimizer=rmsprop"], tmp_path)
    assert ok.returncode == 0 and "name: rmsprop" in ok.stdout, ok.stderr
    bad = cli(["train", "--cfg", "job", "peft.pairs=[[0,2]]", "peft=solo", *LM], tmp_path)
    one_line(bad, "peft.pairs=[[0,2]]: ")
    assert list(tmp_path.iterdir()) == []


# --- builder-level errors found before any job of a sweep runs ----------------------------------------------------

SWEEPS = [
    (["task=digits_ae", "model=mlp,resnet"], "model=resnet: ", ["task=digits_ae", "model=mlp or model=seq2d"]),
    (["model=seq2d", "task=digits_ae", "model.pattern=mlp,rnn"], "model.pattern=rnn: ", ["task=digits_ae"]),
    (["model=resnet", "model.variant=fc,cifar"], "model.variant=cifar: ", ["image", "model.variant=fc"]),
    (["model=resnet", "task=mnist", "model.depth=20,21"], "model.depth=21: ", ["6n+2"]),
    (["model=resnet", "task=mnist", "model.variant=resnet18", "optimizer=adam,cadam"],
     "model.variant=resnet18: ", ["optimizer=cadam", "variant=cifar or fc"]),
    (["peft=none,lora"], "peft=lora: ", ["model=mlp", "language model"]),
    (["peft=full,solo"], "peft=solo: ", ["model=mlp", "language model"]),
    (["optimizer=adam,cadam", "model.homotopy=false"], "model.homotopy=false: ", ["optimizer=cadam"]),
    (["task=digits_ae,digits", "model.init=pca"], "model.init=pca: ", ["task=digits", "autoencoder"]),
    (["model=seq2d", "model.pattern=grid", "model.grid.sizes=[in,code,out]", "model.grid.layout=[[I,null,null],"
      "[W,null,null],[null,W,null]]", "task=digits_ae,digits"], "model.grid.sizes=[in,code,out]: ", ["task=digits"]),
    (["task=digits,e2e"], "model=mlp: ", ["task=e2e", "language model"]),
    ([*LM, "peft=solo", "peft.placement=pairs", "peft.pairs=[[0,2]],[[0,9]]"], "peft.pairs=[[0,9]]: ", ["4 blocks"]),
]


@pytest.mark.parametrize("args,start,words", SWEEPS, ids=[" ".join(a[0]) for a in SWEEPS])
def test_a_sweep_finds_a_builder_level_error_before_any_job_runs(tmp_path, args, start, words):
    sweep = tmp_path / "sweep"
    res = cli_inprocess(["train", "-m", f"hydra.sweep.dir={sweep}", "trainer.max_steps=2", "trainer.progress=false",
                         *args], tmp_path)
    one_line(res, start, *words)
    assert not sweep.exists()


@pytest.mark.slow          # the in-process test above is in the fast suite; a real process per kind: test_bad_inputs
def test_a_sweep_finds_a_builder_level_error_before_any_job_runs_in_the_real_cli(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(["train", "-m", f"hydra.sweep.dir={sweep}", "trainer.max_steps=2", "task=digits_ae",
                   "model=mlp,resnet"], tmp_path)
    one_line(res, "model=resnet: ")
    assert not sweep.exists()


def test_library_callers_get_the_refusals_of_the_options_themselves():
    from contnet.continuation.npacs import NPACSOptions
    from contnet.models.mlp import MLPConfig
    from contnet.peft.solo import SoloConfig
    for bad, line in [(lambda: SoloConfig(pairs=[[0, 2]]).check(), "peft.pairs=[[0,2]]: only read with"),
                      (lambda: SoloConfig(placement="pairs", pairs=[[0, 2, 5]]).check(), "peft.pairs=[[0,2,5]]: "),
                      (lambda: MLPConfig(widths=[]).check(), "model.widths=[]: "),
                      (lambda: NPACSOptions(ratio_mode="intended").check(), "optimizer.ratio_mode=intended: ")]:
        with pytest.raises(ConfigError) as e:
            bad()
        assert str(e.value).startswith(line), str(e.value)
