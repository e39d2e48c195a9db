"""Solo Connection (Pathak & Paffenroth 2025): long skips between decoder-block outputs through a trainable
linear map, with a homotopy λ taking the added term from the zero vector to the task representation.

    h̃_j = h_j + λ_c · T_c(h_i)        for every connection c = (i, j),  j − i ≥ 2
    T(h) = B · A · drop(LN(h)) (+ b),   A: r×d, B: d×r

Block outputs are numbered h_0 (the embeddings, i.e. the input of the first block) … h_L (the last block,
before the final norm).  Everything the paper leaves open (spec §A3/§A6) is a `SoloConfig` field whose default
is the spec's best reading or, where the issue-11 study decided, its winner: ONE rank-128 map shared by all
connections (S1: 2·1024·128 = 262,144 trainable parameters on GPT-2 Medium), a long skip into every block from
the block two below it (placement=stride, stride 2: the study's best; a single first → last skip did not learn),
λ scheduled 0 → 1, A Kaiming-uniform and B = 0 (so the adapted model equals the pretrained one at step 0).

λ modes:
- scheduled: λ is the model-level `homotopy_lambda` (contnet.continuation.state).  Driver `ramp` (plain
  optimizers): λ = min(1, t / lambda_ramp_steps), t = training forward passes including this one (t = 1 first: no wasted step; counted by a forward
  pre-hook on the root model in train mode with grad enabled, saved as the `steps` buffer so resume continues
  the ramp; with gradient accumulation t counts micro-batches).  Driver `external`: a continuation optimizer
  (optimizer=cadam …) moves λ; Solo only reads it.
- trainable: one trainable scalar per connection, starting at `lambda_init` (A and B small random then, because
  λ = 0 and B = 0 together give no gradient to either, spec §A3.3).
- fixed: λ = `lambda_value` per connection (LoRA-style implicit homotopy through B = 0).

Library use:  `model = contnet.peft.solo.apply(hf_causal_lm, SoloConfig(rank=64))`; `save_adapter(model, path)`;
`load_adapter(model, path)`.  Works on any model whose decoder blocks sit in one ModuleList.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import torch
from torch import nn

from contnet.continuation.state import LambdaState, attach_lambda, find_lambda
from contnet.errors import fmt
from contnet.registry import PEFTS, ConfigError
from contnet.schema import Options, opt, typed
from .common import count_parameters, decoder_blocks, freeze, hidden_size

ATTR = "solo_connection"
PLACEMENTS = ("first_last", "stride", "symmetric", "dense", "pairs")
SKIP_NORMS = ("none", "fan_in", "count")


@dataclass
class SoloConfig(Options):
    """peft=solo.  Every default is the best reading of shared/specs/solo-connection.md §A3/§A6 (the method section
    of the paper is not public); each open choice is a switch.  Block outputs: h_0 = embeddings, h_1..h_L = blocks."""
    # stride (default: the winner of the issue-11 study, docs/results/solo.md; spec §A3.5 b, and the abstract's
    # plural "long skip connections that link outputs of different decoder blocks") | first_last (§A3.5 a / §A6.1:
    # one skip h_source -> h_target; did not learn in the study) | symmetric (§A3.5 c, U-Net pairs)
    # | dense (§A3.5 d, every i -> j, j-i >= 2) | pairs (the list in `pairs`)
    placement: str = opt("stride", choices=PLACEMENTS)
    source: int = opt(1, ge=0, integer=True)   # earliest source block output (best: the first block's; 0 = embeddings)
    target: Optional[int] = None       # first_last target; None = the last block, before the final norm (best)
    stride: int = 2                    # placement=stride: h_j += λ·T(h_{j-stride}) (study: 2 best; 3 tied, 4 behind)
    pairs: Optional[List[List[int]]] = None    # placement=pairs: [[i, j], ...]
    sharing: str = opt("shared", choices=("shared", "per_connection"))   # shared (best, S1: one T for all) | S2/S3
    # r (best: 128 -> 2·1024·128 = 262,144 trainable on GPT-2 Medium, the paper's "0.26M")
    rank: int = opt(128, gt=0, integer=True)
    # scheduled (best, §A6.3: λ 0 -> 1 by continuation) | trainable (a scalar per skip) | fixed
    lambda_mode: str = opt("scheduled", choices=("scheduled", "trainable", "fixed"))
    # scheduled only.  auto: external when the optimizer is a continuation method (continuation_optimizer), else
    # ramp | ramp (Solo's own linear ramp) | external (a continuation optimizer moves the model's λ)
    lambda_driver: str = opt("auto", choices=("auto", "ramp", "external"))
    continuation_optimizer: bool = False       # read by lambda_driver=auto; the CLI sets it from optimizer.homotopy
    # ramp λ = min(1, t/steps); the CLI's default is the LR warm-up (conf/peft/solo.yaml; 500 in the LoRA recipe);
    # the paper's schedule is unknown
    lambda_ramp_steps: int = opt(500, ge=0, integer=True)
    lambda_init: float = opt(0.0, ge=0, le=1)  # lambda_mode=trainable: starting λ (best: 0, A, B small random, §A6.4)
    lambda_value: float = opt(1.0, ge=0, le=1)  # lambda_mode=fixed: constant λ (with B = 0 at start: LoRA-style)
    # auto (best, §A6.4: A Kaiming-uniform, B = 0; small_random when λ is trainable) | zero_b | small_random
    init: str = opt("auto", choices=("auto", "zero_b", "small_random"))
    init_std: float = opt(1e-3, ge=0)  # init=small_random: std of A and B
    layer_norm: bool = False           # LayerNorm on the skip input before T (§A3.6 open; best: none, not in the eq.)
    dropout: float = opt(0.1, ge=0, lt=1)      # on the skip input (§A3.6 open; best: 0.1 like LoRA's, §A4 recipe)
    bias: bool = False                 # a bias in T (§A3.6 open; best: none, 262,144 has no room for one)
    # scale α/r on the skip term, like LoRA's α/r (§B2; the paper states none): None = 1
    alpha: Optional[float] = opt(None, gt=0)
    # many skips (§A3.5 d, dense): none | fan_in (÷ skips into the same block) | count (÷ all skips)
    skip_norm: str = opt("none", choices=SKIP_NORMS)
    blocks: Optional[str] = None       # dotted path of the decoder-block ModuleList (None: found automatically)
    save_adapter: bool = True          # write <run>/adapter/ at the end of a completed run (`contnet eval <run>`)

    def check(self) -> None:
        super().check()
        if self.placement == "stride" and self.stride < 2:
            raise self.error("stride", "a long skip spans at least 2 blocks")
        if self.placement == "pairs" and not self.pairs:
            raise self.error("pairs", "placement=pairs needs the skips as [[i,j],...]")
        if self.pairs is not None and self.placement != "pairs":
            raise self.error("pairs", f"only read with peft.placement=pairs (placement is {self.placement}); add "
                                      "peft.placement=pairs, or leave peft.pairs out")
        if self.target is not None and self.placement != "first_last":
            raise self.error("target", f"only read with peft.placement=first_last (placement is {self.placement}); "
                                       "add peft.placement=first_last, or leave peft.target out")
        for pair in self.pairs or ():
            why = (f"has {len(pair)} element{'s' if len(pair) != 1 else ''}" if len(pair) != 2
                   else f"has i = {pair[0]}" if pair[0] < 0 else f"has j − i = {pair[1] - pair[0]}"
                   if pair[1] - pair[0] < 2 else "")
            if why:
                raise self.error("pairs", f"each skip is a pair [i,j] of block outputs (0 = the embeddings) with "
                                          f"0 ≤ i and j ≥ i + 2; {fmt(list(pair))} {why}")
        if self.lambda_mode == "trainable" and self.init == "zero_b" and self.lambda_init == 0.0:
            raise self.error("init", "with lambda_mode=trainable and lambda_init=0 never trains (λ = 0 and B = 0 "
                                     "give each other zero gradient); use init=small_random")

    def check_model(self, model_cfg) -> None:
        """Before a run: the model must be a language model, and the long skips must fit its decoder blocks
        (their number is known from the shipped shape, unless peft.blocks names other blocks)."""
        from .common import require_language_model
        require_language_model("solo", "adds long skips between the decoder blocks of a language model",
                               model_cfg)
        n_blocks = model_cfg.decoder_blocks()
        if n_blocks is not None and self.blocks is None:
            connections(self, n_blocks)

    def driver(self) -> str:
        """lambda_driver with auto resolved: external when the optimizer moves λ, else Solo's own ramp."""
        if self.lambda_driver != "auto":
            return self.lambda_driver
        return "external" if self.continuation_optimizer else "ramp"


def connections(cfg: SoloConfig, n_blocks: int) -> list[tuple[int, int]]:
    """The (i, j) pairs over block outputs h_0 … h_L (L = n_blocks), each with j − i ≥ 2."""
    cfg.check()
    L, s = n_blocks, cfg.source
    if cfg.placement == "first_last":
        pairs = [(s, L if cfg.target is None else cfg.target)]
    elif cfg.placement == "stride":
        k = cfg.stride
        pairs = [(j - k, j) for j in range(s + k, L + 1)]
    elif cfg.placement == "symmetric":          # U-Net style (s, L−s), (s+1, L−s−1), …
        pairs = [(i, L - (i - s)) for i in range(s, L + 1) if L - (i - s) - i >= 2]
    elif cfg.placement == "dense":              # Sequential2D-like: every earlier output feeds every later one
        pairs = [(i, j) for j in range(s + 2, L + 1) for i in range(s, j - 1)]
    else:                                       # pairs
        pairs = [(int(i), int(j)) for i, j in cfg.pairs]
    bad = [p for p in pairs if not (0 <= p[0] and p[1] <= L and p[1] - p[0] >= 2)]
    if not pairs or bad:
        key = f"pairs={fmt(cfg.pairs)}" if cfg.placement == "pairs" else f"placement={cfg.placement}"
        what = f"the long skips {bad} do not fit" if bad else "no long skip fits"
        raise ConfigError(f"peft.{key}: {what} the {L} blocks of this model (need 0 ≤ i, j ≤ {L}, j − i ≥ 2)")
    return pairs


class SkipMap(nn.Module):
    """T(h) = B A drop(LN(h)) (+ b): the trainable linear map of one (or every, when shared) long skip."""

    def __init__(self, d: int, rank: int, layer_norm: bool, dropout: float, bias: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d) if layer_norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.Linear(d, rank, bias=False)
        self.B = nn.Linear(rank, d, bias=bias)

    def init_(self, scheme: str, std: float) -> None:
        if self.A.weight.is_meta:
            return
        if scheme == "zero_b":
            nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.B.weight)
        else:
            nn.init.normal_(self.A.weight, std=std)
            nn.init.normal_(self.B.weight, std=std)
        if self.B.bias is not None:
            nn.init.zeros_(self.B.bias)

    def forward(self, h):
        return self.B(self.A(self.drop(self.norm(h))))


class SoloConnection(nn.Module):
    """The adapter's trainable state (maps, per-connection λ) and the hooks that add the long skips."""

    def __init__(self, cfg: SoloConfig, d: int, n_blocks: int, lam: LambdaState | None):
        super().__init__()
        self.cfg = cfg
        self.pairs = connections(cfg, n_blocks)
        n_maps = 1 if cfg.sharing == "shared" else len(self.pairs)
        self.maps = nn.ModuleList(SkipMap(d, cfg.rank, cfg.layer_norm, cfg.dropout, cfg.bias) for _ in range(n_maps))
        scheme = cfg.init if cfg.init != "auto" else ("small_random" if cfg.lambda_mode == "trainable" else "zero_b")
        if cfg.lambda_mode == "trainable":
            self.lambdas = nn.Parameter(torch.full((len(self.pairs),), float(cfg.lambda_init)))
        elif cfg.lambda_mode == "fixed":
            self.register_buffer("lambdas", torch.full((len(self.pairs),), float(cfg.lambda_value)))
        for m in self.maps:
            m.init_(scheme, cfg.init_std)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))   # ramp position, saved for resume
        object.__setattr__(self, "_lam", lam)     # the model-level λ, not registered twice
        self._cache: dict[int, torch.Tensor] = {}
        self._by_target: dict[int, list[int]] = {}
        for c, (_, j) in enumerate(self.pairs):
            self._by_target.setdefault(j, []).append(c)
        self.sources = sorted({i for i, _ in self.pairs})
        self.scales = [self.skip_scale(cfg, j, len(self._by_target[j]), len(self.pairs)) for _, j in self.pairs]

    @staticmethod
    def skip_scale(cfg: SoloConfig, j: int, fan_in: int, count: int) -> float:
        """The constant in front of λ·T(h_i): α/r (when alpha is set) times the many-skips normalisation."""
        scale = 1.0 if cfg.alpha is None else float(cfg.alpha) / cfg.rank
        return scale / {"none": 1, "fan_in": fan_in, "count": count}[cfg.skip_norm]

    def lam(self, c: int) -> torch.Tensor:
        return self._lam.value if self.cfg.lambda_mode == "scheduled" else self.lambdas[c]

    def skip_sum(self, j: int, h: torch.Tensor) -> torch.Tensor:
        for c in self._by_target[j]:
            i = self.pairs[c][0]
            t = self.maps[0 if len(self.maps) == 1 else c](self._cache[i])
            h = h + (self.scales[c] * self.lam(c) * t).to(h.dtype)
        return h

    # ---- hooks -----------------------------------------------------------------------------------------
    def on_first_block_input(self, module, args, kwargs):
        self._cache = {}                                   # a new forward pass starts
        if 0 in self.sources:
            self._cache[0] = args[0] if args else kwargs["hidden_states"]

    def on_block_output(self, index: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if index in self._by_target:
                h = self.skip_sum(index, h)
            if index in self.sources:
                self._cache[index] = h
            if isinstance(output, tuple):
                return (h, *output[1:])
            return h
        return hook

    def on_model_call(self, module, args):
        """The λ ramp of driver=ramp: advance once per training forward pass.  The t-th pass (t = 1, 2, …) runs
        at λ = min(1, t / ramp): the first step already trains (at λ = 0 it would be wasted)."""
        if module.training and torch.is_grad_enabled():
            self.steps += 1
            ramp = self.cfg.lambda_ramp_steps
            self._lam.set(1.0 if ramp == 0 else min(1.0, int(self.steps) / ramp))


def _wants_ramp(cfg: SoloConfig) -> bool:
    return cfg.lambda_mode == "scheduled" and cfg.driver() == "ramp"


def apply(model: nn.Module, cfg: SoloConfig | None = None, freeze_base: bool = True) -> nn.Module:
    """Add Solo Connection to a causal LM in place (and return it): base frozen, adapter trainable."""
    cfg = cfg or SoloConfig()
    cfg.check()
    cfg = dataclasses.replace(cfg, lambda_driver=cfg.driver())   # saved with the adapter: auto resolved
    if hasattr(model, ATTR):
        raise ValueError("this model already has a Solo Connection")
    blocks = decoder_blocks(model, cfg.blocks)
    lam = None
    if cfg.lambda_mode == "scheduled":
        lam = find_lambda(model)
        if lam is None:
            lam = LambdaState(0.0 if _wants_ramp(cfg) else 1.0)
            attach_lambda(model, lam)
        elif _wants_ramp(cfg):
            lam.set(0.0)
    if freeze_base:
        freeze(model)
    ref = next(iter(blocks.parameters()))
    # .to(dtype) casts floating tensors only: the long `steps` buffer stays an integer
    solo = SoloConnection(cfg, hidden_size(model), len(blocks), lam).to(device=ref.device, dtype=ref.dtype)
    solo.train(model.training)              # follow the model's mode (its dropout is off in an eval-mode model)
    setattr(model, ATTR, solo)              # registered: in parameters(), state_dict() and .to(device)
    handles = [blocks[0].register_forward_pre_hook(solo.on_first_block_input, with_kwargs=True)]
    handles += [blocks[k].register_forward_hook(solo.on_block_output(k + 1)) for k in range(len(blocks))
                if (k + 1) in solo._by_target or (k + 1) in solo.sources]
    if _wants_ramp(cfg):
        handles.append(model.register_forward_pre_hook(solo.on_model_call))
    object.__setattr__(solo, "_handles", handles)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Detach the adapter (hooks and module); base parameters keep their requires_grad flags."""
    solo = getattr(model, ATTR)
    for h in solo._handles:
        h.remove()
    delattr(model, ATTR)
    return model


FORMAT = "contnet-solo-2"
PEFT_TYPE = "SOLO_CONNECTION"


def save_adapter(model: nn.Module, path) -> Path:
    """The adapter alone, as a directory like peft's: adapter_config.json (the SoloConfig, λ, base model) and
    adapter_model.safetensors (the maps, per-connection λ and the ramp position).  A few hundred kB."""
    from safetensors.torch import save_file
    solo: SoloConnection = getattr(model, ATTR)
    lam = find_lambda(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    meta = {"peft_type": PEFT_TYPE, "format": FORMAT, "config": asdict(solo.cfg),
            "lambda": None if lam is None else lam.get(), "base_model_name_or_path": base}
    save_file({k: v.detach().cpu().contiguous() for k, v in solo.state_dict().items()},
              str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    (path / "adapter_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_config(path) -> dict | None:
    """The adapter_config.json of a Solo adapter directory, or None when `path` holds something else."""
    try:
        meta = json.loads((Path(path) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("peft_type") == PEFT_TYPE else None


def load_adapter(model: nn.Module, path) -> nn.Module:
    """Apply the saved configuration to `model` (when it has no adapter yet) and load the saved tensors."""
    from safetensors.torch import load_file
    meta = read_config(path)
    if meta is None:
        raise ValueError(f"{path} is not a Solo Connection adapter directory (no adapter_config.json with "
                         f"peft_type {PEFT_TYPE})")
    if not hasattr(model, ATTR):
        apply(model, typed(SoloConfig, meta["config"]))
    solo = getattr(model, ATTR)
    ref = next(iter(solo.state_dict().values()))
    solo.load_state_dict(load_file(str(Path(path) / "adapter_model.safetensors"), device=str(ref.device)), strict=True)
    if meta["lambda"] is not None and find_lambda(model) is not None:
        find_lambda(model).set(meta["lambda"])
    return model


@PEFTS.register("solo", config=SoloConfig)
def build_solo(cfg: SoloConfig, model, task=None):
    model = apply(model, cfg)
    trainable, total = count_parameters(model)
    import logging
    logging.getLogger("contnet").info("solo connection %s: trainable %s of %s parameters",
                                      getattr(model, ATTR).pairs, f"{trainable:,}", f"{total:,}")
    return model
