"""Forecasting: monthly international airline passengers, 1949-1960.

The classic series (144 months, shipped with the package) grows and repeats a yearly pattern.
Models see the first 120 months (1949-1958) and forecast the last 24 (1959-1960) in one go, each
month's forecast feeding the next.

An LSTM, a GRU and a vanilla (tanh) RNN of the same size (8 units, a linear head) each work on
the year-over-year growth of the log series, g_t = log y_t − log y_{t−12} (standardised): from
the growth of the last 12 months they predict the next month's, and the forecast is
y_t = y_{t−12} · e^{g_t}. The training windows of 1958 are held out for early stopping (so every
choice uses 1949-1958 only), and each kind's forecast is the mean of five models from different
seeds (three in quick mode).

The baseline is seasonal naive: each forecast month repeats the same month of 1958, the last
year seen. Twelve steps of growth are a short memory, so this compares the three on a real
series rather than on memory. The threshold: each of the three kinds' RMSE and MAPE on
1959-1960 are both below the baseline's.

Each trained model is then also run in int8 (lstm_ext.quantize_dynamic: the same models, the
same forecast, only the recurrent weights and activations quantized), and each kind's MAPE in
int8 is reported next to its float32 one (not part of the threshold); a model with a layer that
has no int8 form (layer_norm) gets no int8 figure, and the summary says why.
"""

from __future__ import annotations

import importlib.resources
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from lstm_ext import Adam, LastStep, Linear, Sequential
from .common import COLOURS, KINDS, Context, Result, float32_and_int8, int8_copy, layer_class, legend_outside

if TYPE_CHECKING:
    from lstm_ext.distributed import Group
    from lstm_ext.quantized import QuantizedSequential

TRAIN_MONTHS = 120   # 1949-1958
WINDOW = 12          # months of growth the model reads
HIDDEN = 8


def passengers() -> np.ndarray:
    """(144,) monthly totals in thousands, January 1949 to December 1960."""
    text = (importlib.resources.files(__package__) / "data" / "airline_passengers.csv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith(("#", "year"))]
    totals: np.ndarray = np.array([float(v) for row in rows for v in row.split(",")[1:]])
    return totals


def _growth_model(kind: str, growth_norm: np.ndarray, seed: int, quick: bool,
                  distributed: Union[bool, Group] = False) -> Sequential:
    """Train one model of `kind` (in KINDS) on the standardised growth; returns it."""
    # Window ending at month m (exclusive) -> growth at month m; growth index = month − 12.
    months = np.arange(12 + WINDOW, TRAIN_MONTHS)
    X = np.stack([growth_norm[m - 12 - WINDOW:m - 12] for m in months])[:, :, None].astype(np.float32)
    y = growth_norm[months - 12][:, None].astype(np.float32)
    validation = months >= TRAIN_MONTHS - 12  # the windows ending in 1958
    model = Sequential(layer_class(kind)(1, HIDDEN, batch_first=True, seed=seed), LastStep(),
                       Linear(HIDDEN, 1, seed=seed))
    model.compile(loss="mse", optimizer=Adam(lr=1e-2))
    model.fit(X[~validation], y[~validation], epochs=150 if quick else 300, batch_size=16, seed=seed, verbose=0,
              validation_data=(X[validation], y[validation]), early_stopping=20, distributed=distributed)
    return model


def _forecast(model: Union[Sequential, QuantizedSequential], growth_norm: np.ndarray, log_y: np.ndarray, mean: float,
              std: float) -> np.ndarray:
    """The 24 months after TRAIN_MONTHS, each forecast fed back into the next (by the float32
    model or its int8 copy)."""
    growth = list(growth_norm[:TRAIN_MONTHS - 12])
    log_forecast = list(log_y[:TRAIN_MONTHS])
    for m in range(TRAIN_MONTHS, len(log_y)):
        window = np.array(growth[m - 12 - WINDOW:m - 12], dtype=np.float32)[None, :, None]
        g = float(model.predict(window)[0, 0])
        growth.append(g)
        log_forecast.append(log_forecast[m - 12] + g * std + mean)
    forecast: np.ndarray = np.exp(np.array(log_forecast[TRAIN_MONTHS:]))
    return forecast


def run(context: Context) -> Result:
    y = passengers()
    log_y = np.log(y)
    growth = log_y[12:] - log_y[:-12]                      # growth[i]: month i + 12 over month i
    seen = growth[:TRAIN_MONTHS - 12]
    mean, std = seen.mean(), seen.std()
    growth_norm = (growth - mean) / std
    truth = y[TRAIN_MONTHS:]

    members = 3 if context.quick else 5
    naive = np.tile(y[TRAIN_MONTHS - 12:TRAIN_MONTHS], 2)  # 1958 repeated

    def rmse(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean((p - truth) ** 2)))

    def mape(p: np.ndarray) -> float:
        return float(np.mean(np.abs(p - truth) / truth) * 100)

    forecast: dict[str, np.ndarray] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        forecasts: list[np.ndarray] = []
        forecasts_int8: list[np.ndarray] = []  # the same models' forecasts in int8
        skipped: Optional[str] = None  # why there is no int8 figure
        epochs: list[int] = []
        for k in range(members):
            model = _growth_model(kind, growth_norm, seed=context.seed * 100 + k, quick=context.quick,
                                  distributed=context.distributed)
            forecasts.append(_forecast(model, growth_norm, log_y, mean, std))
            quantized, why = int8_copy(model)
            if quantized is not None:
                forecasts_int8.append(_forecast(quantized, growth_norm, log_y, mean, std))
            skipped = skipped or why
            epochs.append(len(model.history))
        forecast[kind] = np.mean(forecasts, axis=0)
        # The int8 MAPE: the mean of the same members' int8 forecasts (None when a member has no int8 copy).
        mape_int8 = mape(np.mean(forecasts_int8, axis=0)) if len(forecasts_int8) == members else None
        metrics[kind] = {"rmse": rmse(forecast[kind]), "mape_percent": mape(forecast[kind]),
                         "mape_percent_int8": mape_int8, "epochs": epochs}
        if mape_int8 is None:
            metrics[kind]["int8_skipped"] = skipped
        context.log(f"  {kind:4s} ({HIDDEN} units), mean of {members} models ({', '.join(map(str, epochs))} epochs, "
                    f"early stopping on 1958): RMSE {metrics[kind]['rmse']:.1f}, "
                    f"MAPE {float32_and_int8(metrics[kind]['mape_percent'], mape_int8, skipped, 1, '%')}")
    metrics["seasonal naive"] = {"rmse": rmse(naive), "mape_percent": mape(naive)}
    context.log(f"  seasonal naive (1958 repeated): RMSE {rmse(naive):.1f}, MAPE {mape(naive):.1f}%")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        months = 1949 + np.arange(len(y)) / 12
        figure, (whole, zoom) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 2]})
        for axis in (whole, zoom):
            axis.plot(months[:TRAIN_MONTHS], y[:TRAIN_MONTHS], color=COLOURS["data"], label="history (seen)")
            axis.plot(months[TRAIN_MONTHS:], truth, color=COLOURS["data"], ls="--", label="truth 1959-1960")
            for kind in KINDS:
                axis.plot(months[TRAIN_MONTHS:], forecast[kind], color=COLOURS[kind], lw=1.5,
                          label=f"{kind}: mean of {members} models (MAPE {metrics[kind]['mape_percent']:.1f}%)")
            axis.plot(months[TRAIN_MONTHS:], naive, color=COLOURS["baseline"], ls=":",
                      label=f"seasonal naive (MAPE {metrics['seasonal naive']['mape_percent']:.1f}%)")
            axis.axvline(months[TRAIN_MONTHS], color=COLOURS["baseline"], lw=0.8)
            axis.set(xlabel="year", ylabel="passengers (thousands)")
        whole.set(title="Airline passengers: forecasting 24 months")
        zoom.set(xlim=(1958.9, 1961), ylim=(min(naive.min(), truth.min()) * 0.9, truth.max() * 1.1),
                 title="1959-1960 enlarged")
        zoom.set_xticks([1959, 1959.5, 1960, 1960.5, 1961], ["Jan 1959", "Jul 1959", "Jan 1960", "Jul 1960", "Jan 1961"])
        legend_outside(zoom, fontsize=8)
        plot = context.save_figure(figure, "forecasting.png")
    passed = all(metrics[kind]["rmse"] < metrics["seasonal naive"]["rmse"] and
                 metrics[kind]["mape_percent"] < metrics["seasonal naive"]["mape_percent"] for kind in KINDS)
    return Result(metrics={**metrics, "hidden": HIDDEN, "models": members}, passed=passed, plot=plot,
                  threshold=f"LSTM, GRU and RNN ({HIDDEN} units each, mean of {members} models): each one's RMSE and "
                            "MAPE on 1959-1960 below seasonal naive's",
                  details={"forecast": {kind: [round(float(v), 1) for v in forecast[kind]] for kind in KINDS}})
