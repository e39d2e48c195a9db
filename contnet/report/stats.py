"""Per-group statistics: mean ± std over seeds, best/final metrics, time-to-target.

Conventions (docs/reporting.md explains them for users):
- std is the sample standard deviation (ddof=1); with a single run it is undefined
  and shown as "–" (NaN here).
- final/best metrics, steps and wall time are averaged over the group's *completed*
  runs; diverged, failed, interrupted and incomplete runs are counted, not averaged
  (a NaN loss would poison the mean, a cut-short run would flatter it).
- time-to-target follows AlgoPerf/DeepOBS: the first logged row at which the
  metric reaches the target (≤ for lower-is-better keys, ≥ otherwise); a run that
  never reaches it is a miss ("DNF"). Every run with a curve takes part, whatever
  its status — a run that hit the target before diverging did hit it. Mean ± std
  are over the runs that reached it, shown with `reached k/n`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from contnet.report.grouping import Group
from contnet.report.runs import STATUSES, Run

_LOWER_IS_BETTER = ("loss", "error", "err", "nll", "ppl", "perplexity", "mse", "mae", "ter", "wer")


def lower_is_better(key: str) -> bool:
    """Direction of a `<split>/<metric>` key, from the metric's name."""
    metric = key.rsplit("/", 1)[-1].lower()
    return any(metric.startswith(w) or metric.endswith("_" + w) for w in _LOWER_IS_BETTER)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std, n) over the finite values; NaN where undefined."""
    xs = [float(v) for v in values if _finite(v)]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var), n


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Target:
    key: str
    value: float
    source: str = "user"  # "user" (--target) or "default" (worst group mean)

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.key)

    def reached(self, value: float) -> bool:
        if not _finite(value):
            return False
        return value <= self.value if self.lower_is_better else value >= self.value

    def __str__(self) -> str:
        op = "≤" if self.lower_is_better else "≥"
        return f"{self.key} {op} {self.value:.6g}"


def parse_target(text: str) -> Target:
    """`train/loss=0.05` -> Target; ValueError with a readable message otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--target expects KEY=VALUE such as train/loss=0.05, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--target value must be a number, got {value!r} in {text!r}") from None
    return Target(key.strip(), number)


def final_metrics(run: Run) -> dict[str, float]:
    """summary.json's `final`, completed by the last logged value of keys it lacks."""
    out: dict[str, float] = {}
    for row in run.metrics:
        for k, v in row.items():
            if "/" in k and _is_num(v):
                out[k] = float(v)
    out.update(_summary_numbers(run, "final"))
    return out


def best_metrics(run: Run) -> dict[str, float]:
    """summary.json's `best`, completed by the best logged value of keys it lacks."""
    out: dict[str, float] = {}
    for row in run.metrics:
        for k, v in row.items():
            if "/" in k and _is_num(v) and math.isfinite(v):
                pick = min if lower_is_better(k) else max
                out[k] = pick(out[k], float(v)) if k in out else float(v)
    out.update(_summary_numbers(run, "best"))
    return out


def _summary_numbers(run: Run, section: str) -> dict[str, float]:
    values = (run.summary or {}).get(section)
    if not isinstance(values, dict):
        return {}
    # `<split>/<metric>` keys (and λ); the engine may also store e.g. the final lr
    return {k: float(v) for k, v in values.items() if _is_num(v) and ("/" in k or k == "lambda")}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def first_reach(run: Run, target: Target) -> tuple[float, float] | None:
    """(step, time_s) of the first logged row that meets the target, else None."""
    for row in run.metrics:
        value = row.get(target.key)
        if _is_num(value) and target.reached(float(value)):
            time_s = row.get("time_s")
            return float(row["step"]), float(time_s) if _is_num(time_s) else math.nan
    return None


@dataclass
class GroupStats:
    group: Group
    counts: dict[str, int]
    steps: tuple[float, float, int]
    wall_time_s: tuple[float, float, int]
    final: dict[str, tuple[float, float, int]]
    best: dict[str, tuple[float, float, int]]
    # per target key: {"target", "reached", "runs", "steps": (mean, std, n), "time_s": ...}
    to_target: dict[str, dict[str, Any]]


def completed_runs(group: Group) -> list[Run]:
    return [r for r in group.runs if r.status == "completed"]


def group_stats(group: Group, targets: Sequence[Target]) -> GroupStats:
    done = completed_runs(group)
    finals = [final_metrics(r) for r in done]
    bests = [best_metrics(r) for r in done]
    keys = sorted(set().union(*finals, *bests)) if done else []
    to_target = {}
    for target in targets:
        hits = [first_reach(r, target) for r in group.runs]
        reached = [h for h in hits if h is not None]
        to_target[target.key] = {
            "target": target,
            "reached": len(reached),
            "runs": len(group.runs),
            "steps": mean_std(h[0] for h in reached),
            "time_s": mean_std(h[1] for h in reached),
        }
    return GroupStats(
        group=group,
        counts={s: group.count(s) for s in STATUSES},
        steps=mean_std((r.summary or {}).get("steps") for r in done),
        wall_time_s=mean_std((r.summary or {}).get("wall_time_s") for r in done),
        final={k: mean_std(f.get(k) for f in finals) for k in keys},
        best={k: mean_std(b.get(k) for b in bests) for k in keys},
        to_target=to_target,
    )


def default_target(groups: Sequence[Group], key: str) -> Target | None:
    """The worst of the groups' mean final values of `key`.

    Every group's average run gets there, so each group has a time-to-target to
    compare (the AlgoPerf idea of a shared target, without tuned reference runs).
    Seeds of the worst group that end above its mean are reported as misses.
    """
    means = []
    for group in groups:
        m, _, n = mean_std(final_metrics(r).get(key) for r in completed_runs(group))
        if n:
            means.append(m)
    if not means:
        return None
    worst = max(means) if lower_is_better(key) else min(means)
    return Target(key, worst, source="default")


def pick_primary_metric(runs: Sequence[Run]) -> str | None:
    """The metric the report centres on when `--metric` is not given."""
    keys: set[str] = set()
    for run in runs:
        keys.update(final_metrics(run))
        keys.update(k for k in run.metric_keys() if "/" in k)
    for preferred in ("val/loss", "train/loss", "test/loss"):
        if preferred in keys:
            return preferred
    return min(keys) if keys else None


# ------------------------------------------------------------------------------------ tests over seeds

LEVEL = 0.05       # the significance level every verdict states ("Welch's t-test over the seeds, 5% level")


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) that the means of `a` and `b` differ; NaN when a
    side has fewer than 2 finite values (one seed: nothing to test).  Equal constant samples: p = 1 if their
    means are equal, else 0 (no spread, a certain difference)."""
    xs, ys = ([float(v) for v in s if _finite(v)] for s in (a, b))
    if len(xs) < 2 or len(ys) < 2:
        return math.nan
    (ma, sa, _), (mb, sb, _) = mean_std(xs), mean_std(ys)
    if sa == 0 and sb == 0:
        return 1.0 if ma == mb else 0.0
    from scipy.stats import ttest_ind
    return float(ttest_ind(xs, ys, equal_var=False).pvalue)


def above(values: Sequence[float], floor: float) -> bool:
    """Whether the values' mean is significantly above `floor` (one-sided one-sample t-test at LEVEL): e.g. an
    accuracy above chance.  One value cannot show it."""
    xs = [float(v) for v in values if _finite(v)]
    mean, std, n = mean_std(xs)
    if n < 2:
        return False
    if std == 0:
        return mean > floor
    from scipy.stats import ttest_1samp
    return float(ttest_1samp(xs, floor, alternative="greater").pvalue) < LEVEL


def compare_seeds(new: Sequence[float], base: Sequence[float], lower_better: bool) -> str:
    """'better', 'worse' or 'same' (no difference at LEVEL by Welch's t-test), or 'untested' (< 2 seeds a side)."""
    p = welch(new, base)
    if math.isnan(p):
        return "untested"
    if p >= LEVEL:
        return "same"
    diff = mean_std(new)[0] - mean_std(base)[0]
    return "better" if (diff < 0) == lower_better else "worse"
