"""Long runs keep memory flat: 10,000 training steps (forward, backward, optimizer) in a fresh
process, its resident set measured after a warm-up and at the end; also with a call that raises on
bad input at every step, and with a checkpoint saved at every step.

Each run prints its figures (`pytest -s` shows them); the README quotes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

import lstm_ext

STEPS = 10_000
WARMUP = 1_000
# Growth allowed from step WARMUP to step STEPS. A leak of one small array per step (the smallest
# thing a step allocates, 4 x 16 float32 = 256 bytes plus NumPy's ~100 bytes of header) would add
# 3 MiB over 9,000 steps; one leaked scratch buffer per step far more.
ALLOWED_GROWTH_MIB = 1.5

LONG_RUN = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import lstm_ext

    mode, steps, warmup, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    page = os.sysconf("SC_PAGE_SIZE")

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page / 2**20

    model = lstm_ext.Sequential(lstm_ext.LSTM(3, 16, batch_first=True, seed=0), lstm_ext.LastStep(),
                                lstm_ext.Linear(16, 1, seed=0))
    model.compile(loss="mse", optimizer=lstm_ext.Adam(lr=1e-3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12, 3)).astype(np.float32)
    target = rng.standard_normal((4, 1)).astype(np.float32)
    bad = {"x": np.zeros((4, 12, 5), np.float32), "x_text": np.array([["a"]]), "lengths": [0, 99, 3, 1]}
    raised = 0
    at_warmup = None
    for step in range(1, steps + 1):
        model.zero_grad()
        prediction = model(x)
        loss, grad = lstm_ext.mse_loss(prediction, target)
        model.backward(grad)
        model.optimizer.step(model.grads)
        if mode == "raising":  # every step also makes a call that is refused
            for attempt in range(3):
                try:
                    if attempt == 0:
                        model(bad["x"])
                    elif attempt == 1:
                        lstm_ext.lstm_forward(bad["x_text"], None, None)
                    else:
                        model(x, lengths=bad["lengths"])
                except (TypeError, ValueError):
                    raised += 1
        elif mode == "checkpoint":
            model.save(os.path.join(folder, "model.npz"))
        if step == warmup:
            at_warmup = rss_mib()
    loaded = lstm_ext.load(os.path.join(folder, "model.npz")) if mode == "checkpoint" else None
    print(json.dumps({"warmup_mib": at_warmup, "end_mib": rss_mib(), "loss": float(loss), "raised": raised,
                      "loaded": loaded is not None}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set from /proc (Linux)")
@pytest.mark.skipif(lstm_ext.build_info()["sanitizers"],
                    reason="the sanitizers' allocator keeps freed memory in quarantine (up to 256 MiB)")
@pytest.mark.parametrize("mode", ["training", "raising", "checkpoint"])
def test_ten_thousand_steps_keep_the_resident_set_flat(mode, tmp_path):
    folder = str(tmp_path)
    if mode == "checkpoint" and os.access("/dev/shm", os.W_OK):  # 10,000 fsyncs to a disk take ~30 s
        folder = tempfile.mkdtemp(prefix="lstm_ext_long_run_", dir="/dev/shm")
    try:
        out = subprocess.run([sys.executable, "-c", LONG_RUN, mode, str(STEPS), str(WARMUP), folder],
                             capture_output=True, text=True, timeout=1200)
    finally:
        if folder != str(tmp_path):
            shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    growth = result["end_mib"] - result["warmup_mib"]
    print(f"\n{mode}: resident set {result['warmup_mib']:.1f} MiB at step {WARMUP}, {result['end_mib']:.1f} MiB at "
          f"step {STEPS} ({growth:+.2f} MiB)")
    assert growth <= ALLOWED_GROWTH_MIB, result
    if mode == "raising":
        assert result["raised"] == 3 * STEPS
    if mode == "checkpoint":
        assert result["loaded"]
