"""The figures the README gives for float32 layer normalization: the compiled LSTM with layer
normalization in float32 against the float64 reference, over a grid of random configurations.

    python tests/layer_norm_accuracy.py [CASES]

CASES (default 300) configurations, case k drawn from seed k: input size 1, 2, 5 or 16, hidden size
3, 8, 17 or 32, T 1, 5 or 20, B 1, 3 or 8, 1 or 2 layers, one or two directions, projection 0, 1 or
3 (below the hidden size), with or without peepholes, inputs and initial states N(0, 1), PyTorch's
initialisation, gains 1 and biases 0. Prints per tensor the worst error (relative to the tensor's
largest value), the median over all tensors, and the ratio of the error to the error model's
sensitivity (lstm_ext.testing.sensitivity: what float32's rounding can do to that tensor).
"""

from __future__ import annotations

import sys

import numpy as np

from lstm_ext import testing

from family import make_layer, ours_run, random_inputs, reference_evaluator, reference_inputs, reference_run


def case(seed):
    """(layer float64, layer float32, x, state, dy, dstate) of case `seed`."""
    rng = np.random.default_rng(seed)
    I, H = int(rng.choice([1, 2, 5, 16])), int(rng.choice([3, 8, 17, 32]))
    T, B = int(rng.choice([1, 5, 20])), int(rng.choice([1, 3, 8]))
    config = dict(layer_norm=True, num_layers=int(rng.choice([1, 2])), bidirectional=bool(rng.random() < 0.5),
                  proj_size=int(rng.choice([0, 0, 1, 3])), peephole=bool(rng.random() < 0.5))
    if config["proj_size"] >= H:
        config["proj_size"] = 0
    exact = make_layer("LSTM", I, H, np.float64, seed=seed, **config)
    exact.load_state_dict({k: v.astype(np.float32) for k, v in exact.state_dict().items()})
    single = make_layer("LSTM", I, H, np.float32, seed=seed, **config)
    single.load_state_dict(exact.state_dict())
    return exact, single, *random_inputs(exact, T, B, rng)


def main(cases):
    worst, errors, ratios = {}, [], []
    for seed in range(cases):
        exact, single, x, state, dy, dstate = case(seed)
        expected = reference_run(exact, x, state, dy, dstate)
        sensitivity = testing.sensitivity(reference_evaluator(exact), reference_inputs(exact, x, state, dy, dstate),
                                          expected)

        def f32(a):
            return None if a is None else tuple(p.astype(np.float32) for p in a) if isinstance(a, tuple) \
                else a.astype(np.float32)
        ours = ours_run(single, f32(x), f32(state), f32(dy), f32(dstate))
        for name, value in expected.items():
            if value is None or not np.any(value):
                continue
            error = testing.relative_error(ours[name], value)
            errors.append(error)
            if sensitivity.get(name, 0) > 0:
                ratios.append(error / sensitivity[name])
            kind = name.replace("_reverse", "").split("_l")[0] if name.startswith("d") and "_l" in name else name
            if error > worst.get(kind, (0.0, 0))[0]:
                worst[kind] = (error, seed)
    print(f"{cases} cases, {len(errors)} tensors: error median {np.median(errors):.1e}, "
          f"99th percentile {np.percentile(errors, 99):.1e}, worst {max(errors):.1e}")
    print(f"error / sensitivity: median {np.median(ratios):.2f}, 99.9th percentile {np.percentile(ratios, 99.9):.2f}, "
          f"worst {max(ratios):.2f}")
    for kind, (error, seed) in sorted(worst.items(), key=lambda item: -item[1][0]):
        print(f"  {kind:16s} worst {error:.1e} (case {seed})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
