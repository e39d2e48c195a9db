"""The config is typed once per run, at the door (contnet.validation.validate in run()): every group's Options
class is converted from the composed config exactly once, and the builders receive those instances; a later run
of the same blocks in the process converts none (schema.typed keeps each checked block)."""
from __future__ import annotations

import collections

import pytest

import contnet.schema as schema
from contnet.engine.run import run
from tests.helpers.config import compose


@pytest.mark.parametrize("over", [[], ["optimizer=cadam", "task=digits_ae"],
                                  ["optimizer=parc", "task=digits_ae", "scheduler=cosine"]])
def test_each_group_is_typed_once_per_run(tmp_path, monkeypatch, over):
    counts: collections.Counter = collections.Counter()
    field_names = schema.field_names           # called once per conversion (an instance passes through unconverted)

    def counted(cls):
        counts[cls.group] += 1
        return field_names(cls)
    cfg = compose(["trainer.progress=false", "trainer.max_steps=3", "trainer.eval_every=0", *over])
    monkeypatch.setattr(schema, "field_names", counted)
    monkeypatch.setattr(schema, "_TYPED", {})     # as in a fresh process: nothing typed yet
    assert run(cfg, tmp_path / "r")["status"] == "completed"
    assert dict(counts) == {g: 1 for g in ("task", "model", "optimizer", "scheduler", "peft", "trainer", "logger")}
    counts.clear()                                 # the same config again in this process (a study's next run):
    assert run(cfg, tmp_path / "r2")["status"] == "completed"
    assert dict(counts) == {}                      # every block comes from typed()'s memo, none converted again
