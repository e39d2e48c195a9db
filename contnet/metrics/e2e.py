"""The five E2E NLG scores for one prediction per distinct MR against all of that MR's references.

Scales follow the papers' tables (Solo Connection, LoRA): BLEU, METEOR and ROUGE-L ×100; NIST and CIDEr as
they come.  (e2e-metrics prints BLEU 0.6770; the tables say 67.7.)  NIST is the scorer's `-p` mode by default (`nist="python"`: how
LoRA's README recipe scores, whose figures the papers' tables carry); `nist="mteval"` gives the scorer's own default
(the Perl mteval-v13a run that the E2E challenge reported); they differ in the length penalty only
(contnet/metrics/mteval.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

from . import coco, mteval

log = logging.getLogger("contnet")
_warned = False


def score_e2e(hyps: list[str], refs: list[list[str]], meteor: bool | None = None,
              nist: str = "python") -> dict[str, float]:
    """{'bleu', 'nist', 'meteor', 'rouge_l', 'cider'}; without Java METEOR is left out and ROUGE-L/CIDEr are
    approximate (one warning line; NLG tasks also record `scores: approximate` in summary.json).  `nist`:
    mteval (e2e-metrics' default) or python (its `-p`)."""
    global _warned
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need one hypothesis per reference set, got {len(hyps)} and {len(refs)}")
    if any(len(rs) == 0 for rs in refs):
        raise ValueError("every hypothesis needs at least one reference")
    mteval.check_nist_mode(nist)                     # before any work
    java = coco.java_available()
    scores = {"bleu": 100 * mteval.bleu(hyps, refs), "nist": mteval.nist(hyps, refs, mode=nist)}
    gts, res = coco.coco_inputs(hyps, refs, use_java=java)
    if meteor is not False and java:
        scores["meteor"] = 100 * coco.meteor(gts, res)
    if not java and not _warned:                    # say so once: these are not the official numbers
        log.warning("no java on PATH: %sROUGE-L and CIDEr approximate (a Python tokenizer, not the PTB one); "
                    "install a Java runtime for the official scores",
                    "METEOR skipped, " if meteor is not False else "")
        _warned = True
    scores["rouge_l"] = 100 * coco.rouge_l(gts, res)
    scores["cider"] = coco.cider(gts, res)
    return scores


def group_references(pairs: list[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """(MR, reference) pairs -> distinct MRs in first-seen order and their reference lists."""
    order: dict[str, list[str]] = {}
    for mr, ref in pairs:
        order.setdefault(mr, []).append(ref)
    return list(order), list(order.values())


def write_e2e_files(run_dir: Path, split: str, hyps: list[str], refs: list[list[str]]) -> tuple[Path, Path]:
    """e2e-metrics' input format: predictions one per line; references of one MR on consecutive lines,
    a blank line between MRs (so `measure_scores.py -p refs preds` re-scores the run with our default NIST,
    `task.nist=python`; without `-p` it is `task.nist=mteval`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pred_path, ref_path = run_dir / f"{split}_predictions.txt", run_dir / f"{split}_references.txt"
    pred_path.write_text("".join(h.replace("\n", " ").strip() + "\n" for h in hyps), encoding="utf-8")
    ref_path.write_text("\n".join("".join(r.strip() + "\n" for r in rs) for rs in refs), encoding="utf-8")
    return pred_path, ref_path
