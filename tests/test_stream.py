"""lstm_ext.Stream: step-by-step inference equals the layer over the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_layers, bias", [(1, True), (3, True), (2, False)])
@pytest.mark.parametrize("threads", [1, 2])
def test_steps_equal_the_layer_over_the_sequence(num_layers, bias, dtype, threads):
    before = lstm_ext.get_num_threads()
    lstm_ext.set_num_threads(threads)
    try:
        layer = lstm_ext.LSTM(6, 40, num_layers=num_layers, bias=bias, dtype=dtype, seed=2).eval()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((9, 3, 6)).astype(dtype)
        h0 = rng.standard_normal((num_layers, 3, 40)).astype(dtype)
        c0 = rng.standard_normal((num_layers, 3, 40)).astype(dtype)
        y, (h_n, c_n) = layer(x, (h0, c0))
        stream = layer.stream(batch_size=3, state=(h0, c0))
        steps = np.stack([stream.step(x[t]) for t in range(9)])
        h_s, c_s = stream.state
        tol = 1e-12 if dtype == np.float64 else 2e-5
        worst = {name: float(np.max(np.abs(a - b) / (np.abs(b) + 1e-3)))
                 for name, a, b in (("y", steps, y), ("h_n", h_s, h_n), ("c_n", c_s, c_n))}
        print(f"stream vs layer {np.dtype(dtype).name} L{num_layers} threads {threads}: "
              + "  ".join(f"{k}={v:.1e}" for k, v in worst.items()))
        assert max(worst.values()) < tol
        # One step is lstm_cell on the same weights, bit for bit.
        stream.reset()
        p = layer.state_dict()
        h, c = lstm_ext.lstm_cell(x[0], None, None, p["weight_ih_l0"], p["weight_hh_l0"], p.get("bias_ih_l0"),
                                  p.get("bias_hh_l0"))
        out = stream.step(x[0])
        np.testing.assert_array_equal(stream.state[1][0], c)
        if num_layers == 1:
            np.testing.assert_array_equal(out, h)
    finally:
        lstm_ext.set_num_threads(before)


def test_a_stream_refuses_what_it_cannot_run_and_bad_steps():
    with pytest.raises(ValueError, match="bidirectional=True"):
        lstm_ext.LSTM(3, 4, bidirectional=True).stream()
    with pytest.raises(ValueError, match="proj_size=2"):
        lstm_ext.LSTM(3, 4, proj_size=2).stream()
    with pytest.raises(ValueError, match="batch_size"):
        lstm_ext.LSTM(3, 4).stream(batch_size=0)
    with pytest.raises(TypeError, match="expected an lstm_ext.LSTM"):
        lstm_ext.Stream(lstm_ext.GRU(3, 4))
    stream = lstm_ext.LSTM(3, 4, num_layers=2).stream(batch_size=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, I\) = \(2, 3\), got \(1, 3\)"):
        stream.step(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, I\) = \(2, 3\), got \(2, 3, 1\)"):
        stream.step(np.zeros((2, 3, 1), np.float32))
    with pytest.raises(TypeError):
        stream.step("not an array")
    with pytest.raises(ValueError, match=r"h: expected shape \(num_layers, B, H\)"):
        stream.state = (np.zeros((1, 2, 4)), None)
    with pytest.raises(TypeError, match="state: expected"):
        stream.state = np.zeros(3)
    # A refused step changes nothing: the stream still runs.
    assert stream.step(np.ones((2, 3))).shape == (2, 4)


def test_the_stream_does_not_see_later_weight_changes():
    layer = lstm_ext.LSTM(3, 4, seed=1).eval()
    stream = layer.stream()
    x = np.ones((1, 3), np.float32)
    first = stream.step(x)
    layer.weight_ih_l0[...] = 0  # the stream copied the weights
    stream.reset()
    np.testing.assert_array_equal(stream.step(x), first)


def test_a_stream_refuses_a_second_thread_while_it_steps():
    # A step releases the GIL while it computes: another thread that steps the same stream, or
    # reads its state, meanwhile gets a clear error instead of a torn state.
    import threading
    import time

    stream = lstm_ext.LSTM(1024, 1024, seed=0).eval().stream()
    x = np.ones((1, 1024), np.float32)
    stop = threading.Event()

    def keep_stepping():
        while not stop.is_set():
            stream.step(x)

    worker = threading.Thread(target=keep_stepping)
    worker.start()
    refused = []
    try:
        deadline = time.monotonic() + 10.0
        while not refused and time.monotonic() < deadline:
            try:
                stream.state
            except RuntimeError as error:
                refused.append(str(error))
    finally:
        stop.set()
        worker.join()
    assert refused and "another thread is stepping this stream" in refused[0], refused
    # Once the other thread is done, the stream is usable again.
    assert stream.step(x).shape == (1, 1024)


@pytest.mark.parametrize("batch_size", [1.5, "2", True, np.True_, None, 2.0], ids=repr)
def test_a_batch_size_of_the_wrong_kind_is_a_type_error(batch_size):
    # 1.5, '2' and True raised ValueError; the README's rule: the wrong kind is a TypeError.
    with pytest.raises(TypeError, match=r"batch_size: expected an integer >= 1, got "):
        lstm_ext.LSTM(3, 4).stream(batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [2**31, 2**40, 2**61, 2**64, 2**70], ids=lambda b: f"2**{b.bit_length() - 1}")
def test_a_batch_size_too_large_is_refused_before_any_allocation(batch_size):
    # 2**61 gave "ValueError: cannot create std::vector larger than max_size()", 2**31
    # "MemoryError: std::bad_alloc", 2**70 a TypeError printing every weight; none named the argument.
    layer = lstm_ext.LSTM(3, 64, num_layers=2, seed=0)
    with pytest.raises(MemoryError, match=rf"batch_size: a stream of batch_size = {batch_size} \(weights, states and "
                                          r"scratch of 2 layer\(s\) of 64 units, float32\) needs [0-9.e+]+ GiB, more "
                                          r"than this machine's [0-9.]+ GiB of memory"):
        layer.stream(batch_size=batch_size)


def test_valid_batch_sizes_and_states():
    layer = lstm_ext.LSTM(3, 4, num_layers=2, seed=0)
    for batch_size in (0, -1):
        with pytest.raises(ValueError, match=rf"batch_size: expected an integer >= 1, got {batch_size}"):
            layer.stream(batch_size=batch_size)
    stream = layer.stream(batch_size=np.int64(3))  # NumPy integers are integers
    assert stream.batch_size == 3 and type(stream.batch_size) is int
    assert stream.step(np.ones((3, 3))).shape == (3, 4)
    with pytest.raises(TypeError, match=r"state: expected \(h, c\) or None, got tuple of length 3"):
        layer.stream(batch_size=3, state=(None, None, None))
    with pytest.raises(TypeError, match=r"state: expected \(h, c\) or None, got dict"):
        stream.state = {"h": None, "c": None}
    with pytest.raises(TypeError, match=r"h: expected real numbers"):
        stream.state = (np.full((2, 3, 4), "x"), None)
    with pytest.raises(ValueError, match=r"c: expected shape \(num_layers, B, H\) = \(2, 3, 4\), got \(2, 1, 4\)"):
        stream.state = (None, np.zeros((2, 1, 4)))
    stream.state = [np.ones((2, 3, 4)), None]  # a list is a pair too; None: zeros
    h, c = stream.state
    assert (h == 1).all() and (c == 0).all()
