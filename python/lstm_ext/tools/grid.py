"""The benchmark's grid: lstm_ext against torch.nn over the sizes users meet, not only the main table's.

``python -m lstm_ext bench --grid`` sweeps batch 1 to 256 by hidden size 32 to 1024 (T = 50,
input size = hidden size, float32, LSTM; inference and training), then slices across the other
axes: a handful of input features (I = 4), the GRU and the vanilla RNN, float64, and sequences of
1 and 1000 steps. Every configuration is timed as in the main table (one process, the libraries
taking turns by blocks of calls with a pause after each call, measure.measure; the speedup the
median over the rounds of torch's time over lstm_ext's), with about a second of timing per
configuration. The summary
names the configurations below 1.0×, the minimum and the geometric mean.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from typing import Callable, Optional

import numpy as np

from lstm_ext._parallel import get_num_threads, set_num_threads

from . import ort_bench
from .measure import BLOCK, GAP_SECONDS, Config, inputs, load_torch, measure, paired_ratio, runners

__all__ = ["GRID_B", "GRID_H", "GridResult", "grid_configs", "run_grid", "grid_section"]

GRID_B = (1, 8, 32, 128, 256)
GRID_H = (32, 64, 128, 256, 512, 1024)
GRID_T = 50
SLICE_B = (1, 32, 256)
SLICE_H = (64, 256, 1024)


def grid_configs(quick: bool = False) -> list[Config]:
    """The grid's configurations: the B x H table of both kinds, then the slices (module doc).
    quick: a small slice of it for CI's smoke run, one configuration per axis."""
    if quick:
        return [Config("inference", GRID_T, 32, 128), Config("training", GRID_T, 8, 64),
                Config("inference", GRID_T, 128, 64, cell="GRU", I=4), Config("training", 1, 1, 32, cell="RNN"),
                Config("inference", GRID_T, 8, 64, dtype="float64")]
    configs = [Config(kind, GRID_T, B, H) for kind in ("inference", "training") for B in GRID_B for H in GRID_H]
    for kind in ("inference", "training"):
        configs += [Config(kind, GRID_T, B, H, I=4) for B in SLICE_B for H in SLICE_H]
        configs += [Config(kind, GRID_T, B, H, cell=cell) for cell in ("GRU", "RNN") for B in SLICE_B
                    for H in SLICE_H]
        configs += [Config(kind, GRID_T, B, H, dtype="float64") for B in SLICE_B for H in SLICE_H]
        configs += [Config(kind, T, B, H) for T in (1, 1000) for B in (1, 32) for H in (64, 512)]
    return configs


@dataclasses.dataclass
class GridResult:
    config: Config
    seconds: dict[str, float]  # library -> median seconds per call
    speedup: float         # median over rounds of torch's time over lstm_ext's
    rounds: int
    ort_speedup: Optional[float] = None  # the same against ONNX Runtime (float32 inference)


def run_grid(configs: list[Config], threads: Optional[int] = None, gap: float = GAP_SECONDS, budget: float = 1.0,
             with_onnxruntime: bool = True, log: Callable[[str], None] = print) -> list[GridResult]:
    """Time every configuration against torch (which must be installed), and the float32
    inference configurations against ONNX Runtime when it is installed (ort_bench)."""

    torch = load_torch()
    if torch is None:
        raise RuntimeError("the grid compares with torch: pip install torch==2.13.0 (CPU)")
    threads = threads if threads is not None else get_num_threads()
    set_num_threads(threads)  # checked: [1, 4096], before torch gets the same number
    torch.set_num_threads(threads)
    results: list[GridResult] = []
    for cfg in configs:
        calls = runners(cfg, torch)
        timed = {name: calls[name] for name in ("lstm_ext", "torch")}
        samples = measure(timed, repeats=3, warmup=1, budget=budget, max_rounds=41, gap=gap)
        result = GridResult(cfg, {n: statistics.median(v) for n, v in samples.items()}, paired_ratio(samples),
                            len(samples["lstm_ext"]))
        text = (f"{cfg.label:58}  lstm_ext {result.seconds['lstm_ext'] * 1e3:9.3f} ms  torch "
                f"{result.seconds['torch'] * 1e3:9.3f} ms  speedup {result.speedup:.2f}x ({result.rounds} rounds)")
        if with_onnxruntime and cfg.kind == "inference" and cfg.dtype == "float32" and ort_bench.available():
            # A pass of its own, without torch's module: two copies of the weights in the caches, not three.
            del calls, timed
            ours = runners(cfg, None)["lstm_ext"]
            x, _ = inputs(cfg, 1)
            # (measure.runners keeps lstm_ext's layer on its call, a function attribute)
            theirs = ort_bench.runner(ours.layer, x, threads, spinning=False)  # type: ignore[attr-defined]
            assert theirs is not None  # ort_bench.available()
            ort_samples = measure({"lstm_ext": ours, "onnxruntime": theirs}, repeats=3, warmup=1, budget=budget,
                                  max_rounds=41, gap=gap)
            result.seconds["onnxruntime"] = statistics.median(ort_samples["onnxruntime"])
            result.ort_speedup = paired_ratio(ort_samples, "onnxruntime")
            text += f"  onnxruntime {result.seconds['onnxruntime'] * 1e3:9.3f} ms  speedup {result.ort_speedup:.2f}x"
        results.append(result)
        log(text)
    return results


def _geomean(values: Iterable[float]) -> float:
    return float(np.exp(np.mean(np.log(list(values)))))


def summary(results: list[GridResult], library: str = "torch") -> str:
    """One line: how many configurations, how many below 1.0x (named), the minimum, the geometric
    mean, of the speedup over `library` ("torch" or "onnxruntime")."""
    def value(r: GridResult) -> Optional[float]:
        return r.speedup if library == "torch" else r.ort_speedup

    results = [r for r in results if value(r) is not None]

    def known(r: GridResult) -> float:  # the value of a result kept above
        v = value(r)
        assert v is not None
        return v

    ratios = [known(r) for r in results]
    below = [r for r in results if known(r) < 1.0]
    worst = min(results, key=known)
    text = (f"{len(results)} configurations: {len(below)} below 1.0× {library}, minimum {known(worst):.2f}× "
            f"({worst.config.label}), geometric mean {_geomean(ratios):.2f}×")
    if below:
        text += "; below 1.0×: " + ", ".join(f"{r.config.label} {value(r):.2f}×" for r in below)
    return text + "."


def _in_table(config: Config) -> bool:
    return config == Config(config.kind, GRID_T, config.B, config.H)


def _ratio(value: Optional[float]) -> str:
    return "—" if value is None else (f"**{value:.2f}×**" if value < 1.0 else f"{value:.2f}×")


def _table(results: list[GridResult], kind: str, library: str = "torch") -> list[str]:
    """Speedup by batch (rows) and hidden size (columns) for the main grid of one kind."""
    cells = {(r.config.B, r.config.H): (r.speedup if library == "torch" else r.ort_speedup) for r in results
             if r.config.kind == kind and _in_table(r.config)}
    cells = {key: value for key, value in cells.items() if value is not None}
    if not cells:
        return []
    Bs = sorted({b for b, _ in cells})
    Hs = sorted({h for _, h in cells})
    lines = [f"| {kind} vs {library}, T = {GRID_T} | " + " | ".join(f"H = {h}" for h in Hs) + " |",
             "|---|" + "|".join("---" for _ in Hs) + "|"]
    for b in Bs:
        lines.append(f"| B = {b} | " + " | ".join(_ratio(cells.get((b, h))) for h in Hs) + " |")
    return lines


def grid_section(results: list[GridResult], gap: float = GAP_SECONDS) -> list[str]:
    """The grid as Markdown: the protocol, the summaries, the B x H tables and the slices."""
    pause = f"with a {gap * 1e3:.0f} ms pause after each call" if gap else "with no pause between calls"
    with_ort = any(r.ort_speedup is not None for r in results)
    lines = [
        "Speedup over torch.nn (torch's time over lstm_ext's, median over the rounds of one process in which "
        f"the two take turns by blocks (a call not counted, then up to {BLOCK} timed calls, measure.measure), "
        f"{pause}; about a second of timing per configuration, at least 3 rounds). Input size = hidden size, float32, LSTM, unless the label says otherwise; inference is a "
        "forward in eval mode (torch: inference_mode), training a forward and backward with every gradient. "
        "Below 1.0× in bold.",
    ]
    if with_ort:
        lines += ["", "ONNX Runtime (float32 inference; it has no float64 LSTM): one ONNX node per layer with the "
                  "same weights (lstm_ext.tools.ort_bench), the same number of intra-op threads, graph optimizations on, "
                  "its idle threads not spinning (session.intra_op.allow_spinning = 0: with its default spinning "
                  "they kept taking the CPUs through a 10 ms pause and slowed the next call by up to 25×); "
                  "timed against lstm_ext in a pass of its own, without torch's module, so that two copies of the "
                  "weights share the caches, not three."]
    lines += ["", "- " + summary(results)]
    for kind in ("inference", "training"):
        kind_results = [r for r in results if r.config.kind == kind]
        if kind_results:
            lines.append(f"- {kind.capitalize()}: " + summary(kind_results))
    if with_ort:
        lines.append("- Against ONNX Runtime: " + summary(results, "onnxruntime"))
    tables = [(kind, "torch") for kind in ("inference", "training")] + ([("inference", "onnxruntime")] if with_ort else [])
    for kind, library in tables:
        table = _table(results, kind, library)
        if table:
            lines += [""] + table
    rest = [r for r in results if not _in_table(r.config)]
    if rest:
        header = "| configuration (T, B, H) | lstm_ext | torch | speedup |" + (" onnxruntime | speedup |" if with_ort else "")
        lines += ["", header, "|---|---|---|---|" + ("---|---|" if with_ort else "")]
        for r in rest:
            row = (f"| {r.config.label} | {r.seconds['lstm_ext'] * 1e3:.3f} ms | {r.seconds['torch'] * 1e3:.3f} ms | "
                   f"{_ratio(r.speedup)} |")
            if with_ort:
                ort = r.seconds.get("onnxruntime")
                row += f" {'—' if ort is None else format(ort * 1e3, '.3f') + ' ms'} | {_ratio(r.ort_speedup)} |"
            lines.append(row)
    return lines
