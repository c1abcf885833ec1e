"""Run by test_levels.py in a process of its own (under qemu-user to be another CPU): the kernel
level the process chose, the self-check, and every cell and variant as a two-layer bidirectional
layer with lengths, trained for one forward and backward, against the NumPy reference (with the
masks the layer drew), in float64 and float32.

    python tests/level_probe.py [OUT.npz]

prints one JSON line (the level, the CPU features seen, the self-check's status and the worst
relative error per cell and dtype) and saves every output and gradient to OUT.npz, so that
levels can be compared with each other.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import lstm_ext
from lstm_ext.testing import relative_error
from lstm_ext.tools import selfcheck
from family import KINDS, make_layer, ours_run, random_inputs, reference_run
from test_variants import drawn_masks

# The family's cells and every variant.
VARIANTS = {
    "LSTM peephole": ("LSTM", {"peephole": True}),
    "LSTM layer norm": ("LSTM", {"layer_norm": True}),
    "LSTM zoneout": ("LSTM", {"zoneout": (0.2, 0.3)}),
    "LSTM recurrent dropout": ("LSTM", {"recurrent_dropout": 0.25}),
    "GRU layer norm": ("GRU", {"layer_norm": True}),
}

# Sizes that are no multiple of any packet width (4, 8 or 16 floats): every kernel runs whole
# packets and a padded tail.
T, B, I, H = 7, 5, 9, 37
LENGTHS = np.array([7, 2, 5, 1, 6])


def main(argv) -> int:
    info = lstm_ext.build_info()
    report = []
    status = selfcheck.run(T=5, B=3, I=7, H=21, repeats=1, out=report.append)
    errors, arrays = {}, {}
    for kind_name, (kind, extra) in {**KINDS, **VARIANTS}.items():
        for dtype in (np.float64, np.float32):
            layer = make_layer(kind, I, H, dtype, seed=3, num_layers=2, bidirectional=True, **extra)
            x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(1))
            cell_masks, dropout_masks = drawn_masks(layer, layer.rng_state(), T, B)
            ours = ours_run(layer, x, state, dy, dstate, LENGTHS)
            expected = reference_run(layer, x, state, dy, dstate, LENGTHS, dropout_masks, cell_masks)
            key = f"{kind_name} {np.dtype(dtype).name}"
            errors[key] = max(relative_error(ours[name], expected[name]) for name in expected)
            arrays.update({f"{key} {name}": value for name, value in ours.items()})
    if len(argv) > 1:
        np.savez(argv[1], **arrays)
    print(json.dumps({"level": info["kernel_level"], "cpu_features": info["cpu_features"], "selfcheck": status,
                      "errors": errors}))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
