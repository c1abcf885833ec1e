"""Layer normalization (layer_norm=True, Ba, Kiros and Hinton 2016): the compiled LSTM and GRU
against the NumPy reference (the LSTM alone and with every other variant), finite differences
through the layer API, what LN is for (invariance to the scale of the weights), its parameters,
and what refuses it."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import cells, functional as F
from lstm_ext.testing import TOLERANCE, relative_error

from family import float32_limits, ours_run, random_inputs, reference_run
from test_variants import assert_matches_reference_with_threads, drawn_masks, finite_difference_check, worst_errors

OPTIONS = {
    "layer norm": {"layer_norm": True},
    "GRU": {"kind": "GRU", "layer_norm": True},
    "with peepholes and projection": {"layer_norm": True, "peephole": True, "proj_size": 3},
    "with every variant": {"layer_norm": True, "peephole": True, "zoneout": (0.25, 0.35), "recurrent_dropout": 0.3},
}
SHAPES = {
    "1 layer": {},
    "2 layers bidirectional": {"num_layers": 2, "bidirectional": True},
    "2 layers batch_first dropout": {"num_layers": 2, "batch_first": True, "dropout": 0.3},
}


def layer_with_random_norms(dtype, seed=2, kind="LSTM", **config):
    """A layer whose gains and biases are not the identity 1 and 0 (so that they matter)."""
    layer = getattr(lstm_ext, kind)(4, 6, dtype=dtype, seed=seed, **config)
    rng = np.random.default_rng(seed)
    for name, value in layer.named_parameters().items():
        if name.startswith("ln_"):
            value[...] = (1.0 if "_weight" in name else 0.0) + 0.3 * rng.standard_normal(value.shape)
    return layer


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]], ids=["all steps", "lengths"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTIONS)
def test_layer_matches_reference(options, shape, lengths, dtype):
    layer = layer_with_random_norms(dtype, **OPTIONS[options], **SHAPES[shape]).train()
    T, B = 6, 3
    x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(5))
    rng_state = layer.rng_state()
    ours = ours_run(layer, x, state, dy, dstate, lengths)
    cell_masks, dropout_masks = drawn_masks(layer, rng_state, T, B)
    expected = reference_run(layer, x, state, dy, dstate, lengths, dropout_masks, cell_masks)
    errors = worst_errors(ours, expected)
    if dtype == np.float32:
        # Layer normalization divides by each row's σ, so float32's rounding is magnified where a
        # row's variance is small: each tensor's limit is 1e-5 or, above it, what the error model
        # of lstm_ext.testing.float32_limits gives (from the float64 reference alone).
        tolerance = float32_limits(layer, x, state, dy, dstate, lengths, dropout_masks, cell_masks, expected)
    else:
        tolerance = {name: TOLERANCE[np.dtype(dtype)] for name in errors}
    bad = {name: f"{error:.1e} (limit {tolerance[name]:.1e})" for name, error in errors.items()
           if not error <= tolerance[name]}
    assert not bad, f"worst relative error per tensor above its limit: {bad}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B", [1, 40], ids=["B=1", "B=40 (rows split)"])
@pytest.mark.parametrize("kind, options", [("LSTM", OPTIONS["with every variant"]), ("GRU", {"layer_norm": True})])
def test_layer_norm_matches_reference_at_any_batch_and_team(kind, options, B, threads):
    assert_matches_reference_with_threads(getattr(lstm_ext, kind)(5, 37, dtype=np.float64, seed=3, **options), B,
                                          threads)


def test_inference_matches_reference():
    layer = layer_with_random_norms(np.float64, num_layers=2, bidirectional=True, layer_norm=True,
                                    zoneout=(0.2, 0.1)).eval()
    x, state, _, _ = random_inputs(layer, 5, 3, np.random.default_rng(0))
    y, (h_n, c_n) = layer(x, state, lengths=[5, 1, 3])
    masks = [[{"zone_c": 0.2, "zone_h": 0.1}] * 2] * 2
    expected = reference_run(layer, x, state, np.zeros_like(y), None, [5, 1, 3], None, masks)
    for name, ours in {"y": y, "h_n": h_n, "c_n": c_n}.items():
        assert relative_error(ours, expected[name]) <= 1e-10, name


@pytest.mark.parametrize("options", ["layer norm", "with every variant", "GRU"])
def test_finite_differences_through_the_layer_api(options):
    config = dict(OPTIONS[options])
    layer = getattr(lstm_ext, config.pop("kind", "LSTM"))(3, 5, num_layers=2, bidirectional=True, dtype=np.float64,
                                                          seed=6, **config).train()
    rng = np.random.default_rng(8)
    for name, value in layer.named_parameters().items():  # gains and biases away from 1 and 0
        if name.startswith("ln_"):
            value += 0.3 * rng.standard_normal(value.shape)
    T, B = 5, 3
    x = rng.standard_normal((T, B, 3))
    dy = rng.standard_normal((T, B, 2 * layer.output_size))
    worst = finite_difference_check(layer, x, dy, lengths=[5, 2, 4])
    bad = {name: f"{error:.1e}" for name, error in worst.items() if not error < 1e-7}
    assert not bad and "ln_hh_bias_l1_reverse" in worst, f"worst relative error per tensor: {bad}"


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_the_output_does_not_depend_on_the_scale_of_the_weights(kind):
    # LN_ih(c · W_ih x) = LN_ih(W_ih x) for c > 0 (up to ε): what layer normalization is for. (The
    # recurrent products of small h have variances near ε, where the same holds only roughly.)
    layer = getattr(lstm_ext, kind)(4, 16, dtype=np.float64, seed=1, layer_norm=True)
    x = 10 * np.random.default_rng(0).standard_normal((8, 3, 4))  # variances far above ε
    y, _ = layer(x)
    layer.weight_ih_l0 *= 7.0
    y_scaled, _ = layer(x)
    assert relative_error(y_scaled, y) < 1e-4
    plain = getattr(lstm_ext, kind)(4, 16, dtype=np.float64, seed=1)
    y_plain, _ = plain(x)
    plain.weight_ih_l0 *= 7.0
    assert relative_error(plain(x)[0], y_plain) > 0.1  # without it the output changes


def test_parameters_start_as_the_identity_and_the_rest_as_the_plain_layers():
    plain = lstm_ext.LSTM(3, 4, num_layers=2, seed=5)
    normed = lstm_ext.LSTM(3, 4, num_layers=2, seed=5, layer_norm=True)
    shapes = {name: value.shape for name, value in normed.named_parameters().items() if name.startswith("ln_")}
    assert shapes == {f"{name}_l{k}": ((4,) if name.startswith("ln_c") else (16,))
                      for k in range(2) for name in cells.LAYER_NORM_NAMES}
    for name, value in normed.named_parameters().items():
        if name.startswith("ln_"):
            assert np.all(value == (1.0 if name.split("_l")[0].endswith("weight") else 0.0)), name
        else:
            np.testing.assert_array_equal(value, plain.state_dict()[name], err_msg=name)


def test_a_saved_model_keeps_layer_norm(tmp_path):
    model = lstm_ext.Sequential(lstm_ext.LSTM(3, 6, batch_first=True, seed=0, layer_norm=True),
                                lstm_ext.LastStep(), lstm_ext.Linear(6, 1, seed=1))
    model.compile("mse", lstm_ext.Adam(lr=0.01))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5, 3)).astype(np.float32), rng.standard_normal((16, 1)).astype(np.float32)
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = lstm_ext.load(path)
    assert loaded.layers[0].layer_norm is True
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_layer_norm_arguments_are_checked():
    with pytest.raises(TypeError, match=r"layer_norm: expected True or False, got str 'yes'"):
        lstm_ext.LSTM(3, 4, layer_norm="yes")
    rng = np.random.default_rng(0)
    T, B, I, H = 3, 2, 3, 4
    x, w_ih, w_hh = rng.standard_normal((T, B, I)), rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    ln = {name: np.ones(H if name.startswith("ln_c") else 4 * H) for name in cells.LAYER_NORM_NAMES}
    with pytest.raises(ValueError, match=r"ln_c_bias: expected all six layer normalization arrays"):
        F.lstm_forward(x, w_ih, w_hh, **{**ln, "ln_c_bias": None})
    with pytest.raises(ValueError, match=r"ln_hh_weight: expected shape \(4H,\) = \(16,\), got \(4,\)"):
        F.lstm_forward(x, w_ih, w_hh, **{**ln, "ln_hh_weight": np.ones(H)})


@pytest.mark.parametrize("where, call", [
    ("torch.nn.LSTM", lambda layer: layer.to_torch()),
    ("Stream", lambda layer: layer.stream()),
    ("gradient_flow", lambda layer: lstm_ext.gradient_flow(layer, np.zeros((3, 1, 3)))),
    ("ONNX's recurrent operators", lambda layer: lstm_ext.export.onnx_model(layer)),  # refused before importing onnx
])
def test_what_cannot_run_layer_norm_says_so(where, call):
    with pytest.raises(ValueError, match=rf"{where} cannot run a LSTM with layer normalization"):
        call(lstm_ext.LSTM(3, 4, layer_norm=True))


def test_the_gru_takes_four_layer_norm_arrays():
    layer = lstm_ext.GRU(3, 4, layer_norm=True)
    assert [name for name in layer.named_parameters() if name.startswith("ln_")] == [
        "ln_ih_weight_l0", "ln_ih_bias_l0", "ln_hh_weight_l0", "ln_hh_bias_l0"]
    rng = np.random.default_rng(0)
    x, w_ih, w_hh = rng.standard_normal((3, 2, 3)), rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    with pytest.raises(ValueError, match=r"ln_hh_bias: expected all four layer normalization arrays"):
        F.gru_forward(x, w_ih, w_hh, ln_ih_weight=np.ones(12), ln_ih_bias=np.zeros(12), ln_hh_weight=np.ones(12))
    with pytest.raises(TypeError, match=r"RNN: unexpected argument\(s\) \['layer_norm'\]"):
        lstm_ext.layers.RNNBase.__init__(lstm_ext.RNN.__new__(lstm_ext.RNN), 3, 4, layer_norm=True)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_row_far_from_zero_keeps_float32_accuracy(kind):
    # The input products' rows x · W_ih have a mean about 400 times their spread, and they are exact
    # in float32 here (x = 1000 + a small integer, W_ih = 1 + a small multiple of 1/1024, one input:
    # 20 significant bits), so what layer normalization computes is all the float32 layer can lose: its mean and
    # r are taken in double and v − μ keeps the digits that v and μ share. Before, μ rounded to
    # float32 first: the worst tensor was off by 3.9e-4 (LSTM) and 3.0e-5 (GRU) on this case; now
    # 1.1e-6 and 2.7e-7.
    # (dx is left out: LN(x · w) does not depend on x > 0, so dx is 0 up to rounding.)
    def run(dtype):
        layer = getattr(lstm_ext, kind)(1, 16, layer_norm=True, dtype=dtype, seed=0)
        rows = layer.weight_ih_l0.shape[0]
        offsets = np.random.default_rng(1).integers(-4, 5, size=(rows, 1))
        layer.load_state_dict({**layer.state_dict(), "weight_ih_l0": 1 + offsets / 1024})
        x = 1000 + np.random.default_rng(2).integers(-3, 4, size=(6, 3, 1))
        y, _ = layer(x.astype(dtype))
        layer.backward(np.random.default_rng(3).standard_normal(y.shape).astype(dtype))
        return {"y": y, **{"d" + name: grad for name, grad in layer.grads.items()}}

    exact, ours = run(np.float64), run(np.float32)
    errors = {name: relative_error(ours[name], exact[name]) for name in exact}
    assert max(errors.values()) <= TOLERANCE[np.dtype(np.float32)], {name: f"{e:.1e}" for name, e in errors.items()}
