"""Build the cowbuf._core extension (metadata lives in pyproject.toml)."""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Portable optimisation only: wheels run on CPUs other than the builder's.
extra_compile_args = ["-O3", "-std=gnu11", "-fno-strict-aliasing"]
extra_link_args: list[str] = []
if os.environ.get("COWBUF_SANITIZE"):
    # tools/sanitize.sh: AddressSanitizer and UndefinedBehaviorSanitizer build
    extra_compile_args = ["-O1", "-g", "-std=gnu11", "-fno-omit-frame-pointer",
                          "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    extra_link_args = ["-fsanitize=address,undefined"]

extensions = [
    Extension(
        "cowbuf._core",
        ["cowbuf/_core.pyx"],
        include_dirs=["cowbuf"],
        # the parts _core.pyx includes, its declarations and the C headers
        depends=sorted(glob.glob("cowbuf/*.pxi") + glob.glob("cowbuf/*.pxd")
                       + glob.glob("cowbuf/*.h")),
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}))
