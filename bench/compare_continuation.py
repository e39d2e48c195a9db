"""Adam vs C-Adam and RMSProp vs C-RMSProp (issue 3 item 8): same task, model and budget, 5 seeds.

Every run is the runner's own (`contnet.engine.run.run` on the composed Hydra config, exactly what
`contnet train task=T optimizer=O seed=S` does), executed in this process one after the other.
Per task and optimizer the table gives mean ± std over seeds of the final full-training-set loss
(`train/full_loss`), the final validation loss, and the steps needed to reach the paired plain
optimizer's final training loss with the same seed (Adam's for Adam/C-Adam, RMSProp's for
RMSProp/C-RMSProp; evaluations every trainer.eval_every steps; "—" counts seeds that never reach it).

    python bench/compare_continuation.py [--seeds 5] [--tasks digits_ae,mnist1d_ae,mnist1d,parity]
                                         [--out /tmp/contnet_compare] [--cont-overrides '…']
                                         [extra Hydra overrides for every run …]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

PAIRS = {"adam": "cadam", "rmsprop": "crmsprop"}


def run_one(task: str, optimizer: str, seed: int, out: Path, extra: list[str], tag: str = "") -> Path:
    from contnet.conf import compose
    from contnet.engine.run import run
    run_dir = out / task / (optimizer + tag) / f"seed{seed}"
    if (run_dir / "summary.json").exists():
        return run_dir
    cfg = compose([f"task={task}", f"optimizer={optimizer}", f"seed={seed}", "trainer.progress=false",
                   "logger=jsonl", *extra])
    with contextlib.redirect_stdout(io.StringIO()):      # keep the per-run summary tables out of the table
        run(cfg, run_dir)
    return run_dir


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r[key]) for r in rows if key in r]


def final(run_dir: Path, key: str) -> float:
    summary = json.loads((run_dir / "summary.json").read_text())
    if key in summary.get("final", {}):
        return float(summary["final"][key])
    return curve(run_dir, key)[-1][1]


def steps_to(run_dir: Path, target: float) -> int | None:
    return next((s for s, v in curve(run_dir, "train/full_loss") if v <= target), None)


def fmt(values: list[float], digits: int = 4) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}g} ± {sd:.2g}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tasks", default="digits_ae,mnist1d_ae,mnist1d,parity")
    ap.add_argument("--out", default="/tmp/contnet_compare")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small models: 1 is fastest)")
    ap.add_argument("--cont-overrides", default="",
                    help="space-separated overrides for the continuation optimizers only, e.g. 'optimizer.secant=false'")
    args, extra = ap.parse_known_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    out = Path(args.out)
    rows = []
    t0 = time.time()
    for task in args.tasks.split(","):
        for plain, cont in PAIRS.items():
            cont_extra = args.cont_overrides.split()
            tag = ("[" + ",".join(cont_extra) + "]") if cont_extra else ""
            dirs = {plain: [run_one(task, plain, s, out, extra) for s in range(args.seeds)],
                    cont: [run_one(task, cont, s, out, extra + cont_extra, tag) for s in range(args.seeds)]}
            targets = [final(d, "train/full_loss") for d in dirs[plain]]
            for opt in (plain, cont):
                reached = [steps_to(d, t) for d, t in zip(dirs[opt], targets)]
                hit = [r for r in reached if r is not None]
                lam = [curve(d, "lambda") for d in dirs[opt]]
                lam_one = [next((s for s, v in c if v >= 1.0), None) for c in lam if c]
                rows.append((task, opt + (tag if opt == cont else ""), fmt([final(d, "train/full_loss") for d in dirs[opt]]),
                             fmt([final(d, "val/loss") for d in dirs[opt]]),
                             (fmt([float(h) for h in hit], 3) if hit else "—")
                             + (f" ({len(reached) - len(hit)} never)" if len(hit) < len(reached) else ""),
                             fmt([float(s) for s in lam_one if s is not None], 3) if lam_one else "—"))
            print(f"[{time.time() - t0:.0f}s] {task} {plain}/{cont} done", file=sys.stderr, flush=True)
    head = ("task", "optimizer", "final train loss", "final val loss", "steps to plain's final train loss",
            "step λ=1")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
