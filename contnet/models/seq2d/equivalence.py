"""The exact Sequential2D check (claim (c) of `contnet reproduce`): the CLI's MLP (model=mlp on digits) and
its Sequential2D form, sharing the same weights, agree in fp64 — forward outputs, input gradients, parameter
gradients and the weights after one Adam step (tests/studies/test_reproduce.py asserts a zero difference)."""
from __future__ import annotations


def equivalence_check() -> dict:
    """{"max_abs_diff", "params_mlp", "params_seq2d", "samples"} of the comparison above."""
    import copy

    import torch
    from omegaconf import OmegaConf

    from contnet.models.mlp import MLPConfig
    from contnet.registry import MODELS, TASKS
    from .builders import from_sequential

    torch.manual_seed(0)
    task = TASKS.get("digits")(OmegaConf.create({"name": "digits", "val_frac": 0.15, "test_frac": 0.15,
                                                 "split_seed": 0}), 0)
    mcfg = MLPConfig(depth=2, width=128, widths=None, activation="relu", homotopy=False, init="default",
                     output_activation=False)
    ref = MODELS.get("mlp")(mcfg, task).double()
    twin = copy.deepcopy(ref)
    seq2d = from_sequential(twin.net)
    x, y = task.tensors("val")
    x = x.double().flatten(1)
    outs = []
    for model, fwd in ((ref, ref), (twin, seq2d)):
        xi = x.clone().requires_grad_(True)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        out = fwd(xi)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        outs.append((out.detach(), xi.grad.clone(), grads, [p.detach().clone() for p in model.parameters()]))
    (o1, g1, pg1, w1), (o2, g2, pg2, w2) = outs
    diffs = [(o1 - o2).abs().max().item(), (g1 - g2).abs().max().item()]
    diffs += [(a - b).abs().max().item() for a, b in zip(pg1, pg2)]
    diffs += [(a - b).abs().max().item() for a, b in zip(w1, w2)]
    n_ref = sum(p.numel() for p in ref.parameters())
    n_seq = sum(p.numel() for p in seq2d.parameters() if p.requires_grad)
    return {"max_abs_diff": max(diffs), "params_mlp": n_ref, "params_seq2d": n_seq, "samples": len(x)}
