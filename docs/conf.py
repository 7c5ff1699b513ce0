"""
Sphinx configuration of spicesrv's documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` from the
checkout (``python -m twisted.trial tests.test_docs`` does, and fails on any
warning).
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(DOCS, "_ext"))

import spicesrv  # noqa: E402

project = "spicesrv"
author = "the spicesrv authors"
copyright = "the spicesrv authors"
version = release = spicesrv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "repoze.sphinx.autointerface",
    "epytext",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
html_title = "spicesrv %s" % (release,)

# The API is documented in source order, with the docstrings' own words.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autoclass_content = "both"
# Show default values as written (NotifyVisibility.LOW, CLIENT_COMMON_CAPS),
# not as their reprs.
autodoc_preserve_defaults = True
# Objects named in the docstrings that are not documented here (Twisted's,
# the standard library's) are shown as code, not as warnings.
nitpicky = False
