"""How the benchmark times: its configurations, the calls it times, and the protocol that
alternates the libraries (bench.py and grid.py both measure with it).

A :class:`Config` is one row (inference, training or a streaming step; T, B, H; dtype, cell,
layers). ``runners(cfg)`` gives one zero-argument call per library on the same weights and
inputs (lstm_ext, torch.nn when installed, the NumPy reference); ``measure`` times them taking
turns; ``paired_ratio`` is the speedup within a round.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from lstm_ext import cells, reference
from lstm_ext.layers import GRU, LSTM, RNN, RNNBase

__all__ = ["BLOCK", "GAP_SECONDS", "Config", "load_torch", "inputs", "runners", "time_call", "measure",
           "paired_ratio"]

# The timing protocol (measure): the libraries take turns by rounds, each round one block per
# library: a call that is not timed, then BLOCK timed calls with a pause of GAP_SECONDS after
# each. The pause is the time between a user's calls; the untimed call absorbs the other
# library's idle threads, still spinning after its block. Those spin long: torch's libgomp
# OpenMP threads about 10 ms after a call (measured on a 2-CPU AMD EPYC VM from their run time,
# /proc/<tid>/schedstat: 9.7-10.8 ms of CPU in the 8 ms after a call, none after 12 ms), and
# once asleep they take about 10 ms to wake there (torch at T = 1, B = 1, H = 64: 0.7 ms per call
# 10 ms apart, 9.8 ms 30 ms apart). Alternating call by call, a pause short enough for one meets
# the other's spinning threads, one long enough makes torch pay their wake-up at every call.
# Within a block each library meets its own threads' state. (A quarter of lstm_ext's calls at
# (50, 1, 128) that followed torch's once took 17-27 ms instead of 0.9 ms: that was its caller
# sitting on its pinned worker's CPU, fixed in the core, parallel.cpp CallerOffWorkers.)
GAP_SECONDS = 0.010
BLOCK = 3  # timed calls per block



@dataclasses.dataclass(frozen=True)
class Config:
    """One row of the benchmark."""

    kind: str                 # "inference", "training" or "streaming"
    T: int
    B: int
    H: int                    # hidden size
    dtype: str = "float32"
    cell: str = "LSTM"        # the cell kind's name (lstm_ext.cells): "LSTM", "GRU" or "RNN"
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    I: int = 0                # input size; 0: the hidden size

    @property
    def input_size(self) -> int:
        return self.I or self.H

    @property
    def label(self) -> str:
        extra = [] if self.dtype == "float32" else [self.dtype]
        if self.cell_kind is not cells.LSTM:
            extra.append(self.cell)
        if self.I:
            extra.append(f"input {self.I}")
        if self.proj_size:
            extra.append(f"proj {self.proj_size}")
        if self.num_layers > 1 or self.bidirectional:
            extra.append(f"{self.num_layers} layers" + (" bidirectional" if self.bidirectional else ""))
        if self.kind == "streaming":
            extra.append("stream step")
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.kind} ({self.T}, {self.B}, {self.H}){suffix}"

    @property
    def cell_kind(self) -> cells.CellKind:
        return cells.by_name(self.cell)

    @property
    def gates(self) -> int:
        return self.cell_kind.num_gates


def load_torch() -> Optional[ModuleType]:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    module: ModuleType = torch  # (torch is not type-checked here: Any)
    return module


# -- the runners ---------------------------------------------------------------------------------

def inputs(cfg: Config, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.input_size)).astype(cfg.dtype)
    dy = rng.standard_normal((cfg.T, cfg.B, width)).astype(cfg.dtype)
    return x, dy


_LAYERS: dict[cells.CellKind, type[RNNBase]] = {layer_class.cell: layer_class for layer_class in (LSTM, GRU, RNN)}


def _layer(cfg: Config) -> RNNBase:
    kwargs: dict[str, Any] = dict(num_layers=cfg.num_layers, bidirectional=cfg.bidirectional,
                                  dtype=np.dtype(cfg.dtype), seed=0)
    if cfg.proj_size:
        kwargs["proj_size"] = cfg.proj_size
    return _LAYERS[cfg.cell_kind](cfg.input_size, cfg.H, **kwargs)


def runners(cfg: Config, torch: Optional[ModuleType] = None) -> dict[str, Callable[[], object]]:
    """One zero-argument call per library: 'lstm_ext', 'torch' (when installed), 'reference'."""
    layer = _layer(cfg)
    width = layer.num_directions * layer.output_size
    x, dy = inputs(cfg, width)
    calls: dict[str, Callable[[], object]] = {}

    if cfg.kind == "streaming":
        w = layer.state_dict()
        w_ih, w_hh, b_ih, b_hh = (w[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

        assert isinstance(layer, LSTM)  # a streaming configuration's cell is the LSTM
        stream = layer.eval().stream(batch_size=cfg.B)

        def ours_streaming() -> None:
            stream.reset()
            for t in range(cfg.T):
                stream.step(x[t])

        calls["lstm_ext"] = ours_streaming
        if torch is not None:
            cell = torch.nn.LSTMCell(cfg.H, cfg.H, dtype=getattr(torch, cfg.dtype))
            cell.load_state_dict({k.replace("_l0", ""): torch.from_numpy(v) for k, v in w.items()})
            xt = torch.from_numpy(x)

            def theirs_streaming() -> None:
                with torch.inference_mode():
                    state = None
                    for t in range(cfg.T):
                        state = cell(xt[t], state)

            calls["torch"] = theirs_streaming

        def textbook_streaming() -> None:
            h: np.ndarray = np.zeros((cfg.B, cfg.H), cfg.dtype)
            c: np.ndarray = np.zeros((cfg.B, cfg.H), cfg.dtype)
            for t in range(cfg.T):
                h, c, _ = reference.lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh)

        calls["reference"] = textbook_streaming
        return calls

    training = cfg.kind == "training"
    layer.train(training)

    def ours() -> None:
        layer(x)
        if training:
            layer.backward(dy)

    calls["lstm_ext"] = ours
    ours.layer = layer  # type: ignore[attr-defined]  # for the memory probe (a function attribute)
    if torch is not None:
        module = layer.to_torch()
        xt = torch.from_numpy(x.copy()).requires_grad_(training)
        dyt = torch.from_numpy(dy)

        def theirs() -> None:
            if training:
                y, _ = module(xt)
                y.backward(dyt)
            else:
                with torch.inference_mode():
                    module(xt)

        calls["torch"] = theirs

    params = layer.state_dict()
    simple = cfg.num_layers == 1 and not cfg.bidirectional
    kind, no_state = layer.cell, [None] * len(layer.cell.state)

    def textbook() -> None:
        if simple:  # the single-layer reference, all sequences at once
            weights = {name[:-len("_l0")]: value for name, value in params.items()}
            *_, cache = kind.reference_forward(x, weights, no_state, layer.options)
            if training:
                kind.reference_backward(dy, no_state, cache)
        else:
            *_, cache = reference.stack_forward(kind, x, params, cfg.num_layers, cfg.bidirectional,
                                                options=layer.options)
            if training:
                reference.stack_backward(dy, None, cache)

    calls["reference"] = textbook
    return calls


def time_call(call: Callable[[], object], gap: float = GAP_SECONDS) -> float:
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    if gap:
        time.sleep(gap)
    return seconds


def measure(timed: dict[str, Callable[[], object]], repeats: int, warmup: int, budget: float = 3.0,
            max_rounds: int = 101, gap: float = GAP_SECONDS) -> dict[str, list[float]]:
    """Seconds per call of each library, {name: [one per round]}.

    A warm-up of `warmup` calls each, then at least `repeats` rounds (more for fast calls, about
    `budget` seconds of timing, at most `max_rounds`). In each round every library runs one block
    (the order alternating from round to round): a call that is not timed, then BLOCK timed
    calls (one for calls of 50 ms or more) with a pause of `gap` seconds after each; the round's
    sample is the block's median.
    """
    slowest = 0.0  # the slowest library's last warm-up call (its first call may allocate and fault pages)
    for call in timed.values():
        for _ in range(warmup):
            start = time.perf_counter()
            call()
            last = time.perf_counter() - start
        slowest = max(slowest, last if warmup else 0.0)
    block = BLOCK if slowest < 0.05 else 1  # (slower calls: a median of several would take long)
    rounds = repeats
    if repeats >= 3:
        per_round = len(timed) * ((block + 1) * slowest + (block + 1) * gap)
        rounds = max(repeats, min(max_rounds, int(budget / per_round)))
    samples: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            time_call(timed[name], gap)  # not counted: the other library's threads may still be spinning
            samples[name].append(statistics.median(time_call(timed[name], gap) for _ in range(block)))
    return samples


def paired_ratio(samples: dict[str, list[float]], other: str = "torch") -> float:
    """The median over the rounds of the other library's time over lstm_ext's: the two calls of a
    round share the machine's moment."""
    return statistics.median(t / o for t, o in zip(samples[other], samples["lstm_ext"]))


def _layer_shapes(cfg: Config) -> list[tuple[int, int]]:
    """(input size, directions) of every layer."""
    D = 2 if cfg.bidirectional else 1
    H_out = cfg.proj_size or cfg.H
    return [(cfg.input_size if k == 0 else D * H_out, D) for k in range(cfg.num_layers)]


def flops(cfg: Config) -> float:
    """FLOPs of one call: the forward's multiply-adds, three times that for a training step."""
    H_out = cfg.proj_size or cfg.H
    forward = 0.0
    for I, D in _layer_shapes(cfg):
        per_direction = 2.0 * cfg.T * cfg.B * cfg.gates * cfg.H * (I + H_out)
        if cfg.proj_size:
            per_direction += 2.0 * cfg.T * cfg.B * cfg.proj_size * cfg.H
        forward += D * per_direction
    return 3.0 * forward if cfg.kind == "training" else forward
