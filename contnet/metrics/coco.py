"""METEOR 1.5, ROUGE-L and CIDEr(-D) as the E2E scorer computes them: the coco-caption implementations
(pycocoevalcap 1.2, which e2e-metrics vendors) after Stanford PTB tokenisation (lower-cased, punctuation
tokens removed).  METEOR and the PTB tokeniser are Java programs shipped inside the pycocoevalcap wheel.

Without Java: METEOR is skipped (the caller warns once) and the tokenisation falls back to a Python
approximation of PTB + punctuation removal, which is exact on the E2E files' pre-tokenised text in all but
rare contraction cases.  We run the tokeniser jar ourselves (same class and flags as pycocoevalcap) so its
temporary file goes to the system temp directory, not into site-packages, which may be read-only.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
               "...", ";"}


@lru_cache(maxsize=1)
def java_available() -> bool:
    java = shutil.which("java")
    if java is None:
        return False
    try:
        return subprocess.run([java, "-version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _package_dir() -> Path:
    import pycocoevalcap
    return Path(list(pycocoevalcap.__path__)[0])      # a namespace package: no __file__


def _ptb_java(lines: list[str]) -> list[str]:
    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines))
        name = f.name
    try:
        out = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                              "-lowerCase", name], capture_output=True, check=True, timeout=600).stdout
    finally:
        os.unlink(name)
    result = out.decode("utf-8").split("\n")
    return result[:len(lines)] + [""] * (len(lines) - len(result))


_SPLIT = re.compile(r"(n't|'s|'re|'ve|'ll|'d|'m)\b|([.,!?;:()\[\]{}\"`]|--|-)", re.IGNORECASE)


def _ptb_python(line: str) -> str:
    """Lower-case, split off punctuation and English clitics the way PTB does (approximately)."""
    return " ".join(_SPLIT.sub(lambda m: f" {m.group(0)} ", line.lower()).split())


def ptb_tokenize(lines: list[str], use_java: bool | None = None) -> list[str]:
    """PTB-tokenised, lower-cased lines with the coco punctuation tokens removed."""
    use_java = java_available() if use_java is None else use_java
    # one sentence per line: inner newlines would shift every later line, empty lines are kept as "."
    clean = [(" ".join(s.split()) or ".") for s in lines]
    tok = _ptb_java(clean) if use_java else [_ptb_python(s) for s in clean]
    tok = [t.replace("(", "-LRB-").replace(")", "-RRB-") if not use_java else t for t in tok]
    return [" ".join(w for w in t.rstrip().split(" ") if w and w not in PUNCTUATION) for t in tok]


def coco_inputs(hyps: list[str], refs: list[list[str]], use_java: bool | None = None):
    """gts/res dicts in coco-caption's shape, PTB-tokenised in one pass (one java start)."""
    flat = list(hyps) + [r for rs in refs for r in rs]
    tok = ptb_tokenize(flat, use_java)
    res = {k: [tok[k]] for k in range(len(hyps))}
    gts, pos = {}, len(hyps)
    for k, rs in enumerate(refs):
        gts[k] = tok[pos:pos + len(rs)]
        pos += len(rs)
    return gts, res


def rouge_l(gts, res) -> float:
    from pycocoevalcap.rouge.rouge import Rouge
    return float(Rouge().compute_score(gts, res)[0])


def cider(gts, res) -> float:
    from pycocoevalcap.cider.cider import Cider
    return float(Cider().compute_score(gts, res)[0])


def meteor(gts, res, segments: bool = False):
    """Corpus METEOR 1.5 (or (corpus, per-segment list)); one java start, which loads the paraphrase table."""
    from pycocoevalcap.meteor.meteor import Meteor
    scorer = Meteor()
    try:
        corpus, per_segment = scorer.compute_score(gts, res)
        return (float(corpus), [float(x) for x in per_segment]) if segments else float(corpus)
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
