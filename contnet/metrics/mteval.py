"""BLEU and NIST with the conventions of NIST mteval-v13a, as the E2E challenge's scorer (e2e-metrics, `-p`)
applies them: 13a tokenisation, case-insensitive, corpus-level statistics, multiple references per segment.

- BLEU-4: clipped n-gram precisions (clip = max count in any one reference), uniform weights, no smoothing,
  brevity penalty against the *closest* reference length of each segment (ties: the shorter one).
- NIST-5: information weights info(w1..wn) = log2(count(w1..wn−1) / count(w1..wn)) over all reference
  n-grams of the corpus (for unigrams the prefix count is the number of reference words); per n the sum of
  info over clipped matches divided by the number of hypothesis n-grams; summed over n = 1..5; length penalty
  exp(β·log²(min(1, hyp_len / ref_len))) with the *average* reference length and β chosen so that a length
  ratio of 2/3 gives 0.5.
Written from the published definitions (Papineni et al. 2002; Doddington 2002; mteval-v13a's documented
behaviour); only the 13a tokeniser is borrowed, from sacrebleu.
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


NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def nist(hyps: list[str], refs: list[list[str]], max_n: int = 5, lowercase: bool = True) -> float:
    """Corpus NIST (typically 0–10+)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    tok_hyps = [tokenize_13a(h, lowercase) for h in hyps]
    tok_refs = [[tokenize_13a(r, lowercase) for r in rs] for rs in refs]
    counts: Counter = Counter()             # every reference n-gram of the corpus, n = 1..max_n
    ref_words = 0
    for rs in tok_refs:
        for r in rs:
            ref_words += len(r)
            for n in range(1, max_n + 1):
                counts.update(ngrams(r, n))

    def info(g: tuple) -> float:
        prefix = ref_words if len(g) == 1 else counts[g[:-1]]
        return math.log2(prefix / counts[g])

    gain, totals = [0.0] * max_n, [0] * max_n
    hyp_len, ref_len = 0, 0.0
    for h, rs in zip(tok_hyps, tok_refs):
        hyp_len += len(h)
        ref_len += sum(len(r) for r in rs) / len(rs)
        for n in range(1, max_n + 1):
            matched = _clipped(ngrams(h, n), [ngrams(r, n) for r in rs])
            gain[n - 1] += sum(info(g) * c for g, c in matched.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    score = sum(gain[i] / totals[i] for i in range(max_n) if totals[i] > 0)
    ratio = min(1.0, hyp_len / ref_len) if ref_len > 0 else 0.0
    penalty = math.exp(-NIST_BETA * math.log(ratio) ** 2) if ratio > 0 else 0.0
    return score * penalty
