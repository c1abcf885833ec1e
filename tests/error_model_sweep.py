"""The measurement behind lstm_ext.testing.ROUNDING_FACTOR: the compiled core in float32 against
the float64 reference on random cases of every kind, and per tensor the ratio of its error to the
model's sensitivity (lstm_ext.testing.sensitivity, float32's unit).

    python tests/error_model_sweep.py [CASES] [OUT.jsonl]

CASES (default 600) random configurations: the LSTM through the functional API (the hypothesis
sweep's distribution of tests/test_parity.py, its edge sizes, and saturated gates) and through the
layer API (plain, peepholes, layer normalization with gains and biases away from 1 and 0,
projection, zoneout, recurrent dropout, every variant; GRU with and without layer normalization;
RNN tanh and relu; 1-2 layers, bidirectional, batch_first, dropout, lengths). Prints the ratio's
distribution, the worst cases, and the largest float64 sensitivity (float64's unit) times
ROUNDING_FACTOR; writes one JSON line per tensor to OUT.jsonl when given. Run it at each kernel
level with LSTM_EXT_KERNELS=baseline|avx2|avx512.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import lstm_ext
from lstm_ext import testing
from lstm_ext.testing import (FLOAT32_UNIT, ROUNDING_FACTOR, cast_case, random_case, relative_error, run_compiled,
                              run_reference, sensitivity)

from family import ours_run, random_inputs, reference_evaluator, reference_inputs, reference_run

LAYER_CONFIGS = {
    "LSTM": ("LSTM", {}),
    "LSTM peephole": ("LSTM", {"peephole": True}),
    "LSTM LN": ("LSTM", {"layer_norm": True}),
    "LSTM proj": ("LSTM", {"proj_size": 3}),
    "LSTM zoneout": ("LSTM", {"zoneout": (0.25, 0.35)}),
    "LSTM recurrent dropout": ("LSTM", {"recurrent_dropout": 0.3}),
    "LSTM LN peephole proj": ("LSTM", {"layer_norm": True, "peephole": True, "proj_size": 3}),
    "LSTM every variant": ("LSTM", {"layer_norm": True, "peephole": True, "zoneout": (0.25, 0.35),
                                    "recurrent_dropout": 0.3}),
    "GRU": ("GRU", {}),
    "GRU LN": ("GRU", {"layer_norm": True}),
    "RNN tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN relu": ("RNN", {"nonlinearity": "relu"}),
}
F64_UNIT = 2.0 ** -53
OPERATIONS = True


def layer_case(rng):
    """One random layer configuration run in float32: (label, [(tensor, error, sensitivity, float64 sensitivity)])."""
    from test_variants import drawn_masks  # the masks a training forward draws

    name = str(rng.choice(list(LAYER_CONFIGS)))
    kind, options = LAYER_CONFIGS[name]
    options = dict(options)
    T, B = int(rng.integers(1, 13)), int(rng.integers(1, 6))
    I, H = int(rng.integers(1, 11)), int(rng.integers(1, 25))
    if "proj_size" in options:
        options["proj_size"] = int(rng.integers(1, H + 1)) if H > 1 else 0
        if options["proj_size"] in (0, H):
            options.pop("proj_size")
    shape = {"num_layers": int(rng.integers(1, 3)), "bidirectional": bool(rng.random() < 0.5),
             "batch_first": bool(rng.random() < 0.3)}
    if shape["num_layers"] == 2 and rng.random() < 0.5:
        shape["dropout"] = 0.3
    seed = int(rng.integers(0, 2**31))
    layer = getattr(lstm_ext, kind)(I, H, dtype=np.float32, seed=seed, **options, **shape).train()
    norms = float(rng.choice([0.3, 1.0]))
    for pname, value in layer.named_parameters().items():
        if pname.startswith("ln_"):
            value[...] = (1.0 if "_weight" in pname else 0.0) + norms * rng.standard_normal(value.shape)
    x, state, dy, dstate = random_inputs(layer, T, B, rng, with_state=bool(rng.random() < 0.8),
                                         with_dstate=bool(rng.random() < 0.8))
    lengths = None if rng.random() < 0.5 else [int(n) for n in rng.integers(1, T + 1, B)]
    rng_state = layer.rng_state()
    ours = ours_run(layer, x, state, dy, dstate, lengths)
    cell_masks, dropout_masks = drawn_masks(layer, rng_state, T, B)
    expected = reference_run(layer, x, state, dy, dstate, lengths, dropout_masks, cell_masks)
    evaluate = reference_evaluator(layer, lengths, dropout_masks, cell_masks)
    inputs = reference_inputs(layer, x, state, dy, dstate)
    sens = sensitivity(evaluate, inputs, expected, operations=OPERATIONS)
    sens64 = sensitivity(evaluate, inputs, expected, unit=F64_UNIT, draws=1)
    label = f"{name} T={T} B={B} I={I} H={H} {shape} lengths={lengths} norms={norms} seed={seed}"
    return label, [(t, relative_error(ours[t], expected[t]), sens[t], sens64[t]) for t in expected]


def functional_case(rng):
    """One random LSTM case through the functional API, float32."""
    flavour = str(rng.choice(["sweep", "sweep", "edge", "saturated"]))
    if flavour == "edge":
        T, B, I, H = (int(v) for v in rng.choice([(1, 1, 1, 1), (1, 3, 5, 4), (6, 1, 3, 2), (6, 4, 1, 3),
                                                 (4, 3, 2, 1), (7, 5, 13, 17), (3, 2, 8, 300), (60, 2, 4, 8)]))
    else:
        T, B = int(rng.integers(1, 41)), int(rng.integers(1, 7))
        I, H = int(rng.integers(1, 25)), int(rng.integers(1, 41))
    seed = int(rng.integers(0, 2**31))
    case = random_case(T, B, I, H, seed=seed, bias=bool(rng.random() < 0.8))
    if flavour == "saturated":
        case["x"] = case["x"] * float(rng.choice([10.0, 30.0]))
        case["w_ih"] = case["w_ih"] * 10.0
    if rng.random() < 0.2:
        case["h0"] = case["c0"] = None
    for name in ("dy", "dh_n", "dc_n"):
        if rng.random() < 0.2:
            case[name] = None
    case32 = cast_case(case, np.float32)
    expected = run_reference(case32)
    ours = run_compiled(case32)
    sens = sensitivity(run_reference, case32, expected, operations=OPERATIONS)
    sens64 = sensitivity(run_reference, case32, expected, unit=F64_UNIT, draws=1)
    label = f"functional {flavour} T={T} B={B} I={I} H={H} seed={seed}"
    return label, [(t, relative_error(ours[t], want), sens[t], sens64[t])
                   for t, want in expected.items() if want is not None]


def main(argv):
    global OPERATIONS
    if "--inputs-only" in argv:
        argv = [a for a in argv if a != "--inputs-only"]
        OPERATIONS = False
    cases = int(argv[1]) if len(argv) > 1 else 600
    out = open(argv[2], "w") if len(argv) > 2 else None
    rng = np.random.default_rng(20240601)
    rows = []
    for k in range(cases):
        label, tensors = (functional_case if k % 3 == 0 else layer_case)(rng)
        for tensor, error, sens, sens64 in tensors:
            row = {"case": label, "tensor": tensor, "error": error, "sensitivity": sens, "sensitivity64": sens64,
                   "ratio": error / sens if sens > 0 else (0.0 if error == 0 else float("inf"))}
            rows.append(row)
            if out:
                out.write(json.dumps(row) + "\n")
    ratios = np.array([r["ratio"] for r in rows])
    print(f"kernel level {lstm_ext.build_info()['kernel_level']}: {cases} cases, {len(rows)} tensors")
    print("error / sensitivity: " + "  ".join(f"p{q}={np.percentile(ratios, q):.2f}" for q in (50, 90, 99, 99.9))
          + f"  max={ratios.max():.2f}")
    big = [r for r in rows if r["error"] > 1e-6]
    if big:
        print(f"  among the {len(big)} tensors with error > 1e-6: max ratio {max(r['ratio'] for r in big):.2f}")
    for r in sorted(rows, key=lambda r: -r["ratio"])[:8]:
        print(f"  ratio {r['ratio']:.2f}  {r['tensor']}: error {r['error']:.2e}, sensitivity {r['sensitivity']:.2e}"
              f"  ({r['case']})")
    above = [r for r in rows if ROUNDING_FACTOR * r["sensitivity"] > testing.TOLERANCE[np.dtype(np.float32)]]
    print(f"limits above the 1e-5 floor (C = {ROUNDING_FACTOR:g}): {len(above)} of {len(rows)} tensors")
    for r in sorted(rows, key=lambda r: -r["error"])[:8]:
        print(f"  error {r['error']:.2e}  limit {max(1e-5, ROUNDING_FACTOR * r['sensitivity']):.2e}  {r['tensor']}"
              f"  ({r['case']})")
    print(f"float64: largest sensitivity {max(r['sensitivity64'] for r in rows):.2e}, times C "
          f"{ROUNDING_FACTOR * max(r['sensitivity64'] for r in rows):.2e} (limit 1e-10)")
    print(f"float32 sensitivity / unit: max {max(r['sensitivity'] for r in rows) / FLOAT32_UNIT:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
