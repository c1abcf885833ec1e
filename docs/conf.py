"""Sphinx configuration of lstm_ext's API reference, built from the docstrings.

    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

autodoc imports the installed package (its compiled core included); nothing is mocked.
"""

import lstm_ext

project = "lstm_ext"
author = "lstm_ext contributors"
release = version = lstm_ext.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]

# Docstrings are prose with shapes such as "x (T, B, I)"; Google or NumPy sections where they help.
napoleon_google_docstring = True
napoleon_numpy_docstring = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
# Signatures as written (np.float32, not <class 'numpy.float32'>); annotations in the signature.
autodoc_preserve_defaults = True
autodoc_typehints = "signature"
# Each object is documented once, under the module that defines it (lstm_ext.layers.LSTM is
# lstm_ext.LSTM): short names in the page, the module in the page's heading.
add_module_names = False

html_theme = "alabaster"
html_title = f"lstm_ext {release}"
exclude_patterns = ["_build"]
