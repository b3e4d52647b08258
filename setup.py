"""Build hook for the Cython state-machine bridge; all metadata lives in pyproject.toml.

warren/_raft.py (a symlink to warren/_raft_py.py, the one source) is compiled into warren._raft, typed
by warren/_raft.pxd (Cython's pure-Python mode). With WARREN_NO_EXTENSIONS set (non-empty) nothing is
compiled and warren.raft_bridge uses the same code as plain Python, warren._raft_py.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("WARREN_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("warren._raft", ["warren/_raft.py"])],
        # The .py's annotations are for mypy; the C types come from warren/_raft.pxd alone.
        compiler_directives={"language_level": "3", "annotation_typing": False},
    )

setup(ext_modules=ext_modules)
