"""How the package was built, and the layout rules that keep the core clean."""

from __future__ import annotations

import ast
import os
import pathlib

import pytest

import lstm_ext

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_build_info():
    info = lstm_ext.build_info()
    assert info["eigen_version"].startswith("3.4.")
    assert info["simd"]  # Eigen vectorises at every level (SSE2 at least on x86-64)
    expected = os.environ.get("LSTM_EXT_EXPECT_BUILD")  # set by .ci/run for each configuration
    if expected == "native":
        assert info["native"] and list(info["kernel_levels"]) == ["native"] and info["kernel_level"] == "native"
    elif expected == "portable":
        levels = list(info["kernel_levels"])
        assert not info["native"]
        assert [level for level in levels if level != "avx2_vnni"] == ["baseline", "fma128", "avx2", "avx512",
                                                                        "avx512_vnni"]
        # avx2_vnni with a compiler that knows AVX-VNNI (GCC 11, Clang 12; cpp/rnn/int8.hpp), after avx2
        assert "avx2_vnni" not in levels or levels.index("avx2_vnni") == 3


@pytest.mark.skipif(not (ROOT / "cpp" / "rnn").is_dir(), reason="needs the source tree")
def test_core_has_no_python():
    for path in (ROOT / "cpp" / "rnn").iterdir():
        text = path.read_text()
        assert "pybind11" not in text and "Python.h" not in text, path


@pytest.mark.skipif(not (ROOT / "python" / "lstm_ext" / "reference.py").is_file(), reason="needs the source tree")
def test_reference_does_not_use_the_compiled_core():
    tree = ast.parse((ROOT / "python" / "lstm_ext" / "reference.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy"}, imported


# -- the package's layout (shared/design.md, "Layout") ----------------------------------------------

PACKAGE = ROOT / "python" / "lstm_ext"
needs_package_source = pytest.mark.skipif(not PACKAGE.is_dir(), reason="needs the source tree")
KIND_NAMES = {"lstm", "gru", "rnn", "simple_rnn", "simplernn"}


def package_modules() -> dict[str, pathlib.Path]:
    """{dotted module name: path} of every module of the package, tools included."""
    modules = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]):  # _core.pyi: the compiled core
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: pathlib.Path, modules) -> set[str]:
    """The package's modules that `name` imports, anywhere in it (functions included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import module` imports that module; `from module import name`, the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules}
    return found - {name}


@needs_package_source
def test_no_cell_kind_is_told_apart_outside_the_cell_descriptions():
    # A kind's name compared, used as a dict key or as an index outside cells.py means a branch on
    # the kind that a new kind or variant would have to find and edit (issue 14).
    offences = []
    for name, path in package_modules().items():
        if name == "lstm_ext.cells":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                places = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                places = [key for key in node.keys if key is not None]
            elif isinstance(node, ast.Subscript):
                places = [node.slice]
            else:
                continue
            for place in places:
                for leaf in ast.walk(place):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str) and leaf.value.lower() in KIND_NAMES:
                        offences.append(f"{path.relative_to(ROOT)}:{leaf.lineno}: {leaf.value!r}")
    assert not offences, offences


@needs_package_source
def test_the_package_has_no_import_cycle():
    modules = package_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    cycles = []

    def visit(name, stack, done):
        if name in stack:
            cycles.append(stack[stack.index(name):] + [name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, stack + [name], done)
        done.add(name)

    done: set[str] = set()
    for name in graph:
        visit(name, [], done)
    assert not cycles, cycles


@needs_package_source
def test_the_library_never_imports_its_tools():
    modules = package_modules()
    library = {name: path for name, path in modules.items()
               if not name.startswith("lstm_ext.tools") and name != "lstm_ext.__main__"}
    assert "lstm_ext.tools.bench" in modules and "lstm_ext.cells" in library  # the rule sees both sides
    offences = {name: sorted(t for t in imported_modules(name, path, modules) if t.startswith("lstm_ext.tools"))
                for name, path in library.items()}
    assert not any(offences.values()), offences
