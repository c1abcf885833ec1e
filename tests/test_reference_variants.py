"""The LSTM's variants in the oracle, proven: peepholes, recurrent dropout and zoneout (alone and
together, with a projection, and through the stacked bidirectional network with lengths) by
central finite differences in float64 for every gradient; and the plain cell unchanged when
they are absent or neutral."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ext import cells, reference
from lstm_ext.testing import FD_TOLERANCE, fd_errors

FD_SAMPLES = 12  # elements checked per tensor: its largest gradient and random others
FD_SAMPLES_NETWORK = 8  # fewer through the network (27 tensors, each evaluation 12 sequences)

T, B, I, H = 4, 3, 3, 4
GRAD_OF = {"x": "dx", "h0": "dh0", "c0": "dc0", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih",
           "b_hh": "db_hh", "w_hr": "dw_hr", "w_ch": "dw_ch"}


# -- helpers ---------------------------------------------------------------------------------------

def assert_within_tolerance(errors):
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_TOLERANCE, (f"worst {worst}: {errors[worst]:.2e}; all "
                                          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))


def make_layer(seed, P=0, peephole=False):
    """One layer's tensors (weights larger than PyTorch's init, so that gates leave their linear
    regime) and the loss weights dy, dh_n, dc_n."""
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
    }
    if P:
        case["w_hr"] = rng.uniform(-0.8, 0.8, (P, H))
    if peephole:
        case["w_ch"] = rng.uniform(-1.5, 1.5, (3, H))
    weights = {"dy": rng.standard_normal((T, B, H_out)), "dh_n": rng.standard_normal((B, H_out)),
               "dc_n": rng.standard_normal((B, H))}
    return case, weights


def dropout_mask(rng, shape, p):
    """Recurrent dropout: 0 or 1 / (1 − p)."""
    return (rng.random(shape) >= p) / (1.0 - p)


def forward(case, masks):
    return reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["h0"],
                                  case["c0"], case.get("w_hr"), w_ch=case.get("w_ch"), **masks)


def layer_loss(case, weights, masks):
    """L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n: its gradients w.r.t. y, h_n, c_n are dy, dh_n, dc_n."""
    y, h_n, c_n, _ = forward(case, masks)
    return float(np.sum(weights["dy"] * y) + np.sum(weights["dh_n"] * h_n) + np.sum(weights["dc_n"] * c_n))


# -- one layer ---------------------------------------------------------------------------------------

def masks_for(variant, rng, P=0):
    H_out = P or H
    if variant == "peephole":
        return {}
    if variant == "recurrent dropout":
        return {"keep_h": dropout_mask(rng, (B, H_out), 0.3)}
    if variant == "zoneout 0/1":
        return {"zone_c": (rng.random((T, B, H)) < 0.4) * 1.0, "zone_h": (rng.random((T, B, H_out)) < 0.4) * 1.0}
    if variant == "zoneout eval":
        return {"zone_c": np.full((T, B, H), 0.3), "zone_h": np.full((T, B, H_out), 0.15)}
    if variant == "zoneout eval numbers":
        return {"zone_c": 0.3, "zone_h": 0.15}
    if variant == "all with projection":
        return {"keep_h": dropout_mask(rng, (B, H_out), 0.3), "zone_c": (rng.random((T, B, H)) < 0.4) * 1.0,
                "zone_h": (rng.random((T, B, H_out)) < 0.4) * 1.0}
    raise AssertionError(variant)


VARIANTS = {  # name: (proj_size, peepholes)
    "peephole": (0, True),
    "recurrent dropout": (0, False),
    "zoneout 0/1": (0, False),
    "zoneout eval": (0, False),
    "zoneout eval numbers": (0, False),
    "all with projection": (2, True),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_gradients_match_finite_differences(variant):
    P, peephole = VARIANTS[variant]
    seed = len(variant)
    case, weights = make_layer(seed, P, peephole)
    masks = masks_for(variant, np.random.default_rng(seed + 1), P)
    *_, cache = forward(case, masks)
    analytic = reference.lstm_backward(weights["dy"], weights["dh_n"], weights["dc_n"], cache)
    assert (analytic["dw_ch"] is None) == (not peephole) and (analytic["dw_hr"] is None) == (not P)

    analytic = {name: analytic[GRAD_OF[name]] for name in case}
    errors = fd_errors(lambda: layer_loss(case, weights, masks), case, analytic, seed, FD_SAMPLES)
    assert set(errors) >= {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"}
    assert_within_tolerance(errors)


# -- the plain cell is unchanged --------------------------------------------------------------------

def run_layer(case, weights, **kwargs):
    """Forward + backward of one layer: a dict of every tensor."""
    y, h_n, c_n, cache = reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                                case["h0"], case["c0"], case.get("w_hr"), **kwargs)
    grads = reference.lstm_backward(weights["dy"], weights["dh_n"], weights["dc_n"], cache)
    return {"y": y, "h_n": h_n, "c_n": c_n, **{k: v for k, v in grads.items() if v is not None}}


def assert_bitwise_equal(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name, strict=True)


@pytest.mark.parametrize("P", [0, 2])
def test_absent_or_neutral_variants_are_the_plain_cell_bit_for_bit(P):
    case, weights = make_layer(7, P)
    plain = run_layer(case, weights)
    H_out = P or H
    absent = run_layer(case, weights, w_ch=None, keep_h=None, zone_c=None, zone_h=None)
    assert_bitwise_equal(plain, absent)
    assert absent.get("dw_ch") is None
    # Neutral values: no peephole (zeros), keep every unit (ones), never zone out (zeros).
    neutral = run_layer(case, weights, w_ch=np.zeros((3, H)), keep_h=np.ones((B, H_out)),
                        zone_c=np.zeros((T, B, H)), zone_h=np.zeros((T, B, H_out)))
    del neutral["dw_ch"]
    assert_bitwise_equal(plain, neutral)


def test_recurrent_dropout_keeping_every_unit_is_no_dropout_exactly():
    case, weights = make_layer(8)
    assert_bitwise_equal(run_layer(case, weights), run_layer(case, weights, keep_h=np.ones((B, H))))


def test_cell_step_without_variants_is_the_plain_step():
    case, _ = make_layer(9)
    args = (case["x"][0], case["h0"], case["c0"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"])
    h1, c1, (i, f, g, o, m, c_tilde) = reference.lstm_cell(*args)
    assert c_tilde is c1 and h1 is m  # no zoneout, no projection: c_t = c̃_t, h_t = m_t
    np.testing.assert_array_equal(m, o * np.tanh(f * case["c0"] + i * g))


@pytest.mark.parametrize("P", [0, 2])
def test_zoneout_with_all_ones_masks_keeps_the_state(P):
    case, weights = make_layer(10, P, peephole=True)
    H_out = P or H
    masks = {"zone_c": np.ones((T, B, H)), "zone_h": np.ones((T, B, H_out))}
    y, h_n, c_n, cache = forward(case, masks)
    for t in range(T):
        np.testing.assert_array_equal(y[t], case["h0"])
    np.testing.assert_array_equal(h_n, case["h0"])
    np.testing.assert_array_equal(c_n, case["c0"])
    # The state passes straight through: nothing reaches the weights or the input.
    g = reference.lstm_backward(weights["dy"], weights["dh_n"], weights["dc_n"], cache)
    np.testing.assert_allclose(g["dh0"], weights["dh_n"] + weights["dy"].sum(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(g["dc0"], weights["dc_n"])
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr", "dw_ch"):
        if g[name] is not None:
            assert not np.any(g[name]), name


# -- the network: stacked, bidirectional, lengths --------------------------------------------------

LENGTHS = np.array([2, 4, 3])


def make_network(seed, num_layers, P):
    """PyTorch-named parameters with peepholes for every layer and direction, inputs, loss
    weights, and cell masks per layer and direction (full batch)."""
    rng = np.random.default_rng(seed)
    D, H_out = 2, P or H
    params, cell_masks = {}, []
    for k in range(num_layers):
        per_direction = []
        for suffix in (f"_l{k}", f"_l{k}_reverse"):
            params["weight_ih" + suffix] = rng.uniform(-0.8, 0.8, (4 * H, I if k == 0 else D * H_out))
            params["weight_hh" + suffix] = rng.uniform(-0.8, 0.8, (4 * H, H_out))
            params["bias_ih" + suffix] = rng.uniform(-0.6, 0.6, 4 * H)
            params["bias_hh" + suffix] = rng.uniform(-0.6, 0.6, 4 * H)
            params["weight_ch" + suffix] = rng.uniform(-0.8, 0.8, (3, H))
            if P:
                params["weight_hr" + suffix] = rng.uniform(-0.8, 0.8, (P, H))
            per_direction.append({"keep_h": dropout_mask(rng, (B, H_out), 0.3),
                                  "zone_c": (rng.random((T, B, H)) < 0.4) * 1.0,
                                  "zone_h": (rng.random((T, B, H_out)) < 0.4) * 1.0})
        cell_masks.append(per_direction)
    rows = num_layers * D
    inputs = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((rows, B, H_out)),
              "c0": rng.standard_normal((rows, B, H))}
    weights = {"dy": rng.standard_normal((T, B, D * H_out)), "dh_n": rng.standard_normal((rows, B, H_out)),
               "dc_n": rng.standard_normal((rows, B, H))}
    dropout_masks = [dropout_mask(rng, (T, B, D * H_out), 0.4) for _ in range(num_layers - 1)]
    return params, inputs, weights, dropout_masks, cell_masks


def run_network(params, inputs, num_layers, P, dropout_masks, cell_masks):
    return reference.stack_forward(cells.LSTM, inputs["x"], params, num_layers, True, LENGTHS,
                                   [inputs["h0"], inputs["c0"]], dropout_masks, {"proj_size": P}, cell_masks)


def test_network_with_every_variant_matches_finite_differences():
    num_layers, P = 2, 2
    params, inputs, weights, dropout_masks, cell_masks = make_network(20 + P, num_layers, P)
    _, _, cache = run_network(params, inputs, num_layers, P, dropout_masks, cell_masks)
    analytic = reference.stack_backward(weights["dy"], [weights["dh_n"], weights["dc_n"]], cache)
    analytic.update(zip(("dh0", "dc0"), analytic.pop("dstate0")))
    assert {"dweight_ch_l0", "dweight_ch_l0_reverse", "dweight_ch_l1", "dweight_ch_l1_reverse"} <= set(analytic)

    def f():
        y, (h_n, c_n), _ = run_network(params, inputs, num_layers, P, dropout_masks, cell_masks)
        return float(np.sum(weights["dy"] * y) + np.sum(weights["dh_n"] * h_n) + np.sum(weights["dc_n"] * c_n))

    tensors = {**inputs, **params}
    keyed = {name: analytic[{"x": "dx", "h0": "dh0", "c0": "dc0"}.get(name, "d" + name)] for name in tensors}
    errors = fd_errors(f, tensors, keyed, seed=P, count=FD_SAMPLES_NETWORK)
    assert_within_tolerance(errors)
    assert {"d" + name for name in params} | {"dx", "dh0", "dc0"} == set(analytic)  # every gradient checked


def test_network_masks_follow_their_input_steps_in_both_directions():
    """The mask at time index t belongs to input step t: the reverse direction of sequence b is
    the cell run over x[:ℓ_b] reversed with its per-step masks reversed too."""
    P, num_layers = 0, 1
    params, inputs, _, _, cell_masks = make_network(30, num_layers, P)
    y, (h_n, c_n), _ = run_network(params, inputs, num_layers, P, None, cell_masks)
    for direction, suffix in enumerate(("_l0", "_l0_reverse")):
        m = cell_masks[0][direction]
        for b, length in enumerate(LENGTHS):
            order = slice(None, None, -1) if direction else slice(None)
            steps = slice(None, length)
            y_b, h_b, c_b, _ = reference.lstm_forward(
                inputs["x"][steps, b:b + 1][order], params["weight_ih" + suffix], params["weight_hh" + suffix],
                params["bias_ih" + suffix], params["bias_hh" + suffix], inputs["h0"][direction, b:b + 1],
                inputs["c0"][direction, b:b + 1], w_ch=params["weight_ch" + suffix], keep_h=m["keep_h"][b:b + 1],
                zone_c=m["zone_c"][steps, b:b + 1][order], zone_h=m["zone_h"][steps, b:b + 1][order])
            np.testing.assert_array_equal(y[steps, b, direction * H:(direction + 1) * H], y_b[order][:, 0])
            np.testing.assert_array_equal(y[length:, b, direction * H:(direction + 1) * H], 0.0)
            np.testing.assert_array_equal(h_n[direction, b], h_b[0])
            np.testing.assert_array_equal(c_n[direction, b], c_b[0])


def test_network_without_cell_masks_is_unchanged_bit_for_bit():
    params, inputs, weights, dropout_masks, _ = make_network(40, 2, 0)
    plain_params = {k: v for k, v in params.items() if not k.startswith("weight_ch")}
    runs = []
    for cell_masks in (None, [[{}, {}], [{}, {}]]):
        y, state_n, cache = run_network(plain_params, inputs, 2, 0, dropout_masks, cell_masks)
        g = reference.stack_backward(weights["dy"], [weights["dh_n"], weights["dc_n"]], cache)
        runs.append({"y": y, "h_n": state_n[0], "c_n": state_n[1], "dx": g["dx"], "dh0": g["dstate0"][0],
                     "dc0": g["dstate0"][1], **{k: v for k, v in g.items() if k.startswith("d") and k != "dstate0"}})
    assert not any(k.startswith("dweight_ch") for k in runs[0])
    assert_bitwise_equal(*runs)
    # and one layer's forward direction of one sequence is lstm_forward itself, called the plain way
    y, _, _ = run_network(plain_params, inputs, 1, 0, None, None)
    y_b, h_b, c_b, _ = reference.lstm_forward(inputs["x"][:LENGTHS[0], :1], params["weight_ih_l0"],
                                              params["weight_hh_l0"], params["bias_ih_l0"], params["bias_hh_l0"],
                                              inputs["h0"][0, :1], inputs["c0"][0, :1])
    np.testing.assert_array_equal(y[:LENGTHS[0], 0, :H], y_b[:, 0])


@pytest.mark.parametrize("kind", [cells.GRU, cells.RNN])
def test_kinds_without_cell_masks_refuse_them(kind):
    rng = np.random.default_rng(0)
    G = kind.num_gates * H
    w = {"weight_ih": rng.standard_normal((G, I)), "weight_hh": rng.standard_normal((G, H))}
    options = {"nonlinearity": "tanh"}
    x = rng.standard_normal((T, B, I))
    kind.reference_forward(x, w, [None], options, {})  # empty: fine
    with pytest.raises(ValueError, match="masks"):
        kind.reference_forward(x, w, [None], options, {"zone_h": np.zeros((T, B, H))})


def test_one_step_with_every_variant_follows_the_equations():
    """One step written out from the equations (peephole o on the new cell, ONNX's semantics)."""
    P = 2
    case, _ = make_layer(50, P, peephole=True)
    rng = np.random.default_rng(51)
    keep_h, zc, zh = dropout_mask(rng, (B, P), 0.3), rng.random((B, H)), rng.random((B, P))
    x, h, c = case["x"][0], case["h0"], case["c0"]
    a = x @ case["w_ih"].T + case["b_ih"] + (keep_h * h) @ case["w_hh"].T + case["b_hh"]  # (B, 4H)
    p_i, p_f, p_o = case["w_ch"]
    i = 1 / (1 + np.exp(-(a[:, :H] + p_i * c)))
    f = 1 / (1 + np.exp(-(a[:, H:2 * H] + p_f * c)))
    g = np.tanh(a[:, 2 * H:3 * H])
    c_tilde = f * c + i * g
    o = 1 / (1 + np.exp(-(a[:, 3 * H:] + p_o * c_tilde)))
    h_tilde = (o * np.tanh(c_tilde)) @ case["w_hr"].T
    h1, c1, _ = reference.lstm_cell(x, h, c, case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], case["w_hr"],
                                    case["w_ch"], keep_h, zc, zh)
    np.testing.assert_allclose(c1, zc * c + (1 - zc) * c_tilde, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h1, zh * h + (1 - zh) * h_tilde, rtol=1e-13, atol=1e-15)
