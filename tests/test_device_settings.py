"""trainer.tf32 / trainer.flush_denormal change process-wide torch switches: each run must set them both
ways, so a job of an in-process sweep gives the numbers it gives alone (no setting leaks from job k-1)."""
import torch
from omegaconf import OmegaConf

from contnet.engine.config import trainer_config
from contnet.engine.setup import CUDNN_TF32_DEFAULT, device_settings


def settings(**kw):
    return trainer_config(OmegaConf.create({"channels_last": "auto", "tf32": "auto", "deterministic": False, **kw}))


def test_flush_denormal_of_an_earlier_run_does_not_leak_into_the_next():
    model = torch.nn.Linear(2, 2)
    tiny = torch.tensor([1e-39])                       # a float32 denormal
    try:
        device_settings(model, settings(flush_denormal=True), torch.device("cpu"))
        assert float(tiny * 1.0) == 0.0                # flushed
        device_settings(model, settings(flush_denormal=False), torch.device("cpu"))
        assert float(tiny * 1.0) != 0.0                # the next run computes with denormals again
    finally:
        torch.set_flush_denormal(False)


def test_tf32_of_an_earlier_run_does_not_leak_into_a_deterministic_one(monkeypatch):
    """The backend flags can be set without a GPU: check the values a CUDA run would get."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")     # restored after the test
    model = torch.nn.Linear(2, 2)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        device_settings(model, settings(), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
        device_settings(model, settings(deterministic=True), torch.device("cuda"))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.allow_tf32 == CUDNN_TF32_DEFAULT
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_seed_everything_sets_deterministic_algorithms_either_way():
    """trainer.deterministic leaves no leftover from a previous job in the same process (the call is skipped
    only when the state already matches)."""
    import torch

    from contnet.engine.run import seed_everything
    try:
        seed_everything(0, True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        seed_everything(0, False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
