"""Memory between calls: the core's scratch cache, training steps that touch no fresh pages, and
a truncated-BPTT fit whose memory is its chunk's, not its sequence's.

A new page costs a page fault and the kernel zeroing it. Before the scratch cache and the
layers' reused weight copies, a training step at (25, 16, 512) faulted about 5700 pages (22 MiB),
15-20 % of its time; with them, 0.1 on average.
"""

from __future__ import annotations

import json
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


TBPTT_FIT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import lstm_ext

    T, H, chunk = map(int, sys.argv[1:])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, T, 1)).astype(np.float32)
    y = np.roll(X, 1, axis=1)
    model = lstm_ext.Sequential(lstm_ext.LSTM(1, H, batch_first=True, seed=0), lstm_ext.Linear(H, 1, seed=0))
    model.compile("mse", lstm_ext.SGD(lr=1e-3))
    short = slice(0, 4 * chunk)  # a short fit first: imports, caches and pools at a chunk's size
    model.fit(X[:, short], y[:, short], tbptt=chunk, validation_data=(X[:, short], y[:, short]), verbose=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    history = model.fit(X, y, tbptt=chunk, validation_data=(X, y), verbose=0)
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    whole = model.evaluate(X, y)  # the validation loss of the sequence run whole (memory O(T): after the measure)
    print(json.dumps({"growth_mib": growth, "val_loss": history[-1]["val_loss"], "whole": whole}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak resident set with getrusage (Linux)")
@pytest.mark.skipif(lstm_ext.build_info()["sanitizers"],
                    reason="the sanitizers' allocator keeps freed memory in quarantine (up to 256 MiB)")
def test_a_truncated_bptt_fit_holds_a_chunk_not_the_sequence():
    # Issue 27: fit(tbptt=1000) on T = 2,000,000 grew the peak resident set by 313 MiB, the check of
    # the targets' shape running one sample through all T steps at once (and the validation, whole
    # sequences). Here T = 400,000, H = 8 (about 1.6 MiB of input): that was +65 MiB; chunks of
    # 1000 steps take a few hundred KiB.
    out = subprocess.run([sys.executable, "-c", TBPTT_FIT, "400000", "8", "1000"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\ntruncated BPTT, T = 400,000: peak resident set {result['growth_mib']:+.1f} MiB")
    assert result["growth_mib"] < 16, result
    # The validation, run in chunks with the state carried, gives the loss of the whole sequence.
    assert result["val_loss"] == pytest.approx(result["whole"], rel=1e-5), result
