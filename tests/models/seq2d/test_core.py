"""Sequential2D core semantics (spec sequential2d.md §4.6 items 1-4, 7, 8, 10, 11, 13, 14, 16)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from contnet.models import seq2d as B
from contnet.models.seq2d import (Identity, IteratedSequential2D, MaskedLinear, Scale, Sequential2D,
                                  transpose_grid)


def _random_grid(sizes_in, sizes_out, seed=0, p_empty=0.3):
    """A mixed grid: linear, identity (when sizes allow), gains, composites, and holes."""
    g = torch.Generator().manual_seed(seed)
    grid = []
    for i, dout in enumerate(sizes_out):
        row = []
        for j, din in enumerate(sizes_in):
            r = float(torch.rand((), generator=g))
            if r < p_empty:
                row.append(None)
            elif r < 0.5 and din == dout:
                row.append(Identity(din) if r < 0.4 else Scale(din, init=0.5))
            elif r < 0.6:
                row.append(nn.Sequential(nn.Linear(din, 3), nn.Tanh(), nn.Linear(3, dout)))
            else:
                row.append(nn.Linear(din, dout, bias=bool(r > 0.8)))
        grid.append(row)
    return grid


# ------------------------------------------------------------------- 1. shapes and validation
def test_mismatched_in_features_names_the_cell():
    with pytest.raises(ValueError, match=r"cell \(1,0\).*in_features=4.*source slot 0 has size 3"):
        Sequential2D([3, 5], [3, 5], [[None, None], [nn.Linear(4, 5), None]])


def test_mismatched_out_features_names_the_cell():
    with pytest.raises(ValueError, match=r"cell \(1,0\).*out_features=6.*target slot 1 has size 5"):
        Sequential2D([3, 5], [3, 5], [[None, None], [nn.Linear(3, 6), None]])


def test_identity_with_unequal_sizes_raises():
    with pytest.raises(ValueError, match="identity needs equal sizes"):
        Sequential2D([3, 5], [3, 5], [[None, None], [nn.Identity(), None]])


def test_grid_with_wrong_dimensions_raises():
    with pytest.raises(ValueError, match="2 rows .* x 3 columns"):
        Sequential2D([1, 2, 3], [1, 2], [[None, None], [None, None]])


def test_forward_rejects_wrong_slot_count_and_widths():
    m = Sequential2D([3, 5], [3, 5], [[Identity(3), None], [nn.Linear(3, 5), None]])
    with pytest.raises(ValueError, match="got 1 slots, expected 2"):
        m([torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="slot 1 has 4 features, expected 5"):
        m([torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="flat input has 7 features, expected 8"):
        m(torch.zeros(2, 7))


def test_rectangular_grid_one_step():
    m = Sequential2D([2, 3, 4], [5, 6], _random_grid([2, 3, 4], [5, 6], p_empty=0.0), bias=True)
    out = m(torch.randn(7, 9))
    assert out.shape == (7, 11)
    outs = m([torch.randn(7, 2), torch.randn(7, 3), torch.randn(7, 4)])
    assert [o.shape for o in outs] == [(7, 5), (7, 6)]


def test_code_orientation_is_the_transpose():
    lin = nn.Linear(3, 5)
    paper = Sequential2D([3, 5], [3, 5], [[None, None], [lin, None]])
    code = Sequential2D([3, 5], [3, 5], transpose_grid([[None, None], [lin, None]]), orientation="code")
    x = torch.randn(4, 8)
    assert torch.equal(paper(x), code(x))
    assert code.block(1, 0) is lin


# ------------------------------------------------------------------------- 2. all-None map
def test_all_none_map():
    m = Sequential2D([2, 3], [4, 1], [[None, None], [None, None]])
    assert list(m.parameters()) == [] and m.n_trainable() == 0
    assert torch.equal(m(torch.randn(5, 5)), torch.zeros(5, 5))
    assert m([torch.randn(5, 2), torch.randn(5, 3)]) == [None, None]


# ------------------------------------------------------------------------ 3. flat == list
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_and_list_forms_agree(seed):
    torch.manual_seed(seed)
    sizes = [3, 4, 4, 2]
    acts = [None, nn.ReLU(), nn.Tanh(), None]
    m = Sequential2D(sizes, sizes, _random_grid(sizes, sizes, seed), bias=True, activations=acts)
    z = [torch.randn(6, d) for d in sizes]
    flat = m(torch.cat(z, -1))
    as_list = m(z)
    joined = torch.cat([torch.zeros(6, d) if t is None else t for t, d in zip(as_list, sizes)], -1)
    torch.testing.assert_close(flat, joined, atol=1e-6, rtol=0)


# --------------------------------------------------------------------- 4. dense equivalence
def test_all_linear_map_equals_its_dense_matrix():
    torch.manual_seed(0)
    sizes_in, sizes_out = [3, 4, 2], [4, 2, 5]
    grid = [[nn.Linear(3, 4, bias=False), Identity(4), None],
            [None, nn.Linear(4, 2), Scale(2, init=-1.5)],
            [nn.Linear(3, 5), None, MaskedLinear(2, 5, torch.tensor([[1., 0]] * 5))]]
    m = Sequential2D(sizes_in, sizes_out, grid, bias=[True, False, True]).double()
    with torch.no_grad():
        for b in m.biases:
            if b is not None:
                b.normal_()
    W, b = m.to_dense()
    z = torch.randn(8, 9, dtype=torch.float64)
    torch.testing.assert_close(m(z), z @ W.T + b, atol=1e-12, rtol=0)
    assert W.shape == (11, 9)


def test_fused_row_equals_separate_block_sums():
    torch.manual_seed(0)
    lins = [nn.Linear(d, 4, bias=False).double() for d in (2, 3, 5)]
    m = Sequential2D([2, 3, 5], [4], [lins], bias=True).double()
    z = [torch.randn(3, d, dtype=torch.float64) for d in (2, 3, 5)]
    expected = m.biases[0] + sum(lin(x) for lin, x in zip(lins, z))
    torch.testing.assert_close(m(z)[0], expected, atol=1e-12, rtol=0)


# ------------------------------------------------------------ 7. DAG fixed point, scheduler
@pytest.mark.parametrize("build", [
    lambda: B.mlp([5, 7, 6, 3], "tanh"),
    lambda: B.dense([5, 7, 6, 3], "tanh", skip_init="row"),
    lambda: B.resnet(5, 6, 2, 3, activation="tanh", skip="diag"),
])
def test_extra_iterations_change_nothing_and_topological_equals_jacobi(build):
    torch.manual_seed(0)
    model = build().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    depth = model.depth
    assert model.uses_topological() and model.num_iterations == depth
    fast = model(x)
    for T in (depth, depth + 1, depth + 3):
        jac = IteratedSequential2D(model.map, T, schedule="jacobi")
        assert torch.equal(jac(x), fast), T


def test_fewer_iterations_than_depth_give_a_different_output():
    torch.manual_seed(0)
    model = B.mlp([5, 7, 6, 3], "tanh")
    x = torch.randn(4, 5)
    state = [x] + [torch.randn(4, d) for d in (7, 6, 3)]  # nonzero initial hidden values
    short = IteratedSequential2D(model.map, model.depth - 1, schedule="jacobi")
    exact = IteratedSequential2D(model.map, model.depth, schedule="jacobi")
    assert not torch.allclose(short(x, state), model(x))
    torch.testing.assert_close(exact(x, state), model(x))  # the initial guess is forgotten


def test_recurrent_pattern_refuses_the_topological_schedule():
    step = B.rnn_map(3, 4, 2)
    assert IteratedSequential2D(step, 5, inject="every_step").depth is None
    with pytest.raises(ValueError, match="acyclic"):
        IteratedSequential2D(step, 5, inject="every_step", schedule="topological")


# -------------------------------------------------------------------- 8. Jacobi semantics
def test_jacobi_two_steps_by_hand():
    # a' = 2a + b ;  b' = relu(3a - 5).  z0 = (1, 2)
    # step 1: a = 4, b = relu(-2) = 0 ; step 2: a = 8, b = relu(7) = 7.
    # (Gauss-Seidel would give b = relu(3*4 - 5) = 7 already at step 1.)
    def lin(w):
        m = nn.Linear(1, 1, bias=False)
        nn.init.constant_(m.weight, w)
        return m
    m = Sequential2D([1, 1], [1, 1], [[lin(2.0), lin(1.0)], [lin(3.0), None]],
                     bias=[False, True], activations=[None, nn.ReLU()])
    nn.init.constant_(m.biases[1], -5.0)
    it = IteratedSequential2D(m, 2, input_slots=(0, 1), output_slots=(0, 1), return_trajectory=True)
    out, traj = it(torch.tensor([[1.0, 2.0]]))
    assert torch.equal(torch.cat(traj[0], -1), torch.tensor([[4.0, 0.0]]))
    assert torch.equal(out, torch.tensor([[8.0, 7.0]]))


def test_none_propagates_one_slot_per_step():
    model = B.mlp([4, 5, 6, 7, 3], "relu", return_trajectory=True)
    _, traj = model(torch.randn(2, 4))
    for k, z in enumerate(traj, start=1):  # after step k, slots 1..k are alive
        assert [t is not None for t in z] == [True] + [l <= k for l in range(1, 5)], k


def test_none_slot_skips_bias_and_activation_but_zeros_mode_does_not():
    sig = nn.Sigmoid()
    grid = [[None, None], [None, nn.Linear(2, 2)]]
    alive = Sequential2D([2, 2], [2, 2], grid, bias=True, activations=[None, sig])
    assert alive([torch.randn(1, 2), None]) == [None, None]
    zeros = Sequential2D([2, 2], [2, 2], grid, bias=True, activations=[None, sig], empty="zeros")
    out = zeros([torch.randn(1, 2), None])
    torch.testing.assert_close(out[1], sig(grid[1][1].bias + zeros.biases[1]).expand(1, 2))


def test_output_still_none_gives_a_clear_error():
    model = B.mlp([4, 5, 3])
    short = IteratedSequential2D(model.map, 1, schedule="jacobi")
    with pytest.raises(ValueError, match="still None .* num_iterations >= 2"):
        short(torch.randn(2, 4))


# ---------------------------------------------------------------- 10. no input mutation
def test_inputs_are_never_mutated_and_leaves_with_grad_work():
    # [R1]'s aliasing case: slot 2 gets Identity(x0) + Linear(h1) while x0 also feeds a Linear.
    grid = [[None, None, None], [nn.Linear(3, 3), None, None], [Identity(3), nn.Linear(3, 3), None]]
    m = Sequential2D([3, 3, 3], [3, 3, 3], grid)
    x0 = torch.randn(2, 3, requires_grad=True)
    h1 = torch.randn(2, 3)
    before = (x0.detach().clone(), h1.clone())
    out = m([x0, h1, None])
    assert torch.equal(x0.detach(), before[0]) and torch.equal(h1, before[1])
    sum(o.sum() for o in out if o is not None).backward()
    assert x0.grad is not None
    flat = torch.randn(2, 9)
    copy = flat.clone()
    m(flat)
    assert torch.equal(flat, copy)


# --------------------------------------------------------------------------- 11. dtype
def test_dtype_is_preserved():
    m = Sequential2D([2, 3], [2, 3], [[None, None], [nn.Linear(2, 3), None]]).double()
    assert m(torch.randn(2, 5, dtype=torch.float64)).dtype == torch.float64  # None row -> fp64 zeros
    model = B.mlp([4, 8, 3]).double()
    assert model(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64


def test_bf16_autocast_runs():
    model = B.dense([4, 8, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# -------------------------------------------------------------------------- 13. nesting
def test_nested_sequential2d_equals_its_flattened_map_and_keeps_outer_activation_outside():
    torch.manual_seed(0)
    inner = Sequential2D([1, 3], [2, 4], [[nn.Linear(1, 2), None], [nn.Linear(1, 4), nn.Linear(3, 4)]],
                         bias=True, activations=[None, None])
    outer = Sequential2D([4, 6], [4, 6], [[None, None], [inner, None]], activations=[None, nn.ReLU()])
    a = torch.randn(5, 4)
    W, b = inner.to_dense()
    torch.testing.assert_close(outer([a, None])[1], torch.relu(a @ W.T + b))
    assert inner(a).lt(0).any()  # the inner map itself was not rectified


# -------------------------------------------------------------- 14. parameter registration
def test_shared_block_registers_its_parameters_once():
    shared = nn.Linear(3, 3)
    m = Sequential2D([3, 3], [3, 3], [[shared, None], [shared, shared]])
    params = list(m.parameters())
    assert len(params) == 2 and m.n_trainable() == 12
    assert m.block(0, 0) is m.block(1, 1) is shared


# ---------------------------------------------------------------------- 16. serialization
def test_state_dict_round_trip_reproduces_outputs():
    torch.manual_seed(0)
    a = B.dense([4, 6, 3], density=0.5)
    torch.manual_seed(1)
    b = B.dense([4, 6, 3], density=0.5)
    x = torch.randn(3, 4)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.slow
def test_compile_parity():
    model = B.mlp([4, 8, 3])
    x = torch.randn(2, 4)
    torch.testing.assert_close(torch.compile(model)(x), model(x))


def test_layout_builder_parses_cells_and_infers_depth():
    layout = [["I", None, None, None],
              ["W", None, None, None],
              ["W=0.5", "W", None, None],
              [None, "Z", "W", None]]
    model = B.from_layout([4, 6, 6, 3], layout, activations=[None, "relu", "relu", None])
    assert model.depth == 3 and model.num_iterations == 3
    assert isinstance(model.map.block(2, 0), MaskedLinear)
    assert torch.count_nonzero(model.map.block(3, 1).weight) == 0
    assert model(torch.randn(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="recurrent: give num_iterations"):
        B.from_layout([2, 2], [["I", None], ["W", "W"]], activations=[None, "tanh"])
    with pytest.raises(ValueError, match="layout cell 'Q'"):
        B.from_layout([2, 2], [["I", None], ["Q", None]], activations=[None, "tanh"])


def test_topological_equals_jacobi_in_zeros_mode_without_a_held_input():
    # x has no identity cell, so it is not held: under empty="zeros" it becomes 0 after step 1
    grid = [[None, None, None], [nn.Linear(3, 4), None, None], [None, nn.Linear(4, 2), None]]
    step = Sequential2D([3, 4, 2], [3, 4, 2], grid, bias=True, activations=[None, nn.Tanh(), None],
                        empty="zeros")
    x = torch.randn(5, 3)
    for T in (3, 4, 6):
        fast = IteratedSequential2D(step, T)
        assert fast.uses_topological()
        assert torch.equal(fast(x), IteratedSequential2D(step, T, schedule="jacobi")(x)), T
