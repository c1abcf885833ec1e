"""The GIL is released while the core computes, and concurrent calls do not interfere."""

from __future__ import annotations

import threading
import time

import numpy as np

import lstm_ext
from lstm_ext.selfcheck import cast_case, random_case, run_compiled


def test_other_python_threads_run_during_a_forward():
    case = cast_case(random_case(6000, 1, 256, 256, seed=0), np.float32)
    args = (case["x"], case["w_ih"], case["w_hh"])
    lstm_ext.lstm_forward(*args)  # warm up
    go, duration = threading.Event(), []

    def worker():
        go.wait()
        begin = time.perf_counter()
        lstm_ext.lstm_forward(*args)
        duration.append(time.perf_counter() - begin)

    thread = threading.Thread(target=worker)
    thread.start()
    # This thread is already looping when the worker enters the core. The loop keeps running
    # only if the GIL is free: with the GIL held, its longest pause would be the whole call.
    longest_pause, last = 0.0, time.perf_counter()
    go.set()
    while thread.is_alive():
        now = time.perf_counter()
        longest_pause, last = max(longest_pause, now - last), now
    thread.join()
    assert longest_pause < 0.5 * duration[0], f"main thread paused {longest_pause:.3f} s of a {duration[0]:.3f} s call"


def test_concurrent_calls_give_the_sequential_results():
    cases = [cast_case(random_case(40, 3, 16, 32, seed=s), np.float32) for s in range(4)]
    expected = [run_compiled(c) for c in cases]
    results = [None] * len(cases)

    def work(k):
        for _ in range(5):
            results[k] = run_compiled(cases[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
