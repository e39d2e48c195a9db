"""The golden runs: a few tiny, canonical trainings whose metrics are kept as fixtures (tests/golden/fixtures/),
so that a change that should not move a number can be shown not to (tests/golden/test_golden.py).

Each run is composed by Hydra's compose API from `contnet.conf` and trained in this process by the public
engine, `contnet.engine.run.run(cfg, run_dir)`.  What is kept of a run (`result`): every record of its
metrics.jsonl without the wall-clock fields, and status, steps, final and best of its summary.json.

Together the runs touch every optimizer (adam, rmsprop, sgd, cadam, crmsprop, continuation, parc with the
default and the authors' arclength keys), the schedulers cosine, step and linear_warmup, grad clipping, the
closed-form PCA start, Sequential2D with dense skips, ResNet (BatchNorm recalibration; the skip homotopy
under PARC), a stopped-and-resumed run, and tiny-gpt2 with Solo Connection and LoRA on the embedded
(synthetic) E2E data.  Every run takes a second or two on one CPU thread.

This module imports nothing from other test modules: the generator (tests/golden/regenerate.py) and the
test import it alone.
"""
from __future__ import annotations

import io
import json
import math
import os
import signal
import tempfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

# every run: one thread, deterministic algorithms, no wall-clock checkpoints, no progress bar, jsonl only
COMMON = ["trainer.progress=false", "trainer.threads=1", "trainer.deterministic=true", "trainer.device=cpu",
          "trainer.precision=fp32", "trainer.checkpoint_every_s=0", "logger=jsonl", "seed=0"]

# the tiny-gpt2 runs: generated E2E-style lines only (never files from task.data_dir, never a download),
# smoke scale, short sequences
LM = ["model=tiny-gpt2", "task=e2e", "task.synthetic=true", "task.download=false", "task.scale=smoke",
      "task.max_len=48", "trainer.batch_size=8", "trainer.max_steps=8", "trainer.eval_every=4"]

RUNS: dict[str, list[str]] = {
    # plain Adam on a classifier, cosine schedule, gradient clipping
    "adam_mlp_cosine_clip": ["task=digits", "model=mlp", "model.width=32", "optimizer=adam", "optimizer.lr=3e-3",
                             "scheduler=cosine", "trainer.grad_clip=1.0", "trainer.max_steps=40",
                             "trainer.eval_every=10", "trainer.batch_size=32"],
    # RMSProp on the fully connected ResNet (BatchNorm: recalibrated before every evaluation), step schedule
    "rmsprop_resnet_step": ["task=digits", "model=resnet", "model.width=32", "model.blocks=2", "optimizer=rmsprop",
                            "optimizer.lr=1e-3", "scheduler=step", "scheduler.step_size=10", "scheduler.gamma=0.5",
                            "trainer.max_steps=30", "trainer.eval_every=10", "trainer.batch_size=32",
                            "trainer.bn_recalibrate=2"],
    # SGD with momentum on Sequential2D with dense skips
    "sgd_seq2d_dense": ["task=digits", "model=seq2d", "model.pattern=dense", "model.depth=3", "model.width=32",
                        "optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9", "trainer.max_steps=40",
                        "trainer.eval_every=10", "trainer.batch_size=32"],
    # C-Adam from the closed-form PCA start, cosine schedule; also stopped at step 24 (SIGTERM → checkpoint,
    # status interrupted) and resumed with trainer.resume=auto: the resumed run must equal the uninterrupted one
    "cadam_pca_cosine_resume": ["task=digits_ae", "model.init=pca", "model.ae_widths=null", "model.width=16",
                                "optimizer=cadam", "optimizer.lr=3e-3", "optimizer.u_freq=5", "scheduler=cosine",
                                "trainer.max_steps=40", "trainer.eval_every=10", "trainer.batch_size=64",
                                "trainer.log_every=1"],
    # C-RMSProp with the secant (NPACS) predictor, linear warm-up; model.init=auto resolves to the PCA start
    "crmsprop_secant_warmup": ["task=digits_ae", "model.width=16", "model.ae_widths=null", "optimizer=crmsprop",
                               "optimizer.lr=1e-3", "optimizer.secant=true", "optimizer.u_freq=5",
                               "scheduler=linear_warmup", "scheduler.warmup_steps=10", "trainer.max_steps=40",
                               "trainer.eval_every=10", "trainer.batch_size=64"],
    # the generic continuation optimizer around SGD, on a homotopy classifier
    "continuation_sgd_mlp": ["task=digits", "model.width=32", "optimizer=continuation", "optimizer.inner=sgd",
                             "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.u_freq=5",
                             "trainer.max_steps=40", "trainer.eval_every=10", "trainer.batch_size=32"],
    # PARC with its default arclength keys, on an autoencoder (PCA start by init=auto)
    "parc_default_ae": ["task=digits_ae", "model.width=16", "model.ae_widths=null", "optimizer=parc",
                        "optimizer.lr=3e-3", "trainer.max_steps=40", "trainer.eval_every=10",
                        "trainer.batch_size=64"],
    # PARC with the authors' arclength keys (constraint=authors), on the ResNet with its skip homotopy
    "parc_authors_resnet": ["task=digits", "model=resnet", "model.width=32", "model.blocks=2", "optimizer=parc",
                            "optimizer/arclength=authors", "optimizer.lr=3e-3", "trainer.max_steps=30",
                            "trainer.eval_every=10", "trainer.batch_size=32", "trainer.bn_recalibrate=2"],
    # tiny-gpt2 + Solo Connection (λ ramp over 6 steps); decodes the 4 test MRs at the end (beam 2)
    "tinygpt2_solo_e2e": [*LM, "peft=solo", "peft.lambda_ramp_steps=6", "task.generation.max_new_tokens=12",
                          "task.meteor=false"],
    # tiny-gpt2 + LoRA; no decoding (validation loss and perplexity only)
    "tinygpt2_lora_e2e": [*LM, "peft=lora", "optimizer.lr=3e-3", "task.generate_splits=[]"],
}

# run id → the step whose training record sends SIGTERM: the run stops (and checkpoints) after the next step
RESUMED = {"cadam_pca_cosine_resume": 23}


def is_timing(key: str) -> bool:
    """Keys of a record or summary that measure wall-clock time: never kept, never compared."""
    return key == "time_s" or key.endswith("_s") or key == "steps_per_s"


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="contnet.conf", version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def overrides(run_id: str, data_dir: Path) -> list[str]:
    over = [*COMMON, *RUNS[run_id]]
    if any(o == "task=e2e" for o in over):
        over.append(f"task.data_dir={data_dir}")     # an empty directory: only the generated lines are used
    return over


def read_records(run_dir: Path) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not is_timing(k)} for line in lines]


def kept(summary: dict) -> dict:
    """What is compared of a summary: JSON's reading of it (as summary.json holds it), timing keys dropped."""
    s = json.loads(json.dumps(summary))
    return {"status": s["status"], "steps": s["steps"],
            "final": {k: v for k, v in s["final"].items() if not is_timing(k)},
            "best": {k: v for k, v in s["best"].items() if not is_timing(k)}}


@contextmanager
def offline_env(tmp: Path):
    """No network and nothing written outside `tmp` (the settings of tests/conftest.py's autouse fixture)."""
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp), "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "CONTNET_DATA": str(tmp / "data")}
    saved = {k: os.environ.get(k) for k in [*env, "WANDB_API_KEY"]}
    os.environ.update(env)
    os.environ.pop("WANDB_API_KEY", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _StopAtStep:
    """A logger that sends this process SIGTERM when the training record of `step` reaches it: the loop then
    saves a checkpoint after the next step and ends with status interrupted (contnet/engine/signals.py).
    Needs trainer.log_every=1, so that records reach the loggers at their step."""

    def __init__(self, step: int):
        self.step = step

    def log(self, record):
        if record["step"] == self.step and "train/loss" in record:
            os.kill(os.getpid(), signal.SIGTERM)

    def summary(self, summary):
        pass

    def close(self, status):
        pass


@contextmanager
def stop_at(step: int):
    """The one engine internal the golden runs rely on: run()'s logger factory (tests/topics/test_resume.py uses the
    same hook), extended by a logger that stops the run."""
    from contnet.engine import run as run_mod
    make = run_mod.make_loggers
    run_mod.make_loggers = lambda *a, **k: [*make(*a, **k), _StopAtStep(step)]
    try:
        yield
    finally:
        run_mod.make_loggers = make


def _train(over: list[str], run_dir: Path) -> dict:
    import torch

    from contnet.engine.run import run
    threads = torch.get_num_threads()          # run() sets both: leave the process as it was
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with redirect_stdout(io.StringIO()):        # the final table run() prints
            return run(compose(over), run_dir)
    finally:
        torch.set_num_threads(threads)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
                != deterministic:
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def result(run_id: str, workdir: Path | None = None) -> dict:
    """Train run `run_id` in this process; {"records": [...], "summary": {...}} (and for a resumed run,
    "cut": the stopped run's summary, "resumed": the records and summary after trainer.resume=auto)."""
    with tempfile.TemporaryDirectory(prefix=f"golden-{run_id}-", dir=workdir) as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        over = overrides(run_id, tmp / "data")
        with offline_env(tmp):
            summary = _train(over, tmp / "run")
            out = {"records": read_records(tmp / "run"), "summary": kept(summary)}
            if run_id in RESUMED:
                with stop_at(RESUMED[run_id]):
                    cut = _train(over, tmp / "cut")
                resumed = _train([*over, "trainer.resume=auto"], tmp / "cut")
                out["cut"] = kept(cut)
                out["resumed"] = {"records": read_records(tmp / "cut"), "summary": kept(resumed)}
    return out


def dumps(obj) -> str:
    """Fixture text: floats as JSON prints them (repr, which reads back to the same double); a list or dict
    of scalars (a record, the overrides) on one line, one item per line above them."""
    def fmt(v, pad: str) -> str:
        nested = isinstance(v, (dict, list)) and any(isinstance(x, (dict, list)) for x in
                                                      (v.values() if isinstance(v, dict) else v))
        if not nested:
            return json.dumps(v, allow_nan=True)
        inner = pad + " "
        if isinstance(v, dict):
            items = [f"{inner}{json.dumps(k)}: {fmt(x, inner)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        return "[\n" + ",\n".join(inner + fmt(x, inner) for x in v) + f"\n{pad}]"
    return fmt(obj, "") + "\n"


def same(a, b) -> bool:
    """Bit-for-bit equality of two JSON values (NaN equals NaN; 0.0 and -0.0 differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b
