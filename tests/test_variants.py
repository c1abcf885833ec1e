"""The LSTM variants (peepholes, zoneout, recurrent dropout): the compiled layer against the NumPy
reference with the same masks, finite differences through the layer API, exact equality with the
plain cell where a variant is off, the masks' reproducibility, and what refuses a variant."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs

import lstm_ext
from lstm_ext import cells, functional as F
from lstm_ext.testing import FD_TOLERANCE, TOLERANCE, fd_errors, relative_error

from family import ours_run, random_inputs, reference_run

VARIANTS = {
    "peephole": {"peephole": True},
    "zoneout": {"zoneout": (0.3, 0.2)},
    "recurrent dropout": {"recurrent_dropout": 0.4},
    "all": {"peephole": True, "zoneout": (0.25, 0.35), "recurrent_dropout": 0.3},
    "all, projection": {"peephole": True, "zoneout": (0.25, 0.35), "recurrent_dropout": 0.3, "proj_size": 3},
}
SHAPES = {
    "1 layer": {},
    "2 layers bidirectional": {"num_layers": 2, "bidirectional": True},
    "2 layers batch_first dropout": {"num_layers": 2, "batch_first": True, "dropout": 0.3},
}


def drawn_masks(layer, rng_state, T, B):
    """The masks a training forward draws from the generator state `rng_state`, replayed as
    layers.RNNBase.forward draws them (each layer's cell masks, then the dropout mask after it):
    (cell_masks per layer and direction for reference.stack_forward, dropout masks)."""
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    D, width = layer.num_directions, layer.num_directions * layer.output_size
    cell_masks, dropout_masks = [], []
    for k in range(layer.num_layers):
        masks = layer.cell.draw_masks(rng, layer.options, T, B, D, layer.hidden_size, layer.dtype, layer.training)
        cell_masks.append([{name: value if np.isscalar(value) or D == 1 else value[direction]
                            for name, value in masks.items()} for direction in range(D)])
        if layer.training and layer.dropout > 0 and k < layer.num_layers - 1:
            keep = rng.random((T, B, width)) >= layer.dropout
            dropout_masks.append(keep.astype(layer.dtype) / layer.dtype.type(1.0 - layer.dropout))
    return cell_masks, (dropout_masks or None)


def worst_errors(ours, expected):
    assert set(ours) == set(expected)
    return {name: relative_error(ours[name], expected[name]) for name in expected}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]], ids=["all steps", "lengths"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_matches_reference_with_the_same_masks(variant, shape, lengths, dtype):
    layer = lstm_ext.LSTM(4, 6, dtype=dtype, seed=2, **VARIANTS[variant], **SHAPES[shape])
    layer.train()
    T, B = 6, 3
    x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(5))
    rng_state = layer.rng_state()
    ours = ours_run(layer, x, state, dy, dstate, lengths)
    cell_masks, dropout_masks = drawn_masks(layer, rng_state, T, B)
    expected = reference_run(layer, x, state, dy, dstate, lengths, dropout_masks, cell_masks)
    errors = worst_errors(ours, expected)
    bad = {name: f"{error:.1e}" for name, error in errors.items() if not error <= TOLERANCE[np.dtype(dtype)]}
    assert not bad, f"worst relative error per tensor above {TOLERANCE[np.dtype(dtype)]:.0e}: {bad}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B", [1, 40], ids=["B=1", "B=40 (rows split)"])
def test_every_variant_matches_reference_at_any_batch_and_team(B, threads):
    assert_matches_reference_with_threads(lstm_ext.LSTM(5, 37, dtype=np.float64, seed=3, **VARIANTS["all"]), B,
                                          threads)


def assert_matches_reference_with_threads(layer, B, threads):
    """Training forward and backward of `layer` (float64) at batch B on `threads` threads, with
    lengths, against the reference with the masks it drew: 1e-10."""
    previous = lstm_ext.get_num_threads()
    lstm_ext.set_num_threads(threads)
    try:
        layer.train()
        T = 5
        x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(1))
        lengths = np.random.default_rng(2).integers(1, T + 1, B)
        rng_state = layer.rng_state()
        ours = ours_run(layer, x, state, dy, dstate, lengths)
        cell_masks, _ = drawn_masks(layer, rng_state, T, B)
        errors = worst_errors(ours, reference_run(layer, x, state, dy, dstate, lengths, None, cell_masks))
        assert max(errors.values()) <= 1e-10, {name: f"{e:.1e}" for name, e in errors.items()}
    finally:
        lstm_ext.set_num_threads(previous)


def test_inference_uses_the_zoneout_expectation_and_no_recurrent_dropout():
    layer = lstm_ext.LSTM(4, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=4,
                          **VARIANTS["all"]).eval()
    T, B = 5, 3
    x, state, _, _ = random_inputs(layer, T, B, np.random.default_rng(0))
    rng_state = layer.rng_state()
    y, (h_n, c_n) = layer(x, state)
    assert layer.rng_state() == rng_state  # inference draws nothing
    z_c, z_h = layer.zoneout
    masks = [[{"zone_c": z_c, "zone_h": z_h}] * 2] * 2
    expected = reference_run(layer, x, state, np.zeros_like(y), None, None, None, masks)
    for name, ours in {"y": y, "h_n": h_n, "c_n": c_n}.items():
        assert relative_error(ours, expected[name]) <= 1e-10, name


def finite_difference_check(layer, x, dy, lengths, picks=7):
    """Analytic gradients of L = Σ dy ⊙ y against central differences with the masks held fixed
    (each forward starts from the same generator state); the worst relative error per tensor."""
    rng_state = layer.rng_state()

    def loss():
        layer.set_rng_state(rng_state)
        y, _ = layer(x, lengths=lengths)
        return float(np.sum(dy * y))

    layer.zero_grad()
    layer.set_rng_state(rng_state)
    layer(x, lengths=lengths)
    dx, _ = layer.backward(dy)
    tensors = {"x": x, **layer.named_parameters()}
    analytic = {"x": dx, **{name: layer.grads[name] for name in layer.named_parameters()}}
    return fd_errors(loss, tensors, analytic, seed=0, count=picks)


@pytest.mark.parametrize("variant", ["all", "all, projection"])
def test_finite_differences_through_the_layer_api(variant):
    layer = lstm_ext.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=np.float64, seed=6,
                          **VARIANTS[variant]).train()
    T, B = 5, 3
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, 3))
    dy = rng.standard_normal((T, B, 2 * layer.output_size))
    worst = finite_difference_check(layer, x, dy, lengths=[5, 2, 4])
    bad = {name: f"{error:.1e}" for name, error in worst.items() if not error < FD_TOLERANCE}
    assert not bad and "weight_ch_l1_reverse" in worst, f"worst relative error per tensor: {bad}"


# -- exact equality with the plain cell --------------------------------------------------------------

def plain_and_variant(variant_options, training, dtype=np.float32):
    plain = lstm_ext.LSTM(4, 9, num_layers=2, bidirectional=True, dtype=dtype, seed=1).train(training)
    other = lstm_ext.LSTM(4, 9, num_layers=2, bidirectional=True, dtype=dtype, seed=1,
                          **variant_options).train(training)
    other.load_state_dict(plain.state_dict())
    return plain, other


@pytest.mark.parametrize("options, training", [
    ({"zoneout": 0.0, "recurrent_dropout": 0.0, "peephole": False}, True),
    ({"recurrent_dropout": 0.5}, False),  # recurrent dropout is for training only
], ids=["variants off", "recurrent dropout in inference"])
def test_a_variant_that_is_off_is_the_plain_cell_bit_for_bit(options, training):
    plain, other = plain_and_variant(options, training)
    x, state, dy, dstate = random_inputs(plain, 7, 5, np.random.default_rng(2))
    a, b = ours_run(plain, x, state, dy, dstate, [7, 3, 5, 1, 6]) if training else None, None
    if training:
        b = ours_run(other, x, state, dy, dstate, [7, 3, 5, 1, 6])
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    else:
        ya, sa = plain(x, state, lengths=[7, 3, 5, 1, 6])
        yb, sb = other(x, state, lengths=[7, 3, 5, 1, 6])
        assert np.array_equal(ya, yb) and all(np.array_equal(p, q) for p, q in zip(sa, sb))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neutral_masks_give_the_plain_cell(dtype):
    # Zero peepholes, a recurrent dropout mask of ones and zoneout masks of zeros: the plain cell's
    # outputs, states and gradients bit for bit, through every variant's code path: with every
    # multiply-add written out (issue 19), a zero term adds exactly zero and a mask of ones
    # multiplies by exactly one. (Before, the compiler fused the plain cell's backward differently:
    # the gradients differed by rounding.)
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 4, 3, 20
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w_ih, w_hh, b = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H)), rng.standard_normal(4 * H)
    dy = rng.standard_normal((T, B, H))
    x, h0, c0, w_ih, w_hh, b, dy = (a.astype(dtype) for a in (x, h0, c0, w_ih, w_hh, b, dy))
    lengths = [6, 2, 5, 3]
    plain = F.lstm_forward(x, w_ih, w_hh, b, b, h0, c0, lengths=lengths, training=True)
    plain_g = F.lstm_backward(dy, None, None, x, w_ih, w_hh, plain.workspace, lengths=lengths)
    neutral = dict(w_ch=np.zeros((3, H), dtype), keep_h=np.ones((B, H), dtype), zone_c=np.zeros((T, B, H), dtype),
                   zone_h=np.zeros((T, B, H), dtype))
    out = F.lstm_forward(x, w_ih, w_hh, b, b, h0, c0, lengths=lengths, training=True, **neutral)
    g = F.lstm_backward(dy, None, None, x, w_ih, w_hh, out.workspace, lengths=lengths, **neutral)
    for name in ("y", "h_n", "c_n"):
        np.testing.assert_array_equal(getattr(out, name), getattr(plain, name), err_msg=name)
    for name in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih"):
        np.testing.assert_array_equal(getattr(g, name), getattr(plain_g, name), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", [
    {}, {"num_layers": 2, "bidirectional": True}, {"proj_size": 3}, {"zoneout": (0.2, 0.3)},
    {"recurrent_dropout": 0.4}, {"layer_norm": True}, {"batch_first": True, "dropout": 0.3, "num_layers": 2},
], ids=["plain", "2 layers bidirectional", "projection", "zoneout", "recurrent dropout", "layer norm",
        "batch_first dropout"])
def test_zero_peepholes_are_the_layer_without_them_bit_for_bit(options, dtype):
    # A layer with peephole=True whose weight_ch are all zero against the same layer without
    # peepholes (same seed: the same masks): outputs, states and every gradient the same bits.
    plain = lstm_ext.LSTM(4, 9, dtype=dtype, seed=5, **options)
    peephole = lstm_ext.LSTM(4, 9, dtype=dtype, seed=5, peephole=True, **options)
    peephole.load_state_dict({**plain.state_dict(), **{name: np.zeros_like(value)
                                                       for name, value in peephole.state_dict().items()
                                                       if name.startswith("weight_ch")}})
    x, state, dy, dstate = random_inputs(plain, 7, 5, np.random.default_rng(6))
    a = ours_run(plain, x, state, dy, dstate, [7, 3, 5, 1, 6])
    b = ours_run(peephole, x, state, dy, dstate, [7, 3, 5, 1, 6])
    assert {k for k in b if not k.startswith("dweight_ch")} == a.keys()
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


@pytest.mark.parametrize("options", [{"peephole": True}, {"layer_norm": True}, {"peephole": True, "layer_norm": True}],
                         ids=["peephole", "layer norm", "both"])
def test_a_variant_layer_has_the_plain_layers_weights_for_the_same_seed(options):
    # The variants' own weights (peepholes) come from a generator of their own: PyTorch's weights of
    # every layer and direction are those of the plain layer with the same seed.
    plain = lstm_ext.LSTM(4, 9, num_layers=3, bidirectional=True, proj_size=2, seed=7)
    variant = lstm_ext.LSTM(4, 9, num_layers=3, bidirectional=True, proj_size=2, seed=7, **options)
    for name, value in plain.state_dict().items():
        np.testing.assert_array_equal(variant.state_dict()[name], value, err_msg=name)
    peepholes = [value for name, value in variant.state_dict().items() if name.startswith("weight_ch")]
    assert len(peepholes) == (6 if options.get("peephole") else 0)
    assert all(np.all(np.abs(p) <= 1 / 3) and np.unique(p).size == p.size for p in peepholes)  # U(±1/√H), distinct


def test_zoneout_masks_of_ones_keep_the_state():
    rng = np.random.default_rng(4)
    T, B, I, H = 5, 3, 2, 8
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    out = F.lstm_forward(x, w_ih, w_hh, None, None, h0, c0, zone_c=1.0, zone_h=np.ones((T, B, H)))
    np.testing.assert_array_equal(out.h_n, h0)
    np.testing.assert_array_equal(out.c_n, c0)
    np.testing.assert_array_equal(out.y, np.broadcast_to(h0, (T, B, H)))


# -- masks: reproducible, fresh at every call, saved with the model -------------------------------

def test_masks_are_reproducible_from_the_seed_and_fresh_at_every_forward():
    def run(layer, x):
        y, _ = layer(x)
        return y

    x = np.random.default_rng(0).standard_normal((6, 3, 4)).astype(np.float32)
    a = lstm_ext.LSTM(4, 8, seed=11, **VARIANTS["all"]).train()
    b = lstm_ext.LSTM(4, 8, seed=11, **VARIANTS["all"]).train()
    first_a, first_b = run(a, x), run(b, x)
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.array_equal(run(a, x), first_a)  # new masks at the next forward
    state = a.rng_state()
    again = run(a, x)
    a.set_rng_state(state)
    np.testing.assert_array_equal(run(a, x), again)


def test_a_saved_model_keeps_its_variants_and_mask_generator(tmp_path):
    model = lstm_ext.Sequential(lstm_ext.LSTM(3, 6, batch_first=True, seed=0, **VARIANTS["all"]),
                                lstm_ext.LastStep(), lstm_ext.Linear(6, 1, seed=1))
    model.compile("mse", lstm_ext.Adam(lr=0.01))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5, 3)).astype(np.float32), rng.standard_normal((16, 1)).astype(np.float32)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = lstm_ext.load(path)
    layer = loaded.layers[0]
    assert (layer.peephole, layer.zoneout, layer.recurrent_dropout) == (True, (0.25, 0.35), 0.3)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    loaded.fit(X, y, epochs=1, batch_size=8, verbose=0)  # the same masks: the same training
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)


# -- bad arguments and what cannot run a variant --------------------------------------------------

@pytest.mark.parametrize("options, error, message", [
    ({"peephole": 1}, TypeError, r"peephole: expected True or False, got int 1"),
    ({"zoneout": (0.1, 1.0)}, ValueError, r"zoneout\[1\] \(z_h\): expected a probability in \[0, 1\), got 1.0"),
    ({"zoneout": (0.1, 0.2, 0.3)}, ValueError, r"zoneout: expected a pair \(z_c, z_h\) .* got tuple of length 3"),
    ({"zoneout": "0.1"}, TypeError, r"zoneout: expected a pair .* got str '0.1'"),
    ({"recurrent_dropout": -0.1}, ValueError, r"recurrent_dropout: expected a probability in \[0, 1\), got -0.1"),
    ({"recurrent_dropout": None}, TypeError, r"recurrent_dropout: expected a probability in \[0, 1\), got NoneType"),
])
def test_bad_variant_arguments_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        lstm_ext.LSTM(3, 4, **options)


def test_bad_variant_arrays_are_refused_with_their_shapes():
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 2, 3, 5
    x, w_ih, w_hh = rng.standard_normal((T, B, I)), rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    with pytest.raises(ValueError, match=r"w_ch: expected shape \(3, H\) = \(3, 5\), got \(4, 5\)"):
        F.lstm_forward(x, w_ih, w_hh, w_ch=np.zeros((4, H)))
    with pytest.raises(ValueError, match=r"keep_h: expected shape \(B, H\) = \(2, 5\), got \(5,\)"):
        F.lstm_forward(x, w_ih, w_hh, keep_h=np.ones(H))
    with pytest.raises(ValueError, match=r"zone_c: expected shape \(T, B, H\) = \(4, 2, 5\), got \(2, 5\)"):
        F.lstm_forward(x, w_ih, w_hh, zone_c=np.zeros((B, H)))
    with pytest.raises(ValueError, match=r"zone_h: expected a zoneout weight in \[0, 1\] .* got 1.5"):
        F.lstm_forward(x, w_ih, w_hh, zone_h=1.5)
    out = F.lstm_forward(x, w_ih, w_hh, zone_c=np.zeros((T, B, H)), training=True)
    # a forward with zoneout, a backward without it
    with pytest.raises(ValueError, match=r"workspace: expected the 1-D workspace"):
        F.lstm_backward(None, None, None, x, w_ih, w_hh, out.workspace)


@pytest.mark.parametrize("options, where, call", [
    ({"peephole": True}, "torch.nn.LSTM", lambda layer: layer.to_torch()),
    ({"zoneout": 0.1}, "Stream", lambda layer: layer.stream()),
    ({"peephole": True}, "Stream", lambda layer: layer.stream()),
    ({"recurrent_dropout": 0.2}, "gradient_flow", lambda layer: lstm_ext.gradient_flow(layer, np.zeros((3, 1, 3)))),
])
def test_what_cannot_run_a_variant_says_so(options, where, call):
    layer = lstm_ext.LSTM(3, 4, **options)
    with pytest.raises(ValueError, match=rf"{where} cannot run a LSTM with "):
        call(layer)


def test_recurrent_dropout_streams_as_the_plain_cell():
    layer = lstm_ext.LSTM(3, 4, recurrent_dropout=0.5, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((5, 1, 3)).astype(np.float32)
    stream = layer.stream()
    steps = np.stack([stream.step(x[t]) for t in range(5)])
    y, _ = layer(x)
    np.testing.assert_allclose(steps, y, rtol=0, atol=1e-6)


def test_cell_options_are_described_in_one_place():
    names = [option.name for option in cells.LSTM.options]
    assert names == ["proj_size", "peephole", "layer_norm", "zoneout", "recurrent_dropout"]
    assert cells.GRU.draw_masks(None, {}, 1, 1, 1, 1, np.float32, True) == {}


# -- the benchmark's torch version computes the same cell ------------------------------------------

@pytest.mark.parametrize("variant", ["plain", "peephole", "zoneout", "recurrent dropout", "all", "layer norm",
                                     "all and layer norm"])
def test_the_benchmarks_torch_jit_cell_is_the_same_function(variant):
    torch = needs("torch")
    from lstm_ext.tools.torch_lstm import lstm_variants

    options = {"layer norm": {"layer_norm": True},
               "all and layer norm": {**VARIANTS["all"], "layer_norm": True}}.get(variant, VARIANTS.get(variant, {}))
    rng = np.random.default_rng(9)
    T, B, I, H = 6, 3, 4, 7
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    w_ih, w_hh, b = (rng.standard_normal(s) * 0.5 for s in ((4 * H, I), (4 * H, H), (4 * H,)))
    w_ch = rng.standard_normal((3, H)) * 0.5 if options.get("peephole") else None
    p = options.get("recurrent_dropout", 0.0)
    keep_h = (rng.random((B, H)) >= p) / (1 - p) if p else None
    z_c, z_h = cells.check_zoneout(options.get("zoneout", 0.0), H)
    zone_c = (rng.random((T, B, H)) < z_c).astype(float) if z_c else None
    zone_h = (rng.random((T, B, H)) < z_h).astype(float) if z_h else None
    ln = {}  # γ around 1, β around 0
    if options.get("layer_norm"):
        ln = {name: (1.0 if name.endswith("weight") else 0.0) + 0.3 * rng.standard_normal(H if "_c_" in name else 4 * H)
              for name in cells.LAYER_NORM_NAMES}
    out = F.lstm_forward(x, w_ih, w_hh, b, None, w_ch=w_ch, keep_h=keep_h, zone_c=zone_c, zone_h=zone_h,
                         training=True, **ln)
    g = F.lstm_backward(dy, None, None, x, w_ih, w_hh, out.workspace, w_ch=w_ch, keep_h=keep_h, zone_c=zone_c,
                        zone_h=zone_h, **ln)

    tensor = lambda a, grad=False: None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=grad)
    xt, w_ih_t, w_hh_t, b_t, w_ch_t = tensor(x, True), tensor(w_ih, True), tensor(w_hh, True), tensor(b, True), \
        tensor(w_ch, True)
    ln_t = [tensor(ln[name], True) for name in cells.LAYER_NORM_NAMES] if ln else None
    projection = xt.reshape(T * B, I) @ w_ih_t.t()
    if ln_t is not None:
        projection = torch.layer_norm(projection, [4 * H], ln_t[0], ln_t[1], 1e-5)
    gx = (projection + b_t).reshape(T, B, 4 * H)
    y = lstm_variants(gx, w_hh_t, w_ch_t, tensor(keep_h), tensor(zone_c), tensor(zone_h),
                      None if ln_t is None else ln_t[2:])
    y.backward(torch.tensor(dy))
    pairs = {"y": (out.y, y), "dx": (g.dx, xt.grad), "dw_ih": (g.dw_ih, w_ih_t.grad), "dw_hh": (g.dw_hh, w_hh_t.grad),
             "db": (g.db_ih, b_t.grad)}
    if w_ch is not None:
        pairs["dw_ch"] = (g.dw_ch, w_ch_t.grad)
    if ln_t is not None:
        pairs.update({"d" + name: (getattr(g, "d" + name), t.grad) for name, t in zip(cells.LAYER_NORM_NAMES, ln_t)})
    errors = {name: relative_error(ours, theirs.detach().numpy()) for name, (ours, theirs) in pairs.items()}
    assert max(errors.values()) < 1e-12, {name: f"{e:.1e}" for name, e in errors.items()}
