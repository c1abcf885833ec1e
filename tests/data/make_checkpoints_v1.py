"""Writes the checkpoint files that tests/test_checkpoint.py::test_files_written_before_the_refactor_still_load
reads: a saved model and a training checkpoint taken in the middle of a fit, with what they must
give (predictions, and the weights at the end of the fit when it is resumed from the checkpoint).

They were written by lstm_ext at commit cea93ad (before issue 14 moved training and checkpoint
code into their own modules) and are kept as they are: run this again only to see how they were
made, never to replace them.

    python tests/data/make_checkpoints_v1.py tests/data
"""

import os
import sys

import numpy as np

import lstm_ext

out = sys.argv[1]
rng = np.random.default_rng(7)

# A saved model: a projected, bidirectional LSTM, a GRU and a Linear head, compiled with AdamW after
# a short fit (so that the file holds optimizer state and history).
X = rng.standard_normal((24, 9, 3))
y = X[:, :3, :2].sum(axis=1)
model = lstm_ext.Sequential(
    lstm_ext.LSTM(3, 8, proj_size=5, bidirectional=True, batch_first=True, dtype=np.float64, seed=1),
    lstm_ext.GRU(10, 6, batch_first=True, dtype=np.float64, seed=2),
    lstm_ext.LastStep(dtype=np.float64),
    lstm_ext.Linear(6, 2, dtype=np.float64, seed=3),
)
model.compile("mse", lstm_ext.AdamW(lr=1e-2, weight_decay=1e-3), clip_grad_norm=1.0)
model.fit(X, y, epochs=2, batch_size=8, lengths=rng.integers(4, 10, size=24), verbose=0)
model.save(os.path.join(out, "model_v1.npz"))

# A training checkpoint in the middle of the second epoch of a truncated-BPTT fit (carried states,
# SGD momentum) with early stopping (best weights), then the fit run to its end.
tokens = rng.integers(0, 5, size=(6, 31))
fit = dict(epochs=3, batch_size=3, tbptt=10, early_stopping=5, checkpoint=os.path.join(out, "fit_v1.npz"),
           checkpoint_every=7, verbose=0)


def build():
    m = lstm_ext.Sequential(lstm_ext.Embedding(5, 4, seed=0), lstm_ext.RNN(4, 7, batch_first=True, seed=1),
                            lstm_ext.LSTM(7, 6, batch_first=True, dropout=0.0, seed=2), lstm_ext.Linear(6, 5, seed=3))
    return m.compile("cross_entropy", lstm_ext.SGD(lr=0.1, momentum=0.9))


class Stop(Exception):
    pass


interrupted = build()
steps = {"n": 0}
original = interrupted.optimizer.step


def step_then_stop(grads):  # stop after the 9th optimizer step: the checkpoint of step 7 stays
    original(grads)
    steps["n"] += 1
    if steps["n"] == 9:
        raise Stop


interrupted.optimizer.step = step_then_stop
try:
    interrupted.fit(tokens[:, :-1], tokens[:, 1:], **fit)
except Stop:
    pass
finished = build()
finished.fit(tokens[:, :-1], tokens[:, 1:], **{**fit, "checkpoint": os.path.join(out, "scratch_v1.npz")})
os.remove(os.path.join(out, "scratch_v1.npz"))

np.savez(os.path.join(out, "expected_v1.npz"), model_prediction=model.predict(X[:5]),
         **{f"fit_weight:{k}": v for k, v in finished.state_dict().items()})
