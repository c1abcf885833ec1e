"""What every demo shares: its context (budget, seed, output folder, report) and its result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from lstm_ext.distributed import Group
    from lstm_ext.layers import RNNBase

__all__ = ["COLOURS", "KINDS", "Context", "Result", "integer_epochs", "layer_class", "legend_outside"]

# The three recurrent layers every demo compares, at the same hidden size, in this order.
KINDS = ("LSTM", "GRU", "RNN")

# One colour per model in every panel of every demo; baselines and data are grey and black.
COLOURS = {**dict(zip(KINDS, ("tab:blue", "tab:green", "tab:red"))), "baseline": "tab:gray", "data": "black"}


def layer_class(kind: str) -> type[RNNBase]:
    """lstm_ext.LSTM, GRU or RNN (the vanilla tanh RNN) by its name in KINDS."""
    import lstm_ext

    cls: type[RNNBase] = getattr(lstm_ext, kind)
    return cls


def legend_outside(axis: Any, **options: Any) -> Any:  # a matplotlib Axes -> its Legend
    """The legend to the right of the axes, where it covers no data."""
    return axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **options)


def integer_epochs(axis: Any) -> None:  # a matplotlib Axes
    """Whole-number ticks on the epoch axis."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


@dataclass
class Context:
    """What every demo gets: the budget, the seed, where to write, how to report."""

    out_dir: str
    quick: bool = False
    seed: int = 0
    text_path: Optional[str] = None
    log: Callable[[str], None] = print
    plots: bool = True  # False when matplotlib is missing
    distributed: Union[bool, Group] = False  # an lstm_ext.distributed.Group with --distributed: fit's `distributed`
    writes: bool = True  # False on the ranks other than 0 of a distributed run: no files, no output

    def pyplot(self) -> Any:  # the module matplotlib.pyplot
        """matplotlib.pyplot on a file-only backend, or None without matplotlib."""
        if not self.plots:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt

    def save_figure(self, figure: Any, name: str) -> str:  # figure: a matplotlib Figure
        path = os.path.join(self.out_dir, name)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.pyplot().close(figure)
        return name


@dataclass
class Result:
    """One demo's outcome: its metrics, its threshold and whether it met it."""

    metrics: dict[str, Any]
    threshold: str
    passed: bool
    plot: Optional[str] = None
    details: dict[str, Any] = field(default_factory=dict)
