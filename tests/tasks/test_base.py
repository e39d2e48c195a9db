"""Sharded collation: under data parallelism each rank collates only its slice of each global batch
(`task.train_batches(global, gen, device, shard=(rank, world))`), and the slices are exactly what slicing the
global batch gives (same examples, order, crops and flips; text: the same tokens, padded to the shard's own
longest sequence).  The 2-process gloo runs that compare with one process of the global batch are in
tests/engine/test_distributed.py (digits MLP, C-Adam, the text task's global token mean), which now train on these
shards."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from contnet.engine import loop
from contnet.engine.distributed import shard_of
from contnet.parallel import Context
from contnet.registry import TASKS
from contnet.tasks.base import shard_slice
from tests.helpers.config import compose
from tests.helpers.data import image_task_pair as task_pair


def epoch(task, batch_size, seed=7, **kw):
    return list(task.train_batches(batch_size, torch.Generator().manual_seed(seed), "cpu", **kw))


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def shard(batch, ctx: Context):
    """The reference: rank r's contiguous slice (along dim 0) of a collated global batch, the slicing the loop
    did before sharded collation (tensors in tuples/lists)."""
    if isinstance(batch, torch.Tensor):
        per = batch.shape[0] // ctx.world_size
        return batch[ctx.rank * per:(ctx.rank + 1) * per]
    return type(batch)(shard(b, ctx) for b in batch)


def assert_shards_are_slices_of_the_global_batches(task, per_rank: int, world: int, **kw):
    """Rank r's batch k is today's slice of global batch k, and the ranks' batches concatenate to it."""
    ref = epoch(task, per_rank * world, **kw)
    shards = [epoch(task, per_rank * world, shard=(r, world), **kw) for r in range(world)]
    assert len(ref) > 1 and all(len(s) == len(ref) for s in shards)
    for k, glob in enumerate(ref):
        for r in range(world):
            assert same(shards[r][k], shard(glob, Context(rank=r, world_size=world)))
            assert shards[r][k][0].shape[0] == per_rank
        assert same([torch.cat([shards[r][k][j] for r in range(world)]) for j in range(len(glob))], glob)


@pytest.fixture(scope="module")
def digits():
    return TASKS.get("digits")(compose(["task=digits"]).task, 0)


@pytest.mark.parametrize("world", [2, 3])
def test_digits_shards_are_the_slices_of_the_global_batch(digits, world):
    assert_shards_are_slices_of_the_global_batches(digits, 16, world)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_augmented_shards_have_the_global_batchs_crops_and_flips(world, chunk):
    aug, plain = task_pair()
    assert_shards_are_slices_of_the_global_batches(aug, 4 if world == 2 else 3, world, chunk=chunk)
    # the augmentation really acts on the shards (not the plain images sliced)
    a, p = epoch(aug, 8, shard=(1, 2)), epoch(plain, 8, shard=(1, 2))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, p))


def test_a_batch_larger_than_the_data_is_split_like_the_global_one():
    """n < batch: one short global batch of all n examples; each rank gets n // world of it, as slicing gives."""
    aug, plain = task_pair()                    # 40 examples
    for task in (aug, plain):
        glob = epoch(task, 64)
        assert len(glob) == 1 and glob[0][0].shape[0] == 40
        for r in range(3):
            assert same(epoch(task, 64, shard=(r, 3))[0], shard(glob[0], Context(rank=r, world_size=3)))


def test_shard_slice_and_shard_of():
    assert shard_slice(10, None) == slice(0, 10) and shard_slice(12, (2, 3)) == slice(8, 12)
    assert shard_slice(10, (1, 3)) == slice(3, 6)              # the remainder goes to no rank, like `shard`
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_slice(8, (2, 2))
    assert shard_of(Context()) is None and shard_of(Context(rank=1, world_size=4)) == (1, 4)


class Recording:
    """The task, remembering what the loop asked train_batches for."""

    def __init__(self, task):
        self.task, self.calls = task, []

    def train_batches(self, batch_size, generator, device, shard=None):
        self.calls.append((batch_size, shard))
        return self.task.train_batches(batch_size, generator, device, shard=shard)


def test_run_epochs_collates_only_this_ranks_slice_after_a_mid_epoch_resume(digits, monkeypatch):
    """Rank 1 of 2, resumed at batch 3 of epoch 0 with 2 more steps: the loop asks the task for rank 1's shard
    of each global batch and trains on global batches 3 and 4's second halves."""
    seen = []
    monkeypatch.setattr(loop, "train_step", lambda lp, batch: seen.append(batch) or torch.tensor(0.0))
    monkeypatch.setattr(loop, "end_of_step", lambda lp, signals: None)
    task = Recording(digits)
    ctx = Context(rank=1, world_size=2)
    lp = SimpleNamespace(state=loop.RunState(step=3, batch_in_epoch=3), task=task, seed=5, lam=None,
                         cfg=SimpleNamespace(batch_size=16), setup=SimpleNamespace(ctx=ctx, steps=5, device="cpu"),
                         optimizer=SimpleNamespace(param_groups=[{"lr": 0.1}]), scheduler=None,
                         pending=SimpleNamespace(add=lambda *a: None))
    loop.run_epochs(lp, signals=None)
    assert task.calls == [(32, (1, 2))]
    glob = list(digits.train_batches(32, torch.Generator().manual_seed(5 * 1_000_003), "cpu"))
    assert len(seen) == 2 and all(same(b, shard(glob[3 + k], ctx)) for k, b in enumerate(seen))
    assert seen[0][0].shape[0] == 16 and lp.state.step == 5 and lp.state.batch_in_epoch == 5


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.helpers.data import build_e2e, e2e_dir
    d = e2e_dir(tmp_path_factory.mktemp("e2e"), n_valid=16, n_test=3, shared=False)   # not ../shared's lines
    task, model = build_e2e(d, "full", train_size=24, max_len=512)
    return task, model.eval()


def padded(batch, width, pad):
    """A text batch padded on the right to `width` (ids with the pad token, mask 0, labels −100)."""
    return tuple(torch.nn.functional.pad(t, (0, width - t.shape[1]), value=v) for t, v in zip(batch, (pad, 0, -100)))


@pytest.mark.parametrize("world", [2, 3])
def test_text_shards_hold_the_global_batchs_tokens_padded_to_their_own_length(text, world):
    task, _ = text
    pad = task.tokenizer.pad_token_id if task.tokenizer.pad_token_id is not None else task.tokenizer.eos_token_id
    ref = epoch(task, 4 * world)
    shards = [epoch(task, 4 * world, shard=(r, world)) for r in range(world)]
    assert len(ref) > 1 and all(len(s) == len(ref) for s in shards)
    narrower = 0
    for k, glob in enumerate(ref):
        width = glob[0].shape[1]
        for r in range(world):
            own = shards[r][k]
            assert own[0].shape == (4, int(own[1].sum(1).max()))           # padded to its own longest sequence
            narrower += own[0].shape[1] < width
            assert same(padded(own, width, pad), shard(glob, Context(rank=r, world_size=world)))
    assert narrower > 0                       # some shard really is narrower than its global batch
    # resumed mid-epoch: the batches after the skip are the same ones
    assert all(same(a, b) for a, b in zip(epoch(task, 4 * world, shard=(1, world))[2:], shards[1][2:]))


def test_text_token_mean_over_the_shards_is_the_global_batchs_loss(text):
    """The ranks' token sums over the global token count (what global_token_mean gives the ranks on average)
    equal the global batch's token-mean loss: padding to each shard's own length changes no token's loss."""
    task, model = text
    with torch.no_grad():
        for glob, *shards in zip(epoch(task, 8), *(epoch(task, 8, shard=(r, 2)) for r in range(2))):
            total, count = task._token_losses(model, glob, task.label_smoothing)
            parts = [task._token_losses(model, s, task.label_smoothing) for s in shards]
            assert int(sum(c for _, c in parts)) == int(count)
            assert float(sum(t for t, _ in parts) / count) == pytest.approx(float(total / count), rel=1e-5)
