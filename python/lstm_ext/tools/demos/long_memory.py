"""Long memory: recall a marked symbol after 10 to 200 steps of noise; LSTM, GRU and vanilla RNN.

Each sequence is L random symbols out of 8; the first carries a marker. At the last step the
model must name the marked symbol (chance: 1 in 8). Between them lie L − 1 steps of random
symbols that the model must ignore. An LSTM, a GRU and a vanilla (tanh) RNN of the same size (an
embedding of 16 tokens: 8 symbols, marked or not; 32 hidden units; a linear head) train on the
same fresh sequences with the same budget, from scratch at every length.

The gated layers start in the state that keeps what they hold, the standard remedy for long
dependencies: the LSTM with its forget gates open and its input gates nearly shut (biases +6 and
−4), the GRU with its update gates shut (bias +4, h_t ≈ h_{t−1}), so that a path through the
state, and the gradient along it, exists from the first step (without it the GRU fails at 200).
The RNN has no gate and no such path: its gradient fades with every step back, as the
gradient-flow curves show (norm of ∂L/∂h_t, and ∂L/∂c_t for the LSTM's cell, for a loss on the
last step of length-100 sequences, computed with each layer's own backward).

Threshold: a length counts as solved when the model is right at least 90% of the time; at every
length >= 50 the LSTM and the GRU solve the task and the RNN does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_ext import GRU, LSTM, RNN, Adam, Embedding, LastStep, Linear, Sequential, gradient_flow
from .common import COLOURS, KINDS, Context, Result, layer_class, legend_outside

SYMBOLS = 8
HIDDEN = 32
SOLVED = 0.9  # accuracy at which a length counts as solved


def sequences(count: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (count, length) int16, targets (count,)): token = symbol + 8 · [marked]."""
    symbols = rng.integers(0, SYMBOLS, size=(count, length))
    tokens = symbols.astype(np.int16)
    tokens[:, 0] += SYMBOLS  # the marked first symbol
    return tokens, symbols[:, 0]


def build(kind: str, seed: int) -> Sequential:
    """The model with a `kind` (in KINDS) recurrent layer, its gates (if any) set to keep the state."""
    cls = layer_class(kind)
    recurrent = cls(16, HIDDEN, batch_first=True, seed=seed)
    H = HIDDEN  # gate order r, z, n (GRU) and i, f, g, o (LSTM), PyTorch's
    params = recurrent.named_parameters()  # the layer's arrays themselves
    b_ih, b_hh = params["bias_ih_l0"], params["bias_hh_l0"]
    if cls is GRU:
        b_ih[H:2 * H] = 4.0   # update gate shut: h_t ≈ h_{t−1}
        b_hh[H:2 * H] = 0.0
    if cls is LSTM:
        b_ih[H:2 * H] = 6.0   # forget gate open
        b_hh[H:2 * H] = 0.0
        b_ih[:H] = -4.0       # input gate nearly shut
        b_hh[:H] = 0.0
    model = Sequential(Embedding(2 * SYMBOLS, 16, seed=seed), recurrent, LastStep(), Linear(HIDDEN, SYMBOLS, seed=seed))
    model.compile(loss="cross_entropy", optimizer=Adam(lr=2e-2), clip_grad_norm=1.0)
    return model


def run(context: Context) -> Result:
    lengths = [10, 50, 100] if context.quick else [10, 25, 50, 100, 200]
    steps = 400 if context.quick else 500
    batch = 64
    accuracy: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}  # by the kind, then the length
    models: dict[str, tuple[Sequential, np.ndarray]] = {}
    for length in lengths:
        test_x, test_y = sequences(1000, length, np.random.default_rng([context.seed, length, 1]))
        for kind in KINDS:
            model = build(kind, context.seed)
            x, y = sequences(batch * steps, length, np.random.default_rng([context.seed, length, 0]))
            model.fit(x, y, epochs=1, batch_size=batch, seed=context.seed, verbose=0, distributed=context.distributed)
            accuracy[kind][length] = float(np.mean(model.predict(test_x).argmax(axis=-1) == test_y))
            if length == 100:
                models[kind] = (model, test_x[:64])
        context.log(f"  length {length:3d}: accuracy " + ", ".join(f"{kind} {accuracy[kind][length]:.3f}" for kind in KINDS)
                    + f" (chance {1 / SYMBOLS:.3f})")

    # Mean gradient norm at step 0 of 100 as a fraction of its value at step 99, where the loss is.
    flow = {kind: gradient_flow(model, x) for kind, (model, x) in models.items()}
    kept = {kind: float(f["h"][0] / f["h"][-1]) for kind, f in flow.items()}
    # ∂L/∂c_99 is 0 (the loss reads h_99 only): the cell path starts at step 98.
    cell = float(flow[LSTM.__name__]["c"][0] / flow[LSTM.__name__]["c"][-2])
    context.log("  gradient flow (length 100, loss at step 99): ‖∂L/∂h‖ at step 0, as a fraction of its value at step "
                "99: " + ", ".join(f"{kind} {kept[kind]:.1e}" for kind in KINDS))
    context.log(f"  along the LSTM's cell, ‖∂L/∂c‖ at step 0 is {cell:.1e} of its value at step 98 (the loss reads h "
                "only, so the cell's gradient starts at step 98)")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"wspace": 0.95})
        markers = dict(zip(KINDS, ("o", "^", "s")))  # LSTM, GRU, RNN
        widths = dict(zip(KINDS, (4, 1.5, 1.5)))  # the LSTM's line wide, so the GRU's shows it beneath
        for k, kind in enumerate(KINDS):  # markers nudged apart, so that equal accuracies stay visible
            left.plot([n * 1.04 ** (k - 1) for n in lengths], [accuracy[kind][n] for n in lengths],
                      markers[kind] + "-", color=COLOURS[kind], lw=widths[kind], ms=7,
                      label=kind + (" (wide line, under\nthe GRU's where equal)" if kind == LSTM.__name__ else ""))
        left.axhline(SOLVED, color=COLOURS["baseline"], ls="--", lw=0.8, label=f"solved ({SOLVED:.0%})")
        left.axhline(1 / SYMBOLS, color=COLOURS["baseline"], ls=":", label="chance (1 in 8)")
        left.set(xscale="log", xlabel="sequence length (markers nudged sideways)", ylabel="accuracy",
                 ylim=(0, 1.05), title=f"Recall the first symbol ({HIDDEN} units each)")
        left.set_xticks(lengths, [str(n) for n in lengths])
        left.minorticks_off()
        legend_outside(left, fontsize=8)
        distance = np.arange(100)[::-1]  # steps back from the loss
        for kind in KINDS:
            right.semilogy(distance, flow[kind]["h"], color=COLOURS[kind], label=f"{kind}: ‖∂L/∂h_t‖")
        right.semilogy(distance[:-1], flow[LSTM.__name__]["c"][:-1], color=COLOURS[LSTM.__name__], ls="--",
                       label="LSTM: ‖∂L/∂c_t‖ (cell)")
        right.set(xlabel="steps back from the loss", ylabel="mean gradient norm", title="Gradient flow (length 100)")
        legend_outside(right, fontsize=8)
        plot = context.save_figure(figure, "long_memory.png")

    long = [n for n in lengths if n >= 50]
    lstm, gru, rnn = (accuracy[cls.__name__] for cls in (LSTM, GRU, RNN))
    passed = all(lstm[n] >= SOLVED and gru[n] >= SOLVED and rnn[n] < SOLVED
                 for n in long)
    metrics: dict[str, Any] = {kind: {"accuracy": [accuracy[kind][n] for n in lengths], "gradient_kept_at_step_0": kept[kind]}
               for kind in KINDS}
    metrics[LSTM.__name__]["cell_gradient_kept_at_step_0"] = cell
    metrics.update({"lengths": lengths, "hidden": HIDDEN, "steps": steps, "batch": batch})
    return Result(metrics=metrics, passed=passed, plot=plot,
                  threshold=f"at every length >= 50 the LSTM and the GRU ({HIDDEN} units each) solve the task "
                            f"(accuracy >= {SOLVED}) and the vanilla RNN does not",
                  details={"gradient_flow": {kind: {part: [float(v) for v in values] for part, values in f.items()}
                                             for kind, f in flow.items()}})
