"""E2E scores on small examples whose values were worked out by hand (see the comments)."""
from __future__ import annotations

import logging
import math

import pytest

from contnet.metrics import coco, mteval
from contnet.metrics.e2e import group_references, score_e2e, write_e2e_files


def test_bleu_hand_example():
    # hyp: the cat sat on the mat / ref: the cat sat on a mat
    # clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths -> BP 1; BLEU = (1/12)^(1/4)
    b = mteval.bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert b == pytest.approx((1 / 12) ** 0.25, abs=1e-12)


def test_bleu_case_tokenisation_closest_reference_and_sacrebleu():
    # 13a splits "mat." and the comparison is case-insensitive, so this is the hand example again
    assert mteval.bleu(["The cat sat on the mat."], [["the cat sat on a mat ."]]) == pytest.approx(
        mteval.bleu(["the cat sat on the mat ."], [["the cat sat on a mat ."]]))
    # brevity: hyp 4 tokens; refs of 5 and 9 tokens -> the closest (5) is used: BP = exp(1 - 5/4)
    hyp, refs = "a b c d", ["a b c d e", "a b c d e f g h i"]
    assert mteval.bleu([hyp], [refs]) == pytest.approx(math.exp(1 - 5 / 4))
    import sacrebleu
    hyps = ["the cat sat on the mat", "a dog ran in the park today", "it is a pub near the river"]
    refs = [["the cat sat on a mat", "a cat sat on the mat"], ["the dog ran in the park"],
            ["it is a pub by the river", "a pub near the river", "near the river is a pub"]]
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(3)]
    ref_score = sacrebleu.corpus_bleu(hyps, streams, lowercase=True, smooth_method="none", tokenize="13a").score
    assert 100 * mteval.bleu(hyps, refs) == pytest.approx(ref_score, abs=1e-9)


def test_nist_hand_examples():
    # hyp = ref = "a b": info(a) = info(b) = log2(2/1) = 1, info(a b) = log2(1/1) = 0 -> 2/2 + 0/1 = 1
    assert mteval.nist(["a b"], [["a b"]]) == pytest.approx(1.0)
    # hyp "a b" vs ref "a b c": unigram info log2(3) each -> log2(3); length ratio 2/3 -> penalty exactly 0.5
    assert mteval.nist(["a b"], [["a b c"]]) == pytest.approx(0.5 * math.log2(3))
    # hyp "a" vs ref "a b": 1 · exp(-β log²(1/2)) with β = -ln 0.5 / ln² 1.5
    beta = -math.log(0.5) / math.log(1.5) ** 2
    assert mteval.nist(["a"], [["a b"]]) == pytest.approx(math.exp(-beta * math.log(0.5) ** 2))
    # clipping against the max count in any one reference; the average reference length for the penalty
    assert mteval.nist(["a a"], [["a b", "a a"]]) > mteval.nist(["a a"], [["a b", "b b"]])


def test_rouge_l_and_cider_hand_examples():
    gts = {0: ["a c d e"], 1: ["a b c d"]}
    res = {0: ["a b c d"], 1: ["a b"]}
    # LCS 3 of 4/4 -> F = 0.75;  LCS 2: P 1, R 0.5, β=1.2 -> (1+1.44)·0.5 / (0.5 + 1.44) = 0.628866
    f2 = (1 + 1.2 ** 2) * 1 * 0.5 / (0.5 + 1.2 ** 2 * 1)
    assert coco.rouge_l(gts, res) == pytest.approx((0.75 + f2) / 2)
    # CIDEr-D: identical texts whose n-grams occur in one image only: cosine 1 for n = 1..4, no length
    # penalty, ×10 -> exactly 10
    gts = {0: ["a b c d e"], 1: ["f g h i j"]}
    assert coco.cider(gts, {0: ["a b c d e"], 1: ["f g h i j"]}) == pytest.approx(10.0)


def test_ptb_python_fallback_matches_coco_conventions():
    out = coco.ptb_tokenize(["The Vaults, a pub (cheap) isn't far.", ""], use_java=False)
    assert out == ["the vaults a pub cheap is n't far", ""]


@pytest.mark.slow     # one java start loads METEOR's paraphrase table (7-12 s); without java: the test below
@pytest.mark.skipif(not coco.java_available(), reason="METEOR 1.5 needs java")
def test_meteor_identical_and_disjoint():
    # one java start (it loads a large paraphrase table): an identical and a disjoint segment
    gts = {0: ["the cat sat on the mat"], 1: ["a dog barked loudly"]}
    corpus, (identical, disjoint) = coco.meteor(gts, {0: ["the cat sat on the mat"], 1: ["qq rr"]}, segments=True)
    assert identical > 0.9 and disjoint == 0.0 and 0 < corpus < 1


def test_score_e2e_without_java_skips_meteor_once(monkeypatch, caplog):
    import contnet.metrics.e2e as e2e
    monkeypatch.setattr(coco, "java_available", lambda: False)
    monkeypatch.setattr(e2e, "_warned", False)
    hyps, refs = ["the cat sat on the mat", "a dog ran"], [["the cat sat on a mat"], ["a dog ran far", "dogs ran"]]
    with caplog.at_level(logging.WARNING, logger="contnet"):
        s1 = score_e2e(hyps, refs)
        s2 = score_e2e(hyps, refs)
    assert set(s1) == {"bleu", "nist", "rouge_l", "cider"} and s1 == s2
    assert sum("METEOR skipped" in r.message for r in caplog.records) == 1
    assert s1["bleu"] == pytest.approx(100 * mteval.bleu(hyps, refs))


def test_group_references_and_files(tmp_path):
    mrs, refs = group_references([("m1", "r1"), ("m2", "r2"), ("m1", "r3")])
    assert mrs == ["m1", "m2"] and refs == [["r1", "r3"], ["r2"]]
    p, r = write_e2e_files(tmp_path, "test", ["h1", "h2"], refs)
    assert p.read_text() == "h1\nh2\n" and r.read_text() == "r1\nr3\n\nr2\n"
