"""Build steps pyproject.toml cannot declare.

- ``telemrec.trace._ccodec``: the optional compiled codec (C): format 3 streams encoded
  and decoded, format 1/2 chunks decoded, with libdeflate (MIT, vendored in
  third_party/libdeflate, see its README.md). ``optional=True``: without a C compiler the
  install still succeeds and telemrec uses the NumPy codec, which gives the same bits, more slowly.
- ``schemas/`` (the manifest schemas, kept at the top of the repository) ship
  inside the wheel as ``telemrec/schemas``.
"""

import os
import platform
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDEFLATE = "third_party/libdeflate"


class BuildPyWithSchemas(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install finds schemas/ in the checkout
            target = os.path.join(self.build_lib, "telemrec", "schemas")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(HERE, "schemas"), target)


extensions = []
if os.name == "posix" and not os.environ.get("TELEMREC_NO_EXTENSIONS"):
    extensions.append(Extension(
        "telemrec.trace._ccodec",
        ["telemrec/trace/_ccodec.c", "telemrec/trace/_ccodec_v2.c"] + [f"{LIBDEFLATE}/lib/{name}.c" for name in (
            "deflate_decompress", "zlib_decompress", "deflate_compress", "zlib_compress", "adler32", "crc32",
            "utils", "x86/cpu_features", "arm/cpu_features")],
        include_dirs=[LIBDEFLATE],
        # SSE arithmetic on 32-bit x86 too: x87's extended precision could round differently from NumPy
        extra_compile_args=["-O3", "-fno-strict-aliasing"] + (
            ["-msse2", "-mfpmath=sse"] if platform.machine() in ("i386", "i686") else []),
        # the module's calls into libdeflate bind to its own copy, never to another libdeflate
        # a process may have loaded globally (libdeflate marks its API for export)
        extra_link_args=["-Wl,-Bsymbolic"] if sys.platform.startswith("linux") else [],
        optional=True))

setup(ext_modules=extensions, cmdclass={"build_py": BuildPyWithSchemas})
