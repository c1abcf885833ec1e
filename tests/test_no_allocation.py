"""Nothing allocates inside the time loops: the number of heap allocations of a call does not
grow with the number of time steps, for every cell (LSTM with and without projection, GRU, RNN),
direction and with per-sequence lengths.

A small malloc-counting library is compiled and preloaded into a Python subprocess, which counts
the allocations of forward (training and inference), backward and a cell call at T = 10 and
T = 2000. Any per-step allocation would add about 2000 to the larger count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import lstm_ext

COUNTER_C = r"""
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static long allocations = 0;
long lstm_ext_allocations(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }
static void counted(void) { __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED); }
void *malloc(size_t n) { counted(); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { counted(); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { counted(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
  counted(); *p = __libc_memalign(a, n); return *p ? 0 : 12;
}
"""

PROBE_PY = textwrap.dedent("""
    import ctypes, json
    import numpy as np
    import lstm_ext
    from lstm_ext.testing import cast_case, random_case

    count = ctypes.CDLL(None).lstm_ext_allocations
    count.restype = ctypes.c_long

    def allocations(fn):
        fn()  # warm up: first-call caches, lazily created objects
        before = count()
        fn()
        return count() - before

    result = {}
    for dtype in (np.float32, np.float64):
        for T in (10, 2000):
            c = cast_case(random_case(T, 4, 24, 96, seed=0), dtype)
            w = (c["w_ih"], c["w_hh"], c["b_ih"], c["b_hh"])
            ws = lstm_ext.lstm_forward(c["x"], *w, c["h0"], c["c0"], training=True).workspace
            key = f"{np.dtype(dtype).name} T={T}"
            result[key + " forward(training)"] = allocations(
                lambda: lstm_ext.lstm_forward(c["x"], *w, c["h0"], c["c0"], training=True))
            result[key + " forward(inference)"] = allocations(lambda: lstm_ext.lstm_forward(c["x"], *w))
            result[key + " backward"] = allocations(
                lambda: lstm_ext.lstm_backward(c["dy"], c["dh_n"], c["dc_n"], c["x"], c["w_ih"], c["w_hh"], ws))

            # The other cells and paths, reversed and with lengths (masked rows).
            x, B, H = c["x"], 4, 96
            seq = dict(lengths=np.array([T, 1, T // 2, 3]), reverse=True)
            rng = np.random.default_rng(0)
            w = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(dtype)
            P = 32
            proj = dict(w_hr=w(P, H), **seq)
            w_ih4, w_hh4p = w(4 * H, 24), w(4 * H, P)
            ws = lstm_ext.lstm_forward(x, w_ih4, w_hh4p, training=True, **proj).workspace
            dy_p = w(T, B, P)
            result[key + " lstm proj forward"] = allocations(
                lambda: lstm_ext.lstm_forward(x, w_ih4, w_hh4p, training=True, **proj))
            result[key + " lstm proj backward"] = allocations(
                lambda: lstm_ext.lstm_backward(dy_p, None, None, x, w_ih4, w_hh4p, ws, **proj))
            for op, rows in (("gru", 3 * H), ("rnn", H)):
                forward, backward = getattr(lstm_ext, op + "_forward"), getattr(lstm_ext, op + "_backward")
                w_ih, w_hh = w(rows, 24), w(rows, H)
                ws = forward(x, w_ih, w_hh, training=True, **seq).workspace
                dy = c["dy"]
                result[key + f" {op} forward(training)"] = allocations(
                    lambda: forward(x, w_ih, w_hh, training=True, **seq))
                result[key + f" {op} forward(inference)"] = allocations(lambda: forward(x, w_ih, w_hh, **seq))
                result[key + f" {op} backward"] = allocations(lambda: backward(dy, None, x, w_ih, w_hh, ws, **seq))
    print(json.dumps(result))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and glibc's __libc_* are Linux's")
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the malloc counter")
@pytest.mark.skipif(lstm_ext.build_info()["sanitizers"], reason="the sanitizers' allocator takes malloc's place")
def test_allocations_do_not_grow_with_time_steps(tmp_path):
    source = tmp_path / "counter.c"
    source.write_text(COUNTER_C)
    library = tmp_path / "libcounter.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)

    env = {**os.environ, "LD_PRELOAD": str(library)}
    probe = subprocess.run([sys.executable, "-c", PROBE_PY], capture_output=True, text=True, env=env, timeout=300)
    assert probe.returncode == 0, probe.stderr
    counts = json.loads(probe.stdout)

    for name, short in counts.items():
        if " T=10 " not in name:
            continue
        long = counts[name.replace(" T=10 ", " T=2000 ")]
        assert short > 0, f"{name}: the counter saw nothing; is it preloaded?"
        assert long - short < 50, f"{name}: {short} allocations at T=10, {long} at T=2000"
