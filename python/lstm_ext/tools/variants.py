"""The LSTM variants' training steps, side by side: each variant against the plain cell in lstm_ext,
and against the same cell written in torch and compiled by ``torch.jit.script`` (torch.nn has no
peepholes, zoneout or recurrent dropout, so a scripted loop is what a torch user would write).

A training step is one forward and one backward over (T, B, H) = (steps, batch, hidden), input
size H, float32, one layer, one direction. Every library computes the same function: the same
weights, input, output gradient and masks (lstm_ext draws its own masks at every step; the torch
version is given masks of the same density, drawn once). The libraries and variants take turns in
rounds (measure.measure); the ratios are medians of the rounds' own ratios.

Run it alone with ``python -m lstm_ext bench --variants``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from lstm_ext.layers import LSTM

from .measure import load_torch, measure

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["SIZES", "VARIANTS", "VariantResult", "run_variants", "variants_section"]

SIZES = [(50, 8, 128), (50, 32, 256), (100, 64, 512)]  # (T, B, H): a small, a middle and a large model
# Each variant's LSTM constructor arguments.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "peephole": {"peephole": True},
    "zoneout": {"zoneout": (0.1, 0.05)},
    "recurrent dropout": {"recurrent_dropout": 0.25},
    "layer norm": {"layer_norm": True},
    "all four": {"peephole": True, "layer_norm": True, "zoneout": (0.1, 0.05), "recurrent_dropout": 0.25},
}
# What each variant is held to against the plain cell (issue 17): a training step at most this
# many times the plain one's.
AIMS = {"peephole": 1.10, "layer norm": 1.35}


def _runners(T: int, B: int, H: int, torch: Optional[ModuleType]) -> dict[str, Callable[[], object]]:
    """One training step per library and variant: 'lstm_ext <variant>', 'torch.jit <variant>' and
    'torch.nn plain' (torch's own LSTM, for the plain cell)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    calls: dict[str, Callable[[], object]] = {}
    plain = LSTM(H, H, seed=0)
    for name, options in VARIANTS.items():
        layer = LSTM(H, H, seed=0, **options).train()
        layer.load_state_dict({**layer.state_dict(), **plain.state_dict()})

        def ours(layer: LSTM = layer) -> None:
            layer(x)
            layer.backward(dy)

        calls[f"lstm_ext {name}"] = ours
    if torch is None:
        return calls
    from .torch_lstm import lstm_variants as loop
    weights = plain.state_dict()
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    for name, options in VARIANTS.items():
        w_ih = torch.tensor(weights["weight_ih_l0"], requires_grad=True)
        w_hh = torch.tensor(weights["weight_hh_l0"], requires_grad=True)
        bias = torch.tensor(weights["bias_ih_l0"] + weights["bias_hh_l0"], requires_grad=True)
        w_ch = torch.tensor(rng.uniform(-0.1, 0.1, (3, H)).astype(np.float32), requires_grad=True) \
            if options.get("peephole") else None
        p = options.get("recurrent_dropout", 0.0)
        keep_h = torch.from_numpy(((rng.random((B, H)) >= p) / (1 - p)).astype(np.float32)) if p else None
        z_c, z_h = options.get("zoneout", (0.0, 0.0))
        zone_c = torch.from_numpy((rng.random((T, B, H)) < z_c).astype(np.float32)) if z_c else None
        zone_h = torch.from_numpy((rng.random((T, B, H)) < z_h).astype(np.float32)) if z_h else None
        # layer normalization: γ, β of LN_ih, LN_hh (4H) and LN_c (H), at their initial 1 and 0
        ln: Optional[list[Tensor]] = None
        if options.get("layer_norm"):
            ln = [torch.ones(4 * H, requires_grad=True), torch.zeros(4 * H, requires_grad=True),
                  torch.ones(4 * H, requires_grad=True), torch.zeros(4 * H, requires_grad=True),
                  torch.ones(H, requires_grad=True), torch.zeros(H, requires_grad=True)]

        def theirs(w_ih: Tensor = w_ih, w_hh: Tensor = w_hh, bias: Tensor = bias, w_ch: Optional[Tensor] = w_ch,
                   keep_h: Optional[Tensor] = keep_h, zone_c: Optional[Tensor] = zone_c,
                   zone_h: Optional[Tensor] = zone_h, ln: Optional[list[Tensor]] = ln) -> None:
            projection = torch.mm(xt.reshape(T * B, H), w_ih.t())
            if ln is not None:  # gx = LN_ih(x W_ihᵀ) + b
                projection = torch.layer_norm(projection, [4 * H], ln[0], ln[1], 1e-5)
            gx = (projection + bias).reshape(T, B, 4 * H)
            y = loop(gx, w_hh, w_ch, keep_h, zone_c, zone_h, None if ln is None else ln[2:])
            y.backward(dyt)

        calls[f"torch.jit {name}"] = theirs
    module = plain.to_torch()

    def native() -> None:
        y, _ = module(xt)
        y.backward(dyt)

    calls["torch.nn plain"] = native
    return calls


@dataclasses.dataclass
class VariantResult:
    size: tuple[int, int, int]    # (T, B, H)
    seconds: dict[str, float]     # call name -> median seconds per step
    vs_plain: dict[str, float]    # variant -> median over rounds of its time / the plain cell's (lstm_ext)
    vs_torch_jit: dict[str, Optional[float]]  # variant -> median over rounds of torch.jit's time / lstm_ext's
    #                                          (None without torch)
    rounds: int


def _paired(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    return statistics.median(a / b for a, b in zip(samples[numerator], samples[denominator]))


def run_variants(sizes: Sequence[tuple[int, int, int]] = SIZES, repeats: int = 7, warmup: int = 2,
                 log: Callable[[str], None] = print) -> list[VariantResult]:
    """Time every variant's training step at every size (see the module docstring)."""
    torch = load_torch()
    results: list[VariantResult] = []
    for T, B, H in sizes:
        samples = measure(_runners(T, B, H, torch), repeats, warmup, budget=8.0)
        seconds = {name: statistics.median(values) for name, values in samples.items()}
        vs_plain = {name: _paired(samples, f"lstm_ext {name}", "lstm_ext plain") for name in VARIANTS}
        # (torch.jit's calls only where torch is installed; lstm_ext's are always there)
        vs_jit = {name: _paired(samples, f"torch.jit {name}", f"lstm_ext {name}") if f"torch.jit {name}" in samples
                  else None for name in VARIANTS}
        result = VariantResult((T, B, H), seconds, vs_plain, vs_jit, len(samples["lstm_ext plain"]))
        results.append(result)
        log(f"training ({T}, {B}, {H}): " + "  ".join(
            f"{name} {seconds[f'lstm_ext {name}'] * 1e3:.2f} ms ({vs_plain[name]:.2f}x plain"
            + (f", {vs_jit[name]:.2f}x faster than torch.jit" if vs_jit[name] else "") + ")"
            for name in VARIANTS))
    return results


def variants_section(results: list[VariantResult]) -> list[str]:
    """The report's section (Markdown lines)."""
    has_torch = any(r.vs_torch_jit["plain"] is not None for r in results)
    lines = [
        "One training step (forward and backward) of one LSTM layer, float32, input size H, per variant: "
        "lstm_ext's time, its ratio to lstm_ext's plain cell in the same rounds, and, where torch is installed, "
        "the same cell as a torch.jit-scripted loop (torch.nn has none of the variants) with lstm_ext's speedup "
        "over it; torch.nn.LSTM's own time for the plain cell. Ratios are medians of the rounds' ratios. "
        "Zoneout (z_c, z_h) = (0.1, 0.05), recurrent dropout 0.25; layer normalization as torch.layer_norm in "
        "the scripted loop.",
        "",
        "| (T, B, H) | variant | lstm_ext ms | vs plain | torch.jit ms | lstm_ext vs torch.jit |"
        if has_torch else "| (T, B, H) | variant | lstm_ext ms | vs plain |",
        "|---|---|---|---|---|---|" if has_torch else "|---|---|---|---|",
    ]
    for r in results:
        for name in VARIANTS:
            row = [str(r.size), name, f"{r.seconds[f'lstm_ext {name}'] * 1e3:.2f}", f"{r.vs_plain[name]:.2f}×"]
            if has_torch:
                row += [f"{r.seconds[f'torch.jit {name}'] * 1e3:.2f}", f"{r.vs_torch_jit[name]:.2f}×"]
            lines.append("| " + " | ".join(row) + " |")
        if has_torch:
            lines.append(f"| {r.size} | torch.nn.LSTM (plain) | | | {r.seconds['torch.nn plain'] * 1e3:.2f} | |")
    lines.append("")
    for name, aim in AIMS.items():
        worst = max(r.vs_plain[name] for r in results)
        lines.append(f"- Aim, a {name} LSTM's training step within {aim - 1:.0%} of the plain one's: "
                     f"{'met' if worst <= aim else 'missed'} (worst {worst:.3f}× over the sizes above).")
    return lines
