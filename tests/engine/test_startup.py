"""engine/startup.py: a command imports with the collector's full passes held back, and its work (the training
loop) runs at the collector's usual pace; whoever never asked keeps their own thresholds."""
from __future__ import annotations

import gc

import pytest

from contnet.engine import startup
from tests.helpers.cli import cli_inprocess


@pytest.fixture
def own_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(1234, 7, 9)
    yield (1234, 7, 9)
    startup.started()
    gc.set_threshold(*before)


def test_starting_holds_full_passes_back_and_started_puts_the_callers_thresholds_back(own_thresholds):
    startup.starting()
    assert gc.get_threshold() == startup.STARTUP_THRESHOLDS
    startup.starting()                                   # a second call (a nested command) keeps the first saved
    startup.started()
    assert gc.get_threshold() == own_thresholds


def test_started_without_starting_leaves_a_library_callers_thresholds_alone(own_thresholds):
    startup.started()
    assert gc.get_threshold() == own_thresholds


def test_contnet_train_starts_with_full_passes_held_back_and_trains_at_the_usual_pace(tmp_path, monkeypatch,
                                                                                      own_thresholds):
    """Through the CLI's entry point: when fit() begins, the start-up thresholds hold; in the training loop and
    after the command, the caller's own are back."""
    from contnet.engine import loop
    seen = {}
    real_started, real_train = startup.started, loop.train

    def started():
        seen.setdefault("fit begins", gc.get_threshold())
        real_started()

    def train(lp, signals):
        seen["loop"] = gc.get_threshold()
        return real_train(lp, signals)

    monkeypatch.setattr(startup, "started", started)
    monkeypatch.setattr(loop, "train", train)
    res = cli_inprocess(["train", "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert seen == {"fit begins": startup.STARTUP_THRESHOLDS, "loop": own_thresholds}
    assert gc.get_threshold() == own_thresholds
