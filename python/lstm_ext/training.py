"""Training a model: fit, evaluate and predict, with truncated BPTT, early stopping, checkpoints
and a progress bar. ``Sequential.fit`` / ``evaluate`` / ``predict`` call these.

The loop, top to bottom (``fit``)::

    for each epoch:                     the batches in an order drawn from (seed, epoch)
        for each batch:                 train_batch: forward, loss, backward, optimizer step
                                        (train_chunks with tbptt: one step per chunk of steps,
                                        the state carried from chunk to chunk)
        end_epoch:                      history, validation loss, early stopping
        a checkpoint                    (also every checkpoint_every optimizer steps)

Where the run is (epoch, batch, chunk, steps, running loss, history, early stopping, the carried
state) is a :class:`FitState`, which a checkpoint stores and a resumed run starts from: a run
killed at any moment and resumed ends with the same weights, bit for bit, as one never stopped.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional, Protocol, Union, overload

import numpy as np
from numpy.typing import ArrayLike

from . import checkpoint as ckpt
from ._checks import as_real_array, check_positive_int
from ._typing import Arrays, Header, LayerState, PathLike
from .layers import RNNBase
from .distributed import Description, Group, array_digest, make_group
from .losses import LOSSES, counted_elements
from .nn import Embedding, LastStep
from .optim import clip_grad_norm

__all__ = ["fit", "evaluate", "predict", "FitState"]


class Model(ckpt.Model, Protocol):
    """What training uses of a model (lstm_ext.Sequential; a Protocol: model.py imports this module)."""

    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def states(self) -> list[LayerState]: ...
    @property
    def grads(self) -> dict[str, np.ndarray]: ...
    @property
    def training(self) -> bool: ...

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None,
                states: Optional[Sequence[Optional[LayerState]]] = None) -> np.ndarray: ...

    def backward(self, d_output: ArrayLike) -> Optional[np.ndarray]: ...

    def zero_grad(self) -> None: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...


# Checked data: X, y, lengths (None: every sequence whole).
Data = tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]
# One optimizer step on the samples `index` of (X, y, lengths); returns their loss.
Step = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray], float]


def _positive_int_or_none(value: Optional[int], name: str) -> Optional[int]:
    return None if value is None else check_positive_int(value, name)


# -- the pieces of a step --------------------------------------------------------------------------

@overload
def read_data(model: Model, X: ArrayLike, y: None, lengths: Optional[ArrayLike],
              name: str = ...) -> tuple[np.ndarray, None, Optional[np.ndarray]]: ...
@overload
def read_data(model: Model, X: ArrayLike, y: ArrayLike, lengths: Optional[ArrayLike], name: str = ...) -> Data: ...
def read_data(model: Model, X: ArrayLike, y: Optional[ArrayLike], lengths: Optional[ArrayLike],
              name: str = "X") -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """(X, y, lengths) checked and converted: X batch-major ((N, T, ·), or (N, T) integer tokens
    for an Embedding), y with N samples (labels for cross-entropy), lengths N integers or None."""
    if isinstance(model.layers[0], Embedding):
        X = np.asarray(X)
        if X.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer tokens for the Embedding, got dtype {X.dtype}")
    else:
        X = as_real_array(X, name, model.dtype)
    if X.ndim < 2:
        raise ValueError(f"{name}: expected samples on the first axis and steps on the second, got shape {X.shape}")
    if y is not None:
        y = np.asarray(y) if model.loss_name == "cross_entropy" else as_real_array(y, "y", model.dtype)
        if len(y) != len(X):
            raise ValueError(f"y: expected {len(X)} samples (as {name}), got {len(y)}")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu" or lengths.shape != (len(X),):
            raise ValueError(f"lengths: expected {len(X)} integers, got {lengths.dtype} array of shape {lengths.shape}")
        outside = (lengths < 1) | (lengths > X.shape[1])
        if outside.any():
            index = int(np.argmax(outside))
            raise ValueError(f"lengths: expected every length in [1, T] = [1, {X.shape[1]}], got {lengths[index]} "
                             f"at index {index}")
    return X, y, lengths


def _keeps_time_axis(model: Model) -> bool:
    """Whether the model's output keeps the time axis (sequence to sequence): every layer keeps
    it but LastStep."""
    return not any(isinstance(layer, LastStep) for layer in model.layers)


def check_targets(model: Model, X: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray],
                  name: str = "y") -> None:
    """y's shape against what the model outputs for X, found by running one sample's first step
    in inference mode (which draws no dropout mask and keeps nothing). The output's shape depends
    on the number of steps only through its time axis (_keeps_time_axis), so one step tells it:
    the check costs one step's memory and time, not a whole sequence's (a truncated-BPTT fit of a
    very long sequence stays within its chunks). The error names the whole array's shape."""
    has_steps = X.ndim >= 3 or isinstance(model.layers[0], Embedding)  # X (N, T, features) or tokens (N, T)
    x_probe, l_probe = X[:1], None if lengths is None else lengths[:1]
    if has_steps:
        x_probe = X[:1, :1]
        l_probe = None if lengths is None else np.ones(1, dtype=lengths.dtype)  # (one step: lengths are >= 1)
    was_training = model.training
    model.eval()
    try:
        out = model.forward(x_probe, lengths=l_probe)
    finally:
        model.train(was_training)
    N = len(X)
    shape = (N, X.shape[1]) + out.shape[2:] if has_steps and _keeps_time_axis(model) else (N,) + out.shape[1:]
    if model.loss_name == "cross_entropy":
        expected, what = shape[:-1], f"class labels: the model's output {shape} without its class axis"
    else:
        expected, what = shape, "the model's output shape"
    if tuple(y.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected} ({what}), got {tuple(y.shape)}")


def loss_and_gradient(model: Model, output: np.ndarray, target: np.ndarray,
                      lengths: Optional[np.ndarray]) -> tuple[float, np.ndarray]:
    """(loss, gradient w.r.t. the output); a sequence-to-sequence output (B, T, ·) leaves the
    padded steps out."""
    mask = None
    if lengths is not None and output.ndim == 3:
        mask = np.arange(output.shape[1])[None, :] < np.asarray(lengths)[:, None]
    assert model.loss_name is not None  # compiled
    return LOSSES[model.loss_name](output, target, mask=mask)


def optimizer_step(model: Model) -> None:
    """Clip the gradients (when compiled with clip_grad_norm), update, zero the gradients."""
    if model.clip_norm is not None:
        clip_grad_norm(model.grads, model.clip_norm)
    assert model.optimizer is not None  # compiled
    model.optimizer.step(model.grads)
    model.zero_grad()


def train_batch(model: Model, x_b: np.ndarray, y_b: np.ndarray, l_b: Optional[np.ndarray]) -> float:
    """One optimizer step on one batch; returns its loss."""
    out = model.forward(x_b, lengths=l_b)
    loss, d_out = loss_and_gradient(model, out, y_b, l_b)
    model.backward(d_out)
    optimizer_step(model)
    return loss


def _train_global_batch(model: Model, X: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray],
                        index: np.ndarray) -> float:
    """One process: one optimizer step on the samples `index`; returns their loss."""
    return train_batch(model, X[index], y[index], None if lengths is None else lengths[index])


class _DistributedStep:
    """One optimizer step on a global batch, each rank on its shard (lstm_ext.distributed): the
    summed loss's gradients, the loss and the counted elements added over the ranks in one fused
    allreduce, then divided by the count: the gradient of the global batch's mean loss."""

    def __init__(self, model: Model, group: Group) -> None:
        self.model, self.group = model, group
        self.grads = list(model.grads.values())  # the arrays themselves, in a fixed order
        sizes = [g.size for g in self.grads]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.buffer = np.zeros(self.offsets[-1] + 2, dtype=model.dtype)  # gradients, loss sum, count

    def __call__(self, X: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray], index: np.ndarray) -> float:
        model, buffer = self.model, self.buffer
        mine = self.group.shard(index)
        loss_sum, count = 0.0, 0.0
        if len(mine):  # (a rank with no samples in a short last batch adds zeros)
            l_b = None if lengths is None else lengths[mine]
            out = model.forward(X[mine], lengths=l_b)
            loss_sum, count, d_out = summed_loss(model, out, y[mine], l_b)
            model.backward(d_out)
        for grad, start, end in zip(self.grads, self.offsets[:-1], self.offsets[1:]):
            buffer[start:end] = grad.ravel()
        buffer[-2:] = loss_sum, count
        self.group.allreduce_sum(buffer, "the allreduce of a training step's gradients")
        total_count = max(float(buffer[-1]), 1.0)
        scale = model.dtype.type(1.0 / total_count)
        for grad, start, end in zip(self.grads, self.offsets[:-1], self.offsets[1:]):
            np.multiply(buffer[start:end].reshape(grad.shape), scale, out=grad)
        optimizer_step(model)
        return float(buffer[-2]) / total_count


def summed_loss(model: Model, output: np.ndarray, target: np.ndarray,
                lengths: Optional[np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(loss summed over the counted elements, their number, gradient of the sum)."""
    mask = None
    if lengths is not None and output.ndim == 3:
        mask = np.arange(output.shape[1])[None, :] < np.asarray(lengths)[:, None]
    assert model.loss_name is not None  # compiled
    loss = LOSSES[model.loss_name]
    total, grad = loss(output, target, mask=mask, reduction="sum")
    return total, counted_elements(model.loss_name, output, target, mask), grad


def _start_together(model: Model, run: FitState, group: Group) -> FitState:
    """Every rank starts where rank 0 is (its weights, optimizer state, generators and, after a
    resume, the position of the run), each rank's dropout generators then jumped by its rank."""
    assert model.optimizer is not None  # compiled (fit checks)
    state: Optional[dict[str, Any]] = None
    if group.is_root:
        state = {"params": model.state_dict(), "optimizer": model.optimizer.state_dict(),
                 "rng": [layer.rng_state() if isinstance(layer, RNNBase) else None for layer in model.layers],
                 "fit": run.header(), "fit_arrays": run.arrays(), "history": model.history}
    state = group.broadcast(state, "the broadcast of rank 0's weights at the start")
    if not group.is_root:
        model.load_state_dict(state["params"])
        model.optimizer.load_state_dict(state["optimizer"])
        model.history = state["history"]
        run = FitState.from_checkpoint({"fit": state["fit"]}, state["fit_arrays"], model)
    optimizer_state = model.optimizer.state_dict()
    group.check_agreement([
        ("the weights after rank 0's broadcast (digest)", array_digest(list(model.named_parameters().values()))),
        ("the optimizer's state after rank 0's broadcast", {
            "type": optimizer_state["type"], "hyper": optimizer_state["hyper"], "steps": optimizer_state["steps"],
            "buffers (digest)": {kind: array_digest(list(buffers.values()))
                                 for kind, buffers in optimizer_state["buffers"].items()}}),
    ], "distributed fit")
    for layer, rng in zip(model.layers, state["rng"]):
        if rng is not None:
            assert isinstance(layer, RNNBase)  # only recurrent layers have generators
            generator = np.random.PCG64()
            generator.state = rng
            layer.set_rng_state(generator.jumped(group.rank).state)
    return run


def _fit_description(model: Model, X: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray],
                     validation: Optional[Data], epochs: int, settings: dict[str, Any]) -> Description:
    """What must be the same on every rank of a distributed fit, for Group.check_agreement, in the
    order in which a difference is best reported:

    - the model: its layers with every constructor argument (defaults included) but the seed,
      dtype, the parameters' names and shapes, loss, optimizer with its hyper-parameters,
      gradient clipping;
    - fit's arguments that decide which samples each step takes and how many collective calls
      the ranks make: epochs, batch_size, shuffle, seed, early_stopping (decided on each rank from
      the reduced losses), tbptt, whether there is validation data;
    - the data: every rank passes all of it and takes its shard of each global batch from it (by
      the sample index), so the number of samples must be equal (not only the number of batches,
      which decides how many allreduces happen: with other N the permutation of (seed, epoch)
      would give each rank other samples), and so must the values: shapes, then a digest.

    Left out: the layers' seeds (rank 0's initial weights and dropout generators are broadcast,
    so seeds may differ, e.g. none given); checkpoint, checkpoint_every, resume and verbose (rank
    0 alone reads, writes and prints); the weights themselves, compared after the broadcast
    (_start_together)."""
    description: list[tuple[str, Any]] = [
        ("the layers", [type(layer).__name__ for layer in model.layers]), ("dtype", model.dtype.name)]
    for i, spec in enumerate(ckpt.with_defaults(ckpt.layer_specs(model))):
        description += [(f"layers[{i}].{key}", value) for key, value in spec["config"].items() if key != "seed"]
    parameters = model.named_parameters()
    description.append(("the parameters' names", list(parameters)))
    description += [(f"the shape of parameter {name}", list(value.shape)) for name, value in parameters.items()]
    assert model.optimizer is not None  # compiled (fit checks)
    description += [("loss", model.loss_name), ("optimizer", type(model.optimizer).__name__),
                    *((f"optimizer.{key}", value) for key, value in model.optimizer.hyper().items()),
                    ("clip_grad_norm", model.clip_norm), ("epochs", epochs),
                    *((key, settings[key]) for key in ("batch_size", "shuffle", "seed", "early_stopping", "tbptt")),
                    ("len(X)", len(X)), ("X.shape[1:]", list(X.shape[1:])), ("y.shape[1:]", list(y.shape[1:])),
                    ("lengths", None if lengths is None else "given"),
                    ("validation_data", None if validation is None else "given")]
    if validation is not None:
        X_val, y_val, lengths_val = validation
        description += [("len(X_val)", len(X_val)), ("X_val.shape[1:]", list(X_val.shape[1:])),
                        ("y_val.shape[1:]", list(y_val.shape[1:])),
                        ("lengths_val", None if lengths_val is None else "given")]
    data = {"X": X, "y": y, "lengths": lengths}
    if validation is not None:
        data.update(X_val=validation[0], y_val=validation[1], lengths_val=validation[2])
    description += [(f"the values of {name} (digest)", array_digest([array])) for name, array in data.items()]
    return description


def train_chunk(model: Model, x_chunk: np.ndarray, y_chunk: np.ndarray,
                carried: Optional[list[LayerState]]) -> tuple[float, list[LayerState]]:
    """Truncated BPTT: one optimizer step on a chunk of steps of a batch (x_chunk, y_chunk),
    starting from the states `carried` from the chunk before (None at the first). Returns (loss,
    the final states, copied: no gradient crosses into the next chunk)."""
    out = model.forward(x_chunk, states=carried)
    loss, d_out = loss_and_gradient(model, out, y_chunk, None)
    model.backward(d_out)
    optimizer_step(model)
    return loss, _copy_states(model.states)


def _copy_states(states: list[LayerState]) -> list[LayerState]:
    return [tuple(part.copy() for part in s) if isinstance(s, tuple) else s.copy() for s in states]


# -- where a run is -------------------------------------------------------------------------------

class FitState:
    """Where a fit is: epoch, batch and chunk, steps, running loss, history, early stopping."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.epoch = self.batch = self.chunk = self.steps = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.history: list[dict[str, float]] = []
        self.best: Optional[float] = None
        self.bad_epochs, self.stopped = 0, False
        self.best_params: Optional[Arrays] = None
        self.carried: Optional[list[LayerState]] = None  # truncated BPTT: the state carried into the next chunk

    def add_loss(self, loss: float, count: int) -> None:
        self.loss_sum += loss * count
        self.loss_count += count

    def header(self) -> Header:
        """What a checkpoint's header keeps of the run (JSON)."""
        carried = None
        if self.carried is not None:
            carried = [len(s) if isinstance(s, tuple) else 0 for s in self.carried]
        return {"settings": self.settings, "epoch": self.epoch, "batch": self.batch, "chunk": self.chunk,
                "steps": self.steps, "loss_sum": self.loss_sum, "loss_count": self.loss_count,
                "history": self.history, "best": self.best, "bad_epochs": self.bad_epochs, "stopped": self.stopped,
                "has_best": self.best_params is not None, "carried": carried}

    def arrays(self) -> Arrays:
        """What a checkpoint's arrays keep of the run: the best weights, the carried states."""
        out: Arrays = {}
        if self.best_params is not None:
            out.update({f"best:{name}": value for name, value in self.best_params.items()})
        for k, state in enumerate(self.carried or []):
            parts = state if isinstance(state, tuple) else (state,)
            out.update({f"carried:{k}:{j}": part for j, part in enumerate(parts)})
        return out

    @classmethod
    def from_checkpoint(cls, header: Header, arrays: Arrays, model: Model) -> FitState:
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
            run.carried = _carried_from_checkpoint(f["carried"], arrays, model)
        return run


def _carried_from_checkpoint(carried: object, arrays: Arrays, model: Model) -> list[LayerState]:
    """The states carried between chunks, one per recurrent layer: a tuple of its parts when the
    state has several (the header counts them), else one array (the header says 0)."""
    recurrent = [layer for layer in model.layers if isinstance(layer, RNNBase)]
    if not isinstance(carried, list) or len(carried) != len(recurrent):
        raise ValueError(f"fit.carried: expected one state per recurrent layer ({len(recurrent)})")
    states: list[LayerState] = []
    for k, (parts, layer) in enumerate(zip(carried, recurrent)):
        shapes = layer.state_shapes(B=0)
        if parts != (len(shapes) if len(shapes) > 1 else 0):
            raise ValueError(f"fit.carried[{k}]: a state of {parts!r} parts for {layer.mode}")
        state = tuple(arrays[f"carried:{k}:{j}"] for j in range(len(shapes)))
        if any(s.ndim != 3 or s.shape[0] != rows or s.shape[2] != size or s.shape[1] != state[0].shape[1]
               for s, (_, (rows, _, size)) in zip(state, shapes)):
            raise ValueError(f"fit.carried[{k}]: shapes {[s.shape for s in state]} do not fit {layer!r}")
        states.append(state if parts else state[0])
    return states


# -- fit ------------------------------------------------------------------------------------------

def fit(model: Model, X: ArrayLike, y: ArrayLike, *, epochs: int = 1, batch_size: int = 32,
        lengths: Optional[ArrayLike] = None, validation_data: Optional[Sequence[Any]] = None, shuffle: bool = True,
        seed: int = 0, early_stopping: Optional[int] = None, tbptt: Optional[int] = None,
        checkpoint: Optional[PathLike] = None, checkpoint_every: Optional[int] = None, resume: bool = False,
        verbose: int = 1, distributed: Union[bool, Group, None] = None) -> list[dict[str, float]]:
    """Train `model` on (X, y): Sequential.fit's arguments and history (see its docstring).
    distributed: True (or an lstm_ext.distributed.Group) for data-parallel training over MPI,
    batch_size then being the global batch (lstm_ext.distributed)."""
    if distributed not in (None, False) and tbptt is not None:
        raise ValueError("tbptt: truncated BPTT is not supported with distributed=True")
    # The group before the other checks: its hook ends the whole job when they refuse one rank's
    # arguments alone; the other ranks would otherwise wait for that rank in MPI forever.
    group = make_group(distributed)
    root = group is None or group.is_root  # the rank that writes files and prints
    if model.optimizer is None:
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
    X, y, lengths = read_data(model, X, y, lengths)
    if tbptt is not None and (lengths is not None or y.ndim < 2 or y.shape[1] != X.shape[1]
                              or not _keeps_time_axis(model)):
        raise ValueError("tbptt: needs sequence-to-sequence targets y (N, T, ...) and sequences of equal length "
                         "(lengths=None)")
    check_targets(model, X, y, lengths)
    validation = _read_validation(model, validation_data)
    if validation is not None:
        check_targets(model, *validation, name="y_val")

    N = len(X)
    settings = {"samples": N, "batch_size": batch_size, "shuffle": bool(shuffle), "seed": int(seed),
                "tbptt": tbptt, "early_stopping": early_stopping}
    if group is not None:  # before any other collective call: the ranks must agree (lstm_ext.distributed)
        group.check_agreement(_fit_description(model, X, y, lengths, validation, epochs, settings), "distributed fit")
    run = FitState(settings)
    if resume and root and checkpoint is not None and os.path.exists(checkpoint):
        run = _resume(model, checkpoint, settings)
    step: Step = functools.partial(_train_global_batch, model)
    if group is not None:
        group.share_cpus()
        run = _start_together(model, run, group)
        step = _DistributedStep(model, group)

    def after_step() -> None:
        """Count an optimizer step (the position has already moved past it); a checkpoint every
        checkpoint_every steps."""
        run.steps += 1
        if root and checkpoint is not None and checkpoint_every is not None and run.steps % checkpoint_every == 0:
            ckpt.write_model(checkpoint, model, run)

    model.train()
    batches_per_epoch = math.ceil(N / batch_size)
    bar = _progress_bar(verbose if root else 0, epochs * batches_per_epoch, run.epoch * batches_per_epoch + run.batch)
    try:
        while run.epoch < epochs and not run.stopped:
            order = np.random.default_rng([settings["seed"], run.epoch]).permutation(N) if shuffle else np.arange(N)
            while run.batch < batches_per_epoch:
                index = order[run.batch * batch_size:(run.batch + 1) * batch_size]
                if tbptt is None:
                    run.add_loss(step(X, y, lengths, index), len(index))
                    run.batch += 1
                    after_step()
                else:
                    _train_chunks(model, run, X, y, index, tbptt, after_step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{run.loss_sum / max(run.loss_count, 1):.4g}")
            _end_epoch(model, run, validation, early_stopping, verbose if root else 0, bar, group, tbptt)
            if root and checkpoint is not None:
                ckpt.write_model(checkpoint, model, run)
    finally:
        if bar is not None:
            bar.close()
    if run.best_params is not None:
        model.load_state_dict(run.best_params)
    model.history = run.history
    return model.history


def _train_chunks(model: Model, run: FitState, X: np.ndarray, y: np.ndarray, index: np.ndarray, tbptt: int,
                  after_step: Callable[[], None]) -> None:
    """The chunks of tbptt steps of the batch of samples `index` from run.chunk on, one optimizer
    step each; the position (chunk, then batch) moves past each chunk before after_step() may
    write a checkpoint. Each chunk's samples are copied out of (X, y) on their own: the memory of
    a chunk, not of the batch's whole sequences."""
    chunks = math.ceil(X.shape[1] / tbptt)
    while True:
        steps = slice(run.chunk * tbptt, (run.chunk + 1) * tbptt)
        loss, run.carried = train_chunk(model, X[index, steps], y[index, steps], run.carried)
        run.add_loss(loss, len(index))
        run.chunk += 1
        last = run.chunk == chunks
        if last:
            run.chunk, run.carried = 0, None
            run.batch += 1
        after_step()
        if last:
            return


def _end_epoch(model: Model, run: FitState, validation: Optional[Data], early_stopping: Optional[int],
               verbose: int, bar: Any, group: Optional[Group] = None,
               tbptt: Optional[int] = None) -> None:  # bar: a tqdm bar or None
    """The epoch's record in the history (loss, val_loss), early stopping, the report. With
    tbptt the validation sequences are run in chunks of that many steps too."""
    record: dict[str, float] = {"epoch": run.epoch + 1, "loss": run.loss_sum / max(run.loss_count, 1)}
    if validation is not None:
        record["val_loss"] = evaluate(model, *validation, group=group, chunk_steps=tbptt)
        model.train()
    run.history.append(record)
    watched = record.get("val_loss", record["loss"])
    if early_stopping is not None:
        if run.best is None or watched < run.best:
            run.best, run.bad_epochs = watched, 0
            run.best_params = model.state_dict()
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


def _read_validation(model: Model, validation_data: Optional[Sequence[Any]]) -> Optional[Data]:
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise TypeError("validation_data: expected (X_val, y_val) or (X_val, y_val, lengths_val)")
    X_val: ArrayLike = validation_data[0]
    y_val: ArrayLike = validation_data[1]
    if len(validation_data) == 2:
        return read_data(model, X_val, y_val, None, name="X_val")
    return read_data(model, X_val, y_val, validation_data[2], name="X_val")


def _resume(model: Model, path: PathLike, settings: dict[str, Any]) -> FitState:
    """Where the fit stopped, from the checkpoint at `path`, and the model (weights, optimizer,
    generators) as it was then; refused unless it was written by a fit of this model with these
    settings."""
    header, arrays = ckpt.read_checkpoint(path)
    if not isinstance(header.get("fit"), dict):
        raise ckpt.CheckpointError(f"{path}: a saved model, not a training checkpoint: nothing to resume")
    expected = ckpt.layer_specs(model)
    if ckpt.with_defaults(header.get("model") or []) != ckpt.with_defaults(expected):
        raise ckpt.CheckpointError(f"{path}: written for another model ({header.get('model')}), not this one "
                                   f"({expected})")
    ckpt.check_parameters(path, header, arrays)
    saved = header["fit"].get("settings")
    if saved != settings:
        differ = ({k: (saved.get(k), settings.get(k)) for k in settings if saved.get(k) != settings.get(k)}
                  if isinstance(saved, dict) else saved)
        raise ValueError(f"resume: the checkpoint {path} comes from a fit with other settings "
                         f"(saved, now): {differ}")
    with ckpt.contents_of(path):
        run = FitState.from_checkpoint(header, arrays, model)
        ckpt.restore_model(model, header, arrays)
    return run


def _progress_bar(verbose: int, total: int, done: int) -> Any:  # a tqdm bar or None
    """A tqdm bar on stderr when verbose == 1, tqdm is installed and stderr is a terminal."""
    if verbose != 1 or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=done, unit="batch", dynamic_ncols=True, leave=True)


# -- evaluate and predict -------------------------------------------------------------------------

def evaluate(model: Model, X: ArrayLike, y: ArrayLike, lengths: Optional[ArrayLike] = None,
             batch_size: int = 256, group: Optional[Group] = None, chunk_steps: Optional[int] = None) -> float:
    """The loss on (X, y) in inference mode: the mean over batches, weighted by their sizes.
    With a distributed Group each rank evaluates its contiguous share of the samples and the
    sums are added over the ranks. chunk_steps (fit's tbptt): whole sequences (lengths None) of
    a sequence-to-sequence model are run that many steps at a time, the state carried from chunk
    to chunk, so that the memory is a chunk's, not a whole sequence's (_chunked_loss)."""
    if model.loss_name is None:
        raise RuntimeError("evaluate: call compile() first (the loss)")
    X, y, lengths = read_data(model, X, y, lengths)
    check_targets(model, X, y, lengths)
    batch_size = check_positive_int(batch_size, "batch_size")
    samples = np.arange(len(X)) if group is None else group.shard(np.arange(len(X)))
    was_training = model.training
    model.eval()
    total = 0.0
    chunked = chunk_steps is not None and lengths is None and _keeps_time_axis(model)
    for start in range(0, len(samples), batch_size):
        part = samples[start:start + batch_size]
        if chunked:
            assert chunk_steps is not None  # (for mypy: chunked says so)
            loss = _chunked_loss(model, X, y, part, chunk_steps)
        else:
            l_b = None if lengths is None else lengths[part]
            loss, _ = loss_and_gradient(model, model.forward(X[part], lengths=l_b), y[part], l_b)
        total += loss * len(part)
    model.train(was_training)
    if group is not None:
        sums = np.array([total])
        group.allreduce_sum(sums, "the allreduce of a validation loss")
        total = float(sums[0])
    return total / len(X)


def _chunked_loss(model: Model, X: np.ndarray, y: np.ndarray, part: np.ndarray, chunk_steps: int) -> float:
    """The loss of the whole sequences X[part] against y[part] (sequence to sequence), the model
    run chunk_steps steps at a time in inference mode with the state carried from chunk to chunk:
    the chunks' summed losses over their counted elements, which is the loss of the sequences run
    whole, to rounding. Each chunk's samples are copied out of (X, y) on their own."""
    loss_sum, count = 0.0, 0.0
    carried: Optional[list[LayerState]] = None
    for start in range(0, X.shape[1], chunk_steps):
        steps = slice(start, start + chunk_steps)
        out = model.forward(X[part, steps], states=carried)
        carried = model.states
        chunk_sum, chunk_count, _ = summed_loss(model, out, y[part, steps], None)
        loss_sum += chunk_sum
        count += chunk_count
    return loss_sum / max(count, 1.0)


def predict(model: Model, X: ArrayLike, lengths: Optional[ArrayLike] = None, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for X (N, T, features) or (N, T) tokens, lengths (N,) or None, in
    inference mode, batch by batch: (N, outputs), or (N, T, outputs) for sequence to sequence."""
    X, _, lengths = read_data(model, X, None, lengths)
    batch_size = check_positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    outputs = [model.forward(X[start:start + batch_size],
                             lengths=None if lengths is None else lengths[start:start + batch_size])
               for start in range(0, len(X), batch_size)]
    model.train(was_training)
    y: np.ndarray = np.concatenate(outputs)
    return y
