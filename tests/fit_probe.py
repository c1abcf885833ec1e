"""Run by test_determinism.py in processes of their own (each with another kernel level, BLAS
kernel or NumPy SIMD path): two small training runs, and a digest of what they end with.

    python tests/fit_probe.py

prints one JSON line: the kernel level, and a digest of each run's final weights and loss history
(float32 and float64): a sequence classifier (a two-layer LSTM with dropout, LastStep, Linear,
Tanh, Linear; cross-entropy and Adam, gradients clipped) and a forecaster (a GRU and a Linear per
step, Sigmoid; MSE and SGD with momentum), each for a few epochs of shuffled mini-batches.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import lstm_ext


def digest(model, history) -> str:
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode() + np.ascontiguousarray(value).tobytes())
    h.update(json.dumps(history).encode())
    return h.hexdigest()[:24]


def classifier(dtype) -> str:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 12, 5))
    y = (X[:, :4, 0].sum(axis=1) > 0).astype(np.int64) + 2 * (X[:, -3:, 1].sum(axis=1) > 0)
    model = lstm_ext.Sequential(lstm_ext.LSTM(5, 16, num_layers=2, dropout=0.2, batch_first=True, dtype=dtype, seed=1),
                                lstm_ext.LastStep(dtype), lstm_ext.Linear(16, 12, dtype=dtype, seed=2), lstm_ext.Tanh(dtype),
                                lstm_ext.Linear(12, 4, dtype=dtype, seed=3))
    model.compile("cross_entropy", lstm_ext.Adam(lr=0.01), clip_grad_norm=1.0)
    history = model.fit(X, y, epochs=4, batch_size=16, lengths=rng.integers(6, 13, 48), seed=5, verbose=0)
    return digest(model, history)


def forecaster(dtype) -> str:
    t = np.arange(40 * 30).reshape(40, 30) * 0.3
    X = np.sin(t)[..., None] + 0.1 * np.random.default_rng(1).standard_normal((40, 30, 1))
    y = np.roll(X, -1, axis=1)
    model = lstm_ext.Sequential(lstm_ext.GRU(1, 12, batch_first=True, dtype=dtype, seed=4),
                                lstm_ext.Linear(12, 8, dtype=dtype, seed=5), lstm_ext.Sigmoid(dtype),
                                lstm_ext.Linear(8, 1, dtype=dtype, seed=6))
    model.compile("mse", lstm_ext.SGD(lr=0.05, momentum=0.9))
    history = model.fit(X, y, epochs=3, batch_size=8, seed=6, verbose=0)
    return digest(model, history)


def main() -> int:
    runs = {f"{run.__name__} {np.dtype(dtype).name}": run(dtype) for run in (classifier, forecaster)
            for dtype in (np.float32, np.float64)}
    print(json.dumps({"level": lstm_ext.build_info()["kernel_level"], "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
