"""The checkpoint file: one .npz holding named arrays and a JSON header; a model in it.

The header (a UTF-8 JSON document stored as the uint8 array ``__header__``) says what the file
is and carries everything that is not an array; it ends with a SHA-256 digest of itself and of
every array (name, dtype, shape and bytes), checked on reading, so that a corrupted file is
refused with a clear error instead of loading wrong numbers. Files are read with
``allow_pickle=False`` (nothing in them can run code) and written atomically (_io): an
interrupted write leaves the previous file as it was.

A model's file (``write_model``; ``Sequential.save`` and the checkpoints of ``fit``) holds:

- header ``model``: a list of {type, config} per layer; ``rng``: each recurrent layer's dropout
  generator; ``history``; ``compile``: loss, clip_grad_norm and the optimizer's type, settings
  and step count; ``fit`` (a training checkpoint only): where the run is (training.FitState);
- arrays ``param:{index}.{name}`` (the weights), ``optimizer:{buffer}:{parameter}`` (its state),
  and for a fit ``best:{parameter}`` (early stopping's best weights) and ``carried:{k}:{part}``
  (truncated BPTT's carried states).

Reading checks the header's layers and the file's parameters against each other before any layer
is built (``check_parameters``), and every part of the contents before the model changes
(``restore_model``): a hostile or edited file raises CheckpointError and changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np
from numpy.typing import ArrayLike

from ._io import write_bytes_atomic
from ._typing import Arrays, Header, PathLike
from .layers import Module, RNNBase
from .losses import LOSSES
from .nn import LAYER_TYPES
from .optim import OPTIMIZERS, Optimizer

__all__ = ["CheckpointError", "write_checkpoint", "read_checkpoint", "write_model", "read_model_file", "build_layers",
           "restore_model", "layer_specs", "with_defaults", "check_parameters", "check_field_kinds", "contents_of"]


# What the file keeps of a model and of a fit, as Protocols (model.py and training.py import this
# module): lstm_ext.Sequential and training.FitState.
class Model(Protocol):
    """A model (lstm_ext.Sequential): layers, weights, compile settings and optimizer, history."""

    history: list[dict[str, float]]

    @property
    def layers(self) -> list[Module]: ...
    @property
    def loss_name(self) -> Optional[str]: ...
    @property
    def optimizer(self) -> Optional[Optimizer]: ...
    @property
    def clip_norm(self) -> Optional[float]: ...

    def named_parameters(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike]) -> None: ...

    def compile(self, loss: str = ..., optimizer: Optional[Optimizer] = ...,
                clip_grad_norm: Optional[float] = ...) -> object: ...


class Run(Protocol):
    """Where a fit is (training.FitState)."""

    @property
    def history(self) -> list[dict[str, float]]: ...

    def header(self) -> Header: ...

    def arrays(self) -> Arrays: ...


FORMAT = "lstm_ext checkpoint"
VERSION = 1
_HEADER = "__header__"


class CheckpointError(ValueError):
    """The file is not a complete, intact lstm_ext checkpoint."""


def _digest(header: Header, arrays: Arrays) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_checkpoint(path: PathLike, header: Header, arrays: Arrays) -> None:
    """Write `header` (JSON-able) and `arrays` ({name: array}) to `path`, atomically."""
    for name, value in arrays.items():
        if name == _HEADER or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise TypeError(f"arrays[{name!r}]: expected a numeric NumPy array")
    full = {"format": FORMAT, "version": VERSION, **header}
    full["sha256"] = _digest(full, arrays)
    buffer = io.BytesIO()
    members: dict[str, Any] = {_HEADER: np.frombuffer(json.dumps(full).encode(), dtype=np.uint8), **arrays}
    np.savez(buffer, **members)
    write_bytes_atomic(path, buffer.getvalue())


def read_checkpoint(path: PathLike) -> tuple[Header, Arrays]:
    """(header, arrays) of the checkpoint at `path`; CheckpointError if it is not a complete,
    intact checkpoint (FileNotFoundError if there is no file).

    Nothing is trusted before it is checked: the file must be a zip archive of uncompressed .npy
    members (what np.savez writes), each member's header must describe a numeric array of exactly
    the bytes the member holds (so that no header can make this allocate more than the file's own
    size), and the JSON header must parse; then the digest must match.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        arrays = _read_arrays(path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable lstm_ext checkpoint (truncated or corrupted: {error})") from error
    if _HEADER not in arrays:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint (no header)")
    raw = arrays.pop(_HEADER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted (not a byte string)")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted ({type(error).__name__}: {error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')!r}, this lstm_ext reads "
                              f"version {VERSION}")
    stored = header.pop("sha256", None)
    try:
        intact = stored == _digest(header, arrays)
    except (TypeError, ValueError, RecursionError) as error:  # a header that cannot be serialised again
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted ({type(error).__name__}: {error})") from error
    if not intact:
        raise CheckpointError(f"{path}: the checkpoint is corrupted (its SHA-256 digest does not match its contents)")
    return header, arrays


def _read_arrays(path: str) -> Arrays:
    """{name: array} of the .npy members of the .npz at `path`, each checked before it is read."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"
        raise CheckpointError(f"{path}: " + ("not a readable lstm_ext checkpoint (truncated or corrupted: no zip "
                                             "directory at its end)" if zip_start else
                                             "not an lstm_ext checkpoint (not a .npz archive)"))
    file_bytes = os.path.getsize(path)
    arrays: Arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED or info.file_size > file_bytes:
                raise CheckpointError(f"{path}: member {name!r} is not an uncompressed .npy array within the file")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise CheckpointError(f"{path}: member {name!r} has .npy format version {version}")
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise CheckpointError(f"{path}: member {name!r} holds dtype {dtype}, not numbers")
                count = 1
                for n in shape:
                    count *= n
                nbytes = count * dtype.itemsize  # Python integers: no overflow
                if nbytes != info.file_size - member.tell():
                    raise CheckpointError(f"{path}: member {name!r} claims shape {shape} ({nbytes} bytes) but holds "
                                          f"{info.file_size - member.tell()} bytes")
                data = member.read(nbytes)
            if len(data) != nbytes:
                raise CheckpointError(f"{path}: member {name!r} is truncated")
            arrays[name[:-len(".npy")]] = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    return arrays


# -- a model in a checkpoint -----------------------------------------------------------------------

def layer_specs(model: Model) -> list[dict[str, Any]]:
    """The header's ``model``: {type, config} of every layer."""
    return [{"type": type(layer).__name__, "config": layer.config()} for layer in model.layers]


def with_defaults(specs: list[Any]) -> list[Any]:
    """Layer specs (a header's ``model``) with every constructor argument a file written before
    the argument existed leaves out set to its default, as JSON gives values back (tuples as
    lists): the form in which two specs are compared. Anything but a list comes back as it is."""
    if not isinstance(specs, list):  # an edited header's: compared as it is, and refused
        return specs
    completed = []
    for spec in specs:
        named = isinstance(spec, dict) and isinstance(spec.get("type"), str)  # not a list: unhashable
        layer_type = LAYER_TYPES.get(spec["type"]) if named else None
        if layer_type is None or not isinstance(spec.get("config"), dict):
            completed.append(spec)
            continue
        defaults = {name: list(p.default) if isinstance(p.default, tuple) else p.default
                    for name, p in inspect.signature(layer_type.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty and name not in spec["config"]}
        completed.append({**spec, "config": {**defaults, **spec["config"]}})
    return completed


def write_model(path: PathLike, model: Model, run: Optional[Run] = None) -> None:
    """Write `model` (layers, weights, compile settings and optimizer state, dropout generators,
    history) to `path`, atomically; with `run` (a training.FitState) a training checkpoint that
    also holds where the fit is."""
    header: Header = {"model": layer_specs(model),
              "rng": [layer.rng_state() if isinstance(layer, RNNBase) else None for layer in model.layers],
              "history": run.history if run is not None else model.history}
    arrays = {f"param:{name}": value for name, value in model.named_parameters().items()}
    if model.optimizer is not None:
        state = model.optimizer.state_dict()
        header["compile"] = {"loss": model.loss_name, "clip_grad_norm": model.clip_norm,
                             "optimizer": {"type": state["type"], "hyper": state["hyper"], "steps": state["steps"]}}
        for kind, store in state["buffers"].items():
            arrays.update({f"optimizer:{kind}:{name}": value for name, value in store.items()})
    if run is not None:
        header["fit"] = run.header()
        arrays.update(run.arrays())
    write_checkpoint(path, header, arrays)


def read_model_file(path: PathLike) -> tuple[Header, Arrays]:
    """(header, arrays) of a model's file, the layers and parameters checked against each other."""
    header, arrays = read_checkpoint(path)
    check_parameters(path, header, arrays)
    return header, arrays


def build_layers(header: Header) -> list[Module]:
    """New layers as the header describes them (checked by read_model_file; call it inside
    contents_of: a config the layer refuses raises its own error)."""
    return [LAYER_TYPES[spec["type"]](**spec["config"]) for spec in header["model"]]


def check_layer_specs(path: PathLike, header: Header, arrays: Arrays) -> list[dict[str, Any]]:
    """The header's layers: a list of known kinds with configs, every field of the header of its JSON
    kind (check_field_kinds), and no size in a config larger than the number of values the file's
    arrays hold (so that no header can make the layers larger than the file)."""
    specs = header.get("model")
    if not isinstance(specs, list) or not all(isinstance(spec, dict) and isinstance(spec.get("config"), dict)
                                              for spec in specs):
        raise CheckpointError(f"{path}: the header does not describe a list of layers with their settings")
    check_field_kinds(path, header)
    largest = sum(value.size for value in arrays.values())  # no size in a config can exceed this
    for index, spec in enumerate(specs):
        kind = LAYER_TYPES.get(spec.get("type")) if isinstance(spec.get("type"), str) else None
        if kind is None:
            raise CheckpointError(f"{path}: layer {index} is of an unknown type {spec.get('type')!r}")
        for key, value in spec["config"].items():
            if key != "seed" and isinstance(value, int) and not isinstance(value, bool) and value > largest:
                raise CheckpointError(f"{path}: layer {index} ({spec['type']}) has {key} = {value}, more than the "
                                      f"{largest} values the file holds")
    return specs


def layer_parameter_shapes(path: PathLike, index: int, spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of layer `index` (a spec checked by check_layer_specs), or a
    CheckpointError if its settings are invalid."""
    try:
        shapes = LAYER_TYPES[spec["type"]].parameter_shapes(spec["config"])
    except _CONTENT_ERRORS as error:
        raise CheckpointError(f"{path}: layer {index} ({spec['type']}) has invalid settings "
                              f"({type(error).__name__}: {error})") from error
    return {name: tuple(shape) for name, shape in shapes.items()}


def check_parameters(path: PathLike, header: Header, arrays: Arrays) -> None:
    """The header's layers are known kinds with configs, every field of the header is of its JSON
    kind (check_field_kinds), and the file holds exactly the parameters the layers have, with their
    shapes: checked before any layer is built, so that no header can make the layers larger than
    the file that carries their weights."""
    params = {name[len("param:"):]: value for name, value in arrays.items() if name.startswith("param:")}
    specs = check_layer_specs(path, header, params)
    expected: dict[str, tuple[int, ...]] = {}
    for index, spec in enumerate(specs):
        expected.update({f"{index}.{name}": shape for name, shape in layer_parameter_shapes(path, index, spec).items()})
    missing = [name for name in expected if name not in params]
    extra = [name for name in params if name not in expected]
    misshapen = [f"{name} {params[name].shape} instead of {expected[name]}" for name in expected
                 if name in params and params[name].shape != expected[name]]
    if missing or extra or misshapen:
        raise CheckpointError(f"{path}: the parameters do not match the layers the header describes (missing: "
                              f"{missing}, unexpected: {extra}, misshapen: {misshapen})")


# -- the kinds of the header's fields ---------------------------------------------------------------
# JSON tells a boolean from a string and an integer from a float, but the constructors' bool() and
# int() would not: "no" would load as True, 2.5 as 2. So every field a model or a fit is rebuilt
# from is checked for its JSON kind first, by name, with a message naming the field.

@dataclass(frozen=True)
class FieldKind:
    """A kind of JSON value a header field holds: what a message calls it, and its test."""

    name: str
    holds: Callable[[Any], bool]


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


BOOLEAN = FieldKind("a boolean (true or false)", lambda value: isinstance(value, bool))
INTEGER = FieldKind("an integer", _is_integer)
COUNT = FieldKind("an integer >= 0", lambda value: _is_integer(value) and value >= 0)
NUMBER = FieldKind("a number", _is_number)
STRING = FieldKind("a string", lambda value: isinstance(value, str))
OBJECT = FieldKind("an object", lambda value: isinstance(value, dict))
LIST = FieldKind("a list", lambda value: isinstance(value, list))
INTEGER_OR_NULL = FieldKind("an integer or null", lambda value: value is None or _is_integer(value))
COUNT_OR_NULL = FieldKind("an integer >= 0 or null", lambda value: value is None or COUNT.holds(value))
NUMBER_OR_NULL = FieldKind("a number or null", lambda value: value is None or _is_number(value))
PAIR_OF_NUMBERS = FieldKind("a list of two numbers",
                            lambda value: isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)))
LIST_OF_COUNTS_OR_NULL = FieldKind("a list of integers >= 0 or null", lambda value: value is None or (
    isinstance(value, list) and all(map(COUNT.holds, value))))

# The layers' constructor arguments, as config() writes them (the same name means the same thing in
# every layer type; a name a type does not take is refused by its constructor). Every argument of
# every type in LAYER_TYPES is here (a test checks).
LAYER_SETTINGS: dict[str, FieldKind] = {
    "input_size": INTEGER, "hidden_size": INTEGER, "num_layers": INTEGER, "proj_size": INTEGER,
    "in_features": INTEGER, "out_features": INTEGER, "num_embeddings": INTEGER, "embedding_dim": INTEGER,
    "bias": BOOLEAN, "batch_first": BOOLEAN, "bidirectional": BOOLEAN, "peephole": BOOLEAN, "layer_norm": BOOLEAN,
    "dropout": NUMBER, "recurrent_dropout": NUMBER, "zoneout": PAIR_OF_NUMBERS,
    "dtype": STRING, "nonlinearity": STRING, "seed": INTEGER_OR_NULL,
}
# The optimizers' hyper-parameters, as Optimizer.hyper() writes them (every one of every type in
# OPTIMIZERS; a test checks).
OPTIMIZER_SETTINGS: dict[str, FieldKind] = {
    "lr": NUMBER, "momentum": NUMBER, "dampening": NUMBER, "nesterov": BOOLEAN, "weight_decay": NUMBER,
    "betas": PAIR_OF_NUMBERS, "eps": NUMBER,
}
_COMPILE_FIELDS = {"loss": STRING, "clip_grad_norm": NUMBER_OR_NULL, "optimizer": OBJECT}
_OPTIMIZER_FIELDS = {"type": STRING, "hyper": OBJECT, "steps": COUNT}
# A dropout generator's state: numpy's PCG64 (what np.random.default_rng makes).
_RNG_FIELDS = {"bit_generator": STRING, "state": OBJECT, "has_uint32": INTEGER, "uinteger": INTEGER}
_PCG64_FIELDS = {"state": INTEGER, "inc": INTEGER}
# Where a fit is (training.FitState.header) and the settings a resumed fit must share.
_FIT_FIELDS = {"settings": OBJECT, "epoch": COUNT, "batch": COUNT, "chunk": COUNT, "steps": COUNT,
               "loss_sum": NUMBER, "loss_count": COUNT, "history": LIST, "best": NUMBER_OR_NULL,
               "bad_epochs": COUNT, "stopped": BOOLEAN, "has_best": BOOLEAN, "carried": LIST_OF_COUNTS_OR_NULL}
_FIT_SETTINGS = {"samples": COUNT, "batch_size": COUNT, "shuffle": BOOLEAN, "seed": INTEGER,
                 "tbptt": COUNT_OR_NULL, "early_stopping": COUNT_OR_NULL}


def _json_text(value: object) -> str:
    """`value` as a message shows it: its JSON kind and (the start of) its JSON text."""
    if value is None:
        return "null"
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list"),
             (dict, "an object")]
    kind = next((name for python_type, name in kinds if isinstance(value, python_type)), type(value).__name__)
    text = json.dumps(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_fields(path: PathLike, where: str, fields: Mapping[str, Any], kinds: Mapping[str, FieldKind]) -> None:
    """CheckpointError naming the first field of `fields` (the header's part `where`) that is not of
    its kind in `kinds`; fields `kinds` does not name are left to what reads them."""
    for name, value in fields.items():
        kind = kinds.get(name)
        if kind is not None and not kind.holds(value):
            raise CheckpointError(f"{path}: {where}{name}: expected {kind.name}, got {_json_text(value)}")


def _check_history(path: PathLike, where: str, history: object) -> None:
    """A history: a list of {name: number} records, one per epoch."""
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: {where}: expected a list of records, got {_json_text(history)}")
    for index, record in enumerate(history):
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}: {where}[{index}]: expected an object, got {_json_text(record)}")
        for name, value in record.items():
            if not NUMBER.holds(value):
                raise CheckpointError(f"{path}: {where}[{index}].{name}: expected {NUMBER.name}, got {_json_text(value)}")


def check_field_kinds(path: PathLike, header: Header) -> None:
    """Every field of the header that a model or a fit is rebuilt from is of its JSON kind (a
    boolean, an integer, a number, a string, a list, an object, or null where allowed): a
    CheckpointError names the first that is not, what it should be and what it is. Missing fields
    and values out of range are left to what reads them."""
    for index, spec in enumerate(header["model"]):
        for name, value in spec["config"].items():
            kind = LAYER_SETTINGS.get(name)
            if kind is not None and not kind.holds(value):
                raise CheckpointError(f"{path}: layer {index} ({spec.get('type')}) has invalid settings: {name}: "
                                      f"expected {kind.name}, got {_json_text(value)}")
    if "rng" in header:
        if not isinstance(header["rng"], list):
            raise CheckpointError(f"{path}: rng: expected a list of generator states, got "
                                  f"{_json_text(header['rng'])}")
        for index, state in enumerate(header["rng"]):
            if state is None:
                continue
            if not isinstance(state, dict):
                raise CheckpointError(f"{path}: rng[{index}]: expected an object or null, got {_json_text(state)}")
            _check_fields(path, f"rng[{index}].", state, _RNG_FIELDS)
            _check_fields(path, f"rng[{index}].state.", state.get("state", {}), _PCG64_FIELDS)
    if "history" in header:
        _check_history(path, "history", header["history"])
    if "compile" in header:
        settings = header["compile"]
        if not isinstance(settings, dict):
            raise CheckpointError(f"{path}: compile: expected an object, got {_json_text(settings)}")
        _check_fields(path, "compile.", settings, _COMPILE_FIELDS)
        optimizer = settings.get("optimizer", {})
        _check_fields(path, "compile.optimizer.", optimizer, _OPTIMIZER_FIELDS)
        _check_fields(path, "compile.optimizer.hyper.", optimizer.get("hyper", {}), OPTIMIZER_SETTINGS)
    if "fit" in header:
        fit = header["fit"]
        if not isinstance(fit, dict):
            raise CheckpointError(f"{path}: fit: expected an object, got {_json_text(fit)}")
        _check_fields(path, "fit.", fit, _FIT_FIELDS)
        _check_fields(path, "fit.settings.", fit.get("settings", {}), _FIT_SETTINGS)
        if "history" in fit:
            _check_history(path, "fit.history", fit["history"])


def restore_model(model: Model, header: Header, arrays: Arrays) -> None:
    """Weights, optimizer state and dropout generators of `model` from a checkpoint's contents
    (whose parameters check_parameters has checked). Everything is checked before anything of the
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
        if kind not in OPTIMIZERS or c["loss"] not in LOSSES or not isinstance(hyper, dict):
            raise ValueError(f"compile: unknown optimizer {kind!r} or loss {c['loss']!r}")
        settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
        optimizer = OPTIMIZERS[kind](**settings)
        buffers: dict[str, Arrays] = {}
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
def contents_of(path: PathLike) -> Iterator[None]:
    """Turns what a checkpoint's contents make a rebuild raise into a CheckpointError naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except _CONTENT_ERRORS as error:
        raise CheckpointError(f"{path}: its contents do not describe a valid lstm_ext model "
                              f"({type(error).__name__}: {error})") from error
