"""Run by test_levels.py in a process of its own, at one kernel level (LSTM_EXT_KERNELS): every
layer kind and variant as a two-layer bidirectional stack, trained for one forward and backward
over a grid of sizes, with and without lengths, in float32 and float64, on 1 and 2 threads; the
streaming step; and inference in int8 (quantize_dynamic).

    python tests/level_grid.py [--quick]

prints one JSON line: the level, and for every configuration and tensor (outputs, final states,
the input's and every parameter's gradient) a digest of its bytes, so that two levels can be
compared bit for bit without moving the arrays between processes.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import lstm_ext
from family import ours_run, random_inputs

# Every kind and variant (constructor arguments).
KINDS = {
    "LSTM": ("LSTM", {}),
    "LSTM proj": ("LSTM", {"proj_size": 5}),
    "LSTM peephole": ("LSTM", {"peephole": True}),
    "LSTM layer norm": ("LSTM", {"layer_norm": True}),
    "LSTM zoneout": ("LSTM", {"zoneout": (0.2, 0.3)}),
    "LSTM recurrent dropout": ("LSTM", {"recurrent_dropout": 0.25}),
    "LSTM every variant": ("LSTM", {"peephole": True, "layer_norm": True, "zoneout": 0.1, "recurrent_dropout": 0.2,
                                    "proj_size": 5}),
    "GRU": ("GRU", {}),
    "GRU layer norm": ("GRU", {"layer_norm": True}),
    "RNN tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN relu": ("RNN", {"nonlinearity": "relu"}),
}
T, I = 20, 13
# Batches below, near and above the row split of a team of two (16 rows a member), hidden sizes
# that are and are not multiples of every packet width (4, 8, 16 floats).
SIZES = [(3, 16), (37, 64), (64, 100), (5, 37)]
QUICK_SIZES = [(3, 16), (37, 21)]


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:24]


def main(argv) -> int:
    sizes = QUICK_SIZES if "--quick" in argv else SIZES
    digests = {}
    for threads in (1, 2):
        lstm_ext.set_num_threads(threads)
        for kind_name, (kind, extra) in KINDS.items():
            for B, H in sizes:
                for dtype in (np.float32, np.float64):
                    for with_lengths in (False, True):
                        layer = getattr(lstm_ext, kind)(I, H, num_layers=2, bidirectional=True, dtype=dtype, seed=7,
                                                        **extra).train()
                        x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(B + H))
                        lengths = np.random.default_rng(B).integers(1, T + 1, B) if with_lengths else None
                        ours = ours_run(layer, x, state, dy, dstate, lengths)
                        case = (f"{kind_name} B={B} H={H} {np.dtype(dtype).name}"
                                f"{' lengths' if with_lengths else ''} threads={threads}")
                        digests.update({f"{case}: {name}": digest(value) for name, value in ours.items()})
        # The streaming step (lstm_cell's dot products of whole rows): a 2-layer stream over T steps.
        for B, H in sizes:
            for dtype in (np.float32, np.float64):
                layer = lstm_ext.LSTM(I, H, num_layers=2, dtype=dtype, seed=7)
                stream = layer.stream(batch_size=B)
                xs = random_inputs(layer, T, B, np.random.default_rng(B + H))[0]
                steps = np.stack([stream.step(x_t) for x_t in xs])
                case = f"stream B={B} H={H} {np.dtype(dtype).name} threads={threads}"
                digests.update({f"{case}: h": digest(steps), f"{case}: c": digest(stream.state[1])})
        # Inference in int8 (its products exact in int32 at every level, VNNI's included).
        for kind_name in ("LSTM", "LSTM proj", "LSTM peephole", "LSTM zoneout", "GRU", "RNN relu"):
            kind, extra = KINDS[kind_name]
            for B, H in sizes:
                layer = getattr(lstm_ext, kind)(I, H, num_layers=2, bidirectional=True, seed=7, **extra)
                x = random_inputs(layer, T, B, np.random.default_rng(B + H))[0].astype(np.float32)
                lengths = np.random.default_rng(B).integers(1, T + 1, B)
                y, state_n = lstm_ext.quantize_dynamic(layer)(x, lengths=lengths)
                case = f"{kind_name} int8 B={B} H={H} threads={threads}"
                parts = state_n if isinstance(state_n, tuple) else (state_n,)
                digests.update({f"{case}: y": digest(y), **{f"{case}: state {i}": digest(p) for i, p in enumerate(parts)}})
    print(json.dumps({"level": lstm_ext.build_info()["kernel_level"], "digests": digests}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
