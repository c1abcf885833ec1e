"""The oracle proven for the whole family: central finite differences of the NumPy reference
network (stacked, bidirectional, projected, with lengths and fixed dropout masks) in float64,
for every gradient: dx, the initial states and every parameter."""

from __future__ import annotations

import numpy as np
import pytest

from family import KINDS
from lstm_ext import cells, reference
from lstm_ext.testing import relative_error

FD_EPS = 1e-6
FD_TOLERANCE = 1e-7

T, B, I, H = 4, 3, 2, 3
LENGTHS = np.array([2, 4, 1])


def make_case(kind, extra, num_layers, bidirectional, dropout, seed):
    """Parameters (PyTorch's names), inputs, states, output gradients and dropout masks."""
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    P = extra.get("proj_size", 0)
    H_out = P or H
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind] * H
    params = {}
    for k in range(num_layers):
        for suffix in [f"_l{k}", f"_l{k}_reverse"][:D]:
            params["weight_ih" + suffix] = rng.uniform(-0.6, 0.6, (G, I if k == 0 else D * H_out))
            params["weight_hh" + suffix] = rng.uniform(-0.6, 0.6, (G, H_out))
            params["bias_ih" + suffix] = rng.uniform(-0.6, 0.6, G)
            params["bias_hh" + suffix] = rng.uniform(-0.6, 0.6, G)
            if P:
                params["weight_hr" + suffix] = rng.uniform(-0.6, 0.6, (P, H))
    rows = num_layers * D
    masks = None
    if dropout:
        masks = [(rng.random((T, B, D * H_out)) >= 0.4) / 0.6 for _ in range(num_layers - 1)]
    inputs = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((rows, B, H_out))}
    weights = {"dy": rng.standard_normal((T, B, D * H_out)), "dh_n": rng.standard_normal((rows, B, H_out))}
    if kind == "LSTM":
        inputs["c0"] = rng.standard_normal((rows, B, H))
        weights["dc_n"] = rng.standard_normal((rows, B, H))
    return params, inputs, weights, masks


def run(kind, extra, config, params, inputs, masks):
    cell = cells.by_name(kind)
    state0 = [inputs["h0"], inputs.get("c0")][:len(cell.state)]
    y, state_n, cache = reference.stack_forward(cell, inputs["x"], params, config["num_layers"],
                                                config["bidirectional"], LENGTHS, state0, masks,
                                                {o.name: extra.get(o.name, o.default) for o in cell.options})
    return y, state_n[0], (state_n[1] if len(state_n) > 1 else None), cache


def loss(kind, extra, config, params, inputs, weights, masks):
    y, h_n, c_n, _ = run(kind, extra, config, params, inputs, masks)
    total = np.sum(weights["dy"] * y) + np.sum(weights["dh_n"] * h_n)
    return total + (np.sum(weights["dc_n"] * c_n) if kind == "LSTM" else 0.0)


CONFIGS = {
    "1 layer": dict(num_layers=1, bidirectional=False, dropout=False),
    "2 layers bidirectional dropout": dict(num_layers=2, bidirectional=True, dropout=True),
}


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("kind_name", KINDS)
def test_reference_network_gradients_equal_finite_differences(kind_name, config_name):
    kind, extra = KINDS[kind_name]
    config = CONFIGS[config_name]
    params, inputs, weights, masks = make_case(kind, extra, config["num_layers"], config["bidirectional"],
                                               config["dropout"], seed=len(kind_name) + len(config_name))
    _, _, _, cache = run(kind, extra, config, params, inputs, masks)
    analytic = reference.stack_backward(weights["dy"], [weights["dh_n"], weights.get("dc_n")][:len(cache["cell"].state)],
                                        cache)
    analytic.update(zip(("dh0", "dc0"), analytic.pop("dstate0")))

    def f():
        return loss(kind, extra, config, params, inputs, weights, masks)

    checked = {}
    for group, grad_name in [(inputs, {"x": "dx", "h0": "dh0", "c0": "dc0"}), (params, None)]:
        for name, value in group.items():
            numeric = np.zeros_like(value)
            for index in np.ndindex(value.shape):
                saved = value[index]
                value[index] = saved + FD_EPS
                up = f()
                value[index] = saved - FD_EPS
                down = f()
                value[index] = saved
                numeric[index] = (up - down) / (2 * FD_EPS)
            key = grad_name[name] if grad_name else "d" + name
            checked[key] = relative_error(analytic[key], numeric)
    worst = max(checked.values())
    assert worst < FD_TOLERANCE, {k: f"{v:.1e}" for k, v in checked.items() if v >= FD_TOLERANCE}
    assert set(checked) == set(analytic)  # every gradient the reference returns was checked
