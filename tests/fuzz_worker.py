"""The fuzz suite's worker: runs one case at a time in its own process, so that a crash is caught
as a crash of this process (tests/test_fuzz.py restarts it and reports the case).

A case is a JSON object made by the strategies in tests/test_fuzz.py: which public function or
layer method to call ("target"), its arguments, each an array *spec* (shape, dtype, memory layout,
values) that this process turns into the actual argument. The worker calls lstm_ext and judges the
outcome:

- it raised a documented exception (TypeError, ValueError, MemoryError, lstm_ext.CheckpointError):
  fine, the reply says which;
- it answered: the answer must be right. Where the textbook NumPy reference (lstm_ext.reference,
  or the formula in the docstring) is defined for these inputs, every output and gradient must
  equal it (float64: 1e-9, float32: 1e-4, relative to the tensor's largest finite value; at
  positions where the reference is not finite the answer must not be finite either; where float32
  overflows and float64 does not, the answer may be ±inf). Where the reference cannot run on the
  inputs (a shape it refuses), an answer is wrong.

Protocol: one JSON case per line on stdin, one JSON reply per line on stdout:
{"outcome": "answered" | "raised TypeError" | ..., "wrong": null | "what was wrong"}.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings

import numpy as np

import lstm_ext
from lstm_ext import reference

# A complex value cast to a real one loses its imaginary part: that would be a silently wrong answer.
warnings.simplefilter("error", getattr(np, "exceptions", np).ComplexWarning)

DOCUMENTED = (TypeError, ValueError, MemoryError, lstm_ext.CheckpointError)
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}


# -- arguments from specs ---------------------------------------------------------------------------

def make(spec, rng):
    """The argument a spec describes: None, a Python value, or an array of a given shape, dtype,
    layout and kind of values."""
    if spec is None or not isinstance(spec, dict):
        return spec  # None, numbers, strings and lists pass as they are
    shape, dtype, layout, fill = tuple(spec["shape"]), spec["dtype"], spec["layout"], spec["fill"]
    values = np.asarray(rng.standard_normal(shape) * spec.get("scale", 0.5))  # an array also for shape ()
    size = values.size
    if fill == "zeros":
        values[...] = 0.0
    elif fill == "denormal":
        values *= 1e-40 if dtype == "float32" else 1e-310
    elif fill == "huge":
        values *= 1e30
    elif fill in ("nan", "inf") and size:
        flat = values.reshape(-1)
        picks = rng.integers(0, size, max(1, size // 7))
        flat[picks] = np.nan if fill == "nan" else np.where(rng.random(picks.size) < 0.5, np.inf, -np.inf)
    if dtype == "object":
        array = values.astype(object)
    elif dtype == "str":
        array = values.astype(str)
    elif dtype in ("int64", "int32", "int8", "uint8", "bool"):
        array = np.nan_to_num(values * 3).astype(dtype)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            array = values.astype(dtype)
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "reversed" and array.ndim:
        array = np.flip(np.flip(array, axis=0).copy(), axis=0)  # the same values with a negative stride
    elif layout == "strided" and array.ndim:
        wide = np.zeros(shape[:-1] + (2 * shape[-1],), array.dtype)
        wide[..., ::2] = array
        array = wide[..., ::2]
    elif layout == "zero-stride" and array.ndim and array.size:
        array = np.broadcast_to(array[:1], array.shape)  # every row the same memory
    elif layout == "readonly":
        array = array.copy()
        array.setflags(write=False)
    elif layout == "list":
        return array.tolist()
    return array


# -- judging answers ---------------------------------------------------------------------------------

def as_float64(value):
    return None if value is None else np.asarray(value, dtype=np.float64)


def compare(name, got, want, dtype, lenient=False):
    """'' when `got` (the answer, in `dtype`) equals the float64 reference `want`, else what differs.
    lenient: the inputs hold NaN, ±Inf or values near float32's range, which IEEE arithmetic spreads
    through products with zeros (0 · NaN = NaN) that the textbook code skips; the answer may then
    also be non-finite where the reference is finite, or finite where the reference multiplied a
    zero it was given for an absent argument (h = None) by a NaN weight: only positions where both
    are finite are compared."""
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, the reference's {want.shape}"
    if got.dtype != dtype:
        return f"{name}: dtype {got.dtype}, expected {dtype}"
    got = got.astype(np.float64)
    finite = np.isfinite(want)
    if np.any(np.isfinite(got) & ~finite) and not lenient:
        return f"{name}: finite where the reference is not ({np.argwhere(np.isfinite(got) & ~finite)[0]})"
    both = finite & np.isfinite(got)
    overflowed = finite & ~np.isfinite(got)
    if np.any(overflowed) and not lenient:
        # only float32 may overflow where float64 does not, and only near its range
        if dtype != np.float32 or np.max(np.abs(want[overflowed])) < 1e30:
            return f"{name}: not finite where the reference is {want[overflowed][0]!r}"
    if not np.any(both) or (lenient == "huge" and dtype == np.float32):
        # float32 products of values near 1e20 and beyond overflow to ±inf inside the cell, which
        # saturates gates differently from the float64 reference: only shapes and dtypes count
        return ""
    scale = max(1.0, float(np.max(np.abs(want[both]))))
    worst = float(np.max(np.abs(got[both] - want[both]))) / scale
    # float32 answers come from float32-rounded inputs: the reference on the same rounded inputs is
    # what they are compared with (see run_sequence), so the tolerance is float32's.
    if worst > TOLERANCE[np.dtype(dtype)] * (1e3 if dtype == np.float32 and scale > 1e6 else 1):
        return f"{name}: worst error {worst:.3g} relative to {scale:.3g}"
    return ""


def extreme(*values):
    """'huge' when an argument holds a finite magnitude above 1e15, else 'nonfinite' when one holds
    NaN or ±Inf, else '' (see compare)."""
    found = ""
    for value in values:
        if value is None:
            continue
        with np.errstate(all="ignore"):
            v = np.asarray(value, dtype=np.float64)
        finite = v[np.isfinite(v)]
        if finite.size and np.max(np.abs(finite)) > 1e15:
            return "huge"
        if finite.size != v.size:
            found = "nonfinite"
    return found


def rounded(value, dtype):
    """A float64 copy of what the core computes with: the argument converted to `dtype`."""
    if value is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(value, dtype=dtype).astype(np.float64)


# -- targets -----------------------------------------------------------------------------------------

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def sequence_reference(op, a, lengths, reverse, nonlinearity):
    """Each sequence on its own through the textbook single-layer functions: y, h_n, c_n and every
    gradient, summed over the batch. a: float64 arrays (x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr,
    dy, dh_n, dc_n; None where absent)."""
    x = a["x"]
    T, B, _ = x.shape
    H = a["w_hh"].shape[0] // GATES[op]
    H_out = a["w_hh"].shape[1]
    lengths = [T] * B if lengths is None else list(lengths)
    y = np.zeros((T, B, H_out))
    h_n, c_n = np.zeros((B, H_out)), np.zeros((B, H))
    grads = {"dx": np.zeros_like(x), "dh0": np.zeros((B, H_out)), "dc0": np.zeros((B, H)),
             "dw_ih": np.zeros_like(a["w_ih"]), "dw_hh": np.zeros_like(a["w_hh"]),
             "db_ih": np.zeros(a["w_ih"].shape[0]), "db_hh": np.zeros(a["w_ih"].shape[0])}
    if a["w_hr"] is not None:
        grads["dw_hr"] = np.zeros_like(a["w_hr"])
    for b in range(B):
        steps = np.arange(lengths[b])[::-1] if reverse else np.arange(lengths[b])
        xb = x[steps, b:b + 1]
        h0 = None if a["h0"] is None else a["h0"][b:b + 1]
        dy = np.zeros((len(steps), 1, H_out)) if a["dy"] is None else a["dy"][steps, b:b + 1]
        dh_n = None if a["dh_n"] is None else a["dh_n"][b:b + 1]
        weights = (xb, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], h0)
        with np.errstate(all="ignore"):
            if op == "lstm":
                c0 = None if a["c0"] is None else a["c0"][b:b + 1]
                yb, hb, cb, cache = reference.lstm_forward(*weights, c0, a["w_hr"])
                dc_n = None if a["dc_n"] is None else a["dc_n"][b:b + 1]
                g = reference.lstm_backward(dy, dh_n, dc_n, cache)
                c_n[b] = cb[0]
            elif op == "gru":
                yb, hb, cache = reference.gru_forward(*weights)
                g = reference.gru_backward(dy, dh_n, cache)
            else:
                yb, hb, cache = reference.rnn_forward(*weights, nonlinearity)
                g = reference.rnn_backward(dy, dh_n, cache)
        y[steps, b] = yb[:, 0]
        h_n[b] = hb[0]
        grads["dx"][steps, b] = g["dx"][:, 0]
        grads["dh0"][b] = g["dh0"][0]
        if op == "lstm":
            grads["dc0"][b] = g["dc0"][0]
        for name in ("dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr"):
            if name in grads and g.get(name) is not None:
                grads[name] += g[name]
    return y, h_n, c_n, grads


def run_sequence(case, rng):
    """lstm_forward / gru_forward / rnn_forward with training=True, then the backward."""
    op = case["op"]
    args = {name: make(spec, rng) for name, spec in case["args"].items()}
    lengths, reverse, nonlinearity = case.get("lengths"), case.get("reverse", False), case.get("nonlinearity", "tanh")
    seq = {"lengths": lengths, "reverse": reverse}
    forward = getattr(lstm_ext, op + "_forward")
    head = (args["x"], args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"], args["h0"])
    if op == "lstm":
        out = forward(*head, args["c0"], w_hr=args["w_hr"], training=True, **seq)
        grads = lstm_ext.lstm_backward(args["dy"], args["dh_n"], args["dc_n"], args["x"], args["w_ih"], args["w_hh"],
                                       out.workspace, w_hr=args["w_hr"], **seq)
    else:
        extra = {"nonlinearity": nonlinearity} if op == "rnn" else {}
        out = forward(*head, training=True, **seq, **extra)
        grads = getattr(lstm_ext, op + "_backward")(args["dy"], args["dh_n"], args["x"], args["w_ih"], args["w_hh"],
                                                    out.workspace, **seq, **extra)
    dtype = out.y.dtype
    a = {name: rounded(args.get(name), dtype) for name in
         ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "w_hr", "dy", "dh_n", "dc_n")}
    if np.asarray(a["x"]).ndim != 3:
        return "answered for an x that is not (T, B, I)"
    y, h_n, c_n, want = sequence_reference(op, a, lengths, reverse, nonlinearity)
    lenient = extreme(*a.values())
    problems = [compare("y", out.y, y, dtype, lenient), compare("h_n", out.h_n, h_n, dtype, lenient)]
    if op == "lstm":
        problems.append(compare("c_n", out.c_n, c_n, dtype, lenient))
    for name, value in grads._asdict().items():
        if value is not None and name in want and not (name == "dc0" and op != "lstm"):
            if name in ("db_ih", "db_hh") and a["b_ih" if name == "db_ih" else "b_hh"] is None:
                continue
            problems.append(compare(name, value, want[name], dtype, lenient))
    return "; ".join(p for p in problems if p)


def run_cell(case, rng):
    args = {name: make(spec, rng) for name, spec in case["args"].items()}
    h, c = lstm_ext.lstm_cell(args["x"], args["h0"], args["c0"], args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"])
    dtype = h.dtype
    a = {name: rounded(value, dtype) for name, value in args.items()}
    B, H = np.shape(a["x"])[0], a["w_hh"].shape[1]
    h0 = np.zeros((B, H)) if a["h0"] is None else a["h0"]
    c0 = np.zeros((B, H)) if a["c0"] is None else a["c0"]
    with np.errstate(all="ignore"):
        want_h, want_c, _ = reference.lstm_cell(a["x"], h0, c0, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    lenient = extreme(*a.values())
    return "; ".join(p for p in (compare("h", h, want_h, dtype, lenient), compare("c", c, want_c, dtype, lenient)) if p)


def run_layer(case, rng):
    """An LSTM / GRU / RNN layer built from generated arguments: forward, backward, state dict."""
    kind, config = case["kind"], case["config"]
    layer = getattr(lstm_ext, kind)(**config)
    layer.train(case["training"])
    x, state, dy = make(case["x"], rng), case.get("state"), make(case.get("dy"), rng)
    if isinstance(state, list):
        state = tuple(make(s, rng) for s in state)
    elif isinstance(state, dict):
        state = make(state, rng)
    y, state_n = layer(x, state, lengths=case.get("lengths"))
    dtype = layer.dtype
    problems = []
    if case["training"] and config.get("dropout", 0) == 0:
        layer.zero_grad()
        dx, dstate = layer.backward(dy)
        problems += check_layer(layer, kind, case, x, state, y, state_n, dy, dx, dstate, dtype)
    elif not case["training"]:
        problems += check_layer(layer, kind, case, x, state, y, state_n, None, None, None, dtype)
    layer.load_state_dict(layer.state_dict())
    return "; ".join(p for p in problems if p)


def check_layer(layer, kind, case, x, state, y, state_n, dy, dx, dstate, dtype):
    batch_first = case["config"].get("batch_first", False)
    xs = rounded(x, dtype)
    if xs.ndim != 3:
        return ["answered for an x that is not 3-D"]
    if batch_first:
        xs = xs.transpose(1, 0, 2)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    h0 = c0 = None
    if kind == "LSTM" and state is not None:
        h0, c0 = rounded(state[0], dtype), rounded(state[1], dtype)
    elif state is not None:
        h0 = rounded(state, dtype)
    with np.errstate(all="ignore"):
        want_y, want_state, cache = reference.stack_forward(
            layer.cell, xs, params, layer.num_layers, layer.bidirectional, case.get("lengths"),
            [h0, c0][:len(layer.cell.state)], options=layer.options)
    want_h, want_c = (want_state + [None])[:2]
    if batch_first:
        want_y = want_y.transpose(1, 0, 2)
    lenient = extreme(xs, h0, c0, dy, *params.values())
    problems = [compare("y", y, want_y, dtype, lenient)]
    h_n = state_n[0] if kind == "LSTM" else state_n
    problems.append(compare("h_n", h_n, want_h, dtype, lenient))
    if kind == "LSTM":
        problems.append(compare("c_n", state_n[1], want_c, dtype, lenient))
    if dy is None:
        return problems
    dys = rounded(dy, dtype) if dy is not None else None
    if dys is not None and batch_first:
        dys = dys.transpose(1, 0, 2)
    with np.errstate(all="ignore"):
        want = reference.stack_backward(dys, None, cache)
    want_dx = want["dx"].transpose(1, 0, 2) if batch_first else want["dx"]
    problems.append(compare("dx", dx, want_dx, dtype, lenient))
    for name, grad in layer.grads.items():
        problems.append(compare(f"grad {name}", grad, want["d" + name], dtype, lenient))
    return problems


def run_module(case, rng):
    """Linear, Embedding, LastStep and the activations: forward and backward against their formulas."""
    kind = case["kind"]
    x, dy = make(case["x"], rng), make(case.get("dy"), rng)
    if kind == "Linear":
        module = lstm_ext.Linear(**case["config"])
        y = module(x)
        dx = module.backward(dy)
        w, b = module.weight.astype(np.float64), (module.bias.astype(np.float64) if module.has_bias else 0.0)
        xs = rounded(x, module.dtype)
        with np.errstate(all="ignore"):
            want_y = xs @ w.T + b
            dys = rounded(dy, module.dtype)
            want_dx = dys @ w
        lenient = extreme(xs, dys, w)
        return "; ".join(p for p in (compare("y", y, want_y, module.dtype, lenient),
                                     compare("dx", dx, want_dx, module.dtype, lenient)) if p)
    if kind == "Embedding":
        module = lstm_ext.Embedding(**case["config"])
        y = module(x)
        module.backward(dy)
        return compare("y", y, module.weight.astype(np.float64)[np.asarray(x)], module.dtype)
    if kind == "LastStep":
        module = lstm_ext.LastStep()
        lengths = case.get("lengths")
        y = module(x, lengths)
        xs = np.asarray(x, dtype=np.float64)  # (B, T, F): batch-major, as in a Sequential model
        B, T = xs.shape[:2]
        last = [T - 1] * B if lengths is None else [n - 1 for n in lengths]
        want = np.stack([xs[b, last[b]] for b in range(B)]) if B else np.zeros((0, xs.shape[2]))
        module.backward(dy)
        return compare("y", y, want, y.dtype, extreme(xs))
    module = getattr(lstm_ext, kind)()
    y = module(x)
    dx = module.backward(dy)
    xs = np.asarray(x, dtype=np.float64)
    formula = {"Tanh": np.tanh, "ReLU": lambda v: np.maximum(v, 0), "Sigmoid": reference.sigmoid}[kind]
    with np.errstate(all="ignore"):
        want = formula(xs)
    return compare("y", y, want, y.dtype, extreme(xs)) or ("" if np.shape(dx) == np.shape(x) else "dx: wrong shape")


def run_loss(case, rng):
    kind = case["kind"]
    prediction, target, mask = make(case["prediction"], rng), make(case["labels"], rng), make(case.get("mask"), rng)
    reduction = case.get("reduction", "mean")
    if kind == "mse_loss":
        loss, grad = lstm_ext.mse_loss(prediction, target, mask, reduction)
        p, t = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
        keep = np.ones(p.shape, bool) if mask is None else np.broadcast_to(
            np.asarray(mask, bool).reshape(np.shape(mask) + (1,) * (p.ndim - np.ndim(mask))), p.shape)
        with np.errstate(all="ignore"):
            total = float(np.sum(((p - t) ** 2)[keep]))
        count = max(int(keep.sum()), 1)
        want = total / count if reduction == "mean" else total
    else:
        loss, grad = lstm_ext.cross_entropy(prediction, target, mask, case.get("ignore_index"), reduction)
        z = np.asarray(prediction, np.float64)
        labels = np.asarray(target)
        keep = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
        if case.get("ignore_index") is not None:
            keep = keep & (labels != case["ignore_index"])
        with np.errstate(all="ignore"):
            shifted = z - np.max(z, axis=-1, keepdims=True)
            log_softmax = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
            picked = np.take_along_axis(log_softmax, np.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
        total = float(-np.sum(picked[keep]))
        want = total / max(int(keep.sum()), 1) if reduction == "mean" else total
    if np.shape(grad) != np.shape(prediction):
        return f"grad: shape {np.shape(grad)}, expected {np.shape(prediction)}"
    return compare("loss", np.asarray(loss, grad.dtype), want, grad.dtype, extreme(prediction))


def run_optimizer(case, rng):
    """One step of SGD / Adam / AdamW (and clip_grad_norm) against the textbook first step."""
    kind, hyper = case["kind"], case["hyper"]
    params = {name: make(spec, rng) for name, spec in case["params"].items()}
    grads = {name: make(spec, rng) for name, spec in case["grads"].items()}
    before = {name: np.array(p, dtype=np.float64) for name, p in params.items() if isinstance(p, np.ndarray)}
    if case.get("clip") is not None:
        lstm_ext.clip_grad_norm(grads, case["clip"])
    optimizer = getattr(lstm_ext, kind)(params, **hyper)
    optimizer.step(grads)
    problems = []
    for name, p in params.items():
        g = np.asarray(grads[name], dtype=np.float64)
        old = before[name]
        lr, wd = optimizer.lr, getattr(optimizer, "weight_decay", 0.0)
        with np.errstate(all="ignore"):
            if kind == "SGD":
                step = g + wd * old
                if optimizer.nesterov:
                    step = step + optimizer.momentum * step
                want = old - lr * step
            else:
                decayed = old * (1.0 - lr * wd) if kind == "AdamW" else old
                gg = g if kind == "AdamW" else g + wd * old
                want = decayed - lr * gg / (np.abs(gg) + optimizer.eps)  # Adam's first step: m̂ = g, v̂ = g²
        problems.append(compare(name, p, want, p.dtype, extreme(old, g)))
    return "; ".join(p for p in problems if p)


TARGETS = {"sequence": run_sequence, "cell": run_cell, "layer": run_layer, "module": run_module, "loss": run_loss,
           "optimizer": run_optimizer}


def run(case):
    rng = np.random.default_rng(case.get("seed", 0))
    try:
        wrong = TARGETS[case["target"]](case, rng)
    except DOCUMENTED as error:
        return {"outcome": f"raised {type(error).__name__}", "wrong": None}
    except Exception as error:  # anything else is not documented: report it with its traceback
        return {"outcome": f"raised {type(error).__name__}",
                "wrong": f"undocumented {type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}"}
    return {"outcome": "answered", "wrong": wrong or None}


def main():
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
