"""The API reference (docs/) builds from the docstrings with Sphinx, warnings as errors."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from conftest import needs

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason="needs the source tree")
def test_the_api_reference_builds_without_warnings(tmp_path):
    needs("sphinx")
    # The README's command (and CI's), into tmp_path; a fresh process, as a user runs it.
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(tmp_path / "html")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    for page in ["index.html", "api/layers.html", "api/functional.html", "api/model.html"]:
        assert (tmp_path / "html" / page).is_file(), page
    assert "lstm_forward" in (tmp_path / "html" / "api" / "functional.html").read_text()


@pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason="needs the source tree")
def test_every_public_module_has_a_page():
    # A module added to the package without a page would be missing from the reference silently.
    package = DOCS.parent / "python" / "lstm_ext"
    public = {f"lstm_ext.{path.stem}" for path in package.glob("*.py") if not path.stem.startswith("_")}
    documented = {line.split("::", 1)[1].strip() for page in DOCS.rglob("*.rst")
                  for line in page.read_text().splitlines() if line.startswith(".. automodule::")}
    assert public <= documented, sorted(public - documented)
