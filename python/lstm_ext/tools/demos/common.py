"""What every demo shares: its context (budget, seed, output folder, report) and its result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from lstm_ext.distributed import Group
    from lstm_ext.layers import RNNBase
    from lstm_ext.model import Sequential
    from lstm_ext.quantized import QuantizedSequential

__all__ = ["COLOURS", "KINDS", "Context", "Result", "float32_and_int8", "int8_copy", "integer_epochs", "layer_class",
           "legend_outside"]

# The three recurrent layers every demo compares, at the same hidden size, in this order.
KINDS = ("LSTM", "GRU", "RNN")

# One colour per model in every panel of every demo; baselines and data are grey and black.
COLOURS = {**dict(zip(KINDS, ("tab:blue", "tab:green", "tab:red"))), "baseline": "tab:gray", "data": "black"}


def layer_class(kind: str) -> type[RNNBase]:
    """lstm_ext.LSTM, GRU or RNN (the vanilla tanh RNN) by its name in KINDS."""
    import lstm_ext

    cls: type[RNNBase] = getattr(lstm_ext, kind)
    return cls


def int8_copy(model: Sequential) -> tuple[Optional[QuantizedSequential], Optional[str]]:
    """The trained model's int8 inference copy (lstm_ext.quantize_dynamic), for the demos' int8
    figures next to the float32 ones; (None, why) when a layer has no int8 form (layer_norm, say),
    the demo then reports float32 only and says why."""
    from lstm_ext import quantize_dynamic
    from lstm_ext.quantized import QuantizedSequential

    try:
        copy = quantize_dynamic(model, "int8")
    except ValueError as refusal:  # quantize_dynamic's refusal names the layer's option
        return None, str(refusal)
    assert isinstance(copy, QuantizedSequential)  # (a Sequential's copy)
    return copy, None


def float32_and_int8(float32: float, int8: Optional[float], skipped: Optional[str], digits: int,
                     unit: str = "") -> str:
    """One figure of a model and of its int8 copy side by side, "4.1% (float32), 4.2% (int8)", or
    the float32 one and why there is no int8 one (int8 None: int8_copy's reason `skipped`)."""
    text = f"{float32:.{digits}f}{unit} (float32)"
    return f"{text}, {int8:.{digits}f}{unit} (int8)" if int8 is not None else f"{text}, no int8 figure: {skipped}"


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
