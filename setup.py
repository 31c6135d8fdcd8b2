"""Build steps pyproject.toml cannot declare.

- ``telemrec.trace._ccodec``: the optional compiled codec (C): format 3 streams encoded
  and decoded, format 1/2 chunks decoded, with libdeflate (MIT, vendored in
  third_party/libdeflate, see its README.md). ``optional=True``: without a C compiler the
  install still succeeds and telemrec uses the NumPy codec, which gives the same bits, more slowly.
- ``telemrec/emulate/libnvidia-ml.so.1``: the replay NVML library (C, no driver, no
  HDF5) that ``telemrec replay TRACE --as nvml`` puts first in COMMAND's loader path.
  Built as an optional extension too: without a C compiler the rest installs and
  ``--as nvml`` fails with ReplayUnavailableError and a hint.
- ``telemrec.readers._cprocfs``: the procfs process collector's per-tick hot path (C,
  Linux); optional: without it ``telemrec/readers/_procfs_native.py`` does the same in Python.
- ``telemrec.readers._csystem``: the psutil reader's system level in one call a tick (C, Linux);
  optional: without it ``telemrec/readers/_psutil_system.py`` reads it through psutil.
- ``schemas/`` (the manifest schemas, kept at the top of the repository) ship
  inside the wheel as ``telemrec/schemas``.
"""

import os
import platform
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
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


class BuildExtNamingLibraries(build_ext):
    """Plain shared libraries among the extensions get their own file names, not a Python module's."""

    LIBRARIES = {"telemrec.emulate._nvml_replay": "libnvidia-ml.so.1"}

    def get_ext_filename(self, fullname):
        for dotted, filename in self.LIBRARIES.items():
            if fullname in (dotted, dotted.rsplit(".", 1)[1]):
                return os.path.join(*fullname.split(".")[:-1], filename)
        return super().get_ext_filename(fullname)


extensions = []
if os.name == "posix" and not os.environ.get("TELEMREC_NO_EXTENSIONS"):
    extensions.append(Extension(
        "telemrec.trace._ccodec",
        ["telemrec/trace/_ccodec.c", "telemrec/trace/_ccodec_v2.c", "telemrec/trace/_ccodec_segment.c"] + [f"{LIBDEFLATE}/lib/{name}.c" for name in (
            "deflate_decompress", "zlib_decompress", "deflate_compress", "zlib_compress", "adler32", "crc32",
            "utils", "x86/cpu_features", "arm/cpu_features")],
        include_dirs=[LIBDEFLATE, "telemrec/trace"],
        depends=["telemrec/trace/_ccodec_common.h", "telemrec/trace/_ccodec_stream.h"],
        # SSE arithmetic on 32-bit x86 too: x87's extended precision could round differently from NumPy
        extra_compile_args=["-O3", "-fno-strict-aliasing"] + (
            ["-msse2", "-mfpmath=sse"] if platform.machine() in ("i386", "i686") else []),
        # the module's calls into libdeflate bind to its own copy, never to another libdeflate
        # a process may have loaded globally (libdeflate marks its API for export)
        extra_link_args=["-Wl,-Bsymbolic"] if sys.platform.startswith("linux") else [],
        optional=True))
if sys.platform.startswith("linux") and not os.environ.get("TELEMREC_NO_EXTENSIONS"):
    extensions.append(Extension(
        "telemrec.emulate._nvml_replay",
        ["telemrec/emulate/nvml_replay.c", "telemrec/emulate/nvml_replay_queries.c"],
        depends=["telemrec/emulate/nvml_replay.h"],
        # only the NVML entry points are exported; the soname is the one programs linked with -lnvidia-ml ask for
        extra_compile_args=["-O2", "-fvisibility=hidden", "-pthread"],
        extra_link_args=["-pthread", "-Wl,-soname,libnvidia-ml.so.1"],
        optional=True))

if sys.platform.startswith("linux") and not os.environ.get("TELEMREC_NO_EXTENSIONS"):
    # the procfs process collector's per-tick hot path; without it the same in Python, slower
    extensions.append(Extension("telemrec.readers._cprocfs",
                                ["telemrec/readers/_cprocfs.c", "telemrec/readers/_cprocfs_refresh.c"],
                                depends=["telemrec/readers/_cprocfs.h"], extra_compile_args=["-O2", "-fvisibility=hidden"],
                                optional=True))
    extensions.append(Extension("telemrec.readers._csystem", ["telemrec/readers/_csystem.c", "telemrec/readers/_csystem_parse.c"],
                                depends=["telemrec/readers/_csystem.h"],
                                extra_compile_args=["-O2", "-fvisibility=hidden"], optional=True))

setup(ext_modules=extensions, cmdclass={"build_py": BuildPyWithSchemas, "build_ext": BuildExtNamingLibraries})
