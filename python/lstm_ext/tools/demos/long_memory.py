"""Long memory: recall a marked symbol after 10 to 200 steps of noise; LSTM against a vanilla RNN.

Each sequence is L random symbols out of 8; the first carries a marker. At the last step the
model must name the marked symbol (chance: 1 in 8). Between them lie L − 1 steps of random
symbols that the model must ignore. An LSTM and a vanilla (tanh) RNN of the same size (an
embedding of 16 tokens: 8 symbols, marked or not; 32 hidden units; a linear head) train on the
same fresh sequences with the same budget, from scratch at every length.

The LSTM starts with its forget gates open and its input gates nearly shut (biases +6 and −4):
the standard remedy for long dependencies, so that the path through the cell, and the gradient
along it, exists from the first step. The RNN has no such path: its gradient fades with every
step back, as the gradient-flow curves show (norm of ∂L/∂h_t, and ∂L/∂c_t for the LSTM's cell,
for a loss on the last step of length-100 sequences, computed with each layer's own backward).

Threshold: a length counts as solved when the model is right at least 90% of the time; at every
length >= 50 the LSTM solves the task and the RNN does not.
"""

from __future__ import annotations

import numpy as np

from lstm_ext import LSTM, RNN, Adam, Embedding, LastStep, Linear, Sequential, gradient_flow
from .common import Result

SYMBOLS = 8
HIDDEN = 32
SOLVED = 0.9  # accuracy at which a length counts as solved


def sequences(count, length, rng):
    """(tokens (count, length) int16, targets (count,)): token = symbol + 8 · [marked]."""
    symbols = rng.integers(0, SYMBOLS, size=(count, length))
    tokens = symbols.astype(np.int16)
    tokens[:, 0] += SYMBOLS  # the marked first symbol
    return tokens, symbols[:, 0]


def build(layer_class, seed):
    """The model with `layer_class` (LSTM or RNN) as its recurrent layer."""
    recurrent = layer_class(16, HIDDEN, batch_first=True, seed=seed)
    if layer_class is LSTM:
        H = HIDDEN
        recurrent.bias_ih_l0[H:2 * H] = 6.0   # forget gate open
        recurrent.bias_hh_l0[H:2 * H] = 0.0
        recurrent.bias_ih_l0[:H] = -4.0       # input gate nearly shut
        recurrent.bias_hh_l0[:H] = 0.0
    model = Sequential(Embedding(2 * SYMBOLS, 16, seed=seed), recurrent, LastStep(), Linear(HIDDEN, SYMBOLS, seed=seed))
    model.compile(loss="cross_entropy", optimizer=Adam(lr=2e-2), clip_grad_norm=1.0)
    return model


def run(context) -> Result:
    lengths = [10, 50, 100] if context.quick else [10, 25, 50, 100, 200]
    steps = 400 if context.quick else 500
    batch = 64
    accuracy = {LSTM: {}, RNN: {}}  # by the layer class, then the length
    models = {}
    for length in lengths:
        test_x, test_y = sequences(1000, length, np.random.default_rng([context.seed, length, 1]))
        for kind in (LSTM, RNN):
            model = build(kind, context.seed)
            x, y = sequences(batch * steps, length, np.random.default_rng([context.seed, length, 0]))
            model.fit(x, y, epochs=1, batch_size=batch, seed=context.seed, verbose=0, distributed=context.distributed)
            accuracy[kind][length] = float(np.mean(model.predict(test_x).argmax(axis=-1) == test_y))
            if length == 100:
                models[kind] = (model, test_x[:64])
        context.log(f"  length {length:3d}: LSTM accuracy {accuracy[LSTM][length]:.3f}, "
                    f"RNN accuracy {accuracy[RNN][length]:.3f} (chance {1 / SYMBOLS:.3f})")

    flow = {kind: gradient_flow(model, x) for kind, (model, x) in models.items()}
    decay = {kind: float(f["h"][0] / f["h"][-1]) for kind, f in flow.items()}
    cell = float(flow[LSTM]["c"][0] / flow[LSTM]["c"][-2])
    context.log(f"  gradient reaching step 0 of 100, relative to the last step: RNN {decay[RNN]:.1e}, "
                f"LSTM h {decay[LSTM]:.1e}, LSTM cell (from step 98) {cell:.1e}")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        left.plot(lengths, [accuracy[LSTM][n] for n in lengths], "o-", label="LSTM")
        left.plot(lengths, [accuracy[RNN][n] for n in lengths], "s-", label="vanilla RNN")
        left.axhline(1 / SYMBOLS, color="gray", ls=":", label="chance")
        left.set(xscale="log", xlabel="sequence length", ylabel="accuracy", ylim=(0, 1.05),
                 title="Recall the first symbol")
        left.set_xticks(lengths, [str(n) for n in lengths])
        left.legend()
        distance = np.arange(100)[::-1]  # steps back from the loss
        right.semilogy(distance, flow[RNN]["h"], label="vanilla RNN: ‖∂L/∂h_t‖")
        right.semilogy(distance, flow[LSTM]["h"], label="LSTM: ‖∂L/∂h_t‖")
        right.semilogy(distance[:-1], flow[LSTM]["c"][:-1], label="LSTM: ‖∂L/∂c_t‖ (cell)")
        right.set(xlabel="steps back from the loss", ylabel="gradient norm", title="Gradient flow (length 100)")
        right.legend(fontsize=8)
        plot = context.save_figure(figure, "long_memory.png")

    long = [n for n in lengths if n >= 50]
    passed = all(accuracy[LSTM][n] >= SOLVED and accuracy[RNN][n] < SOLVED for n in long)
    metrics = {"lengths": lengths, "lstm_accuracy": [accuracy[LSTM][n] for n in lengths],
               "rnn_accuracy": [accuracy[RNN][n] for n in lengths], "steps": steps, "batch": batch,
               "gradient_decay_rnn": decay[RNN], "gradient_decay_lstm_h": decay[LSTM],
               "gradient_decay_lstm_c": cell}
    return Result(metrics=metrics, passed=passed, plot=plot,
                  threshold=f"at every length >= 50 the LSTM solves the task (accuracy >= {SOLVED}) and the RNN does not",
                  details={"gradient_flow": {kind.__name__: {part: [float(v) for v in values]
                                                             for part, values in f.items()}
                                             for kind, f in flow.items()}})
