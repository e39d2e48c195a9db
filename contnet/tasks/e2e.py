"""Data-to-text generation tasks (objective "generate"): `task=e2e` (and `webnlg`, `dart`).

Training follows the LoRA NLG recipe (spec §B1/§B3): input = context ids + EOS (separator) + " " + reference
ids + EOS; the loss covers completion tokens only (the separator predicts the first one), with label smoothing
0.1.  Validation = teacher-forced loss (plain NLL) and perplexity.  The final test evaluation decodes one text
per distinct MR with beam search, scores BLEU/NIST/METEOR/ROUGE-L/CIDEr against all of its references, and
writes `test_predictions.txt` / `test_references.txt` into `task.run_dir`.

The tokenizer belongs to the model: the LM builders call `task.bind_tokenizer(tok)` (the model is built after
the task with the task in hand), so the engine needs nothing beyond the Task interface.  `loss`/`evaluate` also
pick `model.tokenizer` up when nothing was bound (library use).

`task.scale` (full | cpu | smoke | auto) fills every size/length/beam key left null: full = the paper setup,
cpu = a 2-core budget, smoke = seconds (auto: smoke for tiny-gpt2, else full).  Explicit keys always win.
The keys, defaults and rules: contnet/tasks/nlg_options.py (E2EConfig, WebNLGConfig, DARTConfig).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from contnet.metrics.coco import java_available
from contnet.metrics.e2e import group_references, score_e2e, write_e2e_files
from contnet.parallel import context, global_token_mean
from contnet.registry import TASK_CHECKS, TASKS, ConfigError
from contnet.schema import typed
from .base import Task, TaskMeta, batch_starts, shard_slice
from .e2e_data import LOADERS, DownloadFailed, expected_files, synthetic_e2e
from .e2e_generate import GenerationSettings, generate
from .nlg_options import CONFIGS, NLGOptions

log = logging.getLogger("contnet")

SCALES = {   # sizes: train/val in pairs, test in distinct MRs; holdout_mrs = val MRs carved out of valid
    "full": dict(train_size=None, val_size=None, test_size=None, holdout_mrs=50, max_len=512,
                 generation=dict(num_beams=10, max_new_tokens=64, batch_size=8)),
    "cpu": dict(train_size=None, val_size=120, test_size=30, holdout_mrs=12, max_len=128,
                generation=dict(num_beams=4, max_new_tokens=64, batch_size=10)),
    "smoke": dict(train_size=32, val_size=12, test_size=4, holdout_mrs=2, max_len=128,
                  generation=dict(num_beams=2, max_new_tokens=24, batch_size=4)),
}


def pick(cfg: NLGOptions, key, scale):
    value = getattr(cfg, key)
    return SCALES[scale][key] if value is None else value


def model_tokenizer(model):
    """`tokenizer` attribute on the model or any wrapper/inner module (peft wrappers forward attributes)."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        for m in model.modules():
            tok = m.__dict__.get("tokenizer")
            if tok is not None:
                break
    return tok


def sample_mrs(pairs, n, rng) -> list:
    """Pairs of n distinct MRs picked at random (file order kept), or all when n is None."""
    mrs = list(dict.fromkeys(mr for mr, _ in pairs))
    if n is None or n >= len(mrs):
        return pairs
    keep = set(rng.sample(mrs, int(n)))
    return [p for p in pairs if p[0] in keep]


class NLGTask(Task):
    def __init__(self, cfg, seed: int, dataset: str = "e2e"):
        cfg = typed(CONFIGS[dataset], cfg)             # the registered builder already passes the typed config
        self.cfg, self.dataset = cfg, dataset
        self.run_dir: Path | None = None
        self.scale = scale = resolve_scale(cfg)
        self.max_len = int(pick(cfg, "max_len", scale))
        g = dict(SCALES[scale]["generation"], **{k: v for k, v in dataclasses.asdict(cfg.generation).items()
                                                 if v is not None})
        self.gen = GenerationSettings(**g)
        self.label_smoothing = cfg.label_smoothing
        self.provenance: dict[str, str] = {}       # merged into summary.json: where the numbers come from
        self.data = self._load_splits(cfg, scale)
        gen = ["test"] if cfg.generate_splits is None else [str(x) for x in cfg.generate_splits]
        unknown = [x for x in gen if x not in (*self.data, "none")]
        if unknown:
            raise ConfigError(f"task.generate_splits={unknown[0]}: unknown split; list some of {', '.join(self.data)} "
                              "or none, e.g. [test], or [] to decode nothing")
        self.generate_splits = [x for x in gen if x != "none"]               # [] (or [none]): no decoding
        if self.generate_splits and not java_available():
            self.provenance["scores"] = "approximate"
            log.warning("%s: no java on PATH: METEOR is skipped and ROUGE-L/CIDEr are approximate (a Python "
                        "tokenizer instead of the PTB one; summary.json says scores: approximate); install a "
                        "Java runtime for the official scores", dataset)
        self.tokenizer = None
        self._encoded: dict[str, list[tuple[list[int], int]]] = {}
        sizes = {k: len(v) for k, v in self.data.items()}
        self.meta = TaskMeta(name=dataset, objective="generate", input_shape=(self.max_len,), output_dim=0,
                             sizes=sizes, extra={"scale": scale, "test_mrs": len({m for m, _ in self.data["test"]})})
        log.info("%s (scale %s): %d train pairs, %d val pairs, %d test MRs", dataset, scale, sizes["train"],
                 sizes["val"], self.meta.extra["test_mrs"])

    # ---- data ----------------------------------------------------------------------------------------------
    def _load_splits(self, cfg: NLGOptions, scale) -> dict[str, list]:
        raw, train_split, self.provenance = load_raw(cfg, self.dataset, scale, cfg.download)
        rng = random.Random(cfg.split_seed)          # subsets fixed across run seeds
        if train_split == "valid":             # disjoint MRs: the val split is carved out of valid
            mrs = list(dict.fromkeys(m for m, _ in raw["valid"]))
            if len(mrs) < 2:
                raise ConfigError(f"task.train_split=valid needs at least 2 distinct MRs in the valid file of "
                                  f"{self.dataset} (found {len(mrs)}): some train, the rest held out as val")
            held = set(rng.sample(mrs, max(1, min(int(pick(cfg, "holdout_mrs", scale)), len(mrs) - 1))))
            train = [p for p in raw["valid"] if p[0] not in held]
            val = [p for p in raw["valid"] if p[0] in held]
        else:
            train, val = raw["train"], raw["valid"]
        train_size, val_size = pick(cfg, "train_size", scale), pick(cfg, "val_size", scale)
        if train_size is not None and train_size < len(train):
            train = rng.sample(train, int(train_size))
        if val_size is not None and val_size < len(val):
            val = val[:: max(1, len(val) // int(val_size))][: int(val_size)]
        test = sample_mrs(raw["test"], pick(cfg, "test_size", scale), rng)
        if not train:
            raise ConfigError(f"task={self.dataset}: the training split is empty")
        return {"train": train, "val": val, "test": test}

    def bind_tokenizer(self, tokenizer) -> None:
        """Called by the LM builders; splits are encoded lazily, once per tokenizer."""
        if tokenizer is self.tokenizer:
            return
        self.tokenizer, self._encoded = tokenizer, {}

    def _ensure_tokenizer(self, model=None):
        if self.tokenizer is None and model is not None:
            tok = model_tokenizer(model)
            if tok is not None:
                self.bind_tokenizer(tok)
        if self.tokenizer is None:
            raise ConfigError(f"task={self.dataset} has no tokenizer: build the model with a contnet LM builder "
                              "or call task.bind_tokenizer(tokenizer)")
        return self.tokenizer

    def context_ids(self, mr: str) -> list[int]:
        tok = self.tokenizer
        ids = tok.encode(mr, add_special_tokens=False) + [tok.eos_token_id]
        return ids[-(self.max_len - 1):]        # keep the end: the separator must stay

    def encoded(self, split: str) -> list[tuple[list[int], int]]:
        """(ids, context length incl. separator) per pair, truncated to max_len."""
        if split not in self._encoded:
            tok = self.tokenizer
            out = []
            for mr, ref in self.data[split]:
                ctx = self.context_ids(mr)
                comp = tok.encode(" " + ref, add_special_tokens=False) + [tok.eos_token_id]
                out.append(((ctx + comp)[: self.max_len], len(ctx)))
            self._encoded[split] = out
        return self._encoded[split]

    def collate(self, items, device):
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(ids) for ids, _ in items)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        for k, (seq, n_ctx) in enumerate(items):
            ids[k, :len(seq)] = torch.tensor(seq)
            mask[k, :len(seq)] = 1
            labels[k, n_ctx:len(seq)] = torch.tensor(seq[n_ctx:])     # completion tokens only
        return ids.to(device), mask.to(device), labels.to(device)

    # ---- Task interface --------------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        # no "train" here: a full pass over the training text at every evaluation would cost as much as an epoch
        return [s for s in ("val", "test") if self.meta.sizes.get(s)]

    def num_train(self) -> int:
        return len(self.data["train"])

    def train_batches(self, batch_size, generator, device, shard=None):
        """Whole batches like TensorTask; with `shard`, this rank tokenizes and pads only its slice of each
        global batch (to its own longest sequence: padding is masked, and the training loss is the global
        token mean, see `loss`)."""
        self._ensure_tokenizer()
        items = self.encoded("train")
        n = len(items)
        perm = torch.randperm(n, generator=generator).tolist()
        for i in batch_starts(n, batch_size):
            idx = perm[i:i + batch_size]
            yield self.collate([items[j] for j in idx[shard_slice(len(idx), shard)]], device)

    def _token_losses(self, model, batch, label_smoothing: float):
        ids, mask, labels = batch
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target = labels[:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                               ignore_index=-100, label_smoothing=label_smoothing, reduction="sum"), \
            (target != -100).sum()          # a tensor: no host sync in the training step

    def loss(self, model, batch):
        """(1−ε)·NLL + ε·mean_v(−log p_v), averaged over the batch's completion tokens (LoRA's loss)."""
        self._ensure_tokenizer(model)
        total, count = self._token_losses(model, batch, self.label_smoothing)
        if torch.is_grad_enabled():      # a training step: under torchrun the global token mean (one all_reduce)
            return global_token_mean(total, count, context())
        return total / count.clamp(min=1)

    @torch.no_grad()
    def evaluate(self, model, split, batch_size, device, final=False):
        self._ensure_tokenizer(model)
        was_training = model.training
        model.eval()
        try:
            items = self.encoded(split)
            total, count = 0.0, 0
            bs = max(int(batch_size), self.cfg.eval_batch_size or 0)
            for i in range(0, len(items), bs):
                t, c = self._token_losses(model, self.collate(items[i:i + bs], device), 0.0)
                total, count = total + float(t), count + int(c)
            loss = total / max(count, 1)
            metrics = {"loss": loss, "perplexity": float(torch.exp(torch.tensor(min(loss, 50.0))))}
            if final and split in self.generate_splits:
                metrics.update(self.generate_and_score(model, split, device))
        finally:
            model.train(was_training)
        return metrics

    def generate_and_score(self, model, split, device) -> dict[str, float]:
        mrs, refs = group_references(self.data[split])
        t0 = time.perf_counter()
        hyps = generate(model, self.tokenizer, [self.context_ids(mr) for mr in mrs], self.gen, device)
        log.info("%s: decoded %d MRs in %.1fs (beam %d)", split, len(mrs), time.perf_counter() - t0,
                 self.gen.num_beams)
        if self.run_dir is not None:
            write_e2e_files(self.run_dir, split, hyps, refs)
            (Path(self.run_dir) / f"{split}_mrs.txt").write_text("".join(m + "\n" for m in mrs), encoding="utf-8")
        meteor = self.cfg.meteor
        return score_e2e(hyps, refs, meteor=None if meteor == "auto" else bool(meteor), nist=self.cfg.nist)


def resolve_scale(cfg: NLGOptions) -> str:
    """task.scale, with auto read as smoke for tiny-gpt2 (task.model_name), else full."""
    if cfg.scale == "auto":
        return "smoke" if cfg.model_name == "tiny-gpt2" else "full"
    return cfg.scale


def not_found(dataset: str, data_dir, missing: list[str], why: str, download: bool) -> ConfigError:
    """The one line for evaluation files that are not there: each path, why a download failed, the fixes."""
    files = "; ".join(f"{s}: {data_dir / expected_files(dataset, s).split(' or ')[0]}"
                      + (f" (or {expected_files(dataset, s).split(' or ')[1]})" if dataset == "e2e" else "")
                      for s in missing)
    fix = "put the files there or point task.data_dir (or CONTNET_DATA) at them"
    if dataset == "e2e":
        fix += ("" if download else ", or set task.download=true to fetch them") + \
            ", or task.synthetic=true for generated test lines (marked data: synthetic)"
    return ConfigError(f"task={dataset}: data not found: {files}{why}; {fix}")


def load_raw(cfg: NLGOptions, dataset: str, scale: str, download: bool, missing_ok: bool = False,
             quiet: bool = False):
    """(splits {train, valid, test} as read, the split trained on, provenance) for one NLG dataset.

    Substitutes never pass for the real thing: generated lines (task.synthetic) and training on valid
    when there is no train file happen only when asked for explicitly or at smoke scale, and are
    recorded in the provenance (summary.json: `data: synthetic`, `train_split: valid`).  Elsewhere a
    missing file is an error naming the path and the fix.  `missing_ok`: return early instead (the
    CLI's check before a run that will download); `quiet`: no log lines (the run says it).
    """
    data_dir = cfg.root()
    failed: dict[str, str] = {}                # split -> why task.download=true could not fetch it

    def read(split: str):
        try:
            return LOADERS[dataset](data_dir, split, cfg.format, download)
        except DownloadFailed as e:
            failed[split] = f"; {e}"
            return None

    raw = {s: read(s) for s in ("valid", "test")}
    synthetic = {True: "true", False: "false"}.get(cfg.synthetic, str(cfg.synthetic))
    missing = [s for s in ("valid", "test") if raw[s] is None]
    provenance = {"data": str(data_dir)}
    if synthetic == "true" or (synthetic == "auto" and missing and scale == "smoke"):
        if synthetic == "auto" and not quiet:
            log.warning("%s: no data in %s; smoke scale, so using generated E2E-style lines (summary.json says "
                        "data: synthetic; set task.data_dir to the real files)", dataset, data_dir)
        raw = {"train": synthetic_e2e(40, 1), "valid": synthetic_e2e(16, 2), "test": synthetic_e2e(12, 3)}
        provenance["data"] = "synthetic"
    elif missing:
        if missing_ok:
            return raw, None, provenance
        raise not_found(dataset, data_dir, missing, failed.get(missing[0], ""), download)
    train_split = cfg.train_split
    if "train" not in raw and train_split in ("auto", "train"):
        raw["train"] = read("train")
    if train_split == "auto":
        if raw.get("train"):
            train_split = "train"
        elif scale == "smoke":
            train_split = "valid"
            if not quiet:
                log.info("%s: no training split in %s; smoke scale, so training on valid (val = held-out valid MRs; "
                         "summary.json says train_split: valid)", dataset, data_dir)
        elif missing_ok:
            return raw, None, provenance
        else:
            raise ConfigError(f"task={dataset}: no training split: {data_dir / expected_files(dataset, 'train')} "
                              f"not found{failed.get('train', '')}; put it there, or set task.train_split=valid to "
                              "train on valid MRs (val = MRs held out of valid; summary.json then says train_split: "
                              "valid)")
    if train_split == "train" and not raw.get("train") and not missing_ok:
        raise ConfigError(f"task.train_split=train but {data_dir / expected_files(dataset, 'train')} not found; "
                          "put it there or use task.train_split=valid")
    provenance["train_split"] = train_split
    return raw, train_split, provenance


def check_files(cfg: NLGOptions, dataset: str) -> None:
    """Before a run: the data files parse and the splits exist (missing files are left to the run
    when task.download=true, which may fetch them)."""
    load_raw(cfg, dataset, resolve_scale(cfg), download=False, missing_ok=cfg.download, quiet=True)


def _builder(dataset):
    def build(cfg, seed):
        return NLGTask(cfg, seed, dataset)
    return build


for _name, _config in CONFIGS.items():
    TASKS.register(_name, config=_config)(_builder(_name))
    TASK_CHECKS.register(_name, config=_config)(lambda cfg, name=_name: check_files(cfg, name))
