"""The same job gives the same numbers alone or as any job of any sweep: trainer.threads is applied
before the model (and the PCA start's SVD) is built, and the SVD has a sign convention."""
from __future__ import annotations

import contextlib

import pytest
import torch

from contnet.continuation.pca import fix_signs, sequential_svd_bases
from tests.helpers.cli import cli_inprocess, run_cli
from tests.helpers.runs import curves, run_inprocess


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


JOB = ["optimizer=cadam", "task=digits_ae", "model.init=pca", "model.ae_widths=null", "model.width=32", "trainer.max_steps=20", "trainer.eval_every=10",
       "trainer.progress=false"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[str, list[dict]]:
    """Each job run alone by the CLI in this process, starting from 2 threads (a fresh process's count here, not
    the 1 thread these jobs run with): seed -> its metrics (without time_s)."""
    root = tmp_path_factory.mktemp("alone")
    out = {}
    for seed in ("0", "1"):
        with threads(2):
            res = cli_inprocess(["train", f"seed={seed}", *JOB, f"hydra.run.dir={root / seed}"], cwd=root)
        assert res.returncode == 0, res.stderr[-2000:]
        out[seed] = curves(root / seed)
    return out


@pytest.mark.parametrize("order", [pytest.param("0,1", marks=pytest.mark.slow), "1,0"])
def test_a_two_job_sweep_gives_each_job_the_numbers_it_gives_alone(tmp_path, alone, order):
    """0,1: a fresh process (slow suite); 1,0: this process, after other tests' jobs."""
    sweep = tmp_path / "sweep"
    cli = run_cli if order == "0,1" else cli_inprocess
    with threads(2):                                   # job 0 starts as the jobs alone did; job 1 after job 0
        res = cli(["train", "-m", f"seed={order}", *JOB, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for job, seed in enumerate(order.split(",")):
        assert curves(sweep / str(job)) == alone[seed], f"job {job} (seed {seed}) differs from the same job alone"


def test_the_build_does_not_depend_on_the_threads_an_earlier_job_left(tmp_path):
    """In-process: whatever thread count the process had before, the run is the same."""
    before = torch.get_num_threads()
    try:
        runs = []
        for i, threads in enumerate((2, 1)):
            torch.set_num_threads(threads)
            run_inprocess([*JOB, "seed=3"], tmp_path / f"r{i}")
            runs.append(curves(tmp_path / f"r{i}"))
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1]


def test_svd_bases_follow_a_sign_convention():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    for W in sequential_svd_bases(X, [8, 4]):
        cols = W.T                                           # one basis vector per column of W
        top = cols.gather(1, cols.abs().argmax(1, keepdim=True))
        assert (top > 0).all()                               # the largest-magnitude entry is positive
    _, _, Vh = torch.linalg.svd(X - X.mean(0), full_matrices=False)
    flips = torch.tensor([1.0, -1.0] * 6, dtype=torch.float64)[:, None]
    assert torch.equal(fix_signs(Vh), fix_signs(Vh * flips))   # any sign LAPACK picks gives one answer
