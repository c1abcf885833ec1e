"""The fuzz suite: every public function and layer method, driven by hypothesis with generated
shapes, dtypes, memory layouts (Fortran order, negative, zero and doubled strides, read-only,
nested lists), values (NaN, ±Inf, subnormals, 1e30), lengths and argument combinations.

Each case runs in a long-lived worker process (tests/fuzz_worker.py), so that a crash (a
segfault, an abort, a sanitizer's report) is caught as a crash of that process and reported with
the case that caused it; the worker is then started again. Every case must end in an answer equal
to the NumPy reference (where it is defined) or in a documented exception (TypeError, ValueError,
MemoryError, CheckpointError); anything else fails the test with the case.

How many cases: LSTM_EXT_FUZZ_EXAMPLES (default 1200) times each test's weight (3 for the
sequence ops, 2 for the layers, 1 for the rest): 10,800 cases in a CI run, about a minute and a
half. To fuzz for hours, raise it, e.g.

    LSTM_EXT_FUZZ_EXAMPLES=500000 pytest tests/test_fuzz.py -p no:cacheprovider -x

(hypothesis draws new cases on every run; `--hypothesis-seed=N` repeats one run.)
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("LSTM_EXT_FUZZ_EXAMPLES", "1200"))
WORKER = os.path.join(os.path.dirname(__file__), "fuzz_worker.py")
CASE_TIMEOUT = 120.0  # seconds; a case that takes longer is a hang


def fuzz(weight: int):
    """hypothesis settings for `weight` x EXAMPLES cases (the compiled ops weigh most)."""
    return settings(max_examples=weight * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                    database=None)


class Worker:
    """The worker process: sends a case, reads the reply; restarts after a crash or a hang."""

    def __init__(self):
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)

    def run(self, case: dict) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.start()
        try:
            self.process.stdin.write(json.dumps(case) + "\n")
            self.process.stdin.flush()
            reply = self._read_line()
        except OSError:  # the worker is gone
            reply = None
        if reply is None:
            self.process.kill()
            _, err = self.process.communicate()  # (and closes the pipes)
            code = self.process.returncode
            self.process = None
            return {"outcome": "crashed", "wrong": f"the worker died (exit {code}) on this case:\n"
                                                   f"{json.dumps(case)}\n{err[-4000:]}"}
        return json.loads(reply)

    def _read_line(self):
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(CASE_TIMEOUT):
            return None  # a hang: killed and reported like a crash
        line = self.process.stdout.readline()
        return line or None

    def close(self):
        if self.process is not None:
            self.process.communicate(timeout=60)  # closes stdin: the worker ends


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


OUTCOMES = collections.Counter()  # outcome -> cases, for the summary at the end of the run (conftest.py)


def check(worker, case):
    reply = worker.run(case)
    event(reply["outcome"])
    OUTCOMES[reply["outcome"]] += 1
    assert reply["wrong"] is None, f"{reply['wrong']}\ncase: {json.dumps(case)}"


# -- argument specs ----------------------------------------------------------------------------------

DTYPES = ["float64", "float32"]
ODD_DTYPES = ["float16", "int64", "int8", "bool", "complex128", "object", "str"]
LAYOUTS = ["C", "F", "reversed", "strided", "zero-stride", "readonly", "list"]
FILLS = ["normal", "zeros", "denormal", "huge", "nan", "inf"]


@st.composite
def array(draw, shape, dtype=None, odd=True):
    """An argument of `shape`, usually well formed; sometimes a wrong shape, an odd dtype or layout,
    non-finite values, None or a bare number."""
    roll = draw(st.integers(0, 199))
    if odd and roll < 1:
        return None
    if odd and roll < 3:
        return draw(st.sampled_from([0, 1.5, "x", [[]], True]))
    shape = list(shape)
    if odd and roll < 9:  # a wrong shape: one dimension off, a missing or an extra one
        how = draw(st.integers(0, 2))
        if how == 0 and shape:
            k = draw(st.integers(0, len(shape) - 1))
            shape[k] = draw(st.integers(0, shape[k] + 2))
        elif how == 1 and shape:
            shape = shape[:-1]
        else:
            shape = shape + [draw(st.integers(0, 3))]
    kind = dtype or draw(st.sampled_from(DTYPES))
    if odd and draw(st.integers(0, 39)) == 0:
        kind = draw(st.sampled_from(ODD_DTYPES))
    layout = draw(st.sampled_from(LAYOUTS)) if draw(st.integers(0, 2)) == 0 else "C"
    fill = draw(st.sampled_from(FILLS)) if draw(st.integers(0, 9)) == 0 else "normal"
    return {"shape": shape, "dtype": kind, "layout": layout, "fill": fill}


@st.composite
def mostly(draw, valid, *invalid):
    """Usually a draw from `valid`; one time in ten one of the `invalid` values."""
    if invalid and draw(st.integers(0, 9)) == 7:
        return draw(st.sampled_from(invalid))
    return draw(valid)


def lengths_for(T, B):
    """None, valid lengths in any order, or something wrong (out of range, too few, floats, text)."""
    T = max(T, 1)
    wrong = st.one_of(st.lists(st.integers(-1, T + 2), min_size=B, max_size=B),
                      st.lists(st.integers(1, T), max_size=B + 2), st.just("lengths"),
                      st.lists(st.floats(0.5, T), min_size=B, max_size=B))
    return mostly(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B), "lengths").flatmap(
        lambda v: wrong if v == "lengths" else st.just(v))


sizes = st.integers(1, 5)
maybe_zero = mostly(st.integers(1, 4), 0)


@st.composite
def sequence_case(draw):
    op = draw(st.sampled_from(["lstm", "gru", "rnn"]))
    T, B, I, H = draw(maybe_zero) or 1, draw(maybe_zero), draw(sizes), draw(sizes)
    if draw(st.integers(0, 9)) == 0:
        T = draw(st.integers(0, 40))
    P = draw(mostly(st.integers(1, max(1, H - 1)), H, H + 1)) if op == "lstm" and H > 1 and draw(st.booleans()) else None
    H_out = P or H
    G = {"lstm": 4, "gru": 3, "rnn": 1}[op] * H
    dtype = draw(st.sampled_from(DTYPES))
    args = {"x": draw(array((T, B, I), dtype)), "w_ih": draw(array((G, I), dtype)),
            "w_hh": draw(array((G, H_out), dtype)), "b_ih": draw(st.none() | array((G,), dtype)),
            "b_hh": draw(st.none() | array((G,), dtype)), "h0": draw(st.none() | array((B, H_out), dtype)),
            "dy": draw(st.none() | array((T, B, H_out), dtype)), "dh_n": draw(st.none() | array((B, H_out), dtype))}
    if op == "lstm":
        args.update(c0=draw(st.none() | array((B, H), dtype)), dc_n=draw(st.none() | array((B, H), dtype)),
                    w_hr=None if P is None else draw(array((P, H), dtype)))
    case = {"target": "sequence", "op": op, "args": args, "lengths": draw(lengths_for(T, B)),
            "reverse": draw(st.booleans()), "seed": draw(st.integers(0, 2**31))}
    if op == "rnn":
        case["nonlinearity"] = draw(st.sampled_from(["tanh", "relu", "relu", "tanh", "sigmoid"]))
    return case


@st.composite
def cell_case(draw):
    B, I, H = draw(maybe_zero), draw(sizes), draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(DTYPES))
    args = {"x": draw(array((B, I), dtype)), "h0": draw(st.none() | array((B, H), dtype)),
            "c0": draw(st.none() | array((B, H), dtype)), "w_ih": draw(array((4 * H, I), dtype)),
            "w_hh": draw(array((4 * H, H), dtype)), "b_ih": draw(st.none() | array((4 * H,), dtype)),
            "b_hh": draw(st.none() | array((4 * H,), dtype))}
    return {"target": "cell", "args": args, "seed": draw(st.integers(0, 2**31))}


@st.composite
def layer_case(draw):
    kind = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    I, H, L = draw(sizes), draw(sizes), draw(st.integers(1, 3))
    D = 2 if draw(st.booleans()) else 1
    config = {"input_size": I, "hidden_size": H, "num_layers": L, "bidirectional": D == 2,
              "batch_first": draw(st.booleans()), "dtype": draw(st.sampled_from(DTYPES)),
              "seed": draw(st.integers(0, 1000)), "bias": draw(st.booleans())}
    P = 0
    if kind == "LSTM" and draw(st.booleans()):
        P = draw(st.integers(0, H + 1))
        config["proj_size"] = P
    if kind == "RNN":
        config["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if draw(st.integers(0, 9)) == 0:  # a bad constructor argument
        key = draw(st.sampled_from(["input_size", "hidden_size", "num_layers", "dropout", "proj_size", "dtype"]))
        config[key] = draw(st.sampled_from([0, -1, 1.5, "2", None, 2.0, True, "float16"]))
    if draw(st.integers(0, 9)) == 0 and L > 1:
        config["dropout"] = 0.5
    T, B = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    H_out = P if 0 < P < H else H
    dtype = config["dtype"] if config["dtype"] in DTYPES else "float32"
    x_shape = (B, T, I) if config["batch_first"] else (T, B, I)
    y_shape = (B, T, D * H_out) if config["batch_first"] else (T, B, D * H_out)
    state = None
    if draw(st.booleans()):
        h0 = draw(array((L * D, B, H_out), dtype))
        state = [h0, draw(array((L * D, B, H), dtype))] if kind == "LSTM" else h0
    return {"target": "layer", "kind": kind, "config": config, "training": draw(st.booleans()),
            "x": draw(array(x_shape, dtype)), "state": state, "lengths": draw(lengths_for(T, B)),
            "dy": draw(st.none() | array(y_shape, dtype)), "seed": draw(st.integers(0, 2**31))}


@st.composite
def module_case(draw):
    kind = draw(st.sampled_from(["Linear", "Embedding", "LastStep", "Tanh", "ReLU", "Sigmoid"]))
    dtype = draw(st.sampled_from(DTYPES))
    lead = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    case = {"target": "module", "kind": kind, "seed": draw(st.integers(0, 2**31))}
    if kind == "Linear":
        n_in, n_out = draw(sizes), draw(sizes)
        case["config"] = {"in_features": n_in, "out_features": n_out, "bias": draw(st.booleans()), "dtype": dtype}
        case.update(x=draw(array(lead + [n_in], dtype)), dy=draw(array(lead + [n_out], dtype)))
    elif kind == "Embedding":
        n, dim = draw(sizes), draw(sizes)
        case["config"] = {"num_embeddings": n, "embedding_dim": dim, "dtype": dtype}
        tokens = draw(st.lists(st.integers(-2, n + 1), min_size=1, max_size=8))
        case.update(x=draw(st.sampled_from([tokens, [tokens], [float(t) for t in tokens], "tokens"])),
                    dy=draw(array([1, len(tokens), dim], dtype)))
        if isinstance(case["x"], list) and case["x"] and not isinstance(case["x"][0], list):
            case["dy"] = draw(array([len(tokens), dim], dtype))
    elif kind == "LastStep":
        T, B, F = draw(sizes), draw(sizes), draw(sizes)
        case.update(x=draw(array((B, T, F), dtype)), lengths=draw(lengths_for(T, B)), dy=draw(array((B, F), dtype)))
    else:
        case.update(x=draw(array(lead, dtype)), dy=draw(array(lead, dtype)))
    return case


@st.composite
def loss_case(draw):
    kind = draw(st.sampled_from(["mse_loss", "cross_entropy"]))
    lead = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    case = {"target": "loss", "kind": kind, "seed": draw(st.integers(0, 2**31)),
            "reduction": draw(st.sampled_from(["mean", "sum", "mean", "none?"]))}
    mask = None
    if draw(st.booleans()):
        mask = {"shape": lead, "dtype": "bool", "layout": "C", "fill": "normal"}
    if kind == "mse_loss":
        case.update(prediction=draw(array(lead + [2], dtype)), labels=draw(array(lead + [2], dtype)), mask=mask)
    else:
        C = draw(sizes)
        labels = {"shape": lead, "dtype": draw(st.sampled_from(["int64", "int64", "int8", "float64"])),
                  "layout": "C", "fill": "normal"}
        case.update(prediction=draw(array(lead + [C], dtype)), labels=labels, mask=mask,
                    ignore_index=draw(st.sampled_from([None, 0, -100])))
    return case


@st.composite
def optimizer_case(draw):
    kind = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    names = draw(st.lists(st.sampled_from(["w", "b", "v"]), min_size=1, max_size=3, unique=True))
    shapes = {n: draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)) for n in names}
    dtype = draw(st.sampled_from(DTYPES))
    params = {n: {"shape": shapes[n], "dtype": dtype, "layout": "C", "fill": "normal"} for n in names}
    grads = {n: draw(array(shapes[n], dtype)) for n in names}
    lr = draw(mostly(st.sampled_from([1e-3, 0.1]), 0.0, -1.0, float("nan"), "0.1"))
    if kind == "SGD":
        momentum = draw(mostly(st.sampled_from([0.0, 0.9]), -0.5))
        hyper = {"lr": lr, "momentum": momentum, "weight_decay": draw(mostly(st.sampled_from([0.0, 1e-2]), float("inf"))),
                 "nesterov": draw(st.booleans()) if momentum else False}
    else:
        hyper = {"lr": lr, "betas": draw(mostly(st.sampled_from([(0.9, 0.999), (0.5, 0.5)]), (1.5, 0.9), (0.9,))),
                 "eps": draw(mostly(st.sampled_from([1e-8, 1e-3]), -1.0)), "weight_decay": draw(st.sampled_from([0.0, 0.1]))}
    return {"target": "optimizer", "kind": kind, "params": params, "grads": grads, "hyper": hyper,
            "clip": draw(mostly(st.sampled_from([None, 1.0, 0.01]), -1.0)), "seed": draw(st.integers(0, 2**31))}


# -- the tests ----------------------------------------------------------------------------------------

@fuzz(3)
@given(case=sequence_case())
def test_sequence_ops(worker, case):
    check(worker, case)


@fuzz(1)
@given(case=cell_case())
def test_lstm_cell(worker, case):
    check(worker, case)


@fuzz(2)
@given(case=layer_case())
def test_layers(worker, case):
    check(worker, case)


@fuzz(1)
@given(case=module_case())
def test_modules(worker, case):
    check(worker, case)


@fuzz(1)
@given(case=loss_case())
def test_losses(worker, case):
    check(worker, case)


@fuzz(1)
@given(case=optimizer_case())
def test_optimizers(worker, case):
    check(worker, case)


def test_a_crash_is_caught_and_reported_with_its_case():
    w = Worker()
    try:
        reply = w.run({"target": "sequence", "op": "lstm", "args": {}, "crash": True})  # KeyError: undocumented
        assert reply["wrong"] and "undocumented KeyError" in reply["wrong"]
        w.process.stdin.write("not json\n")  # the worker dies on a line it cannot read
        w.process.stdin.flush()
        reply = w.run({"target": "cell", "args": {}})
        assert reply["outcome"] == "crashed" and "the worker died" in reply["wrong"]
        assert w.run({"target": "cell", "args": {"x": None}})["outcome"] != "crashed"  # started again
    finally:
        w.close()
