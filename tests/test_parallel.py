"""contnet.parallel: the process-group facts and collectives of the ground floor.  In one process every rank is
rank 0 of 1 and the averages over ranks are the identity; under a 2-process gloo group `rank_mean` is the mean
of the ranks' tensors and `global_token_mean` weighs each rank by its share of the global token count."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from contnet.parallel import Context, context, global_token_mean, rank_mean


def test_one_process_is_rank_0_of_1_and_every_average_is_the_identity():
    assert context() == Context() and Context().is_main and not Context().enabled
    t = torch.tensor([1.0, 2.0])
    assert rank_mean(t) is t
    total, count = torch.tensor(6.0), torch.tensor(4)
    assert torch.equal(global_token_mean(total, count, Context()), total / 4)


def _two_ranks(rank: int, store: str, out) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        t = torch.tensor([1.0, 10.0]) * (rank + 1)           # rank 0: [1, 10]; rank 1: [2, 20]
        mean = rank_mean(t)
        ctx = context()
        total, count = torch.tensor(3.0 + 5 * rank), torch.tensor(1 + 3 * rank)     # 3 / 1 token, 8 / 4 tokens
        share = global_token_mean(total, count, ctx)
        out[rank] = (ctx.rank, ctx.world_size, mean.tolist(), t.tolist(), share.item())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow          # two spawned interpreters that import torch
def test_two_processes_average_over_the_ranks(tmp_path):
    out = mp.Manager().dict()
    mp.spawn(_two_ranks, args=(str(tmp_path / "store"), out), nprocs=2)
    for rank in (0, 1):
        got_rank, world, mean, t, _ = out[rank]
        assert (got_rank, world) == (rank, 2)
        assert mean == [1.5, 15.0]                            # Σ over ranks ÷ 2
        assert t == [1.0 * (rank + 1), 10.0 * (rank + 1)]     # the input is left as it was
    # the ranks' shares average to Σ total / Σ count = 11 / 5 (DistributedDataParallel averages them)
    assert (out[0][4] + out[1][4]) / 2 == pytest.approx((3.0 + 8.0) / 5, rel=1e-6)
