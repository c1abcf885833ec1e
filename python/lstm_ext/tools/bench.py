"""The side-by-side benchmark: lstm_ext, torch.nn (when installed) and the NumPy reference.

``python -m lstm_ext bench`` (or ``python benchmarks/run.py``) times each configuration in one
process, the libraries alternating call by call after a warm-up, with the same number of threads
(``lstm_ext.set_num_threads`` and ``torch.set_num_threads``), and reports medians. Each time is
set against a roofline measured in the same run: the larger of the time the FLOPs take at the
GEMM peak of this machine (the best of torch's and NumPy's matrix product at the same thread
count, measured at the start and at the end of the run) and the time the recurrent weights take
to stream once per step at the bandwidth of the cache level a working set of their size lives
in (``_core.read_bandwidth``). FLOPs of one LSTM layer's forward: 2·T·B·4H·(I + H_out) (3H for
the GRU; plus 2·T·B·P·H with a projection); a training step (forward and backward, every
gradient) counts three times that.

Figures from different runs or machines are not comparable; ratios within one run are.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from lstm_ext import _core, cells
from lstm_ext._io import write_text_atomic
from lstm_ext._parallel import MAX_THREADS, get_num_threads, set_num_threads

from .machine import machine_info, machine_line as _machine_line
from .measure import BLOCK, GAP_SECONDS, Config, _layer_shapes, flops, load_torch, measure, paired_ratio, runners, time_call
from . import arguments, variants
from .paths import writable_file_problem

if TYPE_CHECKING:
    from .grid import GridResult

__all__ = ["Config", "CONFIGS", "main", "run"]

MAX_GAP_MS = 1000.0  # --gap-ms: a pause of a second after every timed call already makes the grid take hours

# DeepBench's RNN set scaled to 2 cores, input size = hidden size, float32, one layer; then the
# other paths the library has.
CONFIGS = [
    Config("inference", 150, 1, 256),
    Config("inference", 150, 4, 256),
    Config("inference", 25, 1, 512),
    Config("inference", 25, 4, 512),
    Config("inference", 25, 1, 1024),
    Config("training", 150, 16, 256),
    Config("training", 25, 16, 512),
    Config("training", 25, 64, 512),
    Config("training", 25, 32, 1024),
    Config("training", 150, 16, 256, dtype="float64"),
    Config("training", 150, 16, 256, cell="GRU"),
    Config("training", 150, 16, 256, proj_size=128),
    Config("training", 100, 16, 256, num_layers=2, bidirectional=True),
    Config("streaming", 200, 1, 256),
]


# -- arithmetic ----------------------------------------------------------------------------------

def streamed_bytes(cfg: Config) -> tuple[float, float]:
    """(bytes of weights read per call, the working set they are read from).

    Every step reads the recurrent weights of each layer and direction once (twice in a
    training step: forward and backward); a streaming cell reads W_ih and W_hh at every step.
    """
    item = np.dtype(cfg.dtype).itemsize
    H_out = cfg.proj_size or cfg.H
    recurrent = (cfg.gates * cfg.H * H_out + cfg.proj_size * cfg.H) * item  # one layer, one direction
    if cfg.kind == "streaming":
        per_step = cfg.gates * cfg.H * (cfg.input_size + H_out) * item
        return cfg.T * per_step, per_step
    passes = 2 if cfg.kind == "training" else 1
    directions = sum(D for _, D in _layer_shapes(cfg))
    return passes * cfg.T * directions * recurrent, recurrent


# -- the machine (lstm_ext.tools.machine) --------------------------------------------------------

def gemm_peak(dtype: str, threads: int, torch: Optional[ModuleType] = None) -> float:
    """FLOP/s of the best square matrix product on this machine at `threads` threads: torch's
    (MKL) when installed, NumPy's otherwise (its BLAS uses its own thread count)."""
    best = 0.0
    rng = np.random.default_rng(0)
    for n in (1024, 2048):  # the best of two sizes and of many trials: a peak, not a typical rate
        a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
        candidates: list[Callable[[], object]] = [lambda: a @ b]
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            candidates.append(lambda: torch.mm(ta, tb))
        for product in candidates:
            product()
            times = []
            for _ in range(12 if n == 1024 else 4):
                start = time.perf_counter()
                product()
                times.append(time.perf_counter() - start)
            best = max(best, 2.0 * n**3 / min(times))
    return best


# -- peak memory of a training step ----------------------------------------------------------------

def step_peak_memory(cfg: Config, library: str, threads: int) -> Optional[float]:
    """MiB by which a call raises the resident set at its peak, measured in a fresh process
    (Linux): after one call and after freed memory is handed back to the system (lstm_ext's scratch
    cache released, then malloc_trim), the peak resident set of a second call over the resident
    set before it."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = {**os.environ, "LSTM_EXT_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-m", "lstm_ext.tools.probes", "memory", json.dumps(dataclasses.asdict(cfg)),
                          library, str(threads)], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        return None
    peak_kib: float = json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"]
    return peak_kib / 1024.0


# -- kernel levels and builds, side by side in alternating processes ----------------------------------

def time_in_processes(variants: Mapping[str, tuple[Sequence[str], Mapping[str, str]]], configs: Sequence[Config],
                      rounds: int, calls: int, threads: int,
                      log: Callable[[str], None] = print) -> dict[str, list[dict[str, float]]]:
    """lstm_ext alone, once per variant, in processes that alternate: per round one process per
    variant (in alternating order), each timing every configuration (`calls` calls, the median).
    A variant is (python command, extra environment): another kernel level (LSTM_EXT_KERNELS) or
    another build (the Python of another environment). Returns {variant: [{label: seconds}, ...]},
    one entry per round, so that ratios can be taken within a round."""
    spec = json.dumps([dataclasses.asdict(c) for c in configs])
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            python, extra = variants[name]
            env = {**os.environ, "LSTM_EXT_NUM_THREADS": str(threads), **extra}
            out = subprocess.run([*python, "-m", "lstm_ext.tools.probes", "time", spec, str(calls)], capture_output=True,
                                 text=True, env=env, timeout=3600)
            if out.returncode != 0:
                raise RuntimeError(f"{name}: the timing process failed: {out.stderr.strip()[-2000:]}")
            samples[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"  round {r + 1} of {rounds} done")
    return samples


@dataclasses.dataclass
class LevelResult:
    config: Config
    seconds: dict[str, float]               # level -> median seconds per call over the rounds
    ratios: dict[tuple[str, str], float]    # (level a, level b) -> median over rounds of a's time / b's time


def compare_levels(configs: Sequence[Config], rounds: int, calls: int, threads: int,
                   log: Callable[[str], None] = print) -> list[LevelResult]:
    """Every kernel level this CPU can run, side by side (time_in_processes)."""
    info = _core.build_info()
    cpu = set(info["cpu_features"])
    levels = [name for name, needs in info["kernel_levels"].items() if set(needs) <= cpu]
    if len(levels) < 2:
        return []
    log(f"kernel levels {', '.join(levels)}: lstm_ext alone in alternating processes, {rounds} rounds")
    samples = time_in_processes({level: ([sys.executable], {"LSTM_EXT_KERNELS": level}) for level in levels},
                                configs, rounds, calls, threads, log)
    results: list[LevelResult] = []
    for cfg in configs:
        seconds = {level: statistics.median(s[cfg.label] for s in samples[level]) for level in levels}
        ratios = {(a, b): statistics.median(sa[cfg.label] / sb[cfg.label] for sa, sb in zip(samples[a], samples[b]))
                  for a in levels for b in levels if a != b}
        results.append(LevelResult(cfg, seconds, ratios))
        log(f"{cfg.label:58}" + "  ".join(f"{level} {_ms(seconds[level], cfg)}" for level in levels))
    return results


# -- a shared machine ---------------------------------------------------------------------------------

# The training step measured when processes share the machine (issue 18's size).
CONTENTION_CONFIG = Config("training", 50, 16, 256)
# What runs beside the measured trainers: each scenario's name and (trainers, busy processes,
# threads per trainer: None for the library's default, one per CPU). The one-thread scenarios say
# what the machine can do: issue 29's aims are fractions of them.
CONTENTION_SCENARIOS: dict[str, tuple[int, int, Optional[int]]] = {
    "alone": (1, 0, None),
    "next to a busy process": (1, 1, None),
    "two processes at once": (2, 0, None),
    "one thread alone": (1, 0, 1),
    "two one-thread processes": (2, 0, 1),
}
_BUSY = "while True: pass"


@dataclasses.dataclass
class ContentionResult:
    scenario: str
    steps_per_second: dict[str, float]  # library -> median over rounds of the trainers' steps/s, summed


def _contend(library: str, trainers: int, busy: int, seconds: float, env: Mapping[str, str]) -> float:
    """Steps per second of `trainers` processes of `library` together, next to `busy` spinning ones."""
    spinners = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(busy)]
    children = [subprocess.Popen([sys.executable, "-m", "lstm_ext.tools.probes", "contention", library, str(seconds)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                for _ in range(trainers)]
    try:
        for child in children:
            assert child.stdout is not None  # (PIPE)
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {library} training process failed to start")
        for child in children:  # go, all at once
            assert child.stdin is not None  # (PIPE)
            child.stdin.write("go\n")
            child.stdin.flush()
        total = 0.0
        for child in children:
            out, _ = child.communicate(timeout=seconds + 600)
            if child.returncode != 0:
                raise RuntimeError(f"a {library} training process failed (exit {child.returncode})")
            total += json.loads(out.strip().splitlines()[-1])["steps_per_second"]
        return total
    finally:
        for process in spinners + children:
            if process.poll() is None:
                process.kill()
                process.wait()


def contention(rounds: int, seconds: float, log: Callable[[str], None] = print) -> list[ContentionResult]:
    """Training steps per second of lstm_ext and torch (when installed), each at its default thread
    count and unpinned, alone, next to a busy process, and as two processes at once, and with one
    thread per process alone and two at once (what the machine can do); libraries and scenarios
    alternate over the rounds, and each figure is the median over the rounds."""
    libraries = ["lstm_ext"] + (["torch"] if load_torch() is not None else [])
    env = {k: v for k, v in os.environ.items() if k not in ("LSTM_EXT_NUM_THREADS", "OMP_NUM_THREADS")}
    env["LSTM_EXT_PIN_THREADS"] = "0"
    samples: dict[tuple[str, str], list[float]] = {(s, lib): [] for s in CONTENTION_SCENARIOS for lib in libraries}
    log(f"a shared machine: {CONTENTION_CONFIG.label}, default threads, unpinned, {rounds} rounds "
        f"of {seconds:g} s")
    for r in range(rounds):
        for scenario, (trainers, busy, threads) in CONTENTION_SCENARIOS.items():
            one = {"LSTM_EXT_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"} if threads == 1 else {}
            for lib in (libraries if r % 2 == 0 else libraries[::-1]):
                samples[(scenario, lib)].append(_contend(lib, trainers, busy, seconds, {**env, **one}))
        log(f"  round {r + 1} of {rounds} done")
    results: list[ContentionResult] = []
    for scenario in CONTENTION_SCENARIOS:
        result = ContentionResult(scenario, {lib: statistics.median(samples[(scenario, lib)]) for lib in libraries})
        results.append(result)
        log(f"{scenario:28}" + "  ".join(f"{lib} {v:.1f} steps/s" for lib, v in result.steps_per_second.items()))
    return results


def _contention_section(results: list[ContentionResult]) -> list[str]:
    libraries = list(results[0].steps_per_second)
    lines = [
        f"Training steps (T, B, H) = ({CONTENTION_CONFIG.T}, {CONTENTION_CONFIG.B}, {CONTENTION_CONFIG.H}) "
        "(forward and backward, float32) per second, each process at its "
        "library's default thread count (one per CPU) and not pinned (LSTM_EXT_PIN_THREADS=0, as in a "
        "container or wherever pinning is off), or with one thread ('one thread', LSTM_EXT_NUM_THREADS=1 "
        "and OMP_NUM_THREADS=1); two processes: the sum of both; 'next to a busy process' runs beside a "
        "Python loop that never sleeps. Medians over the rounds; the libraries alternate.",
        "",
        "| scenario | " + " | ".join(libraries) + (" | lstm_ext vs torch |" if "torch" in libraries else " |"),
        "|" + "|".join("---" for _ in range(len(libraries) + 1 + ("torch" in libraries))) + "|",
    ]
    for r in results:
        row = [r.scenario] + [f"{r.steps_per_second[lib]:.1f}" for lib in libraries]
        if "torch" in libraries:
            row.append(f"{r.steps_per_second['lstm_ext'] / r.steps_per_second['torch']:.2f}×")
        lines.append("| " + " | ".join(row) + " |")
    by_name = {r.scenario: r.steps_per_second for r in results}
    alone = by_name["alone"]["lstm_ext"]
    lines += ["", f"- lstm_ext next to a busy process keeps {by_name['next to a busy process']['lstm_ext'] / alone:.0%} "
              f"of its steps/s alone; two processes at once make {by_name['two processes at once']['lstm_ext'] / alone:.0%} "
              "of one process's steps/s alone, together."]
    # Issue 29's aims: a shared machine kept busy, as fractions of what one-thread processes make.
    if "one thread alone" in by_name:
        one, ones = by_name["one thread alone"]["lstm_ext"], by_name["two one-thread processes"]["lstm_ext"]
        two_share = by_name["two processes at once"]["lstm_ext"] / ones
        busy_share = by_name["next to a busy process"]["lstm_ext"] / one
        lines.append(f"- Aims, at least 85% of what one-thread processes make: two processes at once "
                     f"{two_share:.0%} of two one-thread processes ({'met' if two_share >= 0.85 else 'missed'}); "
                     f"next to a busy process {busy_share:.0%} of one thread alone "
                     f"({'met' if busy_share >= 0.85 else 'missed'}).")
    if "torch" in libraries:
        two = by_name["two processes at once"]
        lines.append(f"- Aim, two processes at once at least as many steps/s in total as torch's: "
                     f"{'met' if two['lstm_ext'] >= two['torch'] else 'missed'} ({two['lstm_ext']:.1f} against "
                     f"{two['torch']:.1f}).")
    return lines


# -- the run -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    config: Config
    seconds: dict[str, float]  # library -> median seconds per call
    roofline: float          # seconds
    bound: str               # "compute" or "memory (<working set>)"
    peak_memory: dict[str, Optional[float]]  # library -> MiB (None: not measured), training only
    rounds: int = 0          # timed rounds
    paired_speedup: Optional[float] = None  # median over rounds of torch's time / lstm_ext's
    memory_seconds: float = 0.0  # the weights streamed once per step at the measured bandwidth
    memory_bound: str = ""       # "memory (<working set> at <bandwidth>)"

    def set_peak(self, peak: float) -> None:
        """Roofline and bound from the GEMM peak (FLOP/s) and the memory time."""
        compute = flops(self.config) / peak
        self.roofline = max(compute, self.memory_seconds)
        self.bound = "compute" if compute >= self.memory_seconds else self.memory_bound

    def speedup(self) -> float:
        """torch over lstm_ext: the median of the rounds' ratios when measured, else of the medians."""
        if self.paired_speedup is not None:
            return self.paired_speedup
        return self.seconds["torch"] / self.seconds["lstm_ext"]


def run(configs: Sequence[Config] = CONFIGS, repeats: int = 15, warmup: int = 3, threads: Optional[int] = None,
        with_reference: bool = True, with_memory: bool = True,
        log: Callable[[str], None] = print) -> tuple[dict[str, Any], list[Result]]:
    """Time every configuration; returns (machine info, results)."""
    torch = load_torch()
    threads = threads if threads is not None else get_num_threads()
    set_num_threads(threads)  # checked: [1, 4096], before torch gets the same number
    if torch is not None:
        torch.set_num_threads(threads)
    machine = machine_info(threads, torch)
    peaks: dict[str, float] = {}
    results: list[Result] = []
    for cfg in configs:
        if cfg.dtype not in peaks:
            peaks[cfg.dtype] = gemm_peak(cfg.dtype, threads, torch)
            machine[f"gemm_peak_{cfg.dtype}"] = peaks[cfg.dtype]
        calls = runners(cfg, torch)
        timed = {name: call for name, call in calls.items() if name != "reference"}
        # Fast configurations get more rounds (about 3 s of timing), so that their medians see the
        # machine's slow and fast moments alike.
        samples = measure(timed, repeats, warmup)
        rounds = len(samples["lstm_ext"])
        seconds = {name: statistics.median(values) for name, values in samples.items()}
        ratios: dict[str, float] = {}
        if "torch" in samples:
            ratios["torch"] = paired_ratio(samples)
        if with_reference:
            seconds["reference"] = time_call(calls["reference"])

        total_bytes, working_set = streamed_bytes(cfg)
        bandwidth = _core.read_bandwidth(int(working_set), threads, max(2, int(2e8 // working_set)), 5)
        memory_use: dict[str, Optional[float]] = {}
        if with_memory and cfg.kind == "training":
            for name in timed:
                memory_use[name] = step_peak_memory(cfg, name, threads)
        result = Result(cfg, seconds, 0.0, "", memory_use, rounds, ratios.get("torch"), total_bytes / bandwidth,
                        f"memory ({working_set / 2**20:.2g} MiB at {bandwidth / 1e9:.0f} GB/s)")
        result.set_peak(peaks[cfg.dtype])
        results.append(result)
        log(_row_text(result))
    # The machine's pace drifts over a run: the peak is measured again at the end and the better
    # of the two measurements counts, so that no roofline rests on a slow moment.
    for dtype in peaks:
        peaks[dtype] = max(peaks[dtype], gemm_peak(dtype, threads, torch))
        machine[f"gemm_peak_{dtype}"] = peaks[dtype]
    for result in results:
        result.set_peak(peaks[result.config.dtype])
    return machine, results


def _row_text(r: Result) -> str:
    parts = [f"{r.config.label:58}"]
    for name in ("lstm_ext", "torch", "reference"):
        if name in r.seconds:
            parts.append(f"{name} {_ms(r.seconds[name], r.config)}")
    if "torch" in r.seconds:
        # Both figures, so that each can be checked: the ratio of the medians printed before it,
        # and the median of the rounds' own ratios (each round's two calls share the machine's
        # moment), which is the speedup the report gives.
        of_medians = r.seconds["torch"] / r.seconds["lstm_ext"]
        parts.append(f"speedup {r.speedup():.2f}x (median of {r.rounds} rounds' ratios; ratio of the medians "
                     f"{of_medians:.2f}x)")
    fraction = r.roofline / r.seconds["lstm_ext"]
    text = f"{fraction:.0%} of roofline"
    if fraction > 1.0:  # the roofline is a measurement too: say which one this call beat
        text += (" (above 100 %: faster than the GEMM peak measured so far; the report measures it again at the "
                 "end and uses the better)" if r.bound == "compute" else
                 " (above 100 %: faster than streaming the weights at the bandwidth measured for their working "
                 "set; they stayed in a faster cache)")
    parts.append(text)
    return "  ".join(parts)


def _ms(seconds: float, cfg: Config) -> str:
    if cfg.kind == "streaming":
        return f"{seconds / cfg.T * 1e6:.2f} µs/step"
    return f"{seconds * 1e3:.2f} ms"


# -- the report ----------------------------------------------------------------------------------

def render(machine: dict[str, Any], results: list[Result], repeats: int, levels: Optional[list[LevelResult]] = None,
           shared: Optional[list[ContentionResult]] = None, grid_results: Optional[list[GridResult]] = None,
           variant_results: Optional[list[variants.VariantResult]] = None) -> str:
    has_torch = any("torch" in r.seconds for r in results)
    lines = ["# lstm_ext benchmarks", ""]
    lines += [
        _machine_line(machine),
        "",
        f"GEMM peak measured in this run at {machine['threads']} threads (the best of torch's and NumPy's "
        "matrix product, the better of a measurement at the start and one at the end): "
        + ", ".join(f"{k.split('_')[-1]} {v / 1e9:.0f} GFLOP/s" for k, v in machine.items() if k.startswith("gemm_peak"))
        + ".",
        "",
        f"Protocol: one process; per configuration a warm-up, then at least {repeats} rounds (more for fast "
        "configurations, about 3 s of timing, up to 101) in which the libraries "
        f"take turns by blocks: a call that is not counted (it absorbs the other library's threads, still "
        f"spinning), then {BLOCK} timed calls (one for calls of 50 ms or more), a {GAP_SECONDS * 1e3:.0f} ms "
        "pause after each; the table gives medians, and the speedup is the median over the rounds of torch's "
        "time over lstm_ext's (the two blocks of a round share the machine's moment). Inference is a forward in eval mode (torch: inference_mode); a training step is forward and "
        "backward with every gradient (dx and all parameters). Input size = hidden size. The NumPy reference "
        "is timed once. Roofline: the larger of FLOPs at the GEMM peak and the recurrent weights streamed "
        "once per step at the bandwidth measured for a working set of their size; '% of roofline' is the "
        "roofline time over lstm_ext's time. Peak memory: how much one training step raises the resident "
        "set, in a fresh process. Figures from different runs or machines are not comparable; ratios "
        "within one run are.",
        "",
    ]
    columns = ["configuration (T, B, H)", "lstm_ext", "torch" if has_torch else None, "NumPy reference",
               "speedup vs torch" if has_torch else None, "lstm_ext GFLOP/s", "torch GFLOP/s" if has_torch else None,
               "% of roofline", "bound", "step memory MiB (lstm_ext / torch)"]
    header = [h for h in columns if h is not None]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        cfg, s = r.config, r.seconds
        row = [cfg.label, _ms(s["lstm_ext"], cfg)]
        if has_torch:
            row.append(_ms(s["torch"], cfg) if "torch" in s else "—")
        row.append(_ms(s["reference"], cfg) if "reference" in s else "—")
        if has_torch:
            row.append(f"**{r.speedup():.2f}×**" if "torch" in s else "—")
        row.append(f"{flops(cfg) / s['lstm_ext'] / 1e9:.0f}")
        if has_torch:
            row.append(f"{flops(cfg) / s['torch'] / 1e9:.0f}" if "torch" in s else "—")
        row.append(f"{r.roofline / s['lstm_ext']:.0%}")
        row.append(r.bound)
        mem = r.peak_memory
        row.append(" / ".join("—" if mem.get(k) is None else f"{mem[k]:.0f}" for k in ("lstm_ext", "torch"))
                   if mem else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Reading", ""] + _reading(results)
    aims = _aims(results, machine)
    if aims:
        lines += ["", "## The aims of issue 4, in this run", ""] + aims
    if levels:
        lines += ["", "## Kernel levels", ""] + _levels_section(levels)
    if shared:
        lines += ["", "## A shared machine", ""] + _contention_section(shared)
    if grid_results:
        from . import grid

        lines += ["", "## The grid: sizes users meet", ""] + grid.grid_section(grid_results)
    if variant_results:
        lines += ["", "## The LSTM variants", ""] + variants.variants_section(variant_results)
    return "\n".join(lines) + "\n"


def _levels_section(levels: list[LevelResult]) -> list[str]:
    """lstm_ext at every kernel level this CPU runs, and the ratios that judge them."""
    names = list(levels[0].seconds)
    best = names[-1]
    pairs = [(best, lower) for lower in names[:-1]]  # the best level against each lower one
    lines = [
        f"lstm_ext alone at each kernel level this CPU can run ({', '.join(names)}), in processes that "
        "alternate (LSTM_EXT_KERNELS), the same configurations as above; times are medians over the rounds, "
        "a ratio is the median over the rounds of the lower level's time over the higher level's (above 1: "
        "the higher level is faster).",
        "",
        "| configuration | " + " | ".join(names) + " | " + " | ".join(f"{a} vs {b}" for a, b in pairs) + " |",
        "|" + "|".join("---" for _ in range(1 + len(names) + len(pairs))) + "|",
    ]
    for r in levels:
        lines.append(f"| {r.config.label} | " + " | ".join(_ms(r.seconds[n], r.config) for n in names) + " | "
                     + " | ".join(f"{r.ratios[(b, a)]:.2f}×" for a, b in pairs) + " |")
    lines.append("")
    for a, b in pairs:
        ratios = [r.ratios[(b, a)] for r in levels]
        slower = [r.config.label for r in levels if r.ratios[(b, a)] < 1.0]
        lines.append(f"- {a} against {b}: {min(ratios):.2f}× to {max(ratios):.2f}× (geometric mean "
                     f"{float(np.exp(np.mean(np.log(ratios)))):.2f}×); "
                     + ("at least as fast on every configuration." if not slower else
                        f"slower on {', '.join(slower)}."))
    return lines


def _reading(results: list[Result]) -> list[str]:
    """Sentences about this run's numbers, computed from them."""
    out: list[str] = []
    compared = [r for r in results if "torch" in r.seconds]
    if compared:
        ratios = [(r.speedup(), r) for r in compared]
        faster = sum(1 for ratio, _ in ratios if ratio >= 1.0)
        worst_ratio, worst = min(ratios, key=lambda item: item[0])
        best_ratio, best = max(ratios, key=lambda item: item[0])
        out.append(f"- lstm_ext is at least as fast as torch on {faster} of {len(ratios)} configurations; the "
                   f"smallest speedup is {worst_ratio:.2f}× ({worst.config.label}), the largest {best_ratio:.2f}× "
                   f"({best.config.label}).")
        for group in ("inference", "training"):
            rs = [ratio for ratio, r in ratios if r.config.kind == group]
            if rs:
                out.append(f"- {group.capitalize()}: speedups {min(rs):.2f}× to {max(rs):.2f}× "
                           f"(geometric mean {float(np.exp(np.mean(np.log(rs)))):.2f}×).")
    for r in results:
        fraction = r.roofline / r.seconds["lstm_ext"]
        if r.bound.startswith("memory"):
            out.append(f"- {r.config.label}: bound by streaming the weights, {r.bound}; lstm_ext reaches "
                       f"{fraction:.0%} of that bound.")
    compute = [r.roofline / r.seconds["lstm_ext"] for r in results if r.bound == "compute"]
    if compute:
        out.append(f"- Compute-bound configurations reach {min(compute):.0%} to {max(compute):.0%} of the GEMM "
                   "peak: the recurrent product at small batch and the pointwise gate work, which is not "
                   "a GEMM, keep them below it.")
        if max(compute) > 1.0:
            out.append("- Above 100 %: lstm_ext's own products ran faster than the library matrix product "
                       "that defines the peak here, so that peak understates what this machine can do.")
    measured = [(r.peak_memory.get("lstm_ext"), r.peak_memory.get("torch"), r) for r in results if r.peak_memory]
    mems = [(a, b, r) for a, b, r in measured if a is not None and b is not None]
    if mems:
        lower = sum(1 for a, b, _ in mems if a <= b)
        out.append(f"- A training step raises the resident set by less than or as much as torch's on {lower} of "
                   f"{len(mems)} configurations.")
    return out


def _aims(results: list[Result], machine: dict[str, Any]) -> list[str]:
    """Each aim of the performance issue, met or not in this run; a missed one says by how much and
    what bounds it: the ceiling is the speedup over torch that lstm_ext would have at its roofline."""
    compared = [r for r in results if "torch" in r.seconds]
    if not compared:
        return []

    def speedup(r: Result) -> float:
        return r.speedup()

    def verdict(r: Result, aim: float) -> str:
        ceiling = r.seconds["torch"] / r.roofline
        if speedup(r) >= aim:
            return f"met, {speedup(r):.2f}×"
        return (f"missed: {speedup(r):.2f}× ({speedup(r) / aim:.0%} of the aim); bound: {r.bound}, where even "
                f"lstm_ext at its roofline would be {ceiling:.2f}× torch")

    lines: list[str] = []
    must = [r for r in compared if speedup(r) < 1.0]
    lines.append("- Must, at least as fast as torch everywhere: " + (
        "met on every configuration." if not must else
        "missed on " + "; ".join(f"{r.config.label} ({speedup(r):.2f}×)" for r in must) + "."))
    for r in compared:
        cfg = r.config
        if cfg.kind == "inference" and cfg.B <= 4:
            lines.append(f"- Aim 2× torch at batch <= 4, {cfg.label}: {verdict(r, 2.0)}.")
    for r in compared:
        cfg = r.config
        if cfg.kind == "training" and cfg.B >= 32 and cfg.cell_kind is cells.LSTM and cfg.dtype == "float32":
            lines.append(f"- Aim 1.3× torch at the large training sizes, {cfg.label}: {verdict(r, 1.3)}.")
            if (cfg.T, cfg.B, cfg.H) == (25, 32, 1024):
                peak = machine.get("gemm_peak_float32")
                if peak:
                    share = flops(cfg) / r.seconds["lstm_ext"] / peak
                    lines.append(f"- Aim 75% of the GEMM peak on {cfg.label}: {share:.0%} of "
                                 f"{peak / 1e9:.0f} GFLOP/s ({'met' if share >= 0.75 else 'missed'}; torch: "
                                 f"{flops(cfg) / r.seconds['torch'] / peak:.0%}).")
    for r in compared:
        cfg = r.config
        if cfg.kind == "training" and (cfg.dtype == "float64" or cfg.cell_kind is cells.GRU or cfg.proj_size):
            lines.append(f"- Aim 2× torch, {cfg.label}: {verdict(r, 2.0)}.")
    for r in results:
        if r.config.kind == "streaming":
            per_step = r.seconds["lstm_ext"] / r.config.T * 1e6
            bound = r.roofline / r.config.T * 1e6
            met = per_step <= 3.0
            lines.append(f"- Aim 3 µs per streaming step at B = 1, H = 256: {per_step:.1f} µs "
                         f"({'met' if met else 'missed'}); a step reads W_ih and W_hh once, "
                         f"{streamed_bytes(r.config)[1] / 2**20:.0f} MiB, which at the bandwidth measured for that "
                         f"working set takes {bound:.1f} µs on this machine, plus the Python call.")
            lines.append(f"- Aim (issue 13) a stream step within 2× the time to read the weights once: "
                         f"{per_step / bound:.2f}× ({'met' if per_step <= 2 * bound else 'missed'}).")
    measured = [(r.peak_memory.get("lstm_ext"), r.peak_memory.get("torch"), r) for r in results if r.peak_memory]
    mems = [(a, b, r) for a, b, r in measured if a is not None and b is not None]
    if mems:
        over = [(a, b, r) for a, b, r in mems if a > b]
        lines.append("- Aim training step memory <= torch's: " + (
            "met on every training configuration." if not over else
            f"met on {len(mems) - len(over)} of {len(mems)}; above on " +
            "; ".join(f"{r.config.label} ({a:.0f} vs {b:.0f} MiB)" for a, b, r in over) + "."))
    return lines


# -- command line ----------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_ext bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check: 2 rounds, no reference, no memory probe (CI)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per configuration, at most "
                        f"{arguments.MAX_REPEATS} (default 15)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library, 1 to "
                        f"{MAX_THREADS} (default: lstm_ext.get_num_threads())")
    parser.add_argument("--only", default=None, help="run the configurations whose label contains this text "
                        "(and skip the shared-machine section); 'shared' runs that section alone")
    parser.add_argument("--out", default=None, help="write the Markdown report to this file (e.g. BENCHMARKS.md)")
    parser.add_argument("--grid", action="store_true",
                        help="run the grid alone: batch 1-256 by hidden 32-1024 and slices across input size, cell, "
                        "dtype and length, side by side with torch (lstm_ext.tools.grid); with --quick a small slice")
    parser.add_argument("--variants", action="store_true",
                        help="run the LSTM variants alone: each variant's training step against the plain cell and "
                        "against a torch.jit-scripted loop (lstm_ext.tools.variants); with --quick one small size")
    parser.add_argument("--solo", action="store_true",
                        help="run each library alone in a process of its own, the processes taking turns "
                        "(lstm_ext f32/int8/bf16, torch f32/int8, ONNX Runtime f32/int8, OpenVINO where installed; "
                        "lstm_ext.tools.solo): --repeats rounds (default 3), inference T 1 and 50 by B 1-128 by "
                        "H 128-1024, with --quick three small sizes, with --only the labels containing that text")
    parser.add_argument("--gap-ms", type=float, default=GAP_SECONDS * 1e3,
                        help=f"pause after each timed call in the grid and --solo, in ms, at most {MAX_GAP_MS:g} "
                        f"(default {GAP_SECONDS * 1e3:.0f}; 0: back to back, each library right after the other's "
                        "threads)")
    args = parser.parse_args(argv)
    # Every number before any work: a bad one fails here in one line (exit code 2), not in the
    # core or in torch (--threads 100000 crashed torch while it measured the GEMM peak).
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 15)
    problem = arguments.integer_problem(repeats, 1, arguments.MAX_REPEATS)
    if problem:
        parser.error(f"--repeats {problem}")
    problem = None if args.threads is None else arguments.threads_problem(args.threads)
    if problem:
        parser.error(f"--threads {problem}")
    problem = arguments.milliseconds_problem(args.gap_ms, MAX_GAP_MS)
    if problem:
        parser.error(f"--gap-ms {problem}")
    if args.out and writable_file_problem(args.out):
        parser.error(f"--out {writable_file_problem(args.out)}")
    if args.solo:
        from . import solo

        if args.grid or args.variants:
            parser.error("--solo runs alone: without --grid and --variants")
        configs = solo.solo_configs(quick=args.quick, only=args.only)
        if not configs:
            parser.error(f"--only {args.only!r} matches no configuration of --solo")
        return solo.main(configs, rounds=args.repeats if args.repeats is not None else solo.ROUNDS,
                         threads=args.threads if args.threads is not None else get_num_threads(),
                         gap=args.gap_ms / 1e3, out=args.out, quick=args.quick)
    if args.grid:
        from . import grid

        if load_torch() is None:
            parser.error("the grid compares with torch: pip install torch==2.13.0 (CPU)")
        threads = args.threads if args.threads is not None else get_num_threads()
        machine = machine_info(threads, load_torch())
        grid_rows = grid.run_grid(grid.grid_configs(quick=args.quick), threads=threads, gap=args.gap_ms / 1e3)
        report = "\n".join(["# lstm_ext benchmarks: the grid", "", _machine_line(machine), "",
                             *grid.grid_section(grid_rows, gap=args.gap_ms / 1e3)]) + "\n"
        if args.out:
            write_text_atomic(args.out, report)
            print(f"wrote {args.out}")
        return 0
    if args.variants:
        threads = args.threads if args.threads is not None else get_num_threads()
        set_num_threads(threads)
        torch = load_torch()
        if torch is not None:
            torch.set_num_threads(threads)
        machine = machine_info(threads, torch)
        variant_rows = variants.run_variants(sizes=[(20, 8, 64)] if args.quick else variants.SIZES,
                                             repeats=2 if args.quick else 7, warmup=1 if args.quick else 2)
        report = "\n".join(["# lstm_ext benchmarks: the LSTM variants", "", _machine_line(machine), "",
                             *variants.variants_section(variant_rows)]) + "\n"
        if args.out:
            write_text_atomic(args.out, report)
            print(f"wrote {args.out}")
        return 0
    if args.only == "shared":  # the shared-machine section alone
        threads = args.threads if args.threads is not None else get_num_threads()
        machine = machine_info(threads, load_torch())
        shared_rows = contention(rounds=1 if args.quick else 5, seconds=0.5 if args.quick else 4.0)
        report = "\n".join(["# lstm_ext benchmarks: a shared machine", "", _machine_line(machine), "",
                             *_contention_section(shared_rows)]) + "\n"
        if args.out:
            write_text_atomic(args.out, report)
            print(f"wrote {args.out}")
        return 0
    configs = [c for c in CONFIGS if args.only is None or args.only in c.label]
    if not configs:
        parser.error(f"--only {args.only!r} matches no configuration")
    machine, results = run(configs, repeats=repeats, warmup=1 if args.quick else 3, threads=args.threads,
                           with_reference=not args.quick, with_memory=not args.quick)
    levels = compare_levels(configs, rounds=1 if args.quick else 7, calls=1 if args.quick else 5,
                            threads=machine["threads"])
    shared = contention(rounds=1 if args.quick else 5, seconds=0.5 if args.quick else 4.0) if args.only is None else None
    grid_results = None
    if args.only is None and load_torch() is not None:
        from . import grid

        grid_results = grid.run_grid(grid.grid_configs(quick=args.quick), threads=machine["threads"],
                                     gap=args.gap_ms / 1e3)
    variant_results = None
    if args.only is None:
        variant_results = variants.run_variants(sizes=[(20, 8, 64)] if args.quick else variants.SIZES,
                                                repeats=2 if args.quick else 7, warmup=1 if args.quick else 2)
    report = render(machine, results, repeats, levels, shared, grid_results, variant_results)
    if args.out:
        write_text_atomic(args.out, report)
        print(f"wrote {args.out}")
    return 0
