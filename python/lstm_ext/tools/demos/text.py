"""Character-level language models (LSTM, GRU, vanilla RNN), trained briefly on a text and sampled.

The text (``--text FILE``, of which the demo reads at most the first million characters, a
hundred thousand with --quick, and says so; by default an essay written for this package,
shipped with it) is split 80/10/10 into training, validation and test parts. The training part
is cut into 16 parallel streams that the models read with truncated backpropagation through
time (chunks of 64 characters, the state carried across chunks). Each model: an embedding of the
characters, one recurrent layer of 128 units (LSTM, GRU or vanilla tanh RNN) and a linear head
over the vocabulary, trained with cross-entropy; training stops when the validation loss has not
improved for 4 epochs and keeps the best weights (on so small a text a model that trains on keeps
memorising it: an LSTM trained 40 epochs reached a training loss of 0.6 and a held-out loss of
1.96 nats; stopped early, 1.75 on the test part).

Each model's loss per character (in nats) on the test part, which neither training nor early
stopping saw, is set against the unigram baseline: the entropy of the training part's character
frequencies, what a model that knows only how common each character is would score. Threshold:
each model's test loss is below the baseline. All three beat it by far; the vanilla RNN ends up
about 0.1 nats per character behind the gated two (the chunks of 64 characters ask for no long
memory). Each model's test loss is also reported for its int8 copy (lstm_ext.quantize_dynamic:
the recurrent weights and activations quantized), next to the float32 one (not part of the
threshold); a model with a layer that has no int8 form (layer_norm) gets no int8 figure, and the
summary says why. Then each model writes a line on its own from the same prompt, each character
drawn from its predictions sharpened by a temperature (0.7).
"""

from __future__ import annotations

import collections
import importlib.resources
import math
import os
import re
from typing import Any, Optional

import numpy as np

from lstm_ext import Adam, Embedding, Linear, Sequential, cross_entropy
from .common import (COLOURS, KINDS, Context, Result, float32_and_int8, int8_copy, integer_epochs, layer_class,
                     legend_outside)

STREAMS, CHUNK, TEMPERATURE, PATIENCE, HIDDEN = 16, 64, 0.7, 4, 128
PROMPT = "The "
# At most this many characters of a --text file are read (character_limit): the memory and the
# time of the demo grow with the text (its validation and test parts are each run as one
# sequence). Read whole, a 44 MB text took the demo past 11 GiB resident. Measured on 2 CPUs: a
# million characters peak at 0.4-0.45 GiB (12 epochs of the three models: 7 minutes), a hundred
# thousand with --quick at 0.1 GiB (17 s).
MAX_CHARACTERS = 1_000_000
QUICK_MAX_CHARACTERS = 100_000  # with --quick
MIN_CHARACTERS = 2 * STREAMS * CHUNK  # every stream gets at least a chunk, the validation and test parts some
MAX_CONTROL_SHARE = 0.1  # a text with more control characters than this (NUL bytes, say) is not text
# Control characters but the whitespace ones (tab, line feed, vertical tab, form feed, carriage return).
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def default_text() -> str:
    return (importlib.resources.files(__package__) / "data" / "on_remembering.txt").read_text(encoding="utf-8")


def character_limit(quick: bool) -> int:
    """How many characters of a --text file the demo reads at most."""
    return QUICK_MAX_CHARACTERS if quick else MAX_CHARACTERS


def read_text(path: str, limit: int) -> tuple[str, bool]:
    """The first `limit` characters of the UTF-8 file at `path` (never more in memory), and
    whether the file has more, which the demo leaves out. Raises what open and read raise
    (OSError, UnicodeDecodeError)."""
    with open(path, encoding="utf-8") as f:
        text = f.read(limit + 1)
    return text[:limit], len(text) > limit


def text_problem(text: str) -> Optional[str]:
    """None when the demo can learn from `text`; else why not. Checked before any work: on a file
    of NUL bytes, say, the models trained for their whole budget and then failed the threshold
    (one distinct character: a unigram baseline of 0 nats, which no model can beat)."""
    if not text.strip():
        return "the file is empty"
    if len(text) < MIN_CHARACTERS:
        return (f"has {len(text)} characters; the text demo needs at least {MIN_CHARACTERS} ({STREAMS} streams "
                f"of {CHUNK}-character chunks and a validation and a test part)")
    control = len(text) - len(CONTROL.sub("", text))
    if control > MAX_CONTROL_SHARE * len(text):
        return (f"{control} of its {len(text)} characters ({control / len(text):.0%}) are control characters "
                f"(NUL bytes, say) other than whitespace; the text demo needs text, at most "
                f"{MAX_CONTROL_SHARE:.0%} of them")
    printable = sorted(c for c in set(text) if c.isprintable())
    if len(printable) < 2:
        return (f"has {len(printable)} distinct printable character{'s' if len(printable) != 1 else ''} "
                f"({''.join(printable)!r}); the text demo needs at least 2: there is nothing to predict")
    return None


def text_file_problem(path: str, limit: int) -> Optional[str]:
    """None when the text demo can use the file at `path` (its first `limit` characters); else
    why not, starting with the path. For the command line's --text, before any work."""
    if not os.path.isfile(path):
        return f"{path}: no such file"
    try:
        text, _ = read_text(path, limit)
    except OSError as error:
        return f"{path}: {error.strerror or error}"
    except UnicodeDecodeError:
        return f"{path}: not UTF-8 text"
    problem = text_problem(text)
    return None if problem is None else f"{path}: {problem}"


def sample(model: Sequential, prompt_ids: list[int], length: int, temperature: float,
           rng: np.random.Generator) -> list[int]:
    """Continue the prompt for `length` characters, one step at a time, carrying the state."""
    model.eval()
    out = model.forward(np.array([prompt_ids]), states=None)
    states = model.states
    logits = out[0, -1]
    produced: list[int] = []
    for _ in range(length):
        z = logits.astype(np.float64) / temperature
        p = np.exp(z - z.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        produced.append(token)
        out = model.forward(np.array([[token]]), states=states)
        states = model.states
        logits = out[0, -1]
    model.train()
    return produced


def run(context: Context) -> Result:
    cut = False  # whether the text is the file's first character_limit characters only
    if context.text_path is not None:
        text, cut = read_text(context.text_path, character_limit(context.quick))
        source = context.text_path
    else:
        text, source = default_text(), "on_remembering.txt (shipped)"
    problem = text_problem(text)
    if problem:
        raise ValueError(f"--text: {source}: {problem}")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], dtype=np.int32)
    train_end, validation_end = int(len(data) * 0.8), int(len(data) * 0.9)
    train, validation, test = data[:train_end], data[train_end:validation_end], data[validation_end:]
    per_stream = (len(train) - 1) // STREAMS
    X = np.stack([train[s * per_stream:(s + 1) * per_stream] for s in range(STREAMS)])
    y = np.stack([train[s * per_stream + 1:(s + 1) * per_stream + 1] for s in range(STREAMS)])

    counts = collections.Counter(train.tolist())
    unigram = -sum(n / len(train) * math.log(n / len(train)) for n in counts.values())
    max_epochs = 12 if context.quick else 60
    size = (f"its first {len(text)} characters (the text demo reads at most {MAX_CHARACTERS}, "
            f"{QUICK_MAX_CHARACTERS} with --quick)" if cut else f"{len(text)} characters")
    context.log(f"  {source}: {size}, {len(chars)} distinct; {STREAMS} streams of {per_stream}, "
                f"chunks of {CHUNK}; up to {max_epochs} epochs, early stopping on the validation part; "
                f"unigram baseline {unigram:.3f} nats per character")
    histories: dict[str, list[dict[str, float]]] = {}
    metrics: dict[str, Any] = {}  # by the kind, then the run's numbers
    samples: dict[str, str] = {}
    for kind in KINDS:
        model = Sequential(Embedding(len(chars), 32, seed=context.seed),
                           layer_class(kind)(32, HIDDEN, batch_first=True, seed=context.seed),
                           Linear(HIDDEN, len(chars), seed=context.seed))
        model.compile(loss="cross_entropy", optimizer=Adam(lr=1e-2), clip_grad_norm=1.0)
        history = model.fit(X, y, epochs=max_epochs, batch_size=STREAMS, shuffle=False, tbptt=CHUNK, verbose=0,
                            validation_data=(validation[None, :-1], validation[None, 1:]), early_stopping=PATIENCE)
        best = int(np.argmin([h["val_loss"] for h in history]))  # the epoch whose weights the model kept
        model.eval()
        test_loss, _ = cross_entropy(model.forward(test[None, :-1]), test[None, 1:])
        model.train()
        quantized, skipped = int8_copy(model)  # the same weights in int8, on the same test part
        test_loss_int8 = (None if quantized is None else
                          float(cross_entropy(quantized.forward(test[None, :-1]), test[None, 1:])[0]))
        histories[kind] = history
        metrics[kind] = {"test_loss": float(test_loss), "test_loss_int8": test_loss_int8,
                         "validation_loss": float(history[best]["val_loss"]),
                         "training_loss": float(history[best]["loss"]), "epochs": len(history),
                         "best_epoch": best + 1}
        if skipped is not None:
            metrics[kind]["int8_skipped"] = skipped
        context.log(f"  {kind:4s} ({HIDDEN} units): loss per character after epoch {best + 1} of {len(history)}: "
                    f"training {history[best]['loss']:.3f}, validation {history[best]['val_loss']:.3f}, "
                    f"test {float32_and_int8(float(test_loss), test_loss_int8, skipped, 3)}")
        rng = np.random.default_rng(context.seed)  # the same draws for every model
        ids = [index[c] for c in PROMPT if c in index] or [0]
        produced = sample(model, ids, 90, TEMPERATURE, rng)
        samples[kind] = (PROMPT + "".join(chars[t] for t in produced)).replace("\n", " ")
    for kind in KINDS:
        context.log(f"  {kind} sample: {samples[kind]}")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, axis = plt.subplots(figsize=(9, 4))
        for kind in KINDS:
            history, m = histories[kind], metrics[kind]
            epochs = range(1, len(history) + 1)
            axis.plot(epochs, [h["loss"] for h in history], color=COLOURS[kind], ls="--", lw=1,
                      label=f"{kind}: training")
            axis.plot(epochs, [h["val_loss"] for h in history], color=COLOURS[kind], lw=1.8,
                      label=f"{kind}: validation")
            axis.plot(m["best_epoch"], m["validation_loss"], "o", color=COLOURS[kind], ms=8, mfc="white",
                      label=f"{kind}: weights kept (epoch {m['best_epoch']}), test loss {m['test_loss']:.2f}")
        axis.axhline(unigram, color=COLOURS["baseline"], ls=":", label=f"unigram baseline ({unigram:.2f})")
        axis.set(xlabel="epoch", ylabel="nats per character",
                 title=f"Character-level language models ({HIDDEN} units each)")
        axis.set_xlim(0.5, max(len(h) for h in histories.values()) + 0.5)
        integer_epochs(axis)
        legend_outside(axis, fontsize=8)
        plot = context.save_figure(figure, "text.png")
    passed = all(metrics[kind]["test_loss"] < unigram for kind in KINDS)
    metrics.update({"unigram_baseline": float(unigram), "hidden": HIDDEN, "characters": len(text),
                    "vocabulary": len(chars)})
    return Result(metrics=metrics, passed=passed, plot=plot,
                  threshold=f"LSTM, GRU and RNN ({HIDDEN} units each): each one's test loss per character below the "
                            "unigram baseline",
                  details={"samples": samples, "prompt": PROMPT, "temperature": TEMPERATURE, "text": source,
                           "text_cut": cut})
