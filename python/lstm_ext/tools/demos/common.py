"""What every demo shares: its context (budget, seed, output folder, report) and its result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Context", "Result"]


@dataclass
class Context:
    """What every demo gets: the budget, the seed, where to write, how to report."""

    out_dir: str
    quick: bool = False
    seed: int = 0
    text_path: Optional[str] = None
    log: Callable[[str], None] = print
    plots: bool = True  # False when matplotlib is missing
    distributed: object = False  # an lstm_ext.distributed.Group with --distributed: fit's `distributed`
    writes: bool = True  # False on the ranks other than 0 of a distributed run: no files, no output

    def pyplot(self):
        """matplotlib.pyplot on a file-only backend, or None without matplotlib."""
        if not self.plots:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt

    def save_figure(self, figure, name: str) -> str:
        path = os.path.join(self.out_dir, name)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.pyplot().close(figure)
        return name


@dataclass
class Result:
    """One demo's outcome: its metrics, its threshold and whether it met it."""

    metrics: dict
    threshold: str
    passed: bool
    plot: Optional[str] = None
    details: dict = field(default_factory=dict)
