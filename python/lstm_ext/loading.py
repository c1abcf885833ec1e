"""``lstm_ext.load``: a file that lstm_ext wrote, read back: a model (``Sequential.save``, a fit
checkpoint) or a quantized layer or model (``save`` of ``quantize_dynamic``'s copies)."""

from __future__ import annotations

from typing import Union

from . import checkpoint as ckpt
from ._typing import PathLike
from .model import Sequential, model_from_checkpoint
from .quantized import QuantizedLayer, QuantizedSequential, read_quantized

__all__ = ["load"]


def load(path: PathLike) -> Union[Sequential, QuantizedLayer, QuantizedSequential]:
    """The model saved at `path`: for a Sequential, its layers, weights, compile settings with the
    optimizer's state, dropout generators and history; for a quantized layer or model, its int8 or
    bfloat16 weights as saved. The file is read without unpickling anything; a truncated or
    corrupted file, or one whose contents do not fit together, raises CheckpointError."""
    header, arrays = ckpt.read_checkpoint(path)
    if "quantized" in header:
        return read_quantized(path, header, arrays)
    return model_from_checkpoint(path, header, arrays)
