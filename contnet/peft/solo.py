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

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from contnet.continuation.state import LambdaState, attach_lambda, find_lambda
from contnet.registry import PEFTS, ConfigError
from .common import count_parameters, decoder_blocks, freeze, hidden_size

ATTR = "solo_connection"
PLACEMENTS = ("first_last", "stride", "symmetric", "dense", "pairs")
SKIP_NORMS = ("none", "fan_in", "count")


@dataclass
class SoloConfig:
    placement: str = "stride"          # stride | first_last | symmetric | dense | pairs (§A3.5; the study's best: stride 2)
    source: int = 1                    # earliest source h_i (0 = embeddings); first_last uses (source, target)
    target: int | None = None          # first_last target h_j; None = the last block
    stride: int = 2                    # stride k: h_j += λ T(h_{j−k}) for every j ≥ source + k
    pairs: list = field(default_factory=list)   # placement=pairs: explicit [[i, j], …]
    sharing: str = "shared"            # shared (S1: one T for all) | per_connection (S2/S3)
    rank: int = 128                    # r of T = B·A (128: 262,144 params on GPT-2 Medium)
    lambda_mode: str = "scheduled"     # scheduled | trainable | fixed   (§A6.3; best: scheduled 0 → 1)
    lambda_driver: str = "ramp"        # scheduled only: ramp (Solo's own) | external (a continuation optimizer)
    lambda_ramp_steps: int = 500       # ramp length in training steps (= the LoRA recipe's warm-up)
    lambda_init: float = 0.0           # trainable: the starting λ
    lambda_value: float = 1.0          # fixed: the constant λ
    init: str = "auto"                 # auto | zero_b (A Kaiming, B = 0) | small_random (A, B ~ N(0, init_std))
    init_std: float = 1e-3
    layer_norm: bool = False           # LN on the skip input before T (§A3.6 open; best: none)
    dropout: float = 0.1               # on the skip input (§A3.6 open; LoRA's adapter dropout 0.1, §A4 recipe)
    bias: bool = False                 # a bias b in T (§A3.6 open; 262,144 needs none)
    alpha: float | None = None         # scale on the skip term α/r like LoRA's; None = 1 (no scale)
    skip_norm: str = "none"            # none | fan_in (÷ skips into the same block) | count (÷ all skips)
    blocks: str | None = None          # dotted path of the block ModuleList; None = found automatically

    @classmethod
    def from_mapping(cls, cfg) -> "SoloConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in dict(cfg).items() if k in names}
        if kw.get("pairs") is not None:
            kw["pairs"] = [list(p) for p in kw["pairs"]]
        else:
            kw.pop("pairs", None)
        return cls(**kw)


def connections(cfg: SoloConfig, n_blocks: int) -> list[tuple[int, int]]:
    """The (i, j) pairs over block outputs h_0 … h_L (L = n_blocks), each with j − i ≥ 2."""
    L, s = n_blocks, int(cfg.source)
    if cfg.placement == "first_last":
        pairs = [(s, L if cfg.target is None else int(cfg.target))]
    elif cfg.placement == "stride":
        k = int(cfg.stride)
        if k < 2:
            raise ConfigError(f"peft.stride={k}: a long skip spans at least 2 blocks")
        pairs = [(j - k, j) for j in range(s + k, L + 1)]
    elif cfg.placement == "symmetric":          # U-Net style (s, L−s), (s+1, L−s−1), …
        pairs = [(i, L - (i - s)) for i in range(s, L + 1) if L - (i - s) - i >= 2]
    elif cfg.placement == "dense":              # Sequential2D-like: every earlier output feeds every later one
        pairs = [(i, j) for j in range(s + 2, L + 1) for i in range(s, j - 1)]
    elif cfg.placement == "pairs":
        pairs = [(int(i), int(j)) for i, j in cfg.pairs]
    else:
        raise ConfigError(f"peft.placement='{cfg.placement}' is unknown; choose one of: {', '.join(PLACEMENTS)}")
    bad = [p for p in pairs if not (0 <= p[0] and p[1] <= L and p[1] - p[0] >= 2)]
    if not pairs or bad:
        raise ConfigError(f"peft.placement={cfg.placement} gives invalid long skips {bad or pairs} for "
                          f"{L} blocks (need 0 ≤ i, j ≤ {L}, j − i ≥ 2)")
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
        if cfg.sharing not in ("shared", "per_connection"):
            raise ConfigError(f"peft.sharing='{cfg.sharing}' is unknown; choose shared or per_connection")
        if int(cfg.rank) < 1:
            raise ConfigError(f"peft.rank={cfg.rank} must be a positive integer")
        self.maps = nn.ModuleList(SkipMap(d, int(cfg.rank), bool(cfg.layer_norm), float(cfg.dropout), bool(cfg.bias))
                                  for _ in range(n_maps))
        scheme = cfg.init if cfg.init != "auto" else ("small_random" if cfg.lambda_mode == "trainable" else "zero_b")
        if scheme not in ("zero_b", "small_random"):
            raise ConfigError(f"peft.init='{cfg.init}' is unknown; choose auto, zero_b or small_random")
        if cfg.lambda_mode == "trainable":
            if scheme == "zero_b" and float(cfg.lambda_init) == 0.0:
                raise ConfigError("peft.lambda_mode=trainable with lambda_init=0 and init=zero_b never trains "
                                  "(λ = 0 and B = 0 give each other zero gradient); use init=small_random")
            self.lambdas = nn.Parameter(torch.full((len(self.pairs),), float(cfg.lambda_init)))
        elif cfg.lambda_mode == "fixed":
            self.register_buffer("lambdas", torch.full((len(self.pairs),), float(cfg.lambda_value)))
        elif cfg.lambda_mode != "scheduled":
            raise ConfigError(f"peft.lambda_mode='{cfg.lambda_mode}' is unknown; choose scheduled, trainable or fixed")
        for m in self.maps:
            m.init_(scheme, float(cfg.init_std))
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
        if cfg.skip_norm not in SKIP_NORMS:
            raise ConfigError(f"peft.skip_norm='{cfg.skip_norm}' is unknown; choose one of: {', '.join(SKIP_NORMS)}")
        scale = 1.0 if cfg.alpha is None else float(cfg.alpha) / int(cfg.rank)
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
            ramp = max(int(self.cfg.lambda_ramp_steps), 0)
            self._lam.set(1.0 if ramp == 0 else min(1.0, int(self.steps) / ramp))


def _wants_ramp(cfg: SoloConfig) -> bool:
    return cfg.lambda_mode == "scheduled" and cfg.lambda_driver == "ramp"


def apply(model: nn.Module, cfg: SoloConfig | None = None, freeze_base: bool = True) -> nn.Module:
    """Add Solo Connection to a causal LM in place (and return it): base frozen, adapter trainable."""
    cfg = cfg or SoloConfig()
    if hasattr(model, ATTR):
        raise ValueError("this model already has a Solo Connection")
    if cfg.lambda_driver not in ("ramp", "external"):
        raise ConfigError(f"peft.lambda_driver='{cfg.lambda_driver}' is unknown; choose ramp or external (or auto)")
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
        apply(model, SoloConfig(**meta["config"]))
    solo = getattr(model, ATTR)
    ref = next(iter(solo.state_dict().values()))
    solo.load_state_dict(load_file(str(Path(path) / "adapter_model.safetensors"), device=str(ref.device)), strict=True)
    if meta["lambda"] is not None and find_lambda(model) is not None:
        find_lambda(model).set(meta["lambda"])
    return model


def config_from_cfg(pcfg) -> SoloConfig:
    """conf/peft/solo.yaml -> SoloConfig; lambda_driver=auto picks external when the optimizer drives λ."""
    cfg = SoloConfig.from_mapping({k: pcfg[k] for k in pcfg if k not in ("name", "continuation_optimizer")})
    if cfg.lambda_driver == "auto":
        cfg.lambda_driver = "external" if bool(pcfg.get("continuation_optimizer", False)) else "ramp"
    return cfg


@PEFTS.register("solo")
def build_solo(pcfg, model, task):
    model = apply(model, config_from_cfg(pcfg))
    trainable, total = count_parameters(model)
    import logging
    logging.getLogger("contnet").info("solo connection %s: trainable %s of %s parameters",
                                      getattr(model, ATTR).pairs, f"{trainable:,}", f"{total:,}")
    return model
