"""`contnet params`: the meta-device count equals what a real build (as in training) reports."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch

from contnet.cli import params
from contnet.engine.run import resolve_auto
from contnet.models.common import count_parameters
from contnet.registry import MODELS, PEFTS, TASKS
from tests.helpers.config import compose

E2E_SMOKE = ["task=e2e", "task.synthetic=true", "task.scale=smoke"]     # generated lines: no data files


def real_count(overrides):
    """Build as `contnet train` does (real weights, on the CPU) and count."""
    cfg = compose(overrides)
    resolve_auto(cfg)
    task = TASKS.get(cfg.task.name)(cfg.task, int(cfg.seed))
    model = MODELS.get(cfg.model.name)(cfg.model, task)
    model = PEFTS.get(cfg.peft.name)(cfg.peft, model, task)
    return count_parameters(model)


@pytest.mark.parametrize("overrides", [
    ["model=mlp", "task=digits"],
    ["model=mlp", "task=digits_ae", "model.widths=[32,16]"],
    ["model=seq2d", "task=digits"],
    ["model=seq2d", "task=digits", "model.density=0.3"],          # masked entries are not trainable
    ["model=seq2d", "task=digits", "model.pattern=resnet", "model.resnet.skip=diag"],
    ["model=resnet", "task=digits"],
    ["model=tiny-gpt2", "peft=none", *E2E_SMOKE],
    ["model=tiny-gpt2", "peft=full", *E2E_SMOKE],
    ["model=tiny-gpt2", "peft=lora", *E2E_SMOKE],
    ["model=tiny-gpt2", "peft=solo", *E2E_SMOKE],
    ["model=tiny-gpt2", "peft=solo", "optimizer=cadam", *E2E_SMOKE],
], ids=lambda o: " ".join(o))
def test_meta_count_equals_a_real_build(overrides):
    trainable, total = params.count(compose(overrides))
    assert (trainable, total) == real_count(overrides)
    assert 0 < trainable <= total


def test_every_model_is_built_by_its_registry_builder_on_the_meta_device(monkeypatch):
    seen = {}
    MODELS.names()
    for name in MODELS.names():
        builder = MODELS._items[name]

        def spy(cfg, task, _b=builder, _n=name):
            seen[_n] = (torch.empty(0).device.type, task is None)
            return _b(cfg, task)
        monkeypatch.setitem(MODELS._items, name, spy)
    for name in MODELS.names():
        extra = ["task=digits"] if MODELS.config(name).needs_task else ["task=e2e"]
        params.count(compose([f"model={name}", *extra]))
    assert {n: d for n, (d, _) in seen.items()} == {n: "meta" for n in MODELS.names()}
    # a language model's shapes are shipped: no task (and so no data files) is needed
    assert {n for n, (_, no_task) in seen.items() if no_task} == {
        n for n in MODELS.names() if not MODELS.config(n).needs_task}


def test_cli_prints_one_row_per_choice():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert params.main(["model=mlp,seq2d", "task=digits"]) == 0
    rows = [ln.split() for ln in buf.getvalue().splitlines()[1:]]
    assert [r[0] for r in rows] == ["mlp", "seq2d"]
    assert rows[0][2:4] == rows[1][2:4]             # seq2d pattern=mlp is the same network as model=mlp


def test_a_model_that_needs_a_task_counts_on_the_default_task_without_nlg_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTNET_DATA", str(tmp_path))          # no E2E files anywhere
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert params.main(["model=resnet"]) == 0           # counted on task=digits, the composed default
    row = buf.getvalue().splitlines()[1].split()
    assert row[0] == "resnet" and row[2] == row[3]
    assert int(row[2].replace(",", "")) == real_count(["model=resnet"])[0]
