"""Shared by the recurrent-family tests: one configuration run three ways.

Each runner returns every tensor under the same names: y, h_n, c_n (LSTM), dx, dh0, dc0 (LSTM)
and d<parameter name> for every parameter. The loss behind the gradients is
L = Σ dy ⊙ y + Σ dh_n ⊙ h_n (+ Σ dc_n ⊙ c_n), so dy, dh_n and dc_n are its gradients w.r.t.
the outputs and the final state.
"""

from __future__ import annotations

import numpy as np

import lstm_ext
from lstm_ext import reference, testing

# (kind, extra constructor arguments): every cell the library has.
KINDS = {
    "LSTM": ("LSTM", {}),
    "LSTM proj": ("LSTM", {"proj_size": 3}),
    "GRU": ("GRU", {}),
    "RNN tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN relu": ("RNN", {"nonlinearity": "relu"}),
}


def make_layer(kind, input_size, hidden_size, dtype, seed=0, **config):
    return getattr(lstm_ext, kind)(input_size, hidden_size, dtype=dtype, seed=seed, **config)


def random_inputs(layer, T, B, rng, with_state=True, with_dstate=True):
    """x, state, dy, dstate for `layer`, float32-representable so that every dtype sees the same values."""
    rows = layer.num_layers * layer.num_directions
    batch_major = layer.batch_first

    def draw(shape):
        return rng.standard_normal(shape).astype(np.float32).astype(np.float64)

    x = draw((B, T, layer.input_size) if batch_major else (T, B, layer.input_size))
    width = layer.num_directions * layer.output_size
    dy = draw((B, T, width) if batch_major else (T, B, width))
    shapes = [(rows, B, layer.output_size)] + ([(rows, B, layer.hidden_size)] if layer.mode == "LSTM" else [])

    def pack(parts):
        return tuple(parts) if layer.mode == "LSTM" else parts[0]

    state = pack([draw(s) for s in shapes]) if with_state else None
    dstate = pack([draw(s) for s in shapes]) if with_dstate else None
    return x, state, dy, dstate


def _parts(state, mode):
    """A state in the layer's structure -> [h] or [h, c] (None -> [None, None])."""
    if state is None:
        return [None, None]
    return list(state) if mode == "LSTM" else [state, None]


def ours_run(layer, x, state, dy, dstate, lengths=None):
    """Forward + backward through the lstm_ext layer (grads zeroed first)."""
    layer.zero_grad()
    y, state_n = layer(x, state, lengths=lengths)
    dx, dstate0 = layer.backward(dy, dstate)
    h_n, c_n = _parts(state_n, layer.mode)
    dh0, dc0 = _parts(dstate0, layer.mode)
    out = {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0}
    if layer.mode == "LSTM":
        out.update(c_n=c_n, dc0=dc0)
    out.update({"d" + name: grad.copy() for name, grad in layer.grads.items()})
    return out


def reference_run(layer, x, state, dy, dstate, lengths=None, dropout_masks=None, cell_masks=None, params=None):
    """The same through lstm_ext.reference.stack_forward / stack_backward in float64 (cell_masks:
    the variants' masks per layer and direction, as stack_forward takes them; params: the
    parameters by name, the layer's own when None)."""
    params = {name: value.astype(np.float64)
              for name, value in (layer.named_parameters() if params is None else params).items()}
    to_tm = (lambda a: None if a is None else np.swapaxes(a, 0, 1)) if layer.batch_first else (lambda a: a)
    parts = len(layer.cell.state)
    state0 = _parts(state, layer.mode)[:parts]
    dstate_n = _parts(dstate, layer.mode)[:parts]
    y, state_n, cache = reference.stack_forward(layer.cell, to_tm(x), params, layer.num_layers, layer.bidirectional,
                                                lengths, state0, dropout_masks, layer.options,
                                                cell_masks=cell_masks)
    g = reference.stack_backward(to_tm(dy), dstate_n, cache)
    out = {"y": to_tm(y), "h_n": state_n[0], "dx": to_tm(g["dx"]), "dh0": g["dstate0"][0]}
    if layer.mode == "LSTM":
        out.update(c_n=state_n[1], dc0=g["dstate0"][1])
    out.update({"d" + name: g["d" + name] for name in params})
    return out


def reference_inputs(layer, x, state, dy, dstate):
    """The float inputs of a run by name, as lstm_ext.testing.sensitivity perturbs them: x, h0,
    c0 (LSTM), dy, dh_n, dc_n (LSTM) and every parameter (absent ones None)."""
    state0, dstate_n = _parts(state, layer.mode), _parts(dstate, layer.mode)
    inputs = {"x": x, "h0": state0[0], "dy": dy, "dh_n": dstate_n[0]}
    if layer.mode == "LSTM":
        inputs.update(c0=state0[1], dc_n=dstate_n[1])
    return {**inputs, **layer.named_parameters()}


def reference_evaluator(layer, lengths=None, dropout_masks=None, cell_masks=None):
    """A function of reference_inputs' dict that runs reference_run on it (the masks and lengths
    fixed): what lstm_ext.testing.sensitivity and float32_limits take."""
    params = list(layer.named_parameters())

    def evaluate(a):
        if layer.mode == "LSTM":
            state, dstate = (a["h0"], a["c0"]), (a["dh_n"], a["dc_n"])
        else:
            state, dstate = a["h0"], a["dh_n"]
        return reference_run(layer, a["x"], state, a["dy"], dstate, lengths, dropout_masks, cell_masks,
                             params={name: a[name] for name in params})
    return evaluate


def float32_limits(layer, x, state, dy, dstate, lengths=None, dropout_masks=None, cell_masks=None, expected=None):
    """{tensor: its float32 parity limit} for this run, from the float64 reference
    (lstm_ext.testing.float32_limits; expected: reference_run's answer, to save a run)."""
    return testing.float32_limits(reference_evaluator(layer, lengths, dropout_masks, cell_masks),
                                  reference_inputs(layer, x, state, dy, dstate), expected)


def torch_run(module, x, state, dy, dstate, lengths=None):
    """The same through a torch.nn module (packed sequences when lengths are given)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    dtype = next(module.parameters()).dtype
    is_lstm = isinstance(module, torch.nn.LSTM)
    mode = "LSTM" if is_lstm else "GRU"
    module.zero_grad()
    x_t = torch.tensor(x, dtype=dtype, requires_grad=True)
    state_t = None
    if state is not None:
        parts = [torch.tensor(s, dtype=dtype, requires_grad=True) for s in _parts(state, mode) if s is not None]
        state_t = tuple(parts) if is_lstm else parts[0]
    if lengths is None:
        y, state_n = module(x_t, state_t)
    else:
        packed = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=module.batch_first,
                                      enforce_sorted=False)
        packed_y, state_n = module(packed, state_t)
        T = x.shape[1] if module.batch_first else x.shape[0]
        y, _ = pad_packed_sequence(packed_y, batch_first=module.batch_first, total_length=T)
    h_n, c_n = state_n if is_lstm else (state_n, None)
    loss = (y * torch.tensor(dy, dtype=dtype)).sum()
    if dstate is not None:
        dh_n, dc_n = _parts(dstate, mode)
        loss = loss + (h_n * torch.tensor(dh_n, dtype=dtype)).sum()
        if is_lstm:
            loss = loss + (c_n * torch.tensor(dc_n, dtype=dtype)).sum()
    loss.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy(), "dx": x_t.grad.numpy()}
    if state is not None:
        grads = [s.grad.numpy() for s in (state_t if is_lstm else (state_t,))]
        out["dh0"] = grads[0]
        if is_lstm:
            out["dc0"] = grads[1]
    if is_lstm:
        out["c_n"] = c_n.detach().numpy()
    for name, parameter in module.named_parameters():
        out["d" + name] = parameter.grad.numpy()
    return out
