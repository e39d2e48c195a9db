"""BLEU and NIST as the E2E challenge's scorer (e2e-metrics) computes them: 13a tokenisation, case-insensitive,
corpus-level statistics, multiple references per segment.  NIST comes in the scorer's two modes (`nist(mode=)`):
its Python port (`-p`, `python`, our default: LoRA's README recipe scores with `-p`, so the papers' tables that ours
sit beside do), and its own default, which runs the Perl mteval-v13a script (`mteval`, what the E2E challenge reported).

- BLEU-4: clipped n-gram precisions (clip = max count in any one reference), uniform weights, no smoothing,
  brevity penalty against the *closest* reference length of each segment (ties: the shorter one).  The two
  modes agree on BLEU.
- NIST-5: information weights info(w1..wn) = log2(count(w1..wn−1) / count(w1..wn)) over all reference
  n-grams of the corpus (for unigrams the prefix count is the number of reference words); per n the sum of
  info over clipped matches divided by the number of hypothesis n-grams; summed over n = 1..5; length penalty
  exp(β·log²(min(1, hyp_len / ref_len))) with β chosen so that a length ratio of 2/3 gives 0.5.  ref_len is
  where the modes part (nist_ref_length): `-p` sums each segment's mean reference length; the default's
  mteval run divides all reference words by the number of reference sets, which is the largest number of
  references of any MR (the scorer pads the others with empty references), so on E2E its penalty is ~never
  below 1 and its NIST is the higher one for outputs shorter than the references.
Written from the published definitions (Papineni et al. 2002; Doddington 2002) and the documented behaviour of
mteval-v13a and e2e-metrics' measure_scores.py; only the 13a tokeniser is borrowed, from sacrebleu.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache


@lru_cache(maxsize=1)
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    return Tokenizer13a()


def tokenize_13a(text: str, lowercase: bool = True) -> list[str]:
    text = text.lower() if lowercase else text
    return _tokenizer_13a()(text.strip()).split()


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _clipped(hyp: Counter, refs: list[Counter]) -> Counter:
    best: Counter = Counter()
    for r in refs:
        best |= r                      # element-wise max over references
    return hyp & best                  # element-wise min: clipped matches


def bleu(hyps: list[str], refs: list[list[str]], max_n: int = 4, lowercase: bool = True) -> float:
    """Corpus BLEU in [0, 1]; hyps[k] is scored against every string in refs[k]."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    hits, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, rs in zip(hyps, refs):
        h = tokenize_13a(hyp, lowercase)
        rt = [tokenize_13a(r, lowercase) for r in rs]
        hyp_len += len(h)
        ref_len += min((len(r) for r in rt), key=lambda n: (abs(n - len(h)), n))
        for n in range(1, max_n + 1):
            hc = ngrams(h, n)
            hits[n - 1] += sum(_clipped(hc, [ngrams(r, n) for r in rt]).values())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0 or min(hits) == 0:
        return 0.0
    log_prec = sum(math.log(hits[i] / totals[i]) for i in range(max_n)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_prec)


NIST_MODES = ("mteval", "python")       # e2e-metrics without `-p` (its default) | with `-p`
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def nist_length_penalty(ratio: float) -> float:
    """exp(−β·log²(ratio)) below ratio 1 (1 at or above it), β such that a ratio of 2/3 costs half the score."""
    if ratio >= 1:
        return 1.0
    return math.exp(-NIST_BETA * math.log(ratio) ** 2) if ratio > 0 else 0.0


def nist_ref_length(tok_refs: list[list[list[str]]], mode: str = "python") -> float:
    """The reference length that NIST's length penalty sets the output length against.

    mteval: e2e-metrics' default writes reference k of every MR into the k-th reference set of the mteval
    SGM files and pads MRs with fewer references with empty segments (mteval needs one segment per set),
    and mteval-v13a divides the corpus's reference words by the number of sets — the largest number of
    references of any MR.  On E2E test (up to 45 references per MR) that is ~2,840 words for 630 MRs, so
    the penalty is 1 for any output over ~4.5 words per MR.
    python (`-p`): the sum over segments of each segment's mean reference length."""
    if mode == "mteval":
        return sum(len(r) for rs in tok_refs for r in rs) / max(len(rs) for rs in tok_refs)
    return sum(sum(len(r) for r in rs) / len(rs) for rs in tok_refs)


def _information(tok_refs: list[list[list[str]]], max_n: int):
    """info(w1..wn) = log2(count(w1..wn−1) / count(w1..wn)) over every reference n-gram of the corpus
    (for unigrams the prefix count is the number of reference words): rarer continuations weigh more."""
    counts: Counter = Counter()
    ref_words = 0
    for rs in tok_refs:
        for r in rs:
            ref_words += len(r)
            for n in range(1, max_n + 1):
                counts.update(ngrams(r, n))

    def info(g: tuple) -> float:
        prefix = ref_words if len(g) == 1 else counts[g[:-1]]
        return math.log2(prefix / counts[g])
    return info


def check_nist_mode(mode: str) -> str:
    if mode not in NIST_MODES:
        raise ValueError(f"nist={mode!r}: use mteval (the e2e-metrics scorer's default, mteval-v13a) or python "
                         "(its -p mode)")
    return mode


def nist(hyps: list[str], refs: list[list[str]], max_n: int = 5, lowercase: bool = True,
         mode: str = "python") -> float:
    """Corpus NIST-5 (typically 0–10+) as e2e-metrics computes it: mode mteval = its default, python = `-p`.

    The modes differ in two places only: the reference length of the length penalty (nist_ref_length), and
    the n-gram count of an output shorter than n words (mteval: 0; `-p`: len − n + 1, which is negative).
    An n whose total count is not positive adds nothing (`-p` itself would divide by zero there)."""
    check_nist_mode(mode)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    tok_hyps = [tokenize_13a(h, lowercase) for h in hyps]
    tok_refs = [[tokenize_13a(r, lowercase) for r in rs] for rs in refs]
    info = _information(tok_refs, max_n)
    gain, totals = [0.0] * max_n, [0] * max_n
    for h, rs in zip(tok_hyps, tok_refs):
        for n in range(1, max_n + 1):
            matched = _clipped(ngrams(h, n), [ngrams(r, n) for r in rs])
            gain[n - 1] += sum(info(g) * c for g, c in matched.items())
            totals[n - 1] += len(h) - n + 1 if mode == "python" else max(len(h) - n + 1, 0)
    score = sum(gain[i] / totals[i] for i in range(max_n) if totals[i] > 0)
    ref_len = nist_ref_length(tok_refs, mode)
    hyp_len = sum(len(h) for h in tok_hyps)
    return score * nist_length_penalty(hyp_len / ref_len if ref_len > 0 else 0.0)
