"""Memory between calls: the core's scratch cache, and training steps that touch no fresh pages.

A new page costs a page fault and the kernel zeroing it. Before the scratch cache and the
layers' reused weight copies, a training step at (25, 16, 512) faulted about 5700 pages (22 MiB),
15-20 % of its time; with them, 0.1 on average.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lstm_ext

STEADY_STATE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import lstm_ext

    cell, T, B, H = sys.argv[1], *map(int, sys.argv[2:])
    layer = getattr(lstm_ext, cell)(H, H, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
    dy = np.ones((T, B, 2 * H), np.float32)

    def step():
        y, _ = layer(x)
        layer.backward(dy)

    for _ in range(3):  # the first steps fill the caches
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts page faults with getrusage (Linux)")
@pytest.mark.skipif(lstm_ext.build_info()["sanitizers"],
                    reason="the sanitizers' allocator keeps freed memory in quarantine: fresh pages every step")
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_training_steps_reuse_their_memory(cell):
    out = subprocess.run([sys.executable, "-c", STEADY_STATE, cell, "25", "16", "512"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    faults = float(out.stdout)
    # The step's scratch, workspaces, weight copies and outputs span tens of MiB (thousands of
    # pages): a step that faulted them afresh would count thousands.
    assert faults < 100, f"{cell}: {faults:.0f} page faults per training step in steady state"


def test_the_cache_keeps_and_releases_scratch():
    layer = lstm_ext.LSTM(256, 256, seed=0)
    x = np.zeros((20, 8, 256), np.float32)

    def step():
        y, _ = layer(x)
        layer.backward(np.ones_like(y))
        return lstm_ext.scratch_cache_bytes()

    lstm_ext.release_scratch_cache()
    assert lstm_ext.scratch_cache_bytes() == 0
    first = step()
    assert first >= 4 * 256 * 256 * 4  # at least the packed W_hh of the forward
    # Identical steps take their blocks from the cache and give them back: it does not grow. (What
    # it holds between two steps may differ: one step's output is still alive while the next one
    # allocates, and which blocks serve which request depends on their sizes, i.e. on the kernel
    # level's packet width.)
    held = [step() for _ in range(12)]
    assert max(held[4:]) <= max(first, *held[:4]) <= 256 << 20, held  # (the cache keeps 256 MiB at most)
    lstm_ext.release_scratch_cache()
    assert lstm_ext.scratch_cache_bytes() == 0


def test_results_do_not_depend_on_reused_memory():
    # Scratch from the cache holds an earlier call's values: nothing may read it before writing.
    rng = np.random.default_rng(3)
    layer = lstm_ext.LSTM(64, 96, num_layers=2, bidirectional=True, proj_size=32, seed=1)
    x = rng.standard_normal((30, 5, 64)).astype(np.float32)
    lengths = np.array([30, 1, 17, 9, 30])
    dy = rng.standard_normal((30, 5, 64)).astype(np.float32)

    def run():
        layer.zero_grad()
        y, state = layer(x, lengths=lengths)
        dx, dstate = layer.backward(dy)
        return [y, *state, dx, *dstate, *(g.copy() for g in layer.grads.values())]

    lstm_ext.release_scratch_cache()
    fresh = run()
    other = lstm_ext.LSTM(64, 96, num_layers=2, bidirectional=True, proj_size=32, seed=2)  # fills the cache
    y, _ = other(rng.standard_normal((30, 5, 64)) * 50)
    other.backward(np.full_like(y, 1e3))
    reused = run()
    for a, b in zip(fresh, reused):
        np.testing.assert_array_equal(a, b)
