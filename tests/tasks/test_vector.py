"""The digits task reads scikit-learn's bundled CSV without importing scikit-learn; the arrays must be exactly
`load_digits()`'s, and a missing file falls back to `load_digits`."""
import importlib.util

import numpy as np
from sklearn.datasets import load_digits

from contnet.tasks import vector


def test_digits_arrays_equal_load_digits_and_fall_back_without_the_file(monkeypatch):
    ref = load_digits()
    vector.digits_arrays.cache_clear()
    data, target = vector.digits_arrays()
    assert data.shape == (1797, 64) and data.dtype == ref.data.dtype and np.array_equal(data, ref.data)
    assert target.dtype == np.int64 and np.array_equal(target, ref.target)
    assert vector.digits_arrays()[0] is data and not data.flags.writeable     # read once per process, shared
    vector.digits_arrays.cache_clear()
    calls = []

    def no_spec(name):
        calls.append(name)
        return None
    monkeypatch.setattr(importlib.util, "find_spec", no_spec)
    data2, target2 = vector.digits_arrays()
    vector.digits_arrays.cache_clear()
    assert calls == ["sklearn"] and np.array_equal(data2, ref.data) and np.array_equal(target2, ref.target)
