"""Each library alone in a process of its own (issues 28 and 29): ``python -m lstm_ext bench --solo``.

What a user's process sees: lstm_ext (float32, int8 and bfloat16), torch.nn (float32, and int8 by
``torch.ao.quantization.quantize_dynamic``), ONNX Runtime (float32 on lstm_ext's own ONNX export,
and int8 by ``onnxruntime.quantization.quantize_dynamic``) and OpenVINO (float32 and bfloat16 on
the same ONNX model, where it is installed), each in a worker process that imports no other of
these libraries. The workers take turns: per round one process per library, the order rotating
from round to round, each timing every configuration (after a warm-up, the median of CALLS calls
with a pause after each, measure.time_call). The parent takes the median over the rounds, compares
each result y with lstm_ext's float32 y on the same weights and input (every worker saves its y
of the first round), and writes one Markdown table.

Rows are LSTM inference configurations (T, B, H), input size = hidden size, one layer, float32
weights from the same seeded lstm_ext layer in every process (measure's), and the same input.

Worker: ``python -m lstm_ext.tools.solo --worker LIBRARY --configs JSON --threads N ...`` prints
one JSON line: its medians, its failures, and which of the watched libraries its process had
imported at the end (the parent refuses a run in which a worker imported another library).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from .machine import machine_info, machine_line
from .measure import GAP_SECONDS, Config, _layer, flops, inputs, time_call

__all__ = ["CALLS", "ROUNDS", "WARMUP", "LIBRARIES", "RATIOS", "REDUCED", "SoloResult", "SoloRun", "solo_configs",
           "worker", "run", "ratio", "output_error", "solo_section", "report", "main"]

ROUNDS = 3    # processes per library (--repeats), taking turns with the other libraries'
CALLS = 15    # timed calls per configuration and column in each process; their median is the process's figure
WARMUP = 3    # calls not timed before them (the first builds caches and pages in the weights)
WORKER_TIMEOUT = 4 * 3600.0  # seconds: a worker that hangs stops the run, it does not hold it forever

# The default grid (T, B, H): T in {1, 50}, B in {1, 8, 32, 128}, H in {128, 256, 512, 1024}, without
# SKIPPED: its 107 GFLOP a call are more than the other 31 configurations' together (solo_section
# says so with the numbers), about 2 s a call on 2 cores, and each of 7 columns makes 18 calls per round.
GRID_T = (1, 50)
GRID_B = (1, 8, 32, 128)
GRID_H = (128, 256, 512, 1024)
SKIPPED = (50, 128, 1024)
QUICK = ((50, 1, 128), (50, 8, 256), (1, 1, 256))  # --quick: CI's smoke run

# The libraries compared, each with the modules its process may import (lstm_ext's own, for the
# weights and the ONNX export, is in every one), its columns and how to install it.
WATCHED = ("torch", "onnxruntime", "onnx", "openvino")


@dataclasses.dataclass(frozen=True)
class Library:
    name: str                  # its module, and the worker's name
    columns: tuple[str, ...]   # the table's columns it fills
    needs: tuple[str, ...]     # the watched modules its process imports; the others must stay out
    install: str               # how to install it, for the note when it is missing

    @property
    def foreign(self) -> tuple[str, ...]:
        return tuple(m for m in WATCHED if m not in self.needs)


LIBRARIES = (
    Library("lstm_ext", ("lstm_ext f32", "lstm_ext int8", "lstm_ext bf16"), (), "pip install lstm_ext"),
    Library("torch", ("torch f32", "torch int8"), ("torch",), "pip install torch, the CPU wheel; no extra of "
            "lstm_ext names it"),
    Library("onnxruntime", ("ORT f32", "ORT int8"), ("onnxruntime", "onnx"), 'pip install "lstm_ext[onnx]"'),
    Library("openvino", ("OpenVINO f32", "OpenVINO bf16"), ("openvino", "onnx"), "pip install openvino; no extra "
            "of lstm_ext names it"),
)
_BY_NAME = {library.name: library for library in LIBRARIES}
COLUMNS = [column for library in LIBRARIES for column in library.columns]
REFERENCE = "lstm_ext f32"  # every other column's y is compared with this one's

# Ratios next to the times: (heading, lstm_ext's column, the columns it is set against; the fastest
# of those present counts). A ratio is that one's time over lstm_ext's: above 1, lstm_ext is faster.
RATIOS = (
    ("lstm_ext int8 vs faster int8", "lstm_ext int8", ("torch int8", "ORT int8")),
    ("lstm_ext f32 vs best f32", "lstm_ext f32", ("torch f32", "ORT f32", "OpenVINO f32")),
    ("lstm_ext bf16 vs OpenVINO bf16", "lstm_ext bf16", ("OpenVINO bf16",)),
)
# The reduced-precision columns, whose error against lstm_ext's float32 y the table gives.
REDUCED = ("lstm_ext int8", "lstm_ext bf16", "torch int8", "ORT int8", "OpenVINO bf16")


def solo_configs(quick: bool = False, only: Optional[str] = None) -> list[Config]:
    """The rows: the default grid without SKIPPED, or QUICK; `only` keeps the labels containing it."""
    sizes = QUICK if quick else tuple((T, B, H) for T in GRID_T for B in GRID_B for H in GRID_H
                                      if (T, B, H) != SKIPPED)
    configs = [Config("inference", T, B, H) for T, B, H in sizes]
    return [c for c in configs if only is None or only in c.label]


def _size(cfg: Config) -> str:
    return f"({cfg.T}, {cfg.B}, {cfg.H})"


def _output_file(folder: str, column: str, cfg: Config) -> str:
    return os.path.join(folder, f"{column.replace(' ', '_')}-{cfg.T}-{cfg.B}-{cfg.H}.npy")


# -- the workers: one library each -------------------------------------------------------------------
# A builder gets the float32 layer (eval mode), its input x (T, B, I) and the thread count, and returns
# one zero-argument call per column, each returning y (T, B, H). `notes` collects what the table should
# say about the library (what its quantizer made of the graph, the precision it ran at).

Calls = dict[str, Callable[[], Any]]


def _build_lstm_ext(layer: Any, x: np.ndarray, threads: int, folder: str, notes: dict[str, str]) -> Calls:
    import lstm_ext

    lstm_ext.set_num_threads(threads)
    int8 = lstm_ext.quantize_dynamic(layer)
    bf16 = lstm_ext.quantize_dynamic(layer, "bfloat16")
    return {"lstm_ext f32": lambda: layer(x)[0], "lstm_ext int8": lambda: int8(x)[0],
            "lstm_ext bf16": lambda: bf16(x)[0]}


def _build_torch(layer: Any, x: np.ndarray, threads: int, folder: str, notes: dict[str, str]) -> Calls:
    from .measure import load_torch

    torch = load_torch()
    assert torch is not None  # (the parent starts this worker only where torch is installed)
    torch.set_num_threads(threads)
    module = layer.to_torch()  # the same weights, eval mode
    # quantize_dynamic swaps a model's children only: the LSTM goes in a Sequential.
    with warnings.catch_warnings():  # (torch 2.13 points to torchao for this API; it still works)
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {torch.nn.LSTM},
                                                      dtype=torch.qint8)
    notes["torch int8"] = f"torch int8: the LSTM became {type(int8[0]).__module__}.{type(int8[0]).__name__}."
    xt = torch.from_numpy(x)

    def run(model: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return model(xt)[0]
        return call

    return {"torch f32": run(module), "torch int8": run(int8)}


def _build_onnxruntime(layer: Any, x: np.ndarray, threads: int, folder: str, notes: dict[str, str]) -> Calls:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from . import ort_bench

    f32 = ort_bench.runner(layer, x, threads)  # ORT's defaults (spinning threads too), intra-op threads = threads
    assert f32 is not None  # (the parent starts this worker only where onnxruntime is installed)
    f32_path, int8_path = os.path.join(folder, "f32.onnx"), os.path.join(folder, "int8.onnx")
    onnx.save(ort_bench.onnx_model(layer), f32_path)
    quantize_dynamic(f32_path, int8_path, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
    ops = sorted({node.op_type for node in onnx.load(int8_path).graph.node})
    if "DynamicQuantizeLSTM" not in ops:
        raise RuntimeError(f"onnxruntime's quantize_dynamic left no DynamicQuantizeLSTM (nodes: {', '.join(ops)})")
    notes["ORT int8"] = f"ORT int8: the quantized graph's nodes are {', '.join(ops)}."
    # The float32 session's options (ort_bench's) for the int8 one too.
    int8 = onnxruntime.InferenceSession(int8_path, getattr(f32, "session").get_session_options(),
                                        providers=["CPUExecutionProvider"])
    feed = {"x": np.ascontiguousarray(x)}
    return {"ORT f32": f32, "ORT int8": lambda: int8.run(None, feed)[0]}


def _build_openvino(layer: Any, x: np.ndarray, threads: int, folder: str, notes: dict[str, str]) -> Calls:
    import onnx

    from . import ort_bench

    ov = importlib.import_module("openvino")  # (not type-checked: Any)
    path = os.path.join(folder, "f32.onnx")
    onnx.save(ort_bench.onnx_model(layer), path)
    core = ov.Core()
    model = core.read_model(path)
    calls: Calls = {}
    for column, precision in (("OpenVINO f32", "f32"), ("OpenVINO bf16", "bf16")):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": precision})
        # What it runs at (bf16 falls back to f32 on a CPU without bfloat16 instructions).
        notes[column] = f"{column}: runs at {compiled.get_property('INFERENCE_PRECISION_HINT')}."
        request = compiled.create_infer_request()

        def call(request: Any = request) -> Any:
            request.infer({0: x})
            return request.get_output_tensor(0).data

        calls[column] = call
    return calls


BUILDERS: dict[str, Callable[[Any, np.ndarray, int, str, dict[str, str]], Calls]] = {
    "lstm_ext": _build_lstm_ext, "torch": _build_torch, "onnxruntime": _build_onnxruntime,
    "openvino": _build_openvino}


def _numpy_copy(y: Any) -> np.ndarray:
    """A float32 NumPy copy of a call's y (a torch tensor has .numpy(); OpenVINO's output tensor is reused)."""
    copy: np.ndarray = np.array(y.numpy() if hasattr(y, "numpy") else y, dtype=np.float32)
    return copy


def worker(library: str, configs: Sequence[Config], threads: int, calls: int = CALLS, warmup: int = WARMUP,
           gap: float = GAP_SECONDS, save: Optional[str] = None) -> dict[str, Any]:
    """Time `library`'s columns on every configuration in this process: per configuration and
    column `warmup` calls, a pause, then the median of `calls` calls with a pause of `gap` s after
    each. save: a folder for each column's y (the first call's). Another library's failure is
    recorded (its first message per column), lstm_ext's raises. Returns {"library", "seconds":
    {label: {column: s}}, "failures": {column: message}, "notes": [...], "imported": the watched
    modules this process holds at the end}."""
    build = BUILDERS[library]
    seconds: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for cfg in configs:
            layer = _layer(cfg).eval()
            x = inputs(cfg, cfg.H)[0]
            try:
                built = build(layer, x, threads, folder, notes)
            except Exception as error:  # another library's trouble is a note in the table, not the end of the run
                if library == "lstm_ext":
                    raise
                for column in _BY_NAME[library].columns:
                    failures.setdefault(column, f"{_size(cfg)}: {type(error).__name__}: {error}")
                continue
            for column, call in built.items():
                try:
                    y = _numpy_copy(call())
                    for _ in range(warmup - 1):
                        call()
                    time.sleep(gap)
                    times = [time_call(call, gap) for _ in range(calls)]
                except Exception as error:
                    if library == "lstm_ext":
                        raise
                    failures.setdefault(column, f"{_size(cfg)}: {type(error).__name__}: {error}")
                    continue
                seconds.setdefault(cfg.label, {})[column] = statistics.median(times)
                if save is not None:
                    np.save(_output_file(save, column, cfg), y.reshape(cfg.T, cfg.B, cfg.H))
            del built
    return {"library": library, "seconds": seconds, "failures": failures, "notes": sorted(notes.values()),
            "imported": [m for m in WATCHED if m in sys.modules]}


# -- the parent: rounds, medians, errors ---------------------------------------------------------------

@dataclasses.dataclass
class SoloResult:
    config: Config
    seconds: dict[str, float]               # column -> median over the rounds of each process's median
    errors: dict[str, tuple[float, float]]  # column -> (max, mean) abs difference of y from lstm_ext f32's


@dataclasses.dataclass
class SoloRun:
    results: list[SoloResult]
    columns: list[str]      # the columns of the libraries that ran
    notes: list[str]        # skipped libraries, failures, what the libraries ran
    rounds: int
    threads: int
    calls: int = CALLS
    gap: float = GAP_SECONDS


def ratio(seconds: dict[str, float], ours: str, rivals: Sequence[str]) -> Optional[tuple[float, str]]:
    """(the fastest rival's time over `ours`'s, that rival), or None when either side is missing."""
    present = [r for r in rivals if r in seconds]
    if ours not in seconds or not present:
        return None
    fastest = min(present, key=lambda r: seconds[r])
    return seconds[fastest] / seconds[ours], fastest


def output_error(reference: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(max, mean) of |y - reference|, in float64."""
    difference = np.abs(np.asarray(y, np.float64) - np.asarray(reference, np.float64))
    return float(difference.max()), float(difference.mean())


def installed(name: str) -> bool:
    """Whether the module `name` can be imported (found without importing it: the parent stays lean)."""
    return name == "lstm_ext" or importlib.util.find_spec(name) is not None


def _run_worker(library: str, spec: str, threads: int, calls: int, warmup: int, gap: float,
                save: Optional[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "lstm_ext.tools.solo", "--worker", library, "--configs", spec,
               "--threads", str(threads), "--calls", str(calls), "--warmup", str(warmup), "--gap-ms", repr(gap * 1e3)]
    if save is not None:
        command += ["--save", save]
    env = {**os.environ, "LSTM_EXT_NUM_THREADS": str(threads)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT)
    if out.returncode != 0:
        message = f"the {library} process failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}"
        if library == "lstm_ext":
            raise RuntimeError(message)
        # Another library's crash: a note in the table (its columns lack this round), not the end of the run.
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        return {"seconds": {}, "failures": {column: f"a crash of its process (exit {out.returncode}): {last}"
                                            for column in _BY_NAME[library].columns}, "notes": [], "imported": []}
    answer: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    intruders = [m for m in answer["imported"] if m in _BY_NAME[library].foreign]
    if intruders:  # the protocol's one rule: each library alone in its process
        raise RuntimeError(f"the {library} process imported {', '.join(intruders)}: it must run alone")
    return answer


def run(configs: Sequence[Config], rounds: int = ROUNDS, threads: int = 1, calls: int = CALLS, warmup: int = WARMUP,
        gap: float = GAP_SECONDS, libraries: Optional[Sequence[str]] = None,
        log: Callable[[str], None] = print) -> SoloRun:
    """Every installed library (or those named) in its own processes, `rounds` rounds in rotating
    order; the medians over the rounds and each column's error against lstm_ext's float32 y."""
    names = [lib.name for lib in LIBRARIES if (libraries is None or lib.name in libraries)]
    notes = [f"{lib.name} is not installed, its columns are left out: {lib.install}."
             for lib in LIBRARIES if lib.name in names and not installed(lib.name)]
    names = [name for name in names if installed(name)]
    if "lstm_ext" not in names:
        raise ValueError("libraries: lstm_ext is the reference every other column is compared with")
    spec = json.dumps([dataclasses.asdict(c) for c in configs])
    samples: dict[tuple[str, str], list[float]] = {}   # (label, column) -> one per round
    failures: dict[str, str] = {}
    said: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lstm_ext_solo_") as outputs:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # round robin: each library leads in turn
            for name in order:
                start = time.perf_counter()
                answer = _run_worker(name, spec, threads, calls, warmup, gap, outputs if r == 0 else None)
                for label, columns in answer["seconds"].items():
                    for column, seconds in columns.items():
                        samples.setdefault((label, column), []).append(seconds)
                for column, message in answer["failures"].items():
                    failures.setdefault(column, message)
                said.update({note.split(":")[0]: note for note in answer["notes"]})
                log(f"  round {r + 1} of {rounds}: {name} {time.perf_counter() - start:.1f} s")
        results = []
        for cfg in configs:
            seconds = {column: statistics.median(samples[(cfg.label, column)]) for column in COLUMNS
                       if (cfg.label, column) in samples}
            reference = np.load(_output_file(outputs, REFERENCE, cfg))
            saved = [c for c in COLUMNS if c != REFERENCE and os.path.exists(_output_file(outputs, c, cfg))]
            errors = {c: output_error(reference, np.load(_output_file(outputs, c, cfg))) for c in saved}
            results.append(SoloResult(cfg, seconds, errors))
    columns = [c for c in COLUMNS if any(c in r.seconds for r in results)]
    notes += [f"{column} failed (its cells without a time), first at {message}"
              for column, message in failures.items()]
    notes += list(said.values())
    return SoloRun(results, columns, notes, rounds, threads, calls, gap)


# -- the report ---------------------------------------------------------------------------------------

def _time_text(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def _ratio_text(value: Optional[tuple[float, str]]) -> str:
    if value is None:
        return "—"
    text = f"{value[0]:.2f}× ({value[1]})"
    return f"**{text}**" if value[0] < 1.0 else text


def solo_section(run: SoloRun, quick: bool = False) -> list[str]:
    """The protocol, the table and its notes, as Markdown lines."""

    ratios = [(heading, ours, rivals) for heading, ours, rivals in RATIOS
              if ours in run.columns and any(r in run.columns for r in rivals)]
    errors = [c for c in REDUCED if c in run.columns]
    pause = f"a {run.gap * 1e3:g} ms pause after each" if run.gap else "no pause between them"
    lines = [
        "Each library alone in a process of its own (no other of them imported there; lstm_ext's own modules "
        "give every process the same weights, seeded, and the same input), the processes taking turns: per round "
        f"one process per library, the order rotating from round to round, {run.rounds} rounds. A process times "
        f"every configuration after {WARMUP} calls not counted: the median of {run.calls} calls with {pause}. "
        f"The table gives the median over the rounds; {run.threads} threads for every library "
        "(lstm_ext.set_num_threads, torch.set_num_threads, ORT's intra_op_num_threads, OpenVINO's "
        "INFERENCE_NUM_THREADS). Inference, one LSTM layer, input size = hidden size, float32 input. int8: "
        "lstm_ext.quantize_dynamic(layer); torch.ao.quantization.quantize_dynamic(nn.Sequential(lstm), {nn.LSTM}, "
        "dtype=torch.qint8); ORT (ONNX Runtime, its default session options but the thread count) on lstm_ext's "
        "export_onnx model, and for int8 that model through onnxruntime.quantization.quantize_dynamic(..., "
        "op_types_to_quantize=['LSTM'], weight_type=QInt8). bf16: quantize_dynamic(layer, 'bfloat16') (bfloat16 "
        "recurrent weights).",
        "",
        "A ratio is the other library's time over lstm_ext's, the ratio of the medians in the table (above 1: "
        "lstm_ext is faster; below 1 in bold); the library named is the fastest of those compared. An error is "
        "the max / mean absolute difference of y from lstm_ext's float32 y on the same weights and input.",
        "",
    ]
    header = (["(T, B, H)"] + run.columns + [heading for heading, _, _ in ratios]
              + [f"{column} error (max / mean)" for column in errors])
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in run.results:
        row = [_size(r.config)] + [_time_text(r.seconds[c]) if c in r.seconds else "—" for c in run.columns]
        row += [_ratio_text(ratio(r.seconds, ours, rivals)) for _, ours, rivals in ratios]
        row += [f"{r.errors[c][0]:.1e} / {r.errors[c][1]:.1e}" if c in r.errors else "—" for c in errors]
        lines.append("| " + " | ".join(row) + " |")
    notes = list(run.notes)
    floats = [(c, max(r.errors[c][0] for r in run.results if c in r.errors))
              for c in ("torch f32", "ORT f32", "OpenVINO f32") if any(c in r.errors for r in run.results)]
    if floats:
        notes.append("The float32 results agree with lstm_ext's (the same weights and input): max abs difference "
                     + ", ".join(f"{c} {worst:.1e}" for c, worst in floats) + ".")
    if not quick and not any(_size(r.config) == str(SKIPPED) for r in run.results):
        skipped = Config("inference", *SKIPPED)
        rest = sum(flops(Config("inference", T, B, H)) for T in GRID_T for B in GRID_B for H in GRID_H) - flops(skipped)
        notes.append(f"{_size(skipped)} is left out of the grid: {flops(skipped) / 1e9:.0f} GFLOP a call, more than "
                     f"the other {len(GRID_T) * len(GRID_B) * len(GRID_H) - 1} configurations together "
                     f"({rest / 1e9:.0f} GFLOP). A call takes about 2 s on 2 cores, so its {len(run.columns)} columns "
                     f"of {WARMUP + run.calls} calls in each of {run.rounds} rounds would take longer than the rest "
                     "of the grid.")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return lines


def report(run: SoloRun, quick: bool = False) -> str:
    """The whole Markdown report: the machine, the versions, solo_section."""

    machine = machine_info(run.threads)  # (torch's version from its metadata: the parent never imports it)
    versions: dict[str, Optional[str]] = {}
    for name in ("torch", "onnxruntime", "onnx", "openvino"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    machine["torch"] = versions["torch"]
    lines = ["# lstm_ext benchmarks: each library alone in its process", "", machine_line(machine),
             "ONNX Runtime " + (versions["onnxruntime"] or "not installed") + ", onnx " + (versions["onnx"] or
             "not installed") + ", OpenVINO " + (versions["openvino"] or "not installed") + ".", ""]
    return "\n".join(lines + solo_section(run, quick)) + "\n"


def main(configs: Sequence[Config], rounds: int, threads: int, gap: float, out: Optional[str], quick: bool) -> int:
    """``bench --solo``: run, print the report, write it to `out` when given."""
    from lstm_ext._io import write_text_atomic

    print(f"each library alone in its process: {len(configs)} configurations, {rounds} rounds, {threads} threads")
    solo = run(configs, rounds=rounds, threads=threads, gap=gap)
    text = report(solo, quick)
    print(text)
    if out:
        write_text_atomic(out, text)
        print(f"wrote {out}")
    return 0


def _worker_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_ext.tools.solo",
                                     description="one library's worker process of bench --solo (prints one JSON line)")
    parser.add_argument("--worker", required=True, choices=list(BUILDERS))
    parser.add_argument("--configs", required=True, help="a JSON list of measure.Config fields")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--gap-ms", type=float, default=GAP_SECONDS * 1e3)
    parser.add_argument("--save", default=None, help="a folder for each column's y (.npy)")
    args = parser.parse_args(argv)
    configs = [Config(**c) for c in json.loads(args.configs)]
    answer = worker(args.worker, configs, args.threads, args.calls, args.warmup, args.gap_ms / 1e3, args.save)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
