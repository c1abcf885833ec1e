"""A character-level LSTM language model, trained briefly on a text and then sampled.

The text (``--text FILE``; by default an essay written for this package, shipped with it) is
split 80/10/10 into training, validation and test parts. The training part is cut into 16
parallel streams that the model reads with truncated backpropagation through time (chunks of 64
characters, the state carried across chunks). The model: an embedding of the characters, one
LSTM layer and a linear head over the vocabulary, trained with cross-entropy; training stops
when the validation loss has not improved for 4 epochs and keeps the best weights (on so small
a text a model that trains on keeps memorising it: 40 epochs gave a training loss of 0.6 and a
held-out loss of 1.96 nats; stopped early, 1.75 on the test part).

The loss per character (in nats) on the test part, which neither training nor early stopping
saw, is set against the unigram baseline: the entropy of the training part's character
frequencies, what a model that knows only how common each character is would score. Threshold:
the LSTM's test loss is below the baseline. Then the model writes a few lines on its own, each
character drawn from its predictions sharpened by a temperature (0.7).
"""

from __future__ import annotations

import collections
import importlib.resources
import math

import numpy as np

from lstm_ext import LSTM, Adam, Embedding, Linear, Sequential, cross_entropy
from .common import Result

STREAMS, CHUNK, TEMPERATURE, PATIENCE = 16, 64, 0.7, 4


def default_text() -> str:
    return (importlib.resources.files(__package__) / "data" / "on_remembering.txt").read_text(encoding="utf-8")


def sample(model, prompt_ids, length, temperature, rng):
    """Continue the prompt for `length` characters, one step at a time, carrying the state."""
    model.eval()
    states = None
    out = model.forward(np.array([prompt_ids]), states=None)
    states = model.states
    logits = out[0, -1]
    produced = []
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


def run(context) -> Result:
    if context.text_path is not None:
        with open(context.text_path, encoding="utf-8") as f:
            text = f.read()
        source = context.text_path
    else:
        text, source = default_text(), "on_remembering.txt (shipped)"
    chars = sorted(set(text))
    if len(text) < 2 * STREAMS * CHUNK:
        raise ValueError(f"--text: {source} has {len(text)} characters; the text demo needs at least "
                         f"{2 * STREAMS * CHUNK}")
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], dtype=np.int32)
    train_end, validation_end = int(len(data) * 0.8), int(len(data) * 0.9)
    train, validation, test = data[:train_end], data[train_end:validation_end], data[validation_end:]
    per_stream = (len(train) - 1) // STREAMS
    X = np.stack([train[s * per_stream:(s + 1) * per_stream] for s in range(STREAMS)])
    y = np.stack([train[s * per_stream + 1:(s + 1) * per_stream + 1] for s in range(STREAMS)])

    counts = collections.Counter(train.tolist())
    unigram = -sum(n / len(train) * math.log(n / len(train)) for n in counts.values())
    hidden = 128
    model = Sequential(Embedding(len(chars), 32, seed=context.seed), LSTM(32, hidden, batch_first=True, seed=context.seed),
                       Linear(hidden, len(chars), seed=context.seed))
    model.compile(loss="cross_entropy", optimizer=Adam(lr=1e-2), clip_grad_norm=1.0)
    max_epochs = 12 if context.quick else 60
    context.log(f"  {source}: {len(text)} characters, {len(chars)} distinct; {STREAMS} streams of {per_stream}, "
                f"chunks of {CHUNK}; up to {max_epochs} epochs, early stopping on the validation part")
    history = model.fit(X, y, epochs=max_epochs, batch_size=STREAMS, shuffle=False, tbptt=CHUNK, verbose=0,
                        validation_data=(validation[None, :-1], validation[None, 1:]), early_stopping=PATIENCE)
    best = int(np.argmin([h["val_loss"] for h in history]))  # the epoch whose weights the model kept

    model.eval()
    test_loss, _ = cross_entropy(model.forward(test[None, :-1]), test[None, 1:])
    model.train()
    context.log(f"  loss per character after epoch {best + 1} of {len(history)}: training "
                f"{history[best]['loss']:.3f}, validation {history[best]['val_loss']:.3f}, test {test_loss:.3f}; "
                f"unigram baseline {unigram:.3f} nats")

    rng = np.random.default_rng(context.seed)
    lines = []
    for prompt in ("The ", "A network ", "When "):
        ids = [index[c] for c in prompt if c in index] or [0]
        produced = sample(model, ids, 90, TEMPERATURE, rng)
        line = prompt + "".join(chars[t] for t in produced)
        lines.append(line.replace("\n", " "))
        context.log(f"  sample: {lines[-1]}")

    plot = None
    plt = context.pyplot()
    if plt is not None:
        figure, axis = plt.subplots(figsize=(8, 3.6))
        epochs = range(1, len(history) + 1)
        axis.plot(epochs, [h["loss"] for h in history], label="training loss")
        axis.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
        axis.axvline(best + 1, color="tab:orange", ls="--", lw=0.8, label=f"weights kept (epoch {best + 1})")
        axis.axhline(test_loss, color="tab:green", label=f"test loss ({test_loss:.2f})")
        axis.axhline(unigram, color="gray", ls=":", label=f"unigram baseline ({unigram:.2f})")
        axis.set(xlabel="epoch", ylabel="nats per character", title="Character-level LSTM language model")
        axis.legend()
        plot = context.save_figure(figure, "text.png")
    metrics = {"test_loss": float(test_loss), "validation_loss": float(history[best]["val_loss"]),
               "training_loss": float(history[best]["loss"]), "unigram_baseline": float(unigram),
               "characters": len(text), "vocabulary": len(chars), "epochs": len(history), "best_epoch": best + 1}
    return Result(metrics=metrics, threshold="test loss per character below the unigram baseline",
                  passed=bool(test_loss < unigram), plot=plot,
                  details={"samples": lines, "temperature": TEMPERATURE, "text": source})
