"""The LSTM with its variants (peepholes, layer normalization, recurrent dropout, zoneout) in torch, as a TorchScript
function over the steps: what a torch user writes for a cell torch.nn does not have. The
benchmark (lstm_ext.tools.variants) times its training step against lstm_ext's. Imports torch:
import this module only where torch is installed."""

import warnings
from typing import List, Optional

import torch
from torch import Tensor

__all__ = ["lstm_variants"]


def lstm_variants(gx: Tensor, w_hh: Tensor, w_ch: Optional[Tensor], keep_h: Optional[Tensor],
                  zone_c: Optional[Tensor], zone_h: Optional[Tensor], ln: Optional[List[Tensor]]) -> Tensor:
    """y (T, B, H) from gx (T, B, 4H), every step's input part of the pre-activations with both
    biases (with layer normalization LN_ih(x W_ihᵀ) + b), and w_hh (4H, H), gates i, f, g, o;
    w_ch (3, H) the peepholes, keep_h (B, H) the recurrent dropout mask, zone_c and zone_h
    (T, B, H) the zoneout masks, ln the layer normalization's [γ_hh, β_hh (4H), γ_c, β_c (H)], each
    None when off (the equations of the README)."""
    T, B, H = gx.size(0), gx.size(1), w_hh.size(1)
    h = torch.zeros(B, H, dtype=gx.dtype)
    c = torch.zeros(B, H, dtype=gx.dtype)
    w_hh_t = w_hh.t()
    ys: List[Tensor] = []
    for t in range(T):
        h_rec = h
        if keep_h is not None:
            h_rec = h * keep_h
        if ln is not None:
            a = gx[t] + torch.layer_norm(torch.mm(h_rec, w_hh_t), [4 * H], ln[0], ln[1], 1e-5)
        else:
            a = torch.addmm(gx[t], h_rec, w_hh_t)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        if w_ch is not None:
            a_i = a_i + w_ch[0] * c
            a_f = a_f + w_ch[1] * c
        i, f, g = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g)
        c_new = f * c + i * g
        if w_ch is not None:
            a_o = a_o + w_ch[2] * c_new
        o = torch.sigmoid(a_o)
        if ln is not None:
            h_new = o * torch.tanh(torch.layer_norm(c_new, [H], ln[2], ln[3], 1e-5))
        else:
            h_new = o * torch.tanh(c_new)
        if zone_c is not None:
            c_new = zone_c[t] * c + (1.0 - zone_c[t]) * c_new
        if zone_h is not None:
            h_new = zone_h[t] * h + (1.0 - zone_h[t]) * h_new
        h, c = h_new, c_new
        ys.append(h)
    return torch.stack(ys)


# torch 2.13 deprecates torch.jit.script (for torch.compile, which compiles a C++ kernel per
# shape on CPU); scripting is still what it offers for a recurrent loop without that compile.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    lstm_variants = torch.jit.script(lstm_variants)
