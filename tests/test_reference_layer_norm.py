"""Layer normalization in the oracle, proven: the LSTM (alone, and with peepholes, a projection,
zoneout and recurrent dropout) and the GRU with layer norm, one layer and through the stacked
bidirectional network with lengths, by central finite differences in float64 for every gradient
(the LN parameters' included); layer_norm itself; the cells without ln unchanged bit for bit; and
LN's invariance to the scale of the recurrent weights."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ext import cells, reference
from lstm_ext.testing import FD_TOLERANCE, fd_errors

FD_SAMPLES = 12  # elements checked per tensor: its largest gradient and random others
FD_SAMPLES_NETWORK = 3  # fewer through the network (up to 47 tensors, each evaluation 12 sequences)
# LN of a standardized vector is v / sqrt(1 + ε): the identity up to ε / 2.
IDENTITY_TOLERANCE = reference.LN_EPS
# LN(s·u) − LN(u) = v̂ · (ε / 2σ²)(1 − 1/s²) + O(ε²): a few ε for products of variance ~ 1, carried
# through the steps (measured: 2.5 ε for the LSTM, 0.6 ε for the GRU); without LN the output moves by ~0.7.
INVARIANCE_TOLERANCE = 20 * reference.LN_EPS

T, B, I, H = 4, 3, 3, 4
GRAD_OF = {"x": "dx", "h0": "dh0", "c0": "dc0", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih",
           "b_hh": "db_hh", "w_hr": "dw_hr", "w_ch": "dw_ch", **{n: "d" + n for n in reference.LSTM_LN_NAMES}}


# -- helpers ---------------------------------------------------------------------------------------

def assert_within_tolerance(errors):
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_TOLERANCE, (f"worst {worst}: {errors[worst]:.2e}; all "
                                          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))


def ln_params(rng, G, H, names, suffix=""):
    """γ around 1 (either way of it, so that some pre-activations are scaled up) and small β."""
    params = {}
    for name in names:
        size = H if name.startswith("ln_c_") else G
        params[name + suffix] = (rng.uniform(0.5, 2.0, size) if name.endswith("_weight")
                                 else rng.uniform(-0.5, 0.5, size))
    return params


def dropout_mask(rng, shape, p):
    """Recurrent dropout: 0 or 1 / (1 − p)."""
    return (rng.random(shape) >= p) / (1.0 - p)


def assert_bitwise_equal(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name, strict=True)


# -- LSTM, one layer ---------------------------------------------------------------------------------

def make_lstm(seed, P=0, peephole=False):
    """One layer's tensors, the LN parameters among them, and the loss weights dy, dh_n, dc_n."""
    rng = np.random.default_rng(seed)
    H_out = P or H
    case = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H_out)),
        "c0": rng.standard_normal((B, H)),
        "w_ih": rng.uniform(-1.5, 1.5, (4 * H, I)),
        "w_hh": rng.uniform(-1.5, 1.5, (4 * H, H_out)),
        "b_ih": rng.uniform(-0.5, 0.5, 4 * H),
        "b_hh": rng.uniform(-0.5, 0.5, 4 * H),
        **ln_params(rng, 4 * H, H, reference.LSTM_LN_NAMES),
    }
    if P:
        case["w_hr"] = rng.uniform(-0.8, 0.8, (P, H))
    if peephole:
        case["w_ch"] = rng.uniform(-1.5, 1.5, (3, H))
    weights = {"dy": rng.standard_normal((T, B, H_out)), "dh_n": rng.standard_normal((B, H_out)),
               "dc_n": rng.standard_normal((B, H))}
    return case, weights


def lstm_forward(case, masks, ln=True):
    ln = {name: case[name] for name in reference.LSTM_LN_NAMES} if ln else None
    return reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["h0"],
                                  case["c0"], case.get("w_hr"), w_ch=case.get("w_ch"), ln=ln, **masks)


def lstm_loss(case, weights, masks):
    """L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n: its gradients w.r.t. y, h_n, c_n are dy, dh_n, dc_n."""
    y, h_n, c_n, _ = lstm_forward(case, masks)
    return float(np.sum(weights["dy"] * y) + np.sum(weights["dh_n"] * h_n) + np.sum(weights["dc_n"] * c_n))


LSTM_VARIANTS = {  # name: (proj_size, peepholes, masks)
    "ln": (0, False, False),
    "ln + peepholes + projection + zoneout + recurrent dropout": (2, True, True),
}


@pytest.mark.parametrize("variant", LSTM_VARIANTS)
def test_lstm_with_layer_norm_gradients_match_finite_differences(variant):
    P, peephole, with_masks = LSTM_VARIANTS[variant]
    seed = len(variant)
    case, weights = make_lstm(seed, P, peephole)
    masks = {}
    if with_masks:
        rng = np.random.default_rng(seed + 1)
        masks = {"keep_h": dropout_mask(rng, (B, P or H), 0.3), "zone_c": (rng.random((T, B, H)) < 0.4) * 1.0,
                 "zone_h": (rng.random((T, B, P or H)) < 0.4) * 1.0}
    *_, cache = lstm_forward(case, masks)
    analytic = reference.lstm_backward(weights["dy"], weights["dh_n"], weights["dc_n"], cache)
    returned = {name for name, value in analytic.items() if value is not None}
    assert returned == {GRAD_OF[name] for name in case}  # every gradient, the six LN ones among them

    analytic = {name: analytic[GRAD_OF[name]] for name in case}
    errors = fd_errors(lambda: lstm_loss(case, weights, masks), case, analytic, seed, FD_SAMPLES)
    assert_within_tolerance(errors)


# -- GRU, one layer ----------------------------------------------------------------------------------

def make_gru(seed):
    rng = np.random.default_rng(seed)
    case = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)),
        "w_ih": rng.uniform(-1.5, 1.5, (3 * H, I)),
        "w_hh": rng.uniform(-1.5, 1.5, (3 * H, H)),
        "b_ih": rng.uniform(-0.5, 0.5, 3 * H),
        "b_hh": rng.uniform(-0.5, 0.5, 3 * H),
        **ln_params(rng, 3 * H, H, reference.GRU_LN_NAMES),
    }
    weights = {"dy": rng.standard_normal((T, B, H)), "dh_n": rng.standard_normal((B, H))}
    return case, weights


def gru_forward(case, ln=True):
    ln = {name: case[name] for name in reference.GRU_LN_NAMES} if ln else None
    return reference.gru_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["h0"], ln=ln)


def test_gru_with_layer_norm_gradients_match_finite_differences():
    case, weights = make_gru(60)
    *_, cache = gru_forward(case)
    analytic = reference.gru_backward(weights["dy"], weights["dh_n"], cache)
    returned = {name for name, value in analytic.items() if value is not None}
    assert returned == {GRAD_OF[name] for name in case}

    def f():
        y, h_n, _ = gru_forward(case)
        return float(np.sum(weights["dy"] * y) + np.sum(weights["dh_n"] * h_n))

    errors = fd_errors(f, case, {name: analytic[GRAD_OF[name]] for name in case}, seed=60, count=FD_SAMPLES)
    assert_within_tolerance(errors)


# -- the network: stacked, bidirectional, lengths ----------------------------------------------------

LENGTHS = np.array([2, 4, 1])
NETWORKS = {"LSTM": (cells.LSTM, 2), "GRU": (cells.GRU, 0)}  # kind, proj_size


def make_network(kind, P, num_layers, seed):
    """PyTorch-named parameters with LN parameters for every layer and direction, inputs, loss
    weights and dropout masks between the layers."""
    rng = np.random.default_rng(seed)
    D, H_out, G = 2, P or H, kind.num_gates * H
    names = reference.LSTM_LN_NAMES if kind.has_cell_state else reference.GRU_LN_NAMES
    params = {}
    for k in range(num_layers):
        for suffix in (f"_l{k}", f"_l{k}_reverse"):
            params["weight_ih" + suffix] = rng.uniform(-0.8, 0.8, (G, I if k == 0 else D * H_out))
            params["weight_hh" + suffix] = rng.uniform(-0.8, 0.8, (G, H_out))
            params["bias_ih" + suffix] = rng.uniform(-0.6, 0.6, G)
            params["bias_hh" + suffix] = rng.uniform(-0.6, 0.6, G)
            if P:
                params["weight_hr" + suffix] = rng.uniform(-0.8, 0.8, (P, H))
            params.update(ln_params(rng, G, H, names, suffix))
    rows = num_layers * D
    inputs = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((rows, B, H_out))}
    weights = {"dy": rng.standard_normal((T, B, D * H_out)), "dh_n": rng.standard_normal((rows, B, H_out))}
    if kind.has_cell_state:
        inputs["c0"] = rng.standard_normal((rows, B, H))
        weights["dc_n"] = rng.standard_normal((rows, B, H))
    dropout_masks = [dropout_mask(rng, (T, B, D * H_out), 0.4) for _ in range(num_layers - 1)]
    return params, inputs, weights, dropout_masks


def run_network(kind, P, params, inputs, num_layers, dropout_masks):
    state0 = [inputs["h0"], inputs.get("c0")][:len(kind.state)]
    return reference.stack_forward(kind, inputs["x"], params, num_layers, True, LENGTHS, state0, dropout_masks,
                                   {"proj_size": P} if kind.has_cell_state else {})


@pytest.mark.parametrize("name", NETWORKS)
def test_network_with_layer_norm_matches_finite_differences(name):
    kind, P = NETWORKS[name]
    num_layers = 2
    params, inputs, weights, dropout_masks = make_network(kind, P, num_layers, seed=70 + P)
    _, _, cache = run_network(kind, P, params, inputs, num_layers, dropout_masks)
    dstate_n = [weights["dh_n"], weights.get("dc_n")][:len(kind.state)]
    analytic = reference.stack_backward(weights["dy"], dstate_n, cache)
    analytic.update(zip(("dh0", "dc0"), analytic.pop("dstate0")))
    assert all(c["ln"] is not None for per_sequence in cache["caches"] for c in per_sequence)

    def f():
        y, state_n, _ = run_network(kind, P, params, inputs, num_layers, dropout_masks)
        return float(np.sum(weights["dy"] * y) + sum(np.sum(w * s) for w, s in zip(dstate_n, state_n)))

    tensors = {**inputs, **params}
    keyed = {name: analytic[{"x": "dx", "h0": "dh0", "c0": "dc0"}.get(name, "d" + name)] for name in tensors}
    errors = fd_errors(f, tensors, keyed, seed=P, count=FD_SAMPLES_NETWORK)
    assert_within_tolerance(errors)
    assert {"d" + name for name in params} | {"d" + name for name in inputs} == set(analytic)  # all checked


# -- layer_norm itself -------------------------------------------------------------------------------

def test_layer_norm_with_unit_gamma_and_zero_beta_is_the_identity_on_a_standardized_vector():
    rng = np.random.default_rng(80)
    v = rng.standard_normal((5, 12))
    v = (v - v.mean(axis=-1, keepdims=True)) / v.std(axis=-1, keepdims=True)  # mean 0, variance 1 (ddof 0)
    out, _ = reference.layer_norm(v, np.ones(12), np.zeros(12))
    np.testing.assert_allclose(out, v, rtol=IDENTITY_TOLERANCE, atol=0)
    np.testing.assert_allclose(out, v / np.sqrt(1.0 + reference.LN_EPS), rtol=1e-14, atol=1e-15)  # exactly ε's


def test_layer_norm_backward_matches_finite_differences():
    rng = np.random.default_rng(81)
    tensors = {"v": rng.standard_normal((3, 2, 7)), "gamma": rng.uniform(-2, 2, 7), "beta": rng.uniform(-1, 1, 7)}
    dout = rng.standard_normal((3, 2, 7))

    def f():
        return float(np.sum(dout * reference.layer_norm(tensors["v"], tensors["gamma"], tensors["beta"])[0]))

    _, cache = reference.layer_norm(tensors["v"], tensors["gamma"], tensors["beta"])
    dv, dgamma, dbeta = reference.layer_norm_backward(dout, cache)
    assert dv.shape == (3, 2, 7) and dgamma.shape == dbeta.shape == (7,)
    errors = fd_errors(f, tensors, {"v": dv, "gamma": dgamma, "beta": dbeta}, seed=81, count=42)
    assert_within_tolerance(errors)


# -- without ln: the plain cells, bit for bit --------------------------------------------------------

def plain_and_none(forward, backward, grad_args, names):
    """{tensor: array} of the call without the ln argument and of the call with ln=None."""
    runs = []
    for kwargs in ({}, {"ln": None}):
        *outputs, cache = forward(**kwargs)
        grads = backward(*grad_args, cache)
        assert all(grads["d" + name] is None for name in names)  # no LN, no LN gradients
        runs.append({**{f"out{k}": v for k, v in enumerate(outputs)},
                     **{k: v for k, v in grads.items() if v is not None}})
    return runs


@pytest.mark.parametrize("variant", ["plain", "peepholes + projection + zoneout + recurrent dropout"])
def test_lstm_without_layer_norm_is_the_plain_call_bit_for_bit(variant):
    P, peephole = (0, False) if variant == "plain" else (2, True)
    case, weights = make_lstm(90, P, peephole)
    masks = {}
    if variant != "plain":
        rng = np.random.default_rng(91)
        masks = {"keep_h": dropout_mask(rng, (B, P), 0.3), "zone_c": (rng.random((T, B, H)) < 0.4) * 1.0,
                 "zone_h": (rng.random((T, B, P)) < 0.4) * 1.0}

    def forward(**kwargs):
        return reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["h0"],
                                      case["c0"], case.get("w_hr"), w_ch=case.get("w_ch"), **masks, **kwargs)

    runs = plain_and_none(forward, reference.lstm_backward, (weights["dy"], weights["dh_n"], weights["dc_n"]),
                          reference.LSTM_LN_NAMES)
    assert_bitwise_equal(*runs)
    # the step's gates tuple keeps its six entries without ln
    assert len(reference.lstm_cell(case["x"][0], case["h0"], case["c0"], case["w_ih"], case["w_hh"])[2]) == 6


def test_gru_without_layer_norm_is_the_plain_call_bit_for_bit():
    case, weights = make_gru(92)

    def forward(**kwargs):
        return reference.gru_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["h0"],
                                     **kwargs)

    runs = plain_and_none(forward, reference.gru_backward, (weights["dy"], weights["dh_n"]), reference.GRU_LN_NAMES)
    assert_bitwise_equal(*runs)
    assert len(reference.gru_cell(case["x"][0], case["h0"], case["w_ih"], case["w_hh"])[1]) == 4


@pytest.mark.parametrize("name", NETWORKS)
def test_cells_pass_no_ln_without_ln_parameters(name):
    kind, P = NETWORKS[name]
    params, inputs, _, _ = make_network(kind, P, 1, seed=93)
    plain = {k: v for k, v in params.items() if not k.startswith("ln_")}
    _, _, cache = run_network(kind, P, plain, inputs, 1, None)
    assert all(c["ln"] is None for per_sequence in cache["caches"] for c in per_sequence)


# -- what layer norm is for ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_layer_norm_makes_the_output_invariant_to_the_scale_of_w_hh_when_the_input_is_zero(name):
    """x = 0: W_ih x = 0 normalizes to β_ih, and LN(s W_hh h) = LN(W_hh h) up to ε for s > 0."""
    case, weights = make_lstm(100) if name == "LSTM" else make_gru(100)
    case["x"][:] = 0.0
    forward = lstm_forward if name == "LSTM" else (lambda case, masks, ln=True: gru_forward(case, ln))
    scaled = dict(case, w_hh=3.0 * case["w_hh"])
    with_ln = forward(case, {})[0], forward(scaled, {})[0]
    without = forward(case, {}, ln=False)[0], forward(scaled, {}, ln=False)[0]
    assert np.max(np.abs(without[1] - without[0])) > 0.05  # the scale matters without LN
    np.testing.assert_allclose(with_ln[1], with_ln[0], rtol=0, atol=INVARIANCE_TOLERANCE)


# -- one step, written out -----------------------------------------------------------------------------

def textbook_ln(v, gamma, beta):
    return gamma * (v - v.mean(axis=-1, keepdims=True)) / np.sqrt(v.var(axis=-1, keepdims=True) + 1e-5) + beta


def test_one_lstm_step_with_layer_norm_and_every_variant_follows_the_equations():
    P = 2
    case, _ = make_lstm(110, P, peephole=True)
    rng = np.random.default_rng(111)
    keep_h, zc, zh = dropout_mask(rng, (B, P), 0.3), rng.random((B, H)), rng.random((B, P))
    x, h, c = case["x"][0], case["h0"], case["c0"]
    a = (textbook_ln(x @ case["w_ih"].T, case["ln_ih_weight"], case["ln_ih_bias"])
         + textbook_ln((keep_h * h) @ case["w_hh"].T, case["ln_hh_weight"], case["ln_hh_bias"])
         + case["b_ih"] + case["b_hh"])  # (B, 4H)
    p_i, p_f, p_o = case["w_ch"]
    i = 1 / (1 + np.exp(-(a[:, :H] + p_i * c)))
    f = 1 / (1 + np.exp(-(a[:, H:2 * H] + p_f * c)))
    g = np.tanh(a[:, 2 * H:3 * H])
    c_tilde = f * c + i * g
    o = 1 / (1 + np.exp(-(a[:, 3 * H:] + p_o * c_tilde)))
    h_tilde = (o * np.tanh(textbook_ln(c_tilde, case["ln_c_weight"], case["ln_c_bias"]))) @ case["w_hr"].T
    ln = {name: case[name] for name in reference.LSTM_LN_NAMES}
    h1, c1, gates = reference.lstm_cell(x, h, c, case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                        case["w_hr"], case["w_ch"], keep_h, zc, zh, ln=ln)
    assert len(gates) == 7
    np.testing.assert_allclose(c1, zc * c + (1 - zc) * c_tilde, rtol=1e-13, atol=1e-15)  # zoneout: c̃, not LN(c̃)
    np.testing.assert_allclose(h1, zh * h + (1 - zh) * h_tilde, rtol=1e-13, atol=1e-15)


def test_one_gru_step_with_layer_norm_follows_the_equations():
    case, _ = make_gru(112)
    x, h = case["x"][0], case["h0"]
    ax = textbook_ln(x @ case["w_ih"].T, case["ln_ih_weight"], case["ln_ih_bias"]) + case["b_ih"]
    ah = textbook_ln(h @ case["w_hh"].T, case["ln_hh_weight"], case["ln_hh_bias"]) + case["b_hh"]
    r = 1 / (1 + np.exp(-(ax[:, :H] + ah[:, :H])))
    z = 1 / (1 + np.exp(-(ax[:, H:2 * H] + ah[:, H:2 * H])))
    n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    ln = {name: case[name] for name in reference.GRU_LN_NAMES}
    h1, _ = reference.gru_cell(x, h, case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], ln=ln)
    np.testing.assert_allclose(h1, (1 - z) * n + z * h, rtol=1e-13, atol=1e-15)
