"""Two companies whose prices differ only on day 1: predict day 5; LSTM, GRU and vanilla RNN.

Company A's prices on days 1-4 are 0, 0.5, 0.25, 1 and company B's 1, 0.5, 0.25, 1; on day 5 A
is at 0 and B at 1. The last three days are the same for both, so a model must carry day 1
through three steps. An LSTM, a GRU and a vanilla (tanh) RNN, one layer of 8 units each, read the
four days and a linear head predicts day 5. Three steps is short: all three carry day 1 that far
(what sets the LSTM apart over long gaps is the long-memory demo's). Threshold: every model's two
predictions are within 0.05 of the truth.
"""

from __future__ import annotations

import numpy as np

from lstm_ext import Adam, LastStep, Linear, Sequential
from .common import COLOURS, KINDS, Context, Result, integer_epochs, layer_class, legend_outside

PRICES = np.array([[0.0, 0.5, 0.25, 1.0], [1.0, 0.5, 0.25, 1.0]], dtype=np.float32)  # (company, day 1-4)
DAY_5 = np.array([[0.0], [1.0]], dtype=np.float32)
HIDDEN = 8
TOLERANCE = 0.05


def run(context: Context) -> Result:
    X = PRICES[:, :, None]  # (2 companies, 4 days, 1 feature)
    epochs = 150 if context.quick else 300
    predictions: dict[str, np.ndarray] = {}
    losses: dict[str, list[float]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        model = Sequential(layer_class(kind)(1, HIDDEN, batch_first=True, seed=context.seed), LastStep(),
                           Linear(HIDDEN, 1, seed=context.seed))
        model.compile(loss="mse", optimizer=Adam(lr=0.05))
        history = model.fit(X, DAY_5, epochs=epochs, batch_size=2, verbose=0, seed=context.seed,
                            distributed=context.distributed)
        prediction = model.predict(X)[:, 0]
        predictions[kind], losses[kind] = prediction, [h["loss"] for h in history]
        metrics[kind] = {"prediction_A": float(prediction[0]), "prediction_B": float(prediction[1]),
                         "max_abs_error": float(np.abs(prediction - DAY_5[:, 0]).max()), "final_loss": losses[kind][-1]}
        context.log(f"  {kind:4s} ({HIDDEN} units, {epochs} epochs): day 5 predicted {prediction[0]:+.4f} for company A "
                    f"(truth 0), {prediction[1]:+.4f} for company B (truth 1); final loss {losses[kind][-1]:.1e}")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"wspace": 0.9})
        days = np.arange(1, 5)
        # The companies in black and grey (the colours are the models'); B is drawn dashed over A
        # on days 2-4, where their prices are the same.
        left.plot(days, PRICES[0], "o-", color=COLOURS["data"], label="company A, days 1-4")
        left.plot(days, PRICES[1], "o--", color=COLOURS["baseline"], mfc="white",
                  label="company B, days 1-4\n(days 2-4 the same as A:\nthe lines overlap)")
        left.plot([5, 5], DAY_5[:, 0], "s", color=COLOURS["data"], mfc="none", ms=20, label="day 5, truth")
        for k, kind in enumerate(KINDS):  # side by side around day 5, so that no marker hides another
            left.plot([5 + 0.1 * (k - 1)] * 2, predictions[kind], "x", color=COLOURS[kind], ms=9, mew=2,
                      label=f"day 5, {kind}")
        left.annotate("A", (5.25, DAY_5[0, 0]), va="center")
        left.annotate("B", (5.25, DAY_5[1, 0]), va="center")
        left.set(xlabel="day", ylabel="price", xticks=range(1, 6), xlim=(0.7, 5.6), ylim=(-0.15, 1.15),
                 title="Only day 1 tells the companies apart")
        legend_outside(left, fontsize=8, markerscale=0.7)
        for kind in KINDS:
            right.semilogy(range(1, epochs + 1), losses[kind], color=COLOURS[kind], label=kind)
        right.set(xlabel="epoch", ylabel="mean squared error", title=f"Training loss ({HIDDEN} units each)")
        integer_epochs(right)
        legend_outside(right, fontsize=8)
        plot = context.save_figure(figure, "two_company.png")
    worst = max(m["max_abs_error"] for m in metrics.values())
    return Result(metrics={**metrics, "hidden": HIDDEN, "epochs": epochs},
                  threshold=f"LSTM, GRU and RNN ({HIDDEN} units each) all carry day 1 through three steps: every "
                            f"day-5 prediction within {TOLERANCE} of the truth",
                  passed=bool(worst < TOLERANCE), plot=plot)
