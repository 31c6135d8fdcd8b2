"""Build steps pyproject.toml cannot declare.

- ``telemrec.analysis._cdecode``: the optional compiled chunk decoder (C). It
  inflates with libdeflate when its headers are installed (Debian
  ``libdeflate-dev``; twice as fast), else with zlib. ``optional=True``: without
  a compiler or zlib's headers the install still succeeds and ``load()`` uses the
  NumPy kernels, which give the same bits.
- ``schemas/`` (the manifest schemas, kept at the top of the repository) ship
  inside the wheel as ``telemrec/schemas``.
"""

import os
import shutil
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithSchemas(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install finds schemas/ in the checkout
            target = os.path.join(self.build_lib, "telemrec", "schemas")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(HERE, "schemas"), target)


class BuildExtWithLibdeflate(build_ext):
    def build_extension(self, ext):
        if ext.name.endswith("_cdecode") and self._has_libdeflate():
            ext.define_macros.append(("TELEMREC_WITH_LIBDEFLATE", "1"))
            ext.libraries = ["deflate"]
        super().build_extension(ext)

    def _has_libdeflate(self) -> bool:
        if os.environ.get("TELEMREC_NO_LIBDEFLATE"):
            return False
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "probe.c")
            with open(probe, "w") as f:
                f.write("#include <libdeflate.h>\nint main(void) { return libdeflate_alloc_decompressor() == 0; }\n")
            try:
                objects = self.compiler.compile([probe], output_dir=tmp)
                self.compiler.link_executable(objects, "probe", output_dir=tmp, libraries=["deflate"])
            except Exception:  # noqa: BLE001 - any compiler or linker failure means "not available"
                return False
        return True


extensions = []
if os.name == "posix" and not os.environ.get("TELEMREC_NO_EXTENSIONS"):
    extensions.append(Extension(
        "telemrec.analysis._cdecode", ["telemrec/analysis/_cdecode.c"], libraries=["z"],
        extra_compile_args=["-O3", "-fno-strict-aliasing"], optional=True))

setup(ext_modules=extensions, cmdclass={"build_py": BuildPyWithSchemas, "build_ext": BuildExtWithLibdeflate})
