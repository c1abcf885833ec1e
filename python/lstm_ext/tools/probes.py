"""The benchmark's measuring processes: ``python -m lstm_ext.tools.probes <what> ...``.

Each runs in a fresh process that the benchmark (bench.py) starts, and prints one JSON line:

    memory CONFIG LIBRARY THREADS   the peak resident memory a training step adds (Linux)
    time CONFIGS CALLS              lstm_ext's median time per configuration at this process's
                                    kernel level or build
    contention LIBRARY SECONDS      training steps per second, from the moment the parent says go

CONFIG is a measure.Config as JSON, CONFIGS a list of them.
"""

from __future__ import annotations

import ctypes
import gc
import json
import statistics
import sys
import time
from typing import Callable

import lstm_ext
from lstm_ext.tools.bench import CONTENTION_CONFIG
from lstm_ext.tools.measure import Config, load_torch, runners, time_call


def memory(config_json: str, library: str, threads: str) -> None:
    """{"peak_kib"}: after one call and after freed memory is handed back to the system, the peak
    resident set of a second call over the resident set before it."""
    cfg = Config(**json.loads(config_json))
    torch = load_torch() if library == "torch" else None
    if torch is not None:
        torch.set_num_threads(int(threads))
    call = runners(cfg, torch)[library]
    call()  # once, so that one-time costs (lazy initialisation, thread stacks) are not counted
    gc.collect()
    # Hand the freed buffers back to the system, so that the step has to take them again: lstm_ext's
    # cache of blocks for the next call, then the C library's free lists.
    # (The weight copies a layer keeps for backward go too: torch's autograd needs none.)
    if hasattr(call, "layer"):
        call.layer._forward_copies.clear()
    lstm_ext.release_scratch_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set size
    before = status("VmRSS:")
    call()
    print(json.dumps({"peak_kib": status("VmHWM:") - before}))


def timing(configs_json: str, calls: str) -> None:
    """{label: seconds}: lstm_ext's median time per call of each configuration, `calls` calls
    after two not counted."""
    times = {}
    for cfg in (Config(**c) for c in json.loads(configs_json)):
        call = runners(cfg)["lstm_ext"]
        for _ in range(2):
            call()
        times[cfg.label] = statistics.median(time_call(call) for _ in range(int(calls)))
    print(json.dumps(times))


def contention(library: str, seconds: str) -> None:
    """{"steps_per_second"}: training steps of CONTENTION_CONFIG with `library` ('lstm_ext' or
    'torch') at its default thread count for `seconds`. Prints 'ready' once warm and waits for a
    line on stdin before it starts counting."""
    call = runners(CONTENTION_CONFIG, load_torch() if library == "torch" else None)[library]
    for _ in range(3):
        call()
    print("ready", flush=True)
    sys.stdin.readline()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < float(seconds):
        call()
        steps += 1
    print(json.dumps({"steps_per_second": steps / (time.perf_counter() - start)}), flush=True)


PROBES: dict[str, Callable[..., None]] = {"memory": memory, "time": timing, "contention": contention}

if __name__ == "__main__":
    what, *args = sys.argv[1:]
    PROBES[what](*args)
