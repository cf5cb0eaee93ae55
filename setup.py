"""Builds sealstore._sealstore with the project's own CMake build, for the
interpreter running pip, and puts it in the wheel beside src/python/sealstore.
The CMake build tree lives in setuptools' build_temp (under build/)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = Path(self.build_temp).resolve() / "cmake"
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DSEALSTORE_BUILD_TESTS=OFF", "-DSEALSTORE_BUILD_BENCHMARKS=OFF", "-DSEALSTORE_BUILD_TOOLS=OFF",
            "-DSEALSTORE_PYTHON=ON", f"-DPython_EXECUTABLE={sys.executable}",
        ]
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "sealstore_python", "-j", jobs], check=True)
        built = sorted((build_dir / "python" / "sealstore").glob("_sealstore*.so"))
        if not built:
            raise RuntimeError("CMake did not build the Python module: are pybind11 and numpy installed for "
                               f"{sys.executable}? (tools/deps.sh installs Debian's)")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)


setup(ext_modules=[CMakeExtension("sealstore._sealstore")], cmdclass={"build_ext": CMakeBuild})
