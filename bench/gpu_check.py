"""`make gpu-check`: one prepared check of contnet on a CUDA machine (issue 13 §3), or its CPU-capable parts.

    python bench/gpu_check.py [--device cuda|cpu] [--out outputs/gpu-check] [--budget-s 330] [--only a,b]

Writes <out>/results.md INCREMENTALLY (after every section; copied to $OUT when that variable is set), so
a run cut short still returns what ran.  Every section runs in its own subprocess with its own time cap:
a failed or timed-out section records one line and the check goes on.  Per-section logs: <out>/<name>.log.
Sections: env, default train (the real CLI), host syncs per step, ResNet-20 and digits-MLP precision
(fp32/bf16/fp16; contnet loop vs a plain PyTorch loop, same process, same data), C-Adam vs Adam, Sequential2D
vs nn.Sequential, tiny-gpt2 full/LoRA/Solo steps, torchrun with NCCL, and torch.compile (last: slowest).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = ("torch", "omegaconf", "hydra", "transformers", "peft", "torchvision", "sklearn", "rich", "matplotlib",
            "numpy", "safetensors", "wandb", "mnist1d", "pycocoevalcap", "tensorboard")
NEEDED = ("torch", "omegaconf", "hydra", "numpy")


# ----------------------------------------------------------------------------------------- the parent process
SECTIONS = [  # name, cap on cuda (s), cap on cpu (s)
    ("env", 60, 60),
    ("default_train", 120, 90),
    ("host_syncs", 90, 60),
    ("precision", 150, 80),
    ("continuation", 60, 45),
    ("seq2d", 60, 40),
    ("lm", 90, 60),
    ("torchrun", 120, 90),
    ("compile", 240, 0),          # 0: skipped on that device (inductor on 2 CPU cores takes minutes)
]


class Results:
    def __init__(self, out: Path):
        self.out = out
        self.path = out / "results.md"

    def append(self, text: str, end: str = "\n\n") -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + end)
        self.publish()

    def publish(self) -> None:
        """Copy results.md (and the section logs) to $OUT when set: a timeout still returns what ran."""
        dest = os.environ.get("OUT")
        if not dest:
            return
        try:
            Path(dest).mkdir(parents=True, exist_ok=True)
            for p in self.out.iterdir():
                if p.is_file() and p.suffix in (".md", ".log", ".json"):
                    shutil.copy2(p, Path(dest) / p.name)
        except OSError as e:
            print(f"gpu-check: could not copy to $OUT ({e})", file=sys.stderr)


def report_imports() -> list[str]:
    found, missing = [], []
    for name in OPTIONAL:
        (found if importlib.util.find_spec(name) is not None else missing).append(name)
    print(f"gpu-check: needs {', '.join(NEEDED)} (+ contnet importable); present: {', '.join(found)}")
    print(f"gpu-check: missing: {', '.join(missing) or 'nothing'}", flush=True)
    return missing


def parent(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.is_file() and p.suffix in (".md", ".log", ".json"):
            p.unlink()
    res = Results(out)
    missing = report_imports()
    lacking = [m for m in NEEDED if m in missing]
    res.append(f"# contnet gpu-check — device={args.device}\n\n"
               f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; python {sys.version.split()[0]}; "
               f"missing optional packages: {', '.join(missing) or 'none'}"
               + (f"\n\n**missing needed packages: {', '.join(lacking)}**" if lacking else "")
               + ("\n\nrich is missing: the CLI sections (default_train, torchrun) will fail (contnet.report imports it)"
                  if "rich" in missing else ""))
    only = set(args.only.split(",")) if args.only else None
    t_start = time.perf_counter()
    for name, cap_cuda, cap_cpu in SECTIONS:
        if only and name not in only:
            continue
        cap = cap_cuda if args.device == "cuda" else cap_cpu
        if cap == 0:
            res.append(f"## {name}\n\nskipped on {args.device}")
            continue
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 15:
            res.append(f"## {name}\n\nskipped: the check's budget (--budget-s {args.budget_s}) is spent")
            continue
        cap = min(cap, left)
        log = out / f"{name}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--device", args.device,
               "--out", str(out)]
        print(f"gpu-check: {name} (cap {cap:.0f} s) ...", flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as lf:
            try:
                rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, timeout=cap, cwd=REPO).returncode
                why = None if rc == 0 else f"exit code {rc}"
            except subprocess.TimeoutExpired:
                why = f"timed out after {cap:.0f} s"
        dt = time.perf_counter() - t0
        if why:
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["(no output)"]
            res.append(f"**{name} FAILED** ({why}, {dt:.0f} s): `{tail[0][:300]}` (full log: {log.name})")
        else:
            res.publish()
        print(f"gpu-check: {name} {'ok' if not why else why} in {dt:.1f} s", flush=True)
    total = time.perf_counter() - t_start
    res.append(f"finished in {total:.0f} s")
    print(f"gpu-check: wrote {res.path}" + (f" (and $OUT={os.environ['OUT']})" if os.environ.get("OUT") else ""))
    print(res.path.read_text())
    return 0


# ----------------------------------------------------------------------------------------- the sections
def section(name: str, device: str, out: Path) -> None:
    res = Results(out)
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    if device == "cpu":
        torch.set_num_threads(1)      # small models on a shared CPU: 1 intra-op thread (see trainer.threads=auto)
    from gpu_check_sections import SECTION_FUNCS      # bench/ is on sys.path (this file's folder)
    res.append(f"## {name}")
    t0 = time.perf_counter()
    SECTION_FUNCS[name](torch.device(device), out, lambda line: res.append(line, end="\n"))
    res.append(f"\n({name}: {time.perf_counter() - t0:.1f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=os.environ.get("DEVICE", "cuda"), choices=["cuda", "cpu"])
    ap.add_argument("--out", default=str(REPO / "outputs" / "gpu-check"))
    ap.add_argument("--budget-s", type=float, default=None,
                    help="total seconds for all sections (default 330 on cuda, 270 on cpu)")
    ap.add_argument("--only", default="", help="comma-separated section names")
    ap.add_argument("--section", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.section:
        section(args.section, args.device, Path(args.out))
        return 0
    unknown = [n for n in args.only.split(",") if n and n not in [s[0] for s in SECTIONS]]
    if unknown:
        print(f"gpu-check: --only {','.join(unknown)}: unknown section; choose from "
              f"{', '.join(s[0] for s in SECTIONS)}", file=sys.stderr)
        return 2
    if args.budget_s is None:
        args.budget_s = 330.0 if args.device == "cuda" else 270.0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
