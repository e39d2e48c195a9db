"""The paper claims `contnet reproduce` (`make reproduce-paper`) checks: their sweeps, the published numbers and
the verdicts.

A claim names the presets it runs (conf/experiment/<preset>_<scale>.yaml), how a run maps to a (setting, arm) cell
of its table, and a verdict computed from the numbers alone.  A difference counts as a win only by Welch's t-test
over the seeds (two-sided, at contnet.report.stats.LEVEL); a setting where no arm beats chance accuracy, or no arm
learns, is "not informative" and counts neither for nor against the claim.  Published numbers are copied from the
specs (../shared/specs); where the specs say none exist, the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from contnet.report.stats import LEVEL, above, compare_seeds, mean_std

# setting -> arm -> {"values": {key: [finals over seeds]}, "first": [first train/loss], "runs", "completed", "params"}
Cells = dict[str, dict[str, dict]]
TEST = f"Welch's t-test over the seeds, two-sided, {LEVEL:.0%} level"
CHANCE = {"parity": 0.5, "mnist1d": 0.1, "digits": 0.1, "mnist": 0.1, "fashion_mnist": 0.1, "cifar10": 0.1}


@dataclass(frozen=True)
class Sweep:
    preset: str                           # conf/experiment/<preset>_<scale>.yaml
    needs: tuple[str, ...] = ()           # "group=option" that must exist in conf/ (a method that must have landed)
    tuned: bool = False                   # a tune preset: the tuner tunes each arm, then runs its final seeds
    scales: tuple[str, ...] = ("cpu", "paper")


@dataclass
class Claim:
    key: str
    title: str
    source: str                           # the claim as the sources state it
    sweeps: list[Sweep]
    arm: Callable[[dict], tuple[str, str]]        # composed config -> (setting, arm)
    metrics: list[str]                    # columns of the claim's table
    verdict: Callable[[Cells, dict], tuple[str, str]]   # (cells, extra) -> (held, sentence)
    published: str                        # markdown
    smoke: list[str] = field(default_factory=list)      # the tuner's arguments for `--smoke` (first sweep only)


NAMES = {"adam": "Adam", "cadam": "C-Adam", "rmsprop": "RMSProp", "crmsprop": "C-RMSProp", "parc": "PARC",
         "lora": "LoRA", "solo": "Solo", "full": "full fine-tuning"}


def _values(cells: Cells, setting: str, arm: str, key: str) -> list[float]:
    return cells.get(setting, {}).get(arm, {}).get("values", {}).get(key, [])


def uninformative(cells: Cells, setting: str) -> str:
    """Why no comparison on `setting` can rank its arms ('' when one can): no arm's test accuracy is above chance
    (one-sided t-test), or no arm's training loss fell below where it started."""
    arms = cells.get(setting, {})
    chance = next((p for t, p in CHANCE.items() if setting.startswith(t)), None)
    accs = [_values(cells, setting, a, "test/acc") for a in arms]
    if chance is not None and any(accs) and not any(above(v, chance) for v in accs):
        return f"every arm stayed at chance accuracy, {chance:g}"
    learned = [mean_std(c.get("values", {}).get("train/loss", []))[0] < mean_std(c.get("first", []))[0]
               for c in arms.values() if c.get("first")]
    if learned and not any(learned):
        return "no arm's training loss fell below its start"
    return ""


def outcomes(cells: Cells, new: str, base: str, key: str, lower_better: bool = True) -> dict[str, list[str]]:
    """Settings holding both arms, by outcome: better / worse / same / untested (one seed) / not informative."""
    out: dict[str, list[str]] = {}
    for setting in cells:
        a, b = _values(cells, setting, new, key), _values(cells, setting, base, key)
        if a and b:
            how = "not informative" if uninformative(cells, setting) else compare_seeds(a, b, lower_better)
            out.setdefault(how, []).append(setting)
    return out


WORDS = {"better": "lower than", "worse": "higher than", "same": "no different from",
         "untested": "one seed (untested) against"}


def pair_sentence(cells: Cells, new: str, base: str, key: str) -> tuple[str, int, int]:
    """('C-Adam's final test/loss: lower than Adam's on digits_ae; …', wins, informative comparisons)."""
    got = outcomes(cells, new, base, key)
    n, b = NAMES.get(new, new), NAMES.get(base, base)
    if not got:
        return f"no {n} vs {b} pair completed", 0, 0
    parts = [f"{WORDS[h]} {b}'s on {', '.join(s)}" for h, s in got.items() if h in WORDS]
    if got.get("not informative"):
        parts.append(f"not informative on {', '.join(got['not informative'])} "
                     f"({'; '.join(uninformative(cells, s) for s in got['not informative'])})")
    counted = sum(len(s) for h, s in got.items() if h in ("better", "worse", "same"))
    return f"{n}'s final {key}: " + "; ".join(parts), len(got.get("better", [])), counted


def _held(wins: int, total: int, majority: bool = True) -> str:
    if total == 0:
        return "not tested"
    if majority:
        return "held" if wins * 2 > total else "did not hold"
    return "held" if wins == total else ("did not hold" if wins == 0 else "partly held")


# ------------------------------------------------------------------------------------ (a) NPACS and (b) PARC

def optimizer_arm(cfg: dict) -> tuple[str, str]:
    task = cfg["task"]["name"]
    return (f"parity{cfg['task']['n_bits']}" if task == "parity" else task), cfg["optimizer"]["name"]


def npacs_verdict(cells: Cells, extra: dict) -> tuple[str, str]:
    s1, w1, n1 = pair_sentence(cells, "cadam", "adam", "test/loss")
    s2, w2, n2 = pair_sentence(cells, "crmsprop", "rmsprop", "test/loss")
    held = _held(w1 + w2, n1 + n2)
    return held, (f"{s1}; {s2} ({TEST}). Claim (lower train and test loss \"in a majority of cases\"): {held} "
                  f"({w1 + w2} significant wins of {n1 + n2} informative test-loss comparisons).")


def parc_verdict(cells: Cells, extra: dict) -> tuple[str, str]:
    s, wins, n = pair_sentence(cells, "parc", "adam", "test/loss")
    acc = outcomes(cells, "parc", "adam", "test/acc", lower_better=False)
    accs = "; ".join(f"{h} on {', '.join(v)}" for h, v in acc.items())
    held = _held(wins, n, majority=False)
    return held, (f"{s}" + (f"; test accuracy against Adam's: {accs}" if accs else "") + f" ({TEST}). Claim "
                  f"(better generalization than Adam on supervised and unsupervised tasks): {held}.")


# ------------------------------------------------------------------------------------ (c) Sequential2D

def seq2d_arm(cfg: dict) -> tuple[str, str]:
    model = cfg["model"]
    return cfg["task"]["name"], ("nn.Sequential MLP" if model["name"] == "mlp" else f"seq2d({model['pattern']})")


def seq2d_verdict(cells: Cells, extra: dict) -> tuple[str, str]:
    parts, held = [], "not tested"
    exact = extra.get("equivalence")
    if exact:
        held = "held" if exact["max_abs_diff"] <= 1e-10 else "did not hold"
        parts.append(f"Exact check (shared weights, fp64): outputs, gradients and weights after one Adam step of "
                     f"the MLP and its Sequential2D form differ by at most {exact['max_abs_diff']:.1e}")
    mlp = "nn.Sequential MLP"
    for setting, arms in cells.items():
        for arm in arms:
            a, b = _values(cells, setting, arm, "test/acc"), _values(cells, setting, mlp, "test/acc")
            if arm != mlp and a and b:
                how = {"better": "higher", "worse": "lower", "same": "no different",
                       "untested": "one seed"}[compare_seeds(a, b, lower_better=False)]
                parts.append(f"{arm} on {setting}: test accuracy {mean_std(a)[0]:.3f} vs {mean_std(b)[0]:.3f} "
                             f"for the MLP ({how})")
    if not parts:
        return held, "no run completed"
    return held, "; ".join(parts) + (f" ({TEST}). The skip variants are descriptive: no published numbers."
                                     if len(parts) > 1 else ".")


# ------------------------------------------------------------------------------------ (d) Solo Connection

E2E_SCORES = ["test/bleu", "test/nist", "test/meteor", "test/rouge_l", "test/cider"]


def solo_arm(cfg: dict) -> tuple[str, str]:
    return cfg["model"]["name"], cfg["peft"]["name"]


def solo_verdict(cells: Cells, extra: dict) -> tuple[str, str]:
    setting = next((s for s, arms in cells.items() if "solo" in arms and "lora" in arms), None)
    if setting is None:
        return "not tested", "Solo and LoRA runs did not both complete"
    ps, pl = (cells[setting][a].get("params") for a in ("solo", "lora"))
    params = f"trainable parameters {ps or 0:,} (Solo) vs {pl or 0:,} (LoRA)"
    scores = {k: compare_seeds(_values(cells, setting, "solo", k), _values(cells, setting, "lora", k), False)
              for k in E2E_SCORES if _values(cells, setting, "solo", k)}
    zero = all(v == 0 for arm in ("solo", "lora") for k in scores for v in _values(cells, setting, arm, k))
    if not scores or zero:
        return "not informative", (f"On {setting} both methods scored 0 on every metric at this budget, so the "
                                   f"scores cannot rank them; {params}.")
    wins = sum(h == "better" for h in scores.values())
    held = _held(wins, len(scores)) if ps and pl and ps < pl else "did not hold"
    if all(h == "untested" for h in scores.values()):
        held = "not tested"
    said = "; ".join(f"{k.split('/')[1]} {h}" for k, h in scores.items())
    return held, (f"On {setting}, each method at its own tuned lr, Solo against LoRA: {said} ({TEST}); {params}. "
                  f"Claim (Solo beats LoRA with fewer parameters): {held} at this budget.")


# ------------------------------------------------------------------------------------ published numbers

NO_CONTINUATION_NUMBERS = (
    "**None available.** The continuation papers' result tables, budgets and data sets are not in the "
    "available sources (spec continuation.md §0.1, §3.1: abstracts only); the settings come from the "
    "authors' code. The claim is checked against its abstract-level wording only.")

SEQ2D_PUBLISHED = (
    "No accuracy numbers are published (spec sequential2d.md §3.1). The reference notebook "
    "(784→128→128→10 ReLU MLP, spec §3.5) prints: parameters 118,282 for both; *maximum difference between "
    "outputs 0.00e+00*; loss after one SGD step 1.0086 (Sequential) vs 1.0086 (Sequential2D).")

SOLO_PUBLISHED = """Solo Connection paper, intro table (spec solo-connection.md §A2; GPT-2 Medium, E2E test set):

| model | #params | BLEU | NIST | METEOR | ROUGE-L | CIDEr |
|---|---|---|---|---|---|---|
| FT GPT-2 M | 354.92M | 68.2 | 8.62 | 46.2 | 71.0 | 2.47 |
| LoRA GPT-2 M (Solo paper's baseline) | 0.35M | 67.45 | 8.58 | 45.93 | 68.8 | 2.36 |
| Solo Connection GPT-2 M | 0.26M | 67.7 | 8.64 | 45.95 | 69.13 | 2.3… (truncated in the source) |

LoRA paper (spec §B6): GPT-2 M LoRA 0.35M, E2E BLEU 70.4 ± .1; GPT-2 M fine-tune 354.92M, BLEU 68.2.
Scores are on the 0–100 scale for BLEU/METEOR/ROUGE-L (ours are printed the same way)."""


CONTINUATION = ("optimizer=cadam", "optimizer=crmsprop")

CLAIMS: list[Claim] = [
    Claim(key="npacs", title="(a) NPACS: C-Adam / C-RMSProp vs Adam / RMSProp",
          source="\"we compute local minima more quickly and with lower train and test loss values than current "
                 "state-of-the-art techniques in a majority of cases\" (ICMLA 2019 abstract; spec §0.3)",
          sweeps=[Sweep("tune_npacs_digits_ae", CONTINUATION, tuned=True, scales=("cpu",)),
                  Sweep("tune_npacs_mnist1d_ae", CONTINUATION, tuned=True, scales=("cpu",)),
                  Sweep("npacs_ae", CONTINUATION, scales=("paper",)),
                  Sweep("npacs_parity", CONTINUATION)],
          arm=optimizer_arm, metrics=["train/full_loss", "test/loss", "test/acc"], verdict=npacs_verdict,
          published=NO_CONTINUATION_NUMBERS,
          smoke=["--trials", "2", "--seeds", "0,1", "--arms", "adam,cadam", "trainer.max_steps=20",
                 "trainer.eval_every=10"]),
    Claim(key="parc", title="(b) PARC vs Adam on a classifier and an autoencoder",
          source="\"we demonstrate better generalization performance than state-of-the-art optimization techniques "
                 "such as ADAM for supervised and unsupervised learning tasks\" (arXiv 2507.22089 abstract)",
          sweeps=[Sweep("tune_parc_mnist1d", ("optimizer=parc",), tuned=True, scales=("cpu",)),
                  Sweep("tune_parc_digits_ae", ("optimizer=parc",), tuned=True, scales=("cpu",)),
                  Sweep("parc", ("optimizer=parc",), scales=("paper",))],
          arm=optimizer_arm, metrics=["train/full_loss", "test/loss", "test/acc"], verdict=parc_verdict,
          published=NO_CONTINUATION_NUMBERS),
    Claim(key="seq2d", title="(c) Sequential2D: equivalence and skip-connection variants",
          source="Sequential2D is a \"strict super-set\" of nn.Sequential; MLPs, RNNs and other networks \"lie on a "
                 "continuum\" of iterative maps (spec sequential2d.md §3.1, §3.3)",
          sweeps=[Sweep("seq2d_equiv", ("model=seq2d",)), Sweep("seq2d_skips", ("model=seq2d",))],
          arm=seq2d_arm, metrics=["test/loss", "test/acc", "params"], verdict=seq2d_verdict,
          published=SEQ2D_PUBLISHED),
    Claim(key="solo", title="(d) Solo Connection vs LoRA on E2E, each at its own tuned lr",
          source="Solo Connection \"outperform[s] LoRA on E2E natural language generation benchmarks\" and "
                 "\"reduces the number of trainable parameters by 59% relative to LoRA\" (spec §A1)",
          sweeps=[Sweep("tune_solo_e2e", ("peft=solo", "peft=lora", "task=e2e"), tuned=True, scales=("cpu",)),
                  Sweep("solo_e2e", ("peft=solo", "peft=lora", "task=e2e"), scales=("paper",))],
          arm=solo_arm, metrics=["params", "test/loss", *E2E_SCORES], verdict=solo_verdict, published=SOLO_PUBLISHED),
]


def claim_by_key(key: str) -> Claim:
    for claim in CLAIMS:
        if claim.key == key:
            return claim
    raise KeyError(f"unknown claim '{key}'; choose from {', '.join(c.key for c in CLAIMS)}")
