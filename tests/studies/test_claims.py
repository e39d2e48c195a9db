"""Honest verdicts (contnet/studies/claims.py on contnet.report.stats): a difference is a win only by Welch's
t-test over the seeds; a setting at chance accuracy, or where nothing learns, counts neither way.  Small synthetic
seed lists where one change flips the verdict."""
from __future__ import annotations

import math

import pytest

from contnet.report.stats import LEVEL, above, compare_seeds, welch
from contnet.studies.claims import claim_by_key, uninformative


def cells_of(**arms) -> dict:
    """{setting: {arm: values}} from keyword `setting__arm=[test losses]` (first train loss 1.0, final 0.1)."""
    cells: dict = {}
    for name, values in arms.items():
        setting, arm = name.split("__")
        metrics = values if isinstance(values, dict) else {"test/loss": values}
        cells.setdefault(setting, {})[arm] = {"values": {"train/loss": [0.1] * 3, **metrics}, "first": [1.0] * 3,
                                              "runs": 3, "completed": 3, "params": 100}
    return cells


def test_welch_matches_the_textbook_and_needs_two_seeds_a_side():
    # t = (1.0 - 2.0) / sqrt(0.01/3 + 0.01/3) = -12.25, 4 degrees of freedom: p ≈ 2.6e-4
    assert welch([0.9, 1.0, 1.1], [1.9, 2.0, 2.1]) == pytest.approx(2.56e-4, rel=0.02)
    assert math.isnan(welch([1.0], [2.0, 2.1])) and welch([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert compare_seeds([0.9, 1.0, 1.1], [1.9, 2.0, 2.1], lower_better=True) == "better"
    assert compare_seeds([0.9, 1.0, 1.1], [1.9, 2.0, 2.1], lower_better=False) == "worse"
    assert compare_seeds([0.5, 1.0, 1.5], [0.6, 1.1, 1.6], lower_better=True) == "same"
    assert compare_seeds([1.0], [2.0], lower_better=True) == "untested"


def test_the_same_mean_gap_is_a_win_only_when_the_seeds_agree():
    """(a): C-Adam 0.1 below Adam on both tasks.  Tight seeds: held; the same means with wide seeds: did not hold
    (the old rule, 'lower on a majority', would have said held both times)."""
    npacs = claim_by_key("npacs")
    tight = cells_of(t1__adam=[1.00, 1.01, 0.99], t1__cadam=[0.90, 0.91, 0.89])
    held, sentence = npacs.verdict(tight, {})
    assert held == "held" and "lower than Adam's on t1" in sentence and f"{LEVEL:.0%} level" in sentence
    wide = cells_of(t1__adam=[0.8, 1.0, 1.2], t1__cadam=[0.7, 0.9, 1.1])
    held, sentence = npacs.verdict(wide, {})
    assert held == "did not hold" and "no different from Adam's on t1" in sentence


def test_a_classifier_at_chance_is_not_informative_and_not_counted():
    """parity10 with every arm at 0.5 accuracy: its loss gap counts for nothing; lift one arm's accuracy above
    chance and the same gap counts."""
    at_chance = {"test/loss": [0.69, 0.691, 0.689], "test/acc": [0.49, 0.50, 0.51]}
    lower = {"test/loss": [0.60, 0.601, 0.599], "test/acc": [0.49, 0.50, 0.51]}
    cells = cells_of(parity10__adam=at_chance, parity10__cadam=lower)
    assert uninformative(cells, "parity10") == "every arm stayed at chance accuracy, 0.5"
    held, sentence = claim_by_key("npacs").verdict(cells, {})
    assert held == "not tested" and "not informative on parity10" in sentence
    cells["parity10"]["cadam"]["values"]["test/acc"] = [0.70, 0.72, 0.71]
    assert uninformative(cells, "parity10") == ""
    assert claim_by_key("npacs").verdict(cells, {})[0] == "held"


def test_nothing_learned_is_not_informative():
    cells = cells_of(t__adam=[1.0, 1.01, 0.99], t__cadam=[0.9, 0.91, 0.89])
    for arm in cells["t"].values():
        arm["values"]["train/loss"] = [1.2, 1.3, 1.25]          # above where it started (1.0)
    assert uninformative(cells, "t") == "no arm's training loss fell below its start"
    assert claim_by_key("npacs").verdict(cells, {})[0] == "not tested"


def test_above_chance_is_one_sided_and_needs_seeds():
    assert above([0.6, 0.62, 0.61], 0.5) and not above([0.49, 0.52, 0.50], 0.5) and not above([0.9], 0.5)


def test_parc_partly_holds_on_some_tasks():
    parc = claim_by_key("parc")
    cells = cells_of(a__adam=[1.0, 1.01, 0.99], a__parc=[0.9, 0.91, 0.89], b__adam=[1.0, 1.01, 0.99],
                     b__parc=[1.0, 1.02, 0.98])
    assert parc.verdict(cells, {})[0] == "partly held"
    cells["b"]["parc"]["values"]["test/loss"] = [0.8, 0.81, 0.79]
    assert parc.verdict(cells, {})[0] == "held"


def test_solo_verdict_tests_each_score_over_seeds_and_states_the_parameters():
    solo = claim_by_key("solo")
    scores = {"test/bleu": [60.0, 61.0, 59.0], "test/nist": [7.0, 7.1, 6.9], "test/rouge_l": [60.0, 60.5, 59.5]}
    up = {k: [v + 5 for v in vs] for k, vs in scores.items()}
    cells = cells_of(m__solo=up, m__lora=scores)
    cells["m"]["lora"]["params"] = 200
    held, sentence = solo.verdict(cells, {})
    assert held == "held" and "bleu better" in sentence and "trainable parameters 100 (Solo) vs 200 (LoRA)" in sentence
    cells["m"]["solo"]["values"] = {**cells["m"]["solo"]["values"], **{k: [v + 0.5 for v in vs]
                                                                      for k, vs in scores.items()}}
    held, sentence = solo.verdict(cells, {})
    assert held == "did not hold" and "bleu same" in sentence
    zero = {k: [0.0, 0.0, 0.0] for k in scores}
    assert solo.verdict(cells_of(m__solo=zero, m__lora=zero), {})[0] == "not informative"
