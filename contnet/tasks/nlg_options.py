"""Typed configs of the data-to-text tasks (contnet/tasks/e2e.py): e2e, webnlg, dart.

`task.scale` (full | cpu | smoke | auto) fills every size/length/beam key left null (e2e.py's SCALES):
full = the paper setup, cpu = a 2-core budget, smoke = seconds; auto = smoke for tiny-gpt2, else full.
Explicit keys always win.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Optional

from contnet.schema import Block, opt
from .common import TaskOptions, data_folder, data_root


@dataclass
class GenerationOptions(Block):
    """LoRA's decoder (spec §B4); null = from task.scale."""
    group: ClassVar[str] = "task.generation"
    num_beams: Optional[int] = opt(None, gt=0, integer=True)        # full: 10 | cpu: 4 | smoke: 2
    length_penalty: float = 0.8          # score = Σ log p / generated_len^0.8
    no_repeat_ngram_size: int = opt(4, ge=0, integer=True)    # over the generated tokens only (not the MR); 0: off
    # full/cpu: 64 | smoke: 24; decoding also stops at end-of-text or a blank line
    max_new_tokens: Optional[int] = opt(None, gt=0, integer=True)
    batch_size: Optional[int] = opt(None, gt=0, integer=True)       # MRs decoded together
    early_stopping: bool = True          # stop once num_beams hypotheses ended (speed; LoRA always runs 64 steps)


@dataclass
class NLGOptions(TaskOptions):
    """Keys of every data-to-text task (defaults of the JSON datasets, webnlg and dart)."""
    # the dataset's files; null: $CONTNET_DATA/<name>, else ~/.cache/contnet/data/<name>
    data_dir: Optional[str] = None
    format: str = opt("auto", choices=("auto", "json"))             # json only
    download: bool = False               # no pinned download for this dataset: put the files in data_dir
    synthetic: Any = opt(False, choices=(True, False, "auto"))      # generated lines are E2E-style only
    # auto (train when present, else valid) | train | valid (val = MRs held out of valid)
    train_split: str = opt("auto", choices=("auto", "train", "valid"))
    scale: str = opt("auto", choices=("auto", "full", "cpu", "smoke"))
    # read by scale=auto; conf/task/<name>.yaml fills it from model.name.  Not a task setting (a copy of the
    # model's name), so it takes no part in comparing configs
    model_name: Optional[str] = dataclasses.field(default=None, compare=False)
    split_seed: int = 0                  # subsets and held-out MRs are fixed by this seed, not by the run seed
    # sizes, null: from task.scale.  Training pairs (full = all); validation pairs for the loss; distinct test
    # MRs decoded and scored (full = all); train_split=valid: valid MRs held out as val; tokens per training
    # example (full = 512 as in LoRA)
    train_size: Optional[int] = opt(None, gt=0, integer=True)
    val_size: Optional[int] = opt(None, gt=0, integer=True)
    test_size: Optional[int] = opt(None, gt=0, integer=True)
    holdout_mrs: Optional[int] = opt(None, gt=0, integer=True)
    max_len: Optional[int] = opt(None, ge=2, integer=True)
    label_smoothing: float = opt(0.1, ge=0, le=1)       # LoRA E2E recipe; the loss covers completion tokens only
    eval_batch_size: Optional[int] = opt(16, gt=0, integer=True)   # validation-loss batch (at least trainer.batch_size)
    # splits decoded and scored at the final evaluation ([] or [none]: none; checked against the data's splits)
    generate_splits: Optional[List[str]] = opt(["test"])
    meteor: Any = opt("auto", choices=(True, False, "auto"))        # auto: when java is on PATH (else one warning line)
    # NIST as e2e-metrics computes it: python = its -p mode (LoRA's README recipe, so the papers' tables), mteval = its
    # default (Perl mteval-v13a, what the E2E challenge reported); only the length penalty differs (metrics/mteval.py)
    nist: str = opt("python", choices=("python", "mteval"))
    generation: GenerationOptions = dataclasses.field(default_factory=GenerationOptions)

    def check(self) -> None:
        super().check()
        self.generation.check()

    def root(self) -> Path:
        return data_folder(self.data_dir, data_root() / self.name)


@dataclass
class E2EConfig(NLGOptions):
    """E2E NLG data-to-text (restaurant MRs -> text): {train,valid,test}.txt (LoRA-style MR||reference) or the
    official trainset.csv / devset.csv / testset_w_refs.csv."""
    format: str = opt("auto", choices=("auto", "txt", "csv"))       # auto: txt first, then csv
    # fetch missing txt files (pinned microsoft/LoRA copy) when online; offline: a warning
    download: bool = True
    # auto: generated E2E-style lines when no valid/test files exist, at smoke scale (warns; data: synthetic)
    synthetic: Any = opt("auto", choices=(True, False, "auto"))


@dataclass
class WebNLGConfig(NLGOptions):
    """WebNLG 2017 (triples -> text; CC BY-NC-SA data): train.json, dev.json, test.json of the LoRA repository."""


@dataclass
class DARTConfig(NLGOptions):
    """DART v1.1.1 (triples -> text): dart-v1.1.1-full-{train,dev,test}.json of the LoRA repository."""


CONFIGS = {"e2e": E2EConfig, "webnlg": WebNLGConfig, "dart": DARTConfig}
