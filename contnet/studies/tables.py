"""The docs' results tables, rendered from the committed raw results in docs/results/<study>/ (artifact.py).

Why: a number typed into a doc by hand drifts from its runs without anyone noticing. Each results table in
README.md and docs/ is a named definition below (which study folder, which rows, which metrics, how to format
them), and the doc marks the block it owns:

    <!-- table: solo-gpu-confirm (from docs/results/solo_study/gpu-confirm/, `contnet tables`) -->
    | run | seeds | ... |
    <!-- end table -->

`contnet tables` rewrites every marked block from its artifact (nothing is written when any block fails);
`contnet tables --check` writes nothing and exits 1 naming the first table and line that differ
(tests/studies/test_tables.py runs it on the repository, so a hand edit fails the fast suite).

Cells are mean ± sample std over a group's completed runs (contnet.report.stats.mean_std: diverged, failed
and interrupted runs are counted in `n/N`, never averaged), or the mean alone where the definition says so.
A table that is not one row per group of runs (timings, a benchmark) reads `table-<name>.json` beside the
artifact: `{"header": [...], "rows": [[...], ...]}`, cells as strings, rendered as given.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from contnet.report.render import DASH
from contnet.report.stats import mean_std, welch
from contnet.studies import artifact

START = re.compile(r"^<!-- table: (?P<name>[\w.-]+) \(from (?P<src>[^,]*), `contnet tables`\) -->$")
END = "<!-- end table -->"
DOCS = ("README.md", "docs")


class TableError(ValueError):
    """A marked block that cannot be rendered: the message names the doc line and the fix."""


@dataclass(frozen=True)
class Col:
    """One column. `key`: `final:<metric>` / `best:<metric>` (mean ± std over the completed runs), `n` (completed
    runs), `n/N` (completed / all), or a row field (dotted: `choices.model`, `wall_s`, `trainable_params`, `arm`):
    numbers are averaged, text is the group's first row's (the definition's `labels` rename it). `where` takes the
    cell from the group's rows with those field values only (e.g. one setting of a switch per column).
    `welch:<metric>` (e.g. `welch:final:test/loss`): the two-sided p of Welch's t-test (contnet.report.stats.welch,
    the test the reproduce claims use) between the group's completed runs and the table's runs with the `against`
    field values (the baseline arm), so a verdict beside the table is the table's own; the baseline's row shows –."""
    header: str
    key: str
    fmt: str = ".3f"
    std: bool = True
    where: tuple[tuple[str, object], ...] = ()
    against: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Table:
    """A results table: the runs of docs/results/`study`/ grouped by `group` (row fields), one line per group,
    in the order of `order` (group keys, or their first fields: a name or a tuple) or ascending by the mean of `sort`;
    `parts`: sub-folders of `study` whose rows are read together (one study per task, say); `where` keeps only the
    rows whose fields have the given values (e.g. a tuning study's final runs, not its
    trials); `quoted` rows (published figures, not ours) follow as written."""
    name: str
    study: str
    columns: tuple[Col, ...]
    group: tuple[str, ...] = ("arm",)
    where: tuple[tuple[str, object], ...] = ()
    parts: tuple[str, ...] = ()
    order: tuple[str | tuple[str, ...], ...] = ()
    sort: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    quoted: tuple[tuple[str, ...], ...] = ()
    written_by: str = ""          # a table-<name>.json table: the command that writes it (no columns here)

    @property
    def source(self) -> str:
        return f"docs/results/{self.study}/"


def _field(row: dict, key: str):
    if ":" in key:
        section, metric = key.split(":", 1)
        return (row.get(section) or {}).get(metric)
    value = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _number(stat: tuple[float, float, int], fmt: str, std: bool) -> str:
    mean, sd, n = stat
    if n == 0:
        return DASH
    text = format(mean, fmt)
    return f"{text} ± {format(sd, fmt)}" if std and math.isfinite(sd) else text


def _params(values: dict, labels: dict[str, str]) -> str:
    """A tuned configuration, e.g. `lr 0.00866, Δλ floor 0.0172` (a key's last dotted part, or its label): the lr
    first, then the labelled keys in the labels' order, then the rest."""
    def name(key: str) -> str:
        return labels.get(key, key.rsplit(".", 1)[-1])
    named = list(labels)
    keys = sorted(values, key=lambda k: (not k.endswith("lr"), named.index(k) if k in named else len(named), k))
    return ", ".join(f"{name(k)} {values[k]:.3g}" if isinstance(values[k], float) else f"{name(k)} {values[k]}"
                     for k in keys)


def _matches(row: dict, where: tuple[tuple[str, object], ...]) -> bool:
    return all(_field(row, k) == v for k, v in where)


def _welch_p(col: Col, done: list[dict], table_rows: list[dict]) -> str:
    base = [r for r in table_rows if _matches(r, col.where) and _matches(r, col.against)
            and r.get("status") == "completed"]
    if not base or all(_matches(r, col.against) for r in done):
        return DASH
    metric = col.key.split(":", 1)[1]
    p = welch([_field(r, metric) for r in done], [_field(r, metric) for r in base])
    return DASH if math.isnan(p) else format(p, col.fmt)


def cell(col: Col, runs: list[dict], labels: dict[str, str], table_rows: list[dict] = ()) -> str:
    runs = [r for r in runs if _matches(r, col.where)]
    if not runs:
        return DASH
    done = [r for r in runs if r.get("status") == "completed"]
    if col.key.startswith("welch:"):
        return _welch_p(col, done, list(table_rows))
    if col.key == "n":
        return str(len(done))
    if col.key == "n/N":
        return f"{len(done)}/{len(runs)}"
    if col.key.startswith("count:"):              # `count:outcome=diverged`: "k / n" of the column's rows
        key, value = col.key[6:].split("=", 1)
        return f"{sum(str(_field(r, key)) == value for r in runs)} / {len(runs)}"
    if col.fmt == "params":
        return _params(_field(runs[0], col.key) or {}, labels)
    if col.fmt.startswith("range:"):                # a measurement's spread: min–median–max
        spread = _field(runs[0], col.key) or {}
        return "–".join(format(spread[k], col.fmt[6:]) for k in ("min", "median", "max")) if spread else DASH
    if _is_text(col):
        first = str(_field(runs[0], col.key))
        return labels.get(first, first)
    return _number(mean_std(_field(r, col.key) for r in done), col.fmt, col.std)


def groups(table: Table, rows: list[dict]) -> list[list[dict]]:
    """The table's groups of runs, in its row order; a name in `order` with no runs is an error (a stale
    definition must not render a shorter table silently)."""
    found: dict[tuple, list[dict]] = {}
    for row in (r for r in rows if _matches(r, table.where)):
        found.setdefault(tuple(str(_field(row, k)) for k in table.group), []).append(row)
    if table.order:
        wanted = [o if isinstance(o, tuple) else (o,) for o in table.order]
        missing = [" ".join(o) for o in wanted if not any(key[:len(o)] == o for key in found)]
        if missing:
            raise TableError(f"table {table.name}: no runs of {', '.join(missing)} in {table.source}{artifact.RUNS}")
        return [found[key] for o in wanted for key in found if key[:len(o)] == o]
    if table.sort:
        def mean(item):
            m = mean_std(_field(r, table.sort) for r in item[1] if r.get("status") == "completed")[0]
            return (m if math.isfinite(m) else math.inf, item[0])
        return [runs for _, runs in sorted(found.items(), key=mean)]
    return [found[key] for key in sorted(found)]


def markdown(header: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    """Text columns left, number columns right; `|` in a cell escaped."""
    def esc(c) -> str:
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    return lines + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]


def _is_text(col: Col) -> bool:
    return col.fmt in ("s", "params") or col.key in ("arm", "run") or col.key.startswith("choices.")


def render(table: Table, results: Path) -> list[str]:
    """The table's markdown lines, from docs/results/<study>/ under `results` (the docs/results folder)."""
    folder = results / table.study
    static = folder / f"table-{table.name}.json"
    if static.exists():
        data = json.loads(static.read_text())
        rows = [[str(c) for c in row] for row in data["rows"]]
        numeric = data.get("numeric") or [i > 0 for i in range(len(data["header"]))]
        return markdown(data["header"], rows, numeric)
    if table.written_by:
        raise TableError(f"table {table.name}: {table.source}{static.name} is missing; write it with "
                         f"`{table.written_by}`")
    rows = []
    for part in table.parts or ("",):
        if not (folder / part / artifact.RUNS).exists():
            raise TableError(f"table {table.name}: {table.source}{part + '/' if part else ''}{artifact.RUNS} is "
                             f"missing; run the study that writes it (or remove the table's markers from the doc)")
        rows += artifact.read_rows(folder / part)
    kept = [r for r in rows if _matches(r, table.where)]
    body = [[cell(c, runs, table.labels, kept) for c in table.columns] for runs in groups(table, rows)]
    return markdown([c.header for c in table.columns], body + [list(q) for q in table.quoted],
                    [not _is_text(c) for c in table.columns])


def start_marker(table: Table) -> str:
    return f"<!-- table: {table.name} (from {table.source}, `contnet tables`) -->"


def _block_end(lines: list[str], start: int, where: str) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip() == END:
            return j
        if START.match(lines[j].strip()):
            break
    raise TableError(f"{where}: table marker without its `{END}` line; add it after the table")


def _first_difference(old: list[str], new: list[str]) -> int | None:
    k = next((k for k, (a, b) in enumerate(zip(old, new)) if a != b), None)
    return k if k is not None or len(old) == len(new) else min(len(old), len(new))


def _pair(old: list[str], new: list[str], k: int) -> tuple[str, str]:
    return (old[k] if k < len(old) else "(nothing)"), (new[k] if k < len(new) else "(nothing)")


def rendered_doc(text: str, doc: str, results: Path) -> tuple[str, list[tuple[int, str, str, str]]]:
    """(the doc with every marked table rendered, [(line, table, in the doc, rendered)] where they differ)."""
    lines, out, diffs, i = text.split("\n"), [], [], 0
    while i < len(lines):
        m = START.match(lines[i].strip())
        if not m:
            out.append(lines[i])
            i += 1
            continue
        where = f"{doc}:{i + 1}"
        table = TABLES.get(m["name"])
        if table is None:
            raise TableError(f"{where}: unknown table {m['name']!r}; name one of contnet/studies/tables.py's "
                             f"TABLES or remove the marker")
        end = _block_end(lines, i, where)
        new = [start_marker(table), *render(table, results), END]
        first = _first_difference(lines[i:end + 1], new)
        if first is not None:
            diffs.append((i + first + 1, table.name, *_pair(lines[i:end + 1], new, first)))
        out += new
        i = end + 1
    return "\n".join(out), diffs


def doc_files(root: Path) -> list[Path]:
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def run(root: Path, check: bool) -> int:
    """Render (or check) every marked table under `root`; every doc is rendered before any is written."""
    results = root / "docs" / "results"
    todo = []
    for path in doc_files(root):
        text = path.read_text()
        new, diffs = rendered_doc(text, path.relative_to(root).as_posix(), results)
        if check and diffs:
            line, name, old, want = diffs[0]
            print(f"contnet tables: error: {path.relative_to(root).as_posix()}:{line}: table {name} differs from its "
                  f"raw results in {TABLES[name].source}: the doc has {old.strip()!r}, the results give "
                  f"{want.strip()!r}; run `contnet tables` (or `make tables`) to render it", file=sys.stderr)
            return 1
        if new != text:
            todo.append((path, new))
    for path, new in ([] if check else todo):
        artifact.atomic_write_bytes(path, new.encode())
        print(f"rendered {path.relative_to(root).as_posix()}")
    return 0


def find_root(given: str | None) -> Path:
    """The repository whose docs are rendered: --root, else the current folder, else contnet's source checkout."""
    candidates = [Path(given)] if given else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "docs" / "results").is_dir():
            return root
    raise TableError(f"no docs/results/ folder in {candidates[0]}; run `contnet tables` in the contnet repository "
                     f"or pass --root <repository>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="contnet tables", description="render every marked results table in "
                                 "README.md and docs/ from its raw results in docs/results/<study>/")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the first table that differs")
    ap.add_argument("--root", help="the repository (default: the current folder)")
    args = ap.parse_args(argv)
    try:
        return run(find_root(args.root), args.check)
    except (TableError, OSError, json.JSONDecodeError) as e:
        print(f"contnet tables: error: {e}", file=sys.stderr)
        return 2


# ---- the definitions ------------------------------------------------------------------------------------------

_SOLO = (Col("run", "arm"), Col("seeds", "n"), Col("trainable", "trainable_params", ",.0f", std=False))
_SCORES = tuple(Col(k, f"final:{k}") for k in ("val/loss", "test/bleu", "test/nist", "test/rouge_l", "test/cider"))
_WALL = Col("wall s", "wall_s", ".0f", std=False)
_PAPERS = (  # spec §A2 and the LoRA paper, GPT-2 Medium: quoted, not run here
    ("*Solo paper, GPT-2 Medium: Solo Connection*", "*0.26M*", "", "*67.7*", "*8.64*", "*69.13*", "*2.3…*"),
    ("*Solo paper, GPT-2 Medium: its LoRA baseline*", "*0.35M*", "", "*67.45*", "*8.58*", "*68.8*", "*2.36*"),
    ("*LoRA paper, GPT-2 Medium: LoRA*", "*0.35M*", "", "*70.4*", "*8.85*", "*71.8*", "*2.53*"))

_DEFS = [
    Table("solo-gpu-screen", "solo_study/gpu-screen", (*_SOLO, _SCORES[0], _WALL), sort="final:val/loss"),
    Table("solo-cpu-screen", "solo_study/cpu-screen", (*_SOLO, _SCORES[0], _WALL), sort="final:val/loss"),
    Table("solo-gpu-confirm", "solo_study/gpu-confirm", (*_SOLO, *_SCORES, _WALL), sort="final:val/loss"),
    Table("solo-gpu-acceptance", "solo_study/gpu-acceptance", (*_SOLO, *_SCORES, _WALL), sort="final:val/loss"),
    Table("readme-solo", "solo_study/gpu-confirm",
          (Col("run", "arm"), _SOLO[2], Col("val loss", "final:val/loss"), Col("BLEU", "final:test/bleu", ".1f"),
           Col("NIST", "final:test/nist", ".2f"), Col("ROUGE-L", "final:test/rouge_l", ".1f"),
           Col("CIDEr", "final:test/cider", ".2f")),
          order=("solo-stride2-lr2e-3", "lora-lr6e-3", "full-lr2e-4"),
          labels={"solo-stride2-lr2e-3": "Solo, stride 2 (default), lr 2e-3", "lora-lr6e-3": "LoRA r 4 q/v, lr 6e-3",
                  "full-lr2e-4": "Full fine-tuning, lr 2e-4"}, quoted=_PAPERS),
]
_SEQ2D_ORDER = tuple((task, arm) for task in ("digits", "mnist1d")
                     for arm in ("mlp", "seq2d(mlp)", "seq2d(dense)", "seq2d(resnet)"))
_SEQ2D = (Col("task", "choices.task"), Col("model", "arm"))
_ACC_LOSS = (Col("val/acc", "final:val/acc", ".4f"), Col("val/loss", "final:val/loss", ".4f"))
_DEFS += [
    Table("seq2d-skips", "seq2d_skips", (*_SEQ2D, Col("seeds", "n/N"), *_ACC_LOSS,
                                         Col("trainable params", "trainable_params", ",.0f", std=False)),
          group=("choices.task", "arm"), order=_SEQ2D_ORDER),
    Table("readme-seq2d", "seq2d_skips", (*_SEQ2D, *_ACC_LOSS, Col("params", "trainable_params", ",.0f", std=False)),
          group=("choices.task", "arm"), order=_SEQ2D_ORDER),
]
_RECAL = (("bn_recalibrate", 0),), (("bn_recalibrate", 10),)
_DEFS += [
    Table("batchnorm", "batchnorm",
          (Col("optimizer", "arm"), Col("eval mode, running statistics", "final:val/acc_eval", where=_RECAL[0]),
           Col("eval mode, re-estimated (`trainer.bn_recalibrate=10`)", "final:val/acc_eval", where=_RECAL[1]),
           Col("batch statistics", "final:val/acc_batch_stats", where=_RECAL[1])),
          order=("adam-wd5e-4", "adam", "sgd"),
          labels={"adam-wd5e-4": "Adam 1e-3, weight decay 5e-4 (the first run's)",
                  "adam": "Adam 1e-3 (its default: no weight decay)",
                  "sgd": "SGD 0.1, momentum 0.9, Nesterov, weight decay 5e-4"}),
    Table("checkpoint-cost", "checkpoint_cost",
          (Col("params", "final:params", ",.0f"), Col("checkpoint (MB)", "final:ckpt_mb", ".3g"),
           Col("one step (ms)", "final:step_ms", ".3g"), Col("one save (ms)", "final:save_ms", ".3g"),
           Col("save / step", "timing.save_over_step", "range:.2f"),
           Col("share of time, default policy (%)", "final:default_policy_pct", ".2g"),
           Col("every 500 steps (%)", "final:every_500_steps_pct", ".2f")),
          order=("mlp-128x2", "mlp-1024x2", "mlp-2048x4")),
]
_FINAL, _TRIAL = (("kind", "final"),), (("kind", "trial"),)
_DELTA = {"optimizer.delta_l_min": "Δλ floor", "optimizer.delta_l_max": "Δλ cap"}
_DEFS += [
    Table("predictor", "predictor", parts=("digits_ae", "mnist1d_ae"), group=("choices.task", "arm"),
          columns=(Col("task", "choices.task"), Col("arm", "arm"),
                   Col("tuned values", "params", "params", where=_FINAL),
                   Col("diverged trials", "count:outcome=diverged", where=_TRIAL),
                   Col("final val loss", "final:val/loss", ".4f", where=_FINAL),
                   Col("final **test** loss", "final:test/loss", ".4f", where=_FINAL)),
          order=tuple((t, a) for t in ("digits_ae", "mnist1d_ae") for a in ("intended", "frozen", "nosecant")),
          labels={**_DELTA, "intended": "intended (Δλ_k/Δλ_{k−1}, spec A4)",
                  "frozen": "frozen (0.4, the authors' code C1)", "nosecant": "no secant (`secant=false`)"}),
]
_TUNE_TABLES = "python bench/bench_tune.py tables --results docs/results/tune_digits_ae"
_DEFS += [  # make compare-digits-ae's study (docs/results/continuation.md says why this one)
    Table("tuned-digits-ae", "tune_digits_ae/study", where=_FINAL,
          columns=(Col("arm", "arm"), Col("tuned values", "params", "params"),
                   Col("final val loss", "final:val/loss", ".4f"), Col("final **test** loss", "final:test/loss", ".4f"),
                   Col("seeds", "n/N"),
                   Col("test loss vs Adam: Welch p", "welch:final:test/loss", ".2g", against=(("arm", "adam"),))),
          order=("adam", "cadam"), labels={**_DELTA, "adam": "Adam", "cadam": "C-Adam"}),
    # bench rows (one per command), not one row per group of runs: bench_tune.py writes their table-<name>.json
    Table("tuning-pruners", "tune_digits_ae/pruners", (), written_by=_TUNE_TABLES),
    Table("tuning-cost", "tune_digits_ae", (), written_by=_TUNE_TABLES),
]
TABLES: dict[str, Table] = {t.name: t for t in _DEFS}
