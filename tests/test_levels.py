"""Kernel levels: one build that runs the best kernels each x86-64 CPU supports.

The core's compute code is compiled once per level (baseline, fma128, avx2, avx512) and the import picks
the best level the CPU and the OS support, or the one LSTM_EXT_KERNELS names
(cpp/rnn/kernels.hpp). Checked here: the choice and its report; every level this machine can run
against the NumPy reference, the levels with FMA against each other bit for bit, the baseline
against them within the tolerances; refusals with a clear message
instead of an illegal instruction; that no level's instructions leak into code that another
level's CPU runs, in the extension's own machine code; and, with qemu-user, whole runs as CPUs
this machine is not (Haswell: AVX2 without AVX-512; SandyBridge: AVX without AVX2 or FMA).

The rest of the suite runs at the level the import chose; `LSTM_EXT_KERNELS=avx2 pytest` runs it
at another (.ci/run runs it at every level the CPU has).
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_parity
import lstm_ext
from lstm_ext import _core

TESTS = pathlib.Path(__file__).resolve().parent
X86_LEVELS = ["baseline", "fma128", "avx2", "avx2_vnni", "avx512", "avx512_vnni"]  # lowest first
# the levels that fuse multiply-adds (native: on an FMA CPU)
FMA_LEVELS = ["fma128", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "native"]
# The levels whose code is a namespace of its own (lstm_ext::<level>::); "<level>_vnni" is its
# level's tables with the int8 products of namespace lstm_ext::<level>::int8_vnni.
CODE_LEVELS = ["baseline", "fma128", "avx2", "avx512", "native"]
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
INFO = lstm_ext.build_info()
# The levels this machine can run: those whose every feature the CPU has.
RUNNABLE = [name for name, needs in INFO["kernel_levels"].items() if set(needs) <= set(INFO["cpu_features"])]
QEMU = shutil.which("qemu-x86_64")


def run_python(code_or_args, env=None, cpu=None, timeout=600):
    """A fresh Python process (as CPU model `cpu` under qemu-user when given), in the tests folder."""
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    command = [sys.executable, *args]
    if cpu is not None:
        command = [QEMU, "-cpu", cpu, *command]
    environment = {k: v for k, v in os.environ.items() if k != "LSTM_EXT_KERNELS"}
    environment.update(env or {})
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), environment.get("PYTHONPATH", "")])
    return subprocess.run(command, cwd=TESTS, env=environment, capture_output=True, text=True, timeout=timeout)


# -- the choice and its report ------------------------------------------------------------------

def test_build_info_reports_the_levels_and_the_one_in_use():
    levels = INFO["kernel_levels"]
    assert INFO["kernel_level"] in levels and INFO["kernel_level"] in RUNNABLE
    if IS_X86_64 and not INFO["native"]:
        assert list(levels) == X86_LEVELS
        assert levels["baseline"] == []
        assert set(levels["fma128"]) == {"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "xsave", "avx", "fma"}
        assert {"avx2", "fma", "bmi2"} <= set(levels["avx2"]) and "avx512f" not in levels["avx2"]
        assert {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(levels["avx512"]) >= set(levels["avx2"])
    forced = os.environ.get("LSTM_EXT_KERNELS")
    if forced in levels:
        assert INFO["kernel_level"] == forced
    elif not forced:
        assert INFO["kernel_level"] == RUNNABLE[-1]  # the best this machine can run
    if IS_X86_64:
        sets, packets = INFO["simd"].split("; ")
        expected = {"baseline": ("SSE2", 4), "fma128": ("FMA, SSE4.2, SSE2", 4), "avx2": ("AVX2, FMA, AVX, SSE4.2, SSE2", 8),
                    "avx512": ("AVX512, AVX2, FMA, AVX, SSE4.2, SSE2", 16)}.get(INFO["kernel_level"])
        if expected:
            assert (sets, packets) == (expected[0], f"packets of {expected[1]} floats, {expected[1] // 2} doubles")


def test_an_unknown_level_is_refused_at_import():
    out = run_python("import lstm_ext", env={"LSTM_EXT_KERNELS": "sse9"})
    assert out.returncode == 1
    names = ", ".join(INFO["kernel_levels"])
    assert f"ImportError: LSTM_EXT_KERNELS=sse9: expected one of this build's kernel levels ({names})" in out.stderr


# -- every level this machine can run, against the reference and each other -------------------------

def probe(level, tmp_path, cpu=None):
    """level_probe.py at `level`: its JSON report and its saved outputs."""
    out_file = tmp_path / f"{level}-{cpu or 'native'}.npz"
    out = run_python(["level_probe.py", str(out_file)], env={"LSTM_EXT_KERNELS": level}, cpu=cpu)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.splitlines()[-1]), dict(np.load(out_file))


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("levels")
    return {level: probe(level, tmp) for level in RUNNABLE}


@pytest.mark.parametrize("level", X86_LEVELS if IS_X86_64 else ["baseline"])
def test_each_level_matches_the_reference(level, probes):
    if level not in probes:
        pytest.skip(f"this CPU cannot run the {level} level")
    report, _ = probes[level]
    assert report["level"] == level and report["selfcheck"] == 0
    for key, error in report["errors"].items():
        dtype = key.split()[-1]
        assert_parity(f"level {level}", dtype, {key: np.float64(error)}, {key: np.float64(0)})


def test_levels_agree_within_the_tolerances(probes):
    """The baseline (no FMA) differs from the others in its last bits; measured here: how much,
    for README's statement. Every level within the parity tolerances of the next."""
    if len(probes) < 2:
        pytest.skip("this CPU runs one level")
    names = list(probes)
    for lower, higher in zip(names, names[1:]):
        a, b = probes[lower][1], probes[higher][1]
        by_case = collections.defaultdict(list)  # "LSTM float32" -> its tensors' keys
        for key in a:
            by_case[key.rsplit(" ", 1)[0]].append(key)
        for case, keys in by_case.items():
            dtype = case.split()[-1]
            tensor = {key: key.rsplit(" ", 1)[1] for key in keys}
            assert_parity(f"level {lower} vs {higher}", dtype, {tensor[k]: a[k] for k in keys},
                          {tensor[k]: b[k] for k in keys}, tolerance=2 * lstm_ext.testing.TOLERANCE[np.dtype(dtype)])


def grid_digests(level):
    """level_grid.py at `level`: {configuration and tensor: digest of its bytes}."""
    out = run_python(["level_grid.py"], env={"LSTM_EXT_KERNELS": level})
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["level"] == level
    return report["digests"]


def test_levels_with_fma_give_the_same_bits():
    """Every level with FMA gives the same bits for every output, final state and gradient of every
    layer kind and variant, both directions, with and without lengths, float32 and float64, on 1 and
    2 threads (level_grid.py). The order of operations is the source's (-ffp-contract=off, explicit
    fused multiply-adds, fixed reduction orders, lstm_cell's dot products over a fixed virtual
    width), so the packet width decides only which lanes compute what: fma128 (4 floats) against
    avx2 (8) shows it on every FMA CPU, avx512 (16) joins where the CPU has it."""
    levels = [level for level in FMA_LEVELS if level in RUNNABLE]
    if len(levels) < 2:
        pytest.skip(f"this CPU runs {len(levels)} level with FMA ({', '.join(levels) or 'none'}): "
                    "nothing to compare (an x86-64 CPU with FMA runs fma128 and avx2)")
    first = grid_digests(levels[0])
    for level in levels[1:]:
        other = grid_digests(level)
        assert other.keys() == first.keys()
        differ = [key for key in first if first[key] != other[key]]
        assert not differ, (f"{levels[0]} and {level} differ in {len(differ)} of {len(first)} arrays, e.g. "
                            + "; ".join(differ[:8]))


# -- machine code: no level's instructions where another level's CPU runs --------------------------

# Legacy prefixes that may precede a VEX (c4, c5) or EVEX (62) prefix in 64-bit code.
_LEGACY_PREFIXES = {"66", "f2", "f3", "2e", "3e", "26", "64", "65", "36", "f0", "67"}
# The highest instruction class a function may hold: 0 = x86-64 (SSE2), 1 = non-VEX instructions
# of x86-64-v2/v3 (popcnt, lzcnt, tzcnt, movbe), 2 = VEX (AVX, AVX2, FMA, BMI), 3 = EVEX (AVX-512).
_ALLOWED = {"baseline": 0, "fma128": 2, "avx2": 2, "avx512": 3, "native": 3, None: 0}


def instruction_class(raw_bytes: list[str], text: str) -> int:
    i = 0
    while i < len(raw_bytes) and raw_bytes[i] in _LEGACY_PREFIXES:
        i += 1
    if i < len(raw_bytes) and raw_bytes[i] == "62":
        return 3
    if i < len(raw_bytes) and raw_bytes[i] in ("c4", "c5"):
        return 2
    return 1 if re.match(r"(lzcnt|tzcnt|popcnt|movbe)\b", text) else 0


def functions_by_level(disassembly: str, levels):
    """{function: (its level or None for shared code, highest instruction class, an instruction of it)}."""
    marks = {level: (f"lstm_ext::{level}::", f"lstm_ext_eigen_{level}::") for level in levels}
    functions, current = {}, None
    for line in disassembly.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            name = header.group(1)
            owners = [level for level, m in marks.items() if any(s in name for s in m)]
            assert len(owners) <= 1, f"{name} belongs to several levels"
            current = name
            functions[name] = (owners[0] if owners else None, 0, "")
            continue
        code = re.match(r"^\s+[0-9a-f]+:\t([0-9a-f ]+)\t(.*)$", line)
        if code and current is not None:
            level, worst, example = functions[current]
            found = instruction_class(code.group(1).split(), code.group(2))
            if found > worst:
                functions[current] = (level, found, code.group(2))
    return functions


@pytest.mark.skipif(not IS_X86_64 or shutil.which("objdump") is None, reason="reads x86-64 code with objdump")
def test_no_level_code_runs_where_its_cpu_may_be_missing():
    """The classic pitfall of compiling one source for several instruction sets: the linker keeps
    one copy of an inline function that several object files define, whichever level it was
    compiled for. Every function of the extension is checked: the baseline's and the shared ones
    hold only x86-64 instructions, the avx2 level's no AVX-512."""
    disassembly = subprocess.run(["objdump", "-d", "-w", "-C", _core.__file__], capture_output=True, text=True,
                                 check=True).stdout
    code_levels = [level for level in INFO["kernel_levels"] if level in CODE_LEVELS]
    functions = functions_by_level(disassembly, code_levels)
    if not any(level for level, _, _ in functions.values()):
        pytest.skip("the extension has no symbol table (stripped)")
    counts = collections.Counter(level or "shared" for level, _, _ in functions.values())
    assert all(counts[level] > 0 for level in code_levels), counts
    wrong = [f"{name} ({level or 'shared'}): {example}" for name, (level, worst, example) in functions.items()
             if worst > _ALLOWED[level]]
    assert not wrong, "\n".join(wrong[:20])
    # And every level above the baseline does use its instructions.
    for level in set(INFO["kernel_levels"]) & {"fma128", "avx2", "avx512"}:
        assert max(worst for lv, worst, _ in functions.values() if lv == level) == _ALLOWED[level]
    # VNNI (vpdpbusd) only in the int8 products of namespace int8_vnni, which only the *_vnni
    # levels call: the avx2 and avx512 levels run on CPUs without it (a native build for a CPU with
    # VNNI has it in its one level).
    vnni = {name for name, _ in _instructions(disassembly, r"vpdpbus")}
    assert all("::int8_vnni::" in name or name.startswith("lstm_ext::native::") for name in vnni), sorted(vnni)[:8]
    for level in set(INFO["kernel_levels"]) & {"avx2_vnni", "avx512_vnni"}:
        assert any(name.startswith(f"lstm_ext::{level[:-5]}::int8_vnni::") for name in vnni), level


def _instructions(disassembly: str, pattern: str):
    """(function, instruction) for every instruction matching `pattern` in objdump's output."""
    current = None
    for line in disassembly.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            current = header.group(1)
            continue
        code = re.match(r"^\s+[0-9a-f]+:\t[0-9a-f ]+\t(.*)$", line)
        if code and current is not None and re.search(pattern, code.group(1)):
            yield current, code.group(1)


# The features of CPUs (as cpuid reports them, the ones CpuFeature lists) and the level each gets.
_CPUS = {
    "SandyBridge": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "xsave", "avx"], "baseline"),
    "Piledriver": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "xsave", "avx", "fma", "f16c"], "fma128"),
    "Haswell": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "fma", "f16c", "avx2", "bmi1", "bmi2", "lzcnt",
                 "movbe", "xsave"], "avx2"),
    "AlderLake": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "fma", "f16c", "avx2", "bmi1", "bmi2",
                   "lzcnt", "movbe", "xsave", "avxvnni"], "avx2_vnni"),
    "SkylakeX": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "fma", "f16c", "avx2", "bmi1", "bmi2", "lzcnt",
                  "movbe", "xsave", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"], "avx512"),
    "CascadeLake": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "fma", "f16c", "avx2", "bmi1", "bmi2",
                     "lzcnt", "movbe", "xsave", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl",
                     "avx512vnni"], "avx512_vnni"),
    "Zen5": (["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "fma", "f16c", "avx2", "bmi1", "bmi2", "lzcnt",
              "movbe", "xsave", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
              "avxvnni"], "avx512_vnni"),
}


@pytest.mark.skipif(not IS_X86_64 or INFO["native"], reason="the x86-64 levels of the portable build")
@pytest.mark.parametrize("cpu", list(_CPUS))
def test_the_dispatch_picks_the_best_level_for_each_cpu(cpu):
    """The import's choice, with the features of CPUs this machine is not (a faked feature mask):
    VNNI's int8 products wherever the CPU has them, and never where it does not."""
    features, level = _CPUS[cpu]
    if level == "avx2_vnni" and level not in INFO["kernel_levels"]:
        level = "avx2"  # a compiler without AVX-VNNI (GCC < 11, Clang < 12) builds no avx2_vnni
    assert _core._best_kernel_level(features) == level
    assert _core._best_kernel_level([f for f in features if "vnni" not in f]) == level.replace("_vnni", "")
    with pytest.raises(ValueError, match="features: unknown CPU feature 'sse9'"):
        _core._best_kernel_level(["sse9"])


# -- other CPUs, under qemu-user ----------------------------------------------------------------------

needs_qemu = pytest.mark.skipif(not IS_X86_64 or QEMU is None or INFO["native"] or INFO["sanitizers"],
                                reason="runs other x86-64 CPUs with qemu-user (Debian's qemu-user; not with the "
                                       "sanitizers' runtime preloaded)")


@needs_qemu
@pytest.mark.parametrize("cpu, level", [("Haswell", "avx2"), ("SandyBridge", "baseline")])
def test_runs_on_an_older_cpu_at_the_best_level_it_has(cpu, level, tmp_path, probes):
    report, arrays = probe("auto", tmp_path, cpu=cpu)
    assert report["level"] == level and report["selfcheck"] == 0
    assert ("avx2" in report["cpu_features"]) == (level == "avx2") and "avx512f" not in report["cpu_features"]
    for key, error in report["errors"].items():
        dtype = key.split()[-1]
        assert_parity(f"level {level} on {cpu}", dtype, {key: np.float64(error)}, {key: np.float64(0)})
    # The same level on this CPU gives the same bits (another CPU changes nothing but the choice).
    if level in probes:
        differ = [key for key, value in probes[level][1].items() if value.tobytes() != arrays[key].tobytes()]
        assert not differ, f"{level} on {cpu} and on this CPU differ: {differ[:8]}"


@needs_qemu
def test_a_level_the_cpu_lacks_is_refused_at_import():
    out = run_python("import lstm_ext", env={"LSTM_EXT_KERNELS": "avx512"}, cpu="Haswell")
    assert out.returncode == 1, out.stderr
    assert ("ImportError: LSTM_EXT_KERNELS=avx512: this CPU lacks avx512f, avx512dq, avx512cd, avx512bw, "
            "avx512vl, which that kernel level needs; the levels it can run are: baseline, fma128, avx2") in out.stderr
