"""The sections of bench/gpu_check.py: each is `fn(device, out, emit)`; `emit(line)` appends one line to the
results file at once (a section cut by its time cap keeps the rows it finished).

Run as a script under torchrun it is the data-parallel probe of the `torchrun` section.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def conf(group: str, name: str, **over):
    """Option `name` of `group` as its typed config (the CLI defaults) with `over` applied."""
    from contnet.validation import group_options       # the trainer group included (it has no registry)
    return group_options(group)[name](**over)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_task(kind: str, n: int, augment: bool = False):
    """CIFAR-shaped (3×32×32) or digits-shaped (64 features) random classification data, 10 classes;
    `augment`: contnet's on-device crop (pad 4) + flip on the training batches."""
    from contnet.tasks.augment import AugmentedImageTask
    from contnet.tasks.base import TaskMeta, TensorTask
    shape = (3, 32, 32) if kind == "resnet" else (64,)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    meta = TaskMeta(name=f"synthetic-{kind}", objective="classify", input_shape=shape, output_dim=10)
    cls = AugmentedImageTask if augment else TensorTask
    return cls(meta, {"train": (x, y)})    # no val/test: no evaluation (and no eval-mode recompile)


def build(kind: str, task, homotopy: bool = False, optimizer: str | None = None):
    from contnet.registry import MODELS, OPTIMIZERS
    torch.manual_seed(0)
    if kind == "resnet":
        model = MODELS.get("resnet")(conf("model", "resnet", homotopy=homotopy, variant="cifar"), task)
        opt_cfg = conf("optimizer", optimizer or "sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    else:
        model = MODELS.get("mlp")(conf("model", "mlp", homotopy=homotopy), task)
        opt_cfg = conf("optimizer", optimizer or "adam")
    return model, opt_cfg


class StepClock:
    """A logger that notes when each train record reaches the loggers (after the loop's host transfer)."""

    def __init__(self, on_record=None):
        self.t, self.on_record = {}, on_record

    def log(self, rec):
        if "train/loss" in rec:
            self.t[rec["step"]] = time.perf_counter()
            if self.on_record:
                self.on_record(rec)

    def summary(self, s):
        pass

    def close(self, status):
        pass


def trainer_cfg(device, steps: int, batch: int, flush: int, **over):
    return conf("trainer", "default", max_steps=steps, batch_size=batch, eval_every=0, eval_train=False,
                progress=False, device=device.type, log_every=flush, threads=None, **over)


def contnet_rate(kind, task, device, warm, steps, batch, precision, compile_, clock=None, **build_kw):
    """Steps/s of contnet's loop between the records of step `warm` and `warm + steps` (both flush points)."""
    from contnet.engine.loop import fit
    from contnet.engine.setup import Setup
    from contnet.registry import OPTIMIZERS
    model, opt_cfg = build(kind, task, **build_kw)
    model.to(device)
    opt = OPTIMIZERS.get(opt_cfg.name)(opt_cfg, model)
    clock = clock or StepClock()
    tcfg = trainer_cfg(device, warm + steps, batch, warm, precision=precision, compile=compile_)
    with tempfile.TemporaryDirectory() as d:
        summary = fit(model=model, task=task, optimizer=opt, scheduler=None, seed=0, run_dir=Path(d), loggers=[clock],
                      tcfg=tcfg, setup=Setup.prepare(tcfg, model, task))
    assert summary["status"] == "completed", summary
    return steps / (clock.t[warm + steps] - clock.t[warm]), model


def plain_rate(kind, task, device, warm, steps, batch, precision, compile_, channels_last):
    """The same model, data order and optimizer (fused as contnet's optimizer.fused=auto picks) in a
    hand-written PyTorch loop."""
    from contnet.optim.standard import fused_kwargs
    model, opt_cfg = build(kind, task)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = list(model.parameters())
    if kind == "resnet":
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                              **fused_kwargs(torch.optim.SGD, opt_cfg, params))
    else:
        opt = torch.optim.Adam(params, lr=1e-3, **fused_kwargs(torch.optim.Adam, opt_cfg, params))
    fwd = torch.compile(model) if compile_ else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    x, y = task.tensors("train", device)

    def run(n):
        done = 0
        while done < n:
            perm = torch.randperm(len(x)).to(device)
            for i in range(0, len(x) - batch + 1, batch):
                idx = perm[i:i + batch]
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = F.cross_entropy(fwd(x[idx]), y[idx])
                if scaler:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                done += 1
                if done == n:
                    return
    run(warm)
    sync(device)
    t0 = time.perf_counter()
    run(steps)
    sync(device)
    return steps / (time.perf_counter() - t0)


def loop_vs_plain(device, emit, rows, repeats):
    emit(f"Median of {repeats} paired runs; steps/s between two flushes after a warm-up (contnet: trainer defaults, "
         f"so fp32 allows TF32 on CUDA for both loops; the plain loop copies contnet's conv layout).")
    emit("")
    emit("| model | precision | compile | batch | plain steps/s | contnet steps/s | images/s (contnet) "
         "| contnet/plain |")
    emit("|---|---|---|---|---|---|---|---|")
    for kind, precision, compile_, *aug in rows:
        augment = bool(aug and aug[0])
        cuda = device.type == "cuda"
        batch, n = (128, 128 * 40) if kind == "resnet" else (64, 1437)
        warm, steps = ((50, 200) if kind == "resnet" else (100, 500)) if cuda else \
            ((4, 8) if kind == "resnet" else (50, 200))
        if not cuda and kind == "resnet":
            batch, n = 32, 32 * 12
        task = synthetic_task(kind, n, augment)
        ours, plain, ratios, cl = [], [], [], False
        for r in range(repeats):        # repeat 0 runs contnet first: `cl` (its conv layout) is known after it
            p = plain_rate(kind, task, device, warm, steps, batch, precision, compile_, cl) if r % 2 else None
            o, model = contnet_rate(kind, task, device, warm, steps, batch, precision, compile_)
            conv = next((m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
            cl = conv is not None and conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
            if p is None:
                p = plain_rate(kind, task, device, warm, steps, batch, precision, compile_, cl)
            ours.append(o)
            plain.append(p)
            ratios.append(o / p)
        o, p = statistics.median(ours), statistics.median(plain)
        emit(f"| {kind}{' (channels_last)' if cl else ''}{' + augment (plain: none)' if augment else ''} | {precision} | {compile_} | {batch} | {p:.1f} | {o:.1f} "
             f"| {o * batch:.0f} | {statistics.median(ratios):.3f} |")


# ----------------------------------------------------------------------------------------- sections
def env(device, out, emit):
    import importlib
    import platform
    emit(f"- python {platform.python_version()}, torch {torch.__version__}, CUDA runtime {torch.version.cuda}, "
         f"cuDNN {torch.backends.cudnn.version()}, {os.cpu_count()} CPUs")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        emit(f"- GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
             f"GPUs visible: {torch.cuda.device_count()}")
        for label, fn in (("bf16 supported", torch.cuda.is_bf16_supported),
                          ("NCCL available", torch.distributed.is_nccl_available),
                          ("NCCL version", lambda: torch.cuda.nccl.version()),
                          ("TF32 matmul allowed", lambda: torch.backends.cuda.matmul.allow_tf32),
                          ("cudnn.benchmark", lambda: torch.backends.cudnn.benchmark)):
            try:
                emit(f"- {label}: {fn()}")
            except Exception as e:       # noqa: BLE001 (a report line, not a failure)
                emit(f"- {label}: ({e.__class__.__name__}: {e})")
    for name in ("transformers", "peft", "omegaconf", "hydra", "torchvision", "sklearn"):
        try:
            emit(f"- {name} {importlib.import_module(name).__version__}")
        except Exception as e:       # noqa: BLE001 (a report line, not a failure)
            emit(f"- {name}: not importable ({e.__class__.__name__}: {e})")
    from contnet.engine.io import versions
    emit(f"- contnet: {versions()}")
    # lazy-import audit: the paths this check uses must not import the optional integrations
    from contnet.registry import MODELS, OPTIMIZERS, PEFTS, TASKS
    import contnet.engine.run  # noqa: F401
    for reg in (MODELS, OPTIMIZERS, PEFTS, TASKS):
        with contextlib.suppress(Exception):
            reg.get("__none__")                     # imports every registered module
    eager = [m for m in ("wandb", "mnist1d", "pycocoevalcap", "tensorboard", "torch.utils.tensorboard",
                         "matplotlib", "transformers", "peft") if m in sys.modules]
    emit(f"- lazy-import audit (after importing the engine and every registered builder): "
         f"{'eagerly imported: ' + ', '.join(eager) if eager else 'no optional package imported'}")


def default_train(device, out, emit):
    import importlib.util
    run_dir = out / "default_run"
    shutil_rm(run_dir)
    args = [f"trainer.device={device.type}", "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    if importlib.util.find_spec("sklearn") is None:
        args.append("task=parity")
        emit("- scikit-learn is missing (the default task digits needs it): ran task=parity instead")
    cmd = [sys.executable, "-m", "contnet.cli.main", "train", *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[1:])}` exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    emit(f"- `python -m contnet.cli.main train {' '.join(args)}`")
    emit(f"- status {s['status']}, {s['steps']} steps, {s.get('steps_per_s')} steps/s (training loop), "
         f"wall {s['wall_time_s']} s (process {dt:.1f} s), device {s.get('device')}")
    emit(f"- final: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(s["final"].items()) if isinstance(v, float)))


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def host_syncs(device, out, emit):
    """Host syncs in the steady-state step: CUDA's sync debug mode on cuda, counted conversions on CPU."""
    from contnet.engine.hostsync import count_host_syncs
    flush, steps = 25, 100
    task = synthetic_task("mlp", 1437)
    emit(f"Steps {flush + 1}..{steps} of a digits-shaped MLP (batch 64, trainer.log_every={flush}: "
         f"{steps // flush - 1} flushes in the window). "
         + ("Counted: warnings of torch.cuda.set_sync_debug_mode('warn')." if device.type == "cuda" else
            "Counted: Tensor.item/float/int/bool/tolist/cpu/numpy called from contnet code."))
    emit("")
    emit("| optimizer | syncs in window | per step | top sites |")
    emit("|---|---|---|---|")
    for opt in ("adam", "cadam", "parc"):
        marks = {}
        if device.type == "cuda":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                clock = StepClock(lambda rec: marks.__setitem__(rec["step"], len(caught)))
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    contnet_rate("mlp", task, device, flush, steps - flush, 64, "fp32", False, clock=clock,
                                 homotopy=opt != "adam", optimizer=opt)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            window = caught[marks[flush]:marks[steps]]
            sites = {}
            for w in window:
                key = f"{Path(w.filename).name}:{w.lineno}"
                sites[key] = sites.get(key, 0) + 1
        else:
            with count_host_syncs() as counter:
                clock = StepClock(lambda rec: marks.__setitem__(rec["step"], counter.total))
                contnet_rate("mlp", task, device, flush, steps - flush, 64, "fp32", False, clock=clock,
                             homotopy=opt != "adam", optimizer=opt)
            window = range(marks[steps] - marks[flush])
            sites = counter.by_site
        n = len(window)
        top = ", ".join(f"{k} ×{v}" for k, v in sorted(sites.items(), key=lambda kv: -kv[1])[:3])
        emit(f"| {opt} | {n} | {n / (steps - flush):.2f} | {top or '-'} |")


def precision(device, out, emit):
    rows = [(k, p, False) for k in ("resnet", "mlp") for p in ("fp32", "bf16", "fp16")
            if p != "fp16" or device.type == "cuda"]
    rows.insert(2, ("resnet", "bf16", False, True))          # the cost of the on-device augmentation
    loop_vs_plain(device, emit, rows, repeats=3)


def compile_(device, out, emit):
    loop_vs_plain(device, emit, [("mlp", "fp32", True), ("resnet", "bf16", True), ("resnet", "fp32", True)], repeats=1)


def continuation(device, out, emit):
    import bench_continuation
    argv = ["--device", device.type, "--parc"] + ([] if device.type == "cuda" else ["--steps", "80", "--block", "2", "--batch", "64"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_continuation.main(argv)
    emit(f"`python bench/bench_continuation.py {' '.join(argv)}`\n\n```\n{buf.getvalue().strip()}\n```")


def seq2d(device, out, emit):
    import bench_seq2d
    argv = ["--device", device.type, "--repeats", "9" if device.type == "cuda" else "5", "--budget-s", "1.5"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_seq2d.main(argv)
    emit(f"`python bench/bench_seq2d.py {' '.join(argv)}`\n\n```\n{buf.getvalue().strip()}\n```")


def lm(device, out, emit):
    from omegaconf import OmegaConf
    from contnet.registry import MODELS, PEFTS, TASKS
    from contnet.tasks import e2e_data
    d = Path(tempfile.mkdtemp()) / "e2e"
    d.mkdir(parents=True)
    for split, n_mrs in (("valid", 8), ("test", 3)):
        lines = [f"{mr}||{ref}" for mr, ref in e2e_data.synthetic_e2e(n_mrs, 7 if split == "valid" else 8)]
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tcfg = OmegaConf.create({"name": "e2e", "data_dir": str(d), "scale": "smoke", "meteor": False, "download": False,
                             "train_size": 16, "generation": {"max_new_tokens": 8}})
    task = TASKS.get("e2e")(tcfg, 0)
    emit("| peft | trainable / total params | loss step 1 | loss step 2 | ms/step (2nd) | peak GPU MiB |")
    emit("|---|---|---|---|---|---|")
    for peft in ("full", "lora", "solo"):
        model = MODELS.get("tiny-gpt2")(OmegaConf.create({"name": "tiny-gpt2", "homotopy": False}), task)
        pcfg = {"name": peft, **({"lambda_ramp_steps": 2} if peft == "solo" else {})}     # each PEFT has its own keys
        model = PEFTS.get(peft)(OmegaConf.create(pcfg), model, task).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)
        batch = [b.to(device) if torch.is_tensor(b) else b
                 for b in next(task.train_batches(8, torch.Generator().manual_seed(0), device))]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        losses = []
        for _ in range(2):
            sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            loss.backward()
            opt.step()
            sync(device)
            dt = time.perf_counter() - t0
            losses.append(float(loss))
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        total = sum(p.numel() for p in model.parameters())
        emit(f"| {peft} | {sum(p.numel() for p in params):,} / {total:,} | {losses[0]:.4f} | {losses[1]:.4f} "
             f"| {dt * 1e3:.1f} | {peak:.0f} |")


def torchrun(device, out, emit):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if device.type == "cpu":
        env["CONTNET_DIST_BACKEND"] = "gloo"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    res = subprocess.run([*launcher, str(Path(__file__).resolve()), device.type], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=80)
    probe = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    emit(f"- raw probe (init_process_group, all_reduce, DDP step): exit {res.returncode}, "
         f"{probe[-1] if probe else res.stderr.strip().splitlines()[-1:]}")
    run_dir = out / "torchrun_run"
    shutil_rm(run_dir)
    args = ["train", f"trainer.device={device.type}", "trainer.max_steps=200", "trainer.progress=false",
            "task=parity", f"hydra.run.dir={run_dir}"]
    res = subprocess.run([*launcher, "-m", "contnet.cli.main", *args], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"torchrun contnet train: exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    emit(f"- `torchrun --standalone --nproc_per_node=1 -m contnet.cli.main {' '.join(args[:-1])}`: status "
         f"{s['status']}, world_size {s.get('world_size')}, device {s.get('device')}, {s.get('steps_per_s')} steps/s, "
         f"val/acc {s['final'].get('val/acc')}")


def ddp_probe(kind: str) -> None:
    import torch.distributed as dist
    backend = "nccl" if kind == "cuda" else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if kind == "cuda" else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(device)
    t = torch.ones(4, device=device) * (rank + 1)
    dist.all_reduce(t)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2).to(device),
                                                      device_ids=[device.index] if kind == "cuda" else None)
    loss = model(torch.randn(16, 8, device=device)).square().mean()
    loss.backward()
    print(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                      "all_reduce": t.tolist(), "ddp_loss": round(float(loss), 5)}), flush=True)
    dist.destroy_process_group()


SECTION_FUNCS = {"env": env, "default_train": default_train, "host_syncs": host_syncs, "precision": precision,
                 "compile": compile_, "continuation": continuation, "seq2d": seq2d, "lm": lm, "torchrun": torchrun}

if __name__ == "__main__":
    ddp_probe(sys.argv[1])
