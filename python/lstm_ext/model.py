"""A model: layers in a row, trained with fit(), saved and resumed from one checkpoint file.

For example::

    model = lstm_ext.Sequential(
        lstm_ext.LSTM(1, 32, batch_first=True, seed=0),
        lstm_ext.LastStep(),                     # sequence to one; leave it out for sequence to sequence
        lstm_ext.Linear(32, 1, seed=0),
    )
    model.compile(loss="mse", optimizer=lstm_ext.Adam(lr=1e-2), clip_grad_norm=1.0)
    history = model.fit(X, y, epochs=20, batch_size=32, validation_data=(X_val, y_val),
                        early_stopping=5, checkpoint="run.npz", checkpoint_every=50, resume=True)
    prediction = model.predict(X_test)
    model.save("model.npz");  model = lstm_ext.load("model.npz")

Data are batch-major: X (N, T, features), or (N, T) integer tokens when the first layer is an
Embedding; y (N, outputs) for sequence to one, (N, T, outputs) or (N, T) class labels for
sequence to sequence. Recurrent layers must therefore be built with batch_first=True.
``lengths`` (N,) gives each sequence's valid length: padded steps are masked in the recurrent
layers, in LastStep and in the loss.

The model is the container (layers, forward, backward, parameters, state dicts, compile settings);
training lives in :mod:`lstm_ext.training` (fit, evaluate, predict call it) and the file in
:mod:`lstm_ext.checkpoint` (save, load).

Training is reproducible: batches come from a permutation drawn from (seed, epoch), dropout
masks from each layer's own generator, and the compiled core's results do not depend on the
number of threads. A checkpoint holds the weights, the optimizer's state, the generators, the
position in the epoch, the history and the early-stopping state, so that a run killed at any
moment and resumed with ``resume=True`` ends with the same weights, bit for bit, as a run that
was never interrupted.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from . import checkpoint as ckpt
from . import training
from ._checks import as_real_array
from ._typing import Arrays, Header, LayerState, PathLike
from .layers import Module, RNNBase
from .losses import LOSSES
from .nn import LAYER_TYPES, Embedding, LastStep
from .optim import Adam, Optimizer

__all__ = ["Sequential", "load"]

if TYPE_CHECKING:
    from .distributed import Group


def run_layers(layers: Sequence[Any], x: ArrayLike, lengths: Optional[ArrayLike],
               states: Optional[Sequence[Optional[LayerState]]],
               recurrent: Callable[[Any], bool]) -> tuple[np.ndarray, list[LayerState]]:
    """x through `layers` in order, each one's output the next one's input: a recurrent layer
    (``recurrent(layer)``) gets its initial state from ``states`` (one per recurrent layer, in order;
    None: zeros) and the lengths, a LastStep the lengths. -> (the output, every recurrent layer's
    final state). A Sequential's forward, and a quantized one's (lstm_ext.quantized)."""
    count = sum(1 for layer in layers if recurrent(layer))
    if states is not None and len(states) != count:
        raise ValueError(f"states: expected one state per recurrent layer ({count}), got {len(states)}")
    out: Any = x  # each layer's output, the next one's input
    finals: list[LayerState] = []
    for layer in layers:
        if recurrent(layer):
            out, state = layer(out, None if states is None else states[len(finals)], lengths=lengths)
            finals.append(state)
        elif isinstance(layer, LastStep):
            out = layer(out, lengths)
        else:
            out = layer(out)
    return out, finals


class Sequential:
    """Layers applied in turn: recurrent layers (LSTM, GRU, RNN with batch_first=True), LastStep,
    Linear, Embedding (first only) and activations."""

    def __init__(self, *layers: Module) -> None:
        if not layers:
            raise ValueError("layers: expected at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module) or type(layer).__name__ not in LAYER_TYPES:
                raise TypeError(f"layers[{i}]: expected one of {', '.join(LAYER_TYPES)}, got {type(layer).__name__}")
            if isinstance(layer, RNNBase) and not layer.batch_first:
                raise ValueError(f"layers[{i}]: a Sequential takes batch-major data (N, T, ...): build its recurrent "
                                 f"layers with batch_first=True")
            if isinstance(layer, Embedding) and i != 0:
                raise ValueError(f"layers[{i}]: an Embedding takes integer tokens, so it must be the first layer")
        dtypes = sorted({layer.dtype.name for layer in layers})
        if len(dtypes) > 1:
            raise TypeError(f"layers: expected one dtype for every layer, got {dtypes}")
        self.layers = list(layers)
        self.dtype = layers[0].dtype
        self.loss_name: Optional[str] = None
        self.optimizer: Optional[Optimizer] = None
        self.clip_norm: Optional[float] = None
        self.history: list[dict[str, float]] = []
        self.states: list[LayerState] = []  # the final state of each recurrent layer after the last forward

    # -- parameters, like a module ----------------------------------------------------------------

    def named_parameters(self) -> dict[str, np.ndarray]:
        """The parameters themselves, named '{layer index}.{name}' as in torch.nn.Sequential."""
        return {f"{i}.{name}": value for i, layer in enumerate(self.layers)
                for name, value in layer.named_parameters().items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """The accumulated gradients, by the parameters' names."""
        return {f"{i}.{name}": grad for i, layer in enumerate(self.layers) for name, grad in layer.grads.items()}

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def train(self, mode: bool = True) -> Sequential:
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.layers[0].training

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.named_parameters().items()}

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike]) -> None:
        """Load every parameter ('{index}.{name}' keys); nothing changes unless all of it is valid."""
        expected = self.named_parameters()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        per_layer: list[dict[str, ArrayLike]] = [{} for _ in self.layers]
        for key, value in state_dict.items():
            index, name = key.split(".", 1)
            per_layer[int(index)][name] = value
        staged: list[dict[str, np.ndarray]] = []
        for layer, values in zip(self.layers, per_layer):
            copy = {name: as_real_array(values[name], name, layer.dtype) for name in values}
            for name, value in copy.items():
                if value.shape != layer.named_parameters()[name].shape:
                    raise ValueError(f"{name}: expected shape {layer.named_parameters()[name].shape}, got {value.shape}")
            staged.append(copy)
        for layer, values in zip(self.layers, staged):
            if values:
                layer.load_state_dict(values)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

    # -- forward and backward ---------------------------------------------------------------------

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None,
                states: Optional[Sequence[Optional[LayerState]]] = None) -> np.ndarray:
        """The model's output for x (batch-major): x (B, T, features), or (B, T) integer tokens
        before an Embedding, and ``lengths`` (B,) or None; the output is (B, T, F), or (B, F)
        after a LastStep. ``states`` (optional) gives each recurrent layer's initial state, in
        order; after the call ``self.states`` holds their final states."""
        y, self.states = run_layers(self.layers, x, lengths, states, lambda layer: isinstance(layer, RNNBase))
        return y

    __call__ = forward

    def backward(self, d_output: ArrayLike) -> Optional[np.ndarray]:
        """Backpropagate through the last training-mode forward; adds into every layer's grads
        and returns the gradient of the input (None after an Embedding). d_output has the
        shape of the forward's output."""
        d: Any = d_output  # the gradient of each layer's output, then of its input
        for layer in reversed(self.layers):
            if isinstance(layer, RNNBase):
                d, _ = layer.backward(d)
            else:
                d = layer.backward(d)
        dx: Optional[np.ndarray] = d
        return dx

    # -- training ---------------------------------------------------------------------------------

    def compile(self, loss: str = "mse", optimizer: Optional[Optimizer] = None,
                clip_grad_norm: Optional[float] = None) -> Sequential:
        """Choose the loss ('mse' or 'cross_entropy'), the optimizer (default Adam(lr=1e-3)) and
        an optional gradient-norm clip applied before every step."""
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
        optimizer = Adam(lr=1e-3) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an lstm_ext optimizer (SGD, Adam, AdamW), got {type(optimizer).__name__}")
        if clip_grad_norm is not None and (isinstance(clip_grad_norm, bool) or not isinstance(clip_grad_norm, numbers.Real)
                                           or not clip_grad_norm > 0):
            raise ValueError(f"clip_grad_norm: expected a positive number or None, got {clip_grad_norm!r}")
        self.loss_name = loss
        self.optimizer = optimizer.bind(self.named_parameters())
        self.clip_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        return self

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 1, batch_size: int = 32,
            lengths: Optional[ArrayLike] = None, validation_data: Optional[Sequence[Any]] = None,
            shuffle: bool = True, seed: int = 0, early_stopping: Optional[int] = None, tbptt: Optional[int] = None,
            checkpoint: Optional[PathLike] = None, checkpoint_every: Optional[int] = None, resume: bool = False,
            verbose: int = 1, distributed: Union[bool, Group, None] = False) -> list[dict[str, float]]:
        """Train on (X, y) for `epochs` passes; returns the history (a dict per epoch: 'loss' and,
        with validation data, 'val_loss').

        Args:
            X: (N, T, features), or (N, T) integer tokens when the first layer is an Embedding.
            y: (N, outputs) for sequence to one; (N, T, outputs), or (N, T) class labels, for
                sequence to sequence.
            lengths: (N,) valid steps per sequence, or None for all T.
            validation_data: (X_val, y_val) or (X_val, y_val, lengths_val), evaluated after every
                epoch.
            early_stopping: stop after that many epochs without a lower validation loss (training
                loss without validation data) and restore the best weights.
            tbptt: truncated backpropagation through time for sequence-to-sequence targets: each
                batch is cut into chunks of that many steps, one optimizer step per chunk, the
                state carried from chunk to chunk without gradient across the border.
            checkpoint: a file written (atomically) every `checkpoint_every` optimizer steps and
                at the end of every epoch; with resume=True an existing checkpoint is loaded
                first and training continues where it stopped.
            verbose: 0 quiet, 1 a progress bar (tqdm, when installed and the output is a
                terminal), 2 a line per epoch.
            distributed: True to train data-parallel over MPI when the script runs under mpiexec
                (lstm_ext.distributed: every rank passes the same data; batch_size is the global
                batch; rank 0 writes the checkpoints and prints), or an lstm_ext.distributed.Group.
        """
        return training.fit(self, X, y, epochs=epochs, batch_size=batch_size, lengths=lengths,
                            validation_data=validation_data, shuffle=shuffle, seed=seed,
                            early_stopping=early_stopping, tbptt=tbptt, checkpoint=checkpoint,
                            checkpoint_every=checkpoint_every, resume=resume, verbose=verbose,
                            distributed=distributed)

    def evaluate(self, X: ArrayLike, y: ArrayLike, lengths: Optional[ArrayLike] = None, batch_size: int = 256) -> float:
        """The loss on (X, y) in inference mode: the mean over batches, weighted by their sizes."""
        return training.evaluate(self, X, y, lengths, batch_size)

    def predict(self, X: ArrayLike, lengths: Optional[ArrayLike] = None, batch_size: int = 256) -> np.ndarray:
        """The model's outputs for X (N, T, features) or (N, T) tokens, lengths (N,) or None, in
        inference mode, batch by batch: (N, outputs), or (N, T, outputs) for sequence to sequence."""
        return training.predict(self, X, lengths, batch_size)

    # -- the file ---------------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write the model (layers and weights), its compile settings and optimizer state and its
        history to one file, atomically."""
        ckpt.write_model(path, self)


def load(path: PathLike) -> Sequential:
    """The model saved at `path` (by save() or as a fit checkpoint): layers, weights, compile
    settings with the optimizer's state, dropout generators and history. The file is read
    without unpickling anything; a truncated or corrupted file raises CheckpointError.
    (``lstm_ext.load`` reads quantized models' files too.)"""
    header, arrays = ckpt.read_checkpoint(path)
    if "quantized" in header:
        raise ckpt.CheckpointError(f"{path}: holds a quantized model (lstm_ext.quantize_dynamic): lstm_ext.load reads it")
    return model_from_checkpoint(path, header, arrays)


def model_from_checkpoint(path: PathLike, header: Header, arrays: Arrays) -> Sequential:
    """The Sequential of a checkpoint read by checkpoint.read_checkpoint, checked first."""
    ckpt.check_parameters(path, header, arrays)
    with ckpt.contents_of(path):
        model = Sequential(*ckpt.build_layers(header))
        ckpt.restore_model(model, header, arrays)
    return model
