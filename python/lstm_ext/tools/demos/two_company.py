"""Two companies whose prices differ only on day 1: predict day 5.

Company A's prices on days 1-4 are 0, 0.5, 0.25, 1 and company B's 1, 0.5, 0.25, 1; on day 5 A
is at 0 and B at 1. The last three days are the same for both, so the model must carry day 1
through three steps. A one-layer LSTM (8 units) reads the four days and a linear head predicts
day 5; it meets the threshold when both predictions are within 0.05 of the truth.
"""

from __future__ import annotations

import numpy as np

from lstm_ext import LSTM, Adam, LastStep, Linear, Sequential
from .common import Result

PRICES = np.array([[0.0, 0.5, 0.25, 1.0], [1.0, 0.5, 0.25, 1.0]], dtype=np.float32)  # (company, day 1-4)
DAY_5 = np.array([[0.0], [1.0]], dtype=np.float32)
TOLERANCE = 0.05


def run(context) -> Result:
    X = PRICES[:, :, None]  # (2 companies, 4 days, 1 feature)
    model = Sequential(LSTM(1, 8, batch_first=True, seed=context.seed), LastStep(), Linear(8, 1, seed=context.seed))
    model.compile(loss="mse", optimizer=Adam(lr=0.05))
    epochs = 150 if context.quick else 300
    history = model.fit(X, DAY_5, epochs=epochs, batch_size=2, verbose=0, seed=context.seed,
                        distributed=context.distributed)
    prediction = model.predict(X)[:, 0]
    errors = np.abs(prediction - DAY_5[:, 0])
    context.log(f"  trained {epochs} epochs, final loss {history[-1]['loss']:.2e}")
    context.log(f"  company A: day 5 predicted {prediction[0]:+.4f} (truth 0)")
    context.log(f"  company B: day 5 predicted {prediction[1]:+.4f} (truth 1)")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        days = np.arange(1, 6)
        for k, (label, colour) in enumerate((("company A", "tab:blue"), ("company B", "tab:orange"))):
            left.plot(days[:4], PRICES[k], "o-", color=colour, label=f"{label}: days 1-4")
            left.plot([4, 5], [PRICES[k, -1], DAY_5[k, 0]], ":", color=colour)
            left.plot(5, DAY_5[k, 0], "s", color=colour, mfc="none", ms=11, label=f"{label}: day 5 (truth)")
            left.plot(5, prediction[k], "x", color=colour, ms=10, mew=2, label=f"{label}: day 5 (LSTM)")
        left.set(xlabel="day", ylabel="price", title="Only day 1 tells the companies apart")
        left.legend(fontsize=7, loc="center left")
        right.semilogy([h["loss"] for h in history])
        right.set(xlabel="epoch", ylabel="mean squared error", title="Training loss")
        plot = context.save_figure(figure, "two_company.png")
    return Result(metrics={"prediction_A": float(prediction[0]), "prediction_B": float(prediction[1]),
                           "max_abs_error": float(errors.max()), "epochs": epochs},
                  threshold=f"both day-5 predictions within {TOLERANCE} of the truth",
                  passed=bool(errors.max() < TOLERANCE), plot=plot)
