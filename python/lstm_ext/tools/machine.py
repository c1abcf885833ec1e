"""The machine a benchmark runs on, for its reports: the CPU, its instruction sets and caches, the
libraries' versions and lstm_ext's build (bench, solo)."""

from __future__ import annotations

import datetime
import os
import platform
from types import ModuleType
from typing import Any, Optional

import numpy as np

from lstm_ext import _core

__all__ = ["machine_info", "machine_line"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
    present = [name for name in wanted if name in flags]
    return ", ".join(present) if present else platform.machine()


def _caches() -> str:
    sizes = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(e for e in os.listdir(base) if e.startswith("index")):
            with open(f"{base}/{entry}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                size = f.read().strip()
            if kind != "Instruction":
                sizes[f"L{level}"] = size
    except OSError:
        return "unknown"
    return ", ".join(f"{level} {size}" for level, size in sorted(sizes.items()))


def machine_info(threads: int, torch: Optional[ModuleType] = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "isa": _isa(),
        "caches": _caches(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "lstm_ext": _core_version(),
        "build": _core.build_info(),
    }
    return info


def _core_version() -> str:
    from lstm_ext import __version__

    return __version__


def machine_line(machine: dict[str, Any]) -> str:
    return (f"Run on {machine['date']}: {machine['cpu']}, {machine['cpus']} CPUs ({machine['isa']}; caches "
            f"{machine['caches']}), {machine['threads']} threads for every library. Python {machine['python']}, "
            f"NumPy {machine['numpy']}, torch {machine['torch'] or 'not installed'}, lstm_ext {machine['lstm_ext']} "
            f"with the {machine['build']['kernel_level']} kernel level ({machine['build']['simd']}; compiled in: "
            f"{', '.join(machine['build']['kernel_levels'])}{'; a native build' if machine['build']['native'] else ''}).")
