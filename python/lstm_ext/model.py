"""A model: layers in a row, trained with fit(), saved and resumed from one checkpoint file.

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

Training is reproducible: batches come from a permutation drawn from (seed, epoch), dropout
masks from each layer's own generator, and the compiled core's results do not depend on the
number of threads. A checkpoint holds the weights, the optimizer's state, the generators, the
position in the epoch, the history and the early-stopping state, so that a run killed at any
moment and resumed with ``resume=True`` ends with the same weights, bit for bit, as a run that
was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys

import numpy as np

from ._checks import as_real_array, check_positive_int
from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .layers import GRU, LSTM, RNN, Module, RNNBase
from .losses import cross_entropy, mse_loss
from .nn import Embedding, LastStep, Linear, ReLU, Sigmoid, Tanh
from .optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm

__all__ = ["Sequential", "load"]

_MODULES = {cls.__name__: cls for cls in (LSTM, GRU, RNN, Linear, Embedding, LastStep, Tanh, ReLU, Sigmoid)}
_LOSSES = {"mse": mse_loss, "cross_entropy": cross_entropy}
_OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}


def _positive_int_or_none(value, name):
    return None if value is None else check_positive_int(value, name)


class Sequential:
    """Layers applied in turn: recurrent layers (LSTM, GRU, RNN with batch_first=True), LastStep,
    Linear, Embedding (first only) and activations."""

    def __init__(self, *layers):
        if not layers:
            raise ValueError("layers: expected at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module) or type(layer).__name__ not in _MODULES:
                raise TypeError(f"layers[{i}]: expected one of {', '.join(_MODULES)}, got {type(layer).__name__}")
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
        self.loss_name = None
        self.optimizer = None
        self.clip_norm = None
        self.history: list[dict] = []
        self.states = []  # the final state of each recurrent layer after the last forward

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

    def train(self, mode: bool = True) -> "Sequential":
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> "Sequential":
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.layers[0].training

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.named_parameters().items()}

    def load_state_dict(self, state_dict) -> None:
        """Load every parameter ('{index}.{name}' keys); nothing changes unless all of it is valid."""
        expected = self.named_parameters()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        per_layer = [{} for _ in self.layers]
        for key, value in state_dict.items():
            index, name = key.split(".", 1)
            per_layer[int(index)][name] = value
        staged = []
        for layer, values in zip(self.layers, per_layer):
            copy = {name: as_real_array(values[name], name, layer.dtype) for name in values}
            for name, value in copy.items():
                if value.shape != layer.named_parameters()[name].shape:
                    raise ValueError(f"{name}: expected shape {layer.named_parameters()[name].shape}, got {value.shape}")
            staged.append(copy)
        for layer, values in zip(self.layers, staged):
            if values:
                layer.load_state_dict(values)

    def __repr__(self):
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

    # -- forward and backward ---------------------------------------------------------------------

    def forward(self, x, lengths=None, states=None):
        """The model's output for x (batch-major). ``states`` (optional) gives each recurrent
        layer's initial state, in order; after the call ``self.states`` holds their final states."""
        recurrent = [layer for layer in self.layers if isinstance(layer, RNNBase)]
        if states is not None and len(states) != len(recurrent):
            raise ValueError(f"states: expected one state per recurrent layer ({len(recurrent)}), got {len(states)}")
        out, finals, k = x, [], 0
        for layer in self.layers:
            if isinstance(layer, RNNBase):
                out, state = layer(out, None if states is None else states[k], lengths=lengths)
                finals.append(state)
                k += 1
            elif isinstance(layer, LastStep):
                out = layer(out, lengths)
            else:
                out = layer(out)
        self.states = finals
        return out

    __call__ = forward

    def backward(self, d_output):
        """Backpropagate through the last training-mode forward; adds into every layer's grads
        and returns the gradient of the input (None after an Embedding)."""
        d = d_output
        for layer in reversed(self.layers):
            if isinstance(layer, RNNBase):
                d, _ = layer.backward(d)
            else:
                d = layer.backward(d)
        return d

    # -- training ---------------------------------------------------------------------------------

    def compile(self, loss="mse", optimizer=None, clip_grad_norm=None) -> "Sequential":
        """Choose the loss ('mse' or 'cross_entropy'), the optimizer (default Adam(lr=1e-3)) and
        an optional gradient-norm clip applied before every step."""
        if loss not in _LOSSES:
            raise ValueError(f"loss: expected one of {list(_LOSSES)}, got {loss!r}")
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

    def _loss(self, output, target, lengths):
        """(loss, gradient); a sequence-to-sequence output (B, T, ·) leaves the padded steps out."""
        mask = None
        if lengths is not None and output.ndim == 3:
            mask = np.arange(output.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return _LOSSES[self.loss_name](output, target, mask=mask)

    def _read_data(self, X, y, lengths, name="X"):
        first = self.layers[0]
        if isinstance(first, Embedding):
            X = np.asarray(X)
            if X.dtype.kind not in "iu":
                raise TypeError(f"{name}: expected integer tokens for the Embedding, got dtype {X.dtype}")
        else:
            X = as_real_array(X, name, self.dtype)
        if X.ndim < 2:
            raise ValueError(f"{name}: expected samples on the first axis and steps on the second, got shape {X.shape}")
        if y is not None:
            y = np.asarray(y) if self.loss_name == "cross_entropy" else as_real_array(y, "y", self.dtype)
            if len(y) != len(X):
                raise ValueError(f"y: expected {len(X)} samples (as {name}), got {len(y)}")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.dtype.kind not in "iu" or lengths.shape != (len(X),):
                raise ValueError(f"lengths: expected {len(X)} integers, got {lengths.dtype} array of shape {lengths.shape}")
        return X, y, lengths

    def _step(self) -> None:
        if self.clip_norm is not None:
            clip_grad_norm(self.grads, self.clip_norm)
        self.optimizer.step(self.grads)
        self.zero_grad()

    def fit(self, X, y, *, epochs=1, batch_size=32, lengths=None, validation_data=None, shuffle=True, seed=0,
            early_stopping=None, tbptt=None, checkpoint=None, checkpoint_every=None, resume=False, verbose=1):
        """Train on (X, y) for `epochs` passes; returns the history (a dict per epoch: 'loss' and,
        with validation data, 'val_loss').

        validation_data: (X_val, y_val) or (X_val, y_val, lengths_val), evaluated after every epoch.
        early_stopping: stop after that many epochs without a lower validation loss (training
            loss without validation data) and restore the best weights.
        tbptt: truncated backpropagation through time for sequence-to-sequence targets: each
            batch is cut into chunks of that many steps, one optimizer step per chunk, the state
            carried from chunk to chunk without gradient across the border.
        checkpoint: a file written (atomically) every `checkpoint_every` optimizer steps and at
            the end of every epoch; with resume=True an existing checkpoint is loaded first and
            training continues where it stopped.
        verbose: 0 quiet, 1 a progress bar (tqdm, when installed and the output is a terminal),
            2 a line per epoch.
        """
        if self.optimizer is None:
            raise RuntimeError("fit: call compile() first (loss and optimizer)")
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        tbptt = _positive_int_or_none(tbptt, "tbptt")
        early_stopping = _positive_int_or_none(early_stopping, "early_stopping")
        checkpoint_every = _positive_int_or_none(checkpoint_every, "checkpoint_every")
        if checkpoint_every is not None and checkpoint is None:
            raise ValueError("checkpoint_every: needs checkpoint= (a file to write)")
        if resume and checkpoint is None:
            raise ValueError("resume: needs checkpoint= (the file to resume from)")
        X, y, lengths = self._read_data(X, y, lengths)
        if tbptt is not None and (lengths is not None or y.ndim < 2 or y.shape[1] != X.shape[1]):
            raise ValueError("tbptt: needs sequence-to-sequence targets y (N, T, ...) and sequences of equal length "
                             "(lengths=None)")
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("validation_data: expected (X_val, y_val) or (X_val, y_val, lengths_val)")
            validation = self._read_data(*validation_data, None, name="X_val") if len(validation_data) == 2 \
                else self._read_data(*validation_data, name="X_val")

        N = len(X)
        settings = {"samples": N, "batch_size": batch_size, "shuffle": bool(shuffle), "seed": int(seed),
                    "tbptt": tbptt, "early_stopping": early_stopping}
        run = _FitState.fresh(settings)
        if resume and os.path.exists(checkpoint):
            run = self._resume_from(checkpoint, settings)

        self.train()
        batches_per_epoch = math.ceil(N / batch_size)
        bar = _progress_bar(verbose, epochs * batches_per_epoch, run.epoch * batches_per_epoch + run.batch)
        try:
            while run.epoch < epochs and not run.stopped:
                order = np.random.default_rng([run.settings["seed"], run.epoch]).permutation(N) if shuffle \
                    else np.arange(N)
                while run.batch < batches_per_epoch:
                    index = order[run.batch * batch_size:(run.batch + 1) * batch_size]
                    x_b, y_b = X[index], y[index]
                    l_b = None if lengths is None else lengths[index]
                    if tbptt is None:
                        out = self.forward(x_b, lengths=l_b)
                        loss, d_out = self._loss(out, y_b, l_b)
                        self.backward(d_out)
                        self._step()
                        run.add_loss(loss, len(index))
                        run.batch += 1
                        self._after_step(run, checkpoint, checkpoint_every)
                    else:
                        chunks = math.ceil(x_b.shape[1] / tbptt)
                        while True:
                            steps = slice(run.chunk * tbptt, (run.chunk + 1) * tbptt)
                            out = self.forward(x_b[:, steps], states=run.carried)
                            loss, d_out = self._loss(out, y_b[:, steps], None)
                            self.backward(d_out)
                            self._step()
                            run.add_loss(loss, len(index))
                            run.chunk += 1
                            run.carried = _copy_states(self.states)  # no gradient across the border
                            last = run.chunk == chunks
                            if last:
                                run.chunk, run.carried = 0, None
                                run.batch += 1
                            self._after_step(run, checkpoint, checkpoint_every)
                            if last:
                                break
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{run.loss_sum / max(run.loss_count, 1):.4g}")
                self._end_epoch(run, validation, early_stopping, verbose, bar)
                if checkpoint is not None:
                    self._save(checkpoint, run)
        finally:
            if bar is not None:
                bar.close()
        if run.best_params is not None:
            self.load_state_dict(run.best_params)
        self.history = run.history
        return self.history

    def _after_step(self, run, checkpoint, checkpoint_every):
        """Count an optimizer step (the position has already moved past it) and write the
        checkpoint every checkpoint_every steps."""
        run.steps += 1
        if checkpoint_every is not None and run.steps % checkpoint_every == 0:
            self._save(checkpoint, run)

    def _end_epoch(self, run, validation, early_stopping, verbose, bar):
        record = {"epoch": run.epoch + 1, "loss": run.loss_sum / max(run.loss_count, 1)}
        if validation is not None:
            record["val_loss"] = self.evaluate(*validation)
            self.train()
        run.history.append(record)
        watched = record.get("val_loss", record["loss"])
        if early_stopping is not None:
            if run.best is None or watched < run.best:
                run.best, run.bad_epochs = watched, 0
                run.best_params = self.state_dict()
            else:
                run.bad_epochs += 1
                run.stopped = run.bad_epochs >= early_stopping
        if verbose == 2:
            extra = f"  val_loss {record['val_loss']:.6g}" if "val_loss" in record else ""
            print(f"epoch {record['epoch']}: loss {record['loss']:.6g}{extra}", flush=True)
        if bar is not None and "val_loss" in record:
            bar.set_postfix(loss=f"{record['loss']:.4g}", val_loss=f"{record['val_loss']:.4g}")
        run.epoch += 1
        run.batch, run.loss_sum, run.loss_count = 0, 0.0, 0

    def evaluate(self, X, y, lengths=None, batch_size=256) -> float:
        """The loss on (X, y) in inference mode: the mean over batches, weighted by their sizes."""
        if self.loss_name is None:
            raise RuntimeError("evaluate: call compile() first (the loss)")
        X, y, lengths = self._read_data(X, y, lengths)
        batch_size = check_positive_int(batch_size, "batch_size")
        was_training = self.training
        self.eval()
        total = 0.0
        for start in range(0, len(X), batch_size):
            part = slice(start, start + batch_size)
            l_b = None if lengths is None else lengths[part]
            loss, _ = self._loss(self.forward(X[part], lengths=l_b), y[part], l_b)
            total += loss * len(X[part])
        self.train(was_training)
        return total / len(X)

    def predict(self, X, lengths=None, batch_size=256) -> np.ndarray:
        """The model's outputs for X in inference mode, batch by batch."""
        X, _, lengths = self._read_data(X, None, lengths)
        batch_size = check_positive_int(batch_size, "batch_size")
        was_training = self.training
        self.eval()
        outputs = [self.forward(X[start:start + batch_size],
                                lengths=None if lengths is None else lengths[start:start + batch_size])
                   for start in range(0, len(X), batch_size)]
        self.train(was_training)
        return np.concatenate(outputs)

    # -- checkpoints ------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the model (layers and weights), its compile settings and optimizer state and its
        history to one file, atomically."""
        self._save(path, None)

    def _save(self, path, run) -> None:
        header = {"model": [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers],
                  "rng": [layer.rng_state() if isinstance(layer, RNNBase) else None for layer in self.layers],
                  "history": run.history if run is not None else self.history}
        arrays = {f"param:{name}": value for name, value in self.named_parameters().items()}
        if self.optimizer is not None:
            state = self.optimizer.state_dict()
            header["compile"] = {"loss": self.loss_name, "clip_grad_norm": self.clip_norm,
                                 "optimizer": {"type": state["type"], "hyper": state["hyper"], "steps": state["steps"]}}
            for kind, store in state["buffers"].items():
                arrays.update({f"optimizer:{kind}:{name}": value for name, value in store.items()})
        if run is not None:
            header["fit"] = run.header()
            arrays.update(run.arrays())
        write_checkpoint(path, header, arrays)

    def _resume_from(self, path, settings) -> "_FitState":
        header, arrays = read_checkpoint(path)
        if not isinstance(header.get("fit"), dict):
            raise CheckpointError(f"{path}: a saved model, not a training checkpoint: nothing to resume")
        expected = [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]
        if header.get("model") != expected:
            raise CheckpointError(f"{path}: written for another model ({header.get('model')}), not this one "
                                  f"({expected})")
        _check_parameters(path, header, arrays)
        saved = header["fit"].get("settings")
        if saved != settings:
            differ = ({k: (saved.get(k), settings.get(k)) for k in settings if saved.get(k) != settings.get(k)}
                      if isinstance(saved, dict) else saved)
            raise ValueError(f"resume: the checkpoint {path} comes from a fit with other settings "
                             f"(saved, now): {differ}")
        with _contents_of(path):
            run = _FitState.from_checkpoint(header, arrays, self)
            _restore(self, header, arrays)
        return run


def _copy_states(states):
    return [tuple(part.copy() for part in s) if isinstance(s, tuple) else s.copy() for s in states]


def _restore(model: Sequential, header: dict, arrays: dict) -> None:
    """Weights, optimizer state and dropout generators of `model` from a checkpoint's contents
    (whose parameters _check_parameters has checked). Everything is checked before anything of the
    model changes: a hostile header raises (KeyError, TypeError, ValueError) and leaves it as it was."""
    params = {name[len("param:"):]: value for name, value in arrays.items() if name.startswith("param:")}
    rng_states = header["rng"]
    if not isinstance(rng_states, list) or len(rng_states) != len(model.layers):
        raise ValueError(f"rng: expected a list of {len(model.layers)} generator states, got {rng_states!r:.100}")
    for layer, state in zip(model.layers, rng_states):
        if isinstance(layer, RNNBase):
            np.random.PCG64().state = state  # a malformed state raises here, on a generator of its own
    history = header.get("history", [])
    if not isinstance(history, list):
        raise TypeError(f"history: expected a list, got {type(history).__name__}")
    compiled = None
    if "compile" in header:
        c = header["compile"]
        kind, hyper = c["optimizer"]["type"], c["optimizer"]["hyper"]
        if kind not in _OPTIMIZERS or c["loss"] not in _LOSSES or not isinstance(hyper, dict):
            raise ValueError(f"compile: unknown optimizer {kind!r} or loss {c['loss']!r}")
        optimizer = _OPTIMIZERS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()})
        buffers = {}
        for name, value in arrays.items():
            if name.startswith("optimizer:"):
                _, buffer_kind, param = name.split(":", 2)
                buffers.setdefault(buffer_kind, {})[param] = value
        optimizer.bind(model.named_parameters()).load_state_dict(
            {"type": kind, "hyper": hyper, "steps": c["optimizer"]["steps"], "buffers": buffers})
        compiled = (c["loss"], optimizer, c["clip_grad_norm"])
    # Checked: now change the model.
    model.load_state_dict(params)
    for layer, state in zip(model.layers, rng_states):
        if isinstance(layer, RNNBase):
            layer.set_rng_state(state)
    if compiled is not None:
        model.compile(loss=compiled[0], optimizer=compiled[1], clip_grad_norm=compiled[2])
    model.history = list(history)


# What a hostile or edited checkpoint's contents can raise while a model is rebuilt from them.
_CONTENT_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError,
                   MemoryError)


@contextlib.contextmanager
def _contents_of(path):
    """Turns what a checkpoint's contents make a rebuild raise into a CheckpointError naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except _CONTENT_ERRORS as error:
        raise CheckpointError(f"{path}: its contents do not describe a valid lstm_ext model "
                              f"({type(error).__name__}: {error})") from error


def _check_parameters(path, header: dict, arrays: dict) -> None:
    """The header's layers are known kinds with configs, and the file holds exactly the parameters
    they have, with their shapes: checked before any layer is built, so that no header can make the
    layers larger than the file that carries their weights."""
    specs = header.get("model")
    if not isinstance(specs, list) or not all(isinstance(spec, dict) and isinstance(spec.get("config"), dict)
                                              for spec in specs):
        raise CheckpointError(f"{path}: the header does not describe a list of layers with their settings")
    params = {name[len("param:"):]: value for name, value in arrays.items() if name.startswith("param:")}
    largest = sum(value.size for value in params.values())  # no size in a config can exceed this
    expected = {}
    for index, spec in enumerate(specs):
        kind = _MODULES.get(spec.get("type")) if isinstance(spec.get("type"), str) else None
        if kind is None:
            raise CheckpointError(f"{path}: layer {index} is of an unknown type {spec.get('type')!r}")
        config = spec["config"]
        for key, value in config.items():
            if key != "seed" and isinstance(value, int) and not isinstance(value, bool) and value > largest:
                raise CheckpointError(f"{path}: layer {index} ({spec['type']}) has {key} = {value}, more than the "
                                      f"{largest} parameter values the file holds")
        try:
            shapes = kind.parameter_shapes(config)
        except _CONTENT_ERRORS as error:
            raise CheckpointError(f"{path}: layer {index} ({spec['type']}) has invalid settings "
                                  f"({type(error).__name__}: {error})") from error
        expected.update({f"{index}.{name}": tuple(shape) for name, shape in shapes.items()})
    missing = [name for name in expected if name not in params]
    extra = [name for name in params if name not in expected]
    misshapen = [f"{name} {params[name].shape} instead of {expected[name]}" for name in expected
                 if name in params and params[name].shape != expected[name]]
    if missing or extra or misshapen:
        raise CheckpointError(f"{path}: the parameters do not match the layers the header describes (missing: "
                              f"{missing}, unexpected: {extra}, misshapen: {misshapen})")


def load(path) -> Sequential:
    """The model saved at `path` (by save() or as a fit checkpoint): layers, weights, compile
    settings with the optimizer's state, dropout generators and history. The file is read
    without unpickling anything; a truncated or corrupted file raises CheckpointError."""
    header, arrays = read_checkpoint(path)
    _check_parameters(path, header, arrays)
    with _contents_of(path):
        model = Sequential(*(_MODULES[spec["type"]](**spec["config"]) for spec in header["model"]))
        _restore(model, header, arrays)
    return model


class _FitState:
    """Where a fit is: epoch, batch and chunk, steps, running loss, history, early stopping."""

    def __init__(self, settings):
        self.settings = settings
        self.epoch = self.batch = self.chunk = self.steps = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.history: list[dict] = []
        self.best, self.bad_epochs, self.stopped = None, 0, False
        self.best_params = None
        self.carried = None  # truncated BPTT: the state carried into the next chunk

    @classmethod
    def fresh(cls, settings):
        return cls(settings)

    def add_loss(self, loss, count):
        self.loss_sum += loss * count
        self.loss_count += count

    def header(self) -> dict:
        carried = None
        if self.carried is not None:
            carried = [len(s) if isinstance(s, tuple) else 0 for s in self.carried]
        return {"settings": self.settings, "epoch": self.epoch, "batch": self.batch, "chunk": self.chunk,
                "steps": self.steps, "loss_sum": self.loss_sum, "loss_count": self.loss_count,
                "history": self.history, "best": self.best, "bad_epochs": self.bad_epochs, "stopped": self.stopped,
                "has_best": self.best_params is not None, "carried": carried}

    def arrays(self) -> dict:
        out = {}
        if self.best_params is not None:
            out.update({f"best:{name}": value for name, value in self.best_params.items()})
        for k, state in enumerate(self.carried or []):
            parts = state if isinstance(state, tuple) else (state,)
            out.update({f"carried:{k}:{j}": part for j, part in enumerate(parts)})
        return out

    @classmethod
    def from_checkpoint(cls, header, arrays, model) -> "_FitState":
        """Where the fit was, from a checkpoint's header and arrays, each field checked (against
        `model` for the best weights and the carried states): ValueError or TypeError otherwise."""
        f = header["fit"]
        run = cls(f["settings"])
        for key in ("epoch", "batch", "chunk", "steps", "loss_count", "bad_epochs"):
            if isinstance(f[key], bool) or not isinstance(f[key], int) or f[key] < 0:
                raise ValueError(f"fit.{key}: expected an integer >= 0, got {f[key]!r:.100}")
            setattr(run, key, f[key])
        for key, optional in (("loss_sum", False), ("best", True)):
            if not (optional and f[key] is None) and (isinstance(f[key], bool) or not isinstance(f[key], (int, float))):
                raise ValueError(f"fit.{key}: expected a number, got {f[key]!r:.100}")
        run.loss_sum, run.best = f["loss_sum"], f["best"]
        if not isinstance(f["stopped"], bool) or not isinstance(f["history"], list):
            raise ValueError("fit.stopped, fit.history: expected a bool and a list")
        run.stopped, run.history = f["stopped"], list(f["history"])
        if f["has_best"]:
            best = {name[len("best:"):]: value for name, value in arrays.items() if name.startswith("best:")}
            shapes = {name: value.shape for name, value in model.named_parameters().items()}
            if {name: value.shape for name, value in best.items()} != shapes:
                raise ValueError("fit: the best weights kept for early stopping do not match the model's parameters")
            run.best_params = best
        if f["carried"] is not None:
            recurrent = [layer for layer in model.layers if isinstance(layer, RNNBase)]
            if not isinstance(f["carried"], list) or len(f["carried"]) != len(recurrent):
                raise ValueError(f"fit.carried: expected one state per recurrent layer ({len(recurrent)})")
            run.carried = []
            for k, (parts, layer) in enumerate(zip(f["carried"], recurrent)):
                if parts != (2 if layer.mode == "LSTM" else 0):
                    raise ValueError(f"fit.carried[{k}]: a state of {parts!r} parts for {layer.mode}")
                state = tuple(arrays[f"carried:{k}:{j}"] for j in range(max(parts, 1)))
                sizes = [layer.output_size, layer.hidden_size][:len(state)]
                rows = layer.num_layers * layer.num_directions
                if any(s.ndim != 3 or s.shape[0] != rows or s.shape[2] != size or s.shape[1] != state[0].shape[1]
                       for s, size in zip(state, sizes)):
                    raise ValueError(f"fit.carried[{k}]: shapes {[s.shape for s in state]} do not fit {layer!r}")
                run.carried.append(state if parts else state[0])
        return run


def _progress_bar(verbose, total, done):
    """A tqdm bar on stderr when verbose == 1, tqdm is installed and stderr is a terminal."""
    if verbose != 1 or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=done, unit="batch", dynamic_ncols=True, leave=True)
