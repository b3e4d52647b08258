"""Build hook for the Cython state-machine bridge; all metadata lives in pyproject.toml.

With WARREN_NO_EXTENSIONS set (non-empty) nothing is compiled and warren.raft_bridge uses its
pure-Python twin, warren/_raft_py.py.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("WARREN_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("warren._raft", ["warren/_raft.pyx"])],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
