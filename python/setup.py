"""Builds the adamx Python package: adamx._core (the header-only C++ library
bound with pybind11) and the pure-Python modules adamx.torch, adamx.numpy and
adamx.checkpoint. Everything comes from Debian's own packages: python3-dev,
pybind11-dev, libeigen3-dev (and python3-numpy, python3-torch at run time).

Install (from the repository's top directory):
    python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation --no-index ./python
"""
import os
import re

from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, "..", "include")


def version():
    text = open(os.path.join(INCLUDE, "adamx", "version.hpp"), encoding="utf-8").read()
    parts = [re.search(r"#define ADAMX_VERSION_%s (\d+)" % key, text).group(1) for key in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def include_dirs():
    dirs = [INCLUDE]
    # Eigen 3.4 as Debian installs it (libeigen3-dev); EIGEN3_INCLUDE_DIR overrides.
    eigen = os.environ.get("EIGEN3_INCLUDE_DIR", "/usr/include/eigen3")
    if not os.path.isfile(os.path.join(eigen, "Eigen", "Core")):
        raise SystemExit("adamx: Eigen 3.4 not found in %s (install libeigen3-dev, or set EIGEN3_INCLUDE_DIR)" % eigen)
    dirs.append(eigen)
    try:  # pybind11's headers: /usr/include with pybind11-dev, or the python3-pybind11 module
        import pybind11

        dirs.append(pybind11.get_include())
    except ImportError:
        if not os.path.isfile("/usr/include/pybind11/pybind11.h"):
            raise SystemExit("adamx: pybind11 not found (install pybind11-dev)")
    return dirs


class ParallelBuildExt(build_ext):
    """Compiles the extension's files side by side (setuptools compiles one
    extension's sources one after another): each optimizer's engines are a
    file of their own, and together they take minutes on one core.
    ADAMX_BUILD_JOBS sets the number of compilers (default: every core)."""

    def build_extensions(self):
        compiler = self.compiler
        jobs = int(os.environ.get("ADAMX_BUILD_JOBS", "0")) or os.cpu_count() or 1

        def compile_all(sources, output_dir=None, macros=None, include_dirs=None, debug=0, extra_preargs=None,
                        extra_postargs=None, depends=None):
            macros, objects, extra, pp_opts, build = compiler._setup_compile(
                output_dir, macros, include_dirs, sources, depends, extra_postargs)
            cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

            def compile_one(obj):
                source, extension = build[obj]
                compiler._compile(obj, source, extension, cc_args, extra, pp_opts)

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(compile_one, [obj for obj in objects if obj in build]))
            return objects

        compiler.compile = compile_all
        super().build_extensions()


# The project's own code builds without warnings; its tests build it with
# ADAMX_WERROR=1 to keep it so (a user's newer compiler may warn: no -Werror).
warning_flags = ["-Wall", "-Wextra", "-Wpedantic"] + (["-Werror"] if os.environ.get("ADAMX_WERROR") == "1" else [])

core = Extension(
    "adamx._core",
    # One file per optimizer (engine_<name>.cpp), compiled in parallel (ParallelBuildExt).
    sources=sorted(os.path.join("src", name) for name in os.listdir(os.path.join(HERE, "src")) if name.endswith(".cpp")),
    include_dirs=include_dirs(),
    language="c++",
    extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", "-g0"] + warning_flags,
)

setup(
    name="adamx",
    version=version(),
    description="AdamX, Adam and the optimizers compared with them, as torch and NumPy optimizers over a fused C++ kernel",
    license="MIT",
    packages=["adamx"],
    package_data={"adamx": ["py.typed", "*.pyi"]},
    ext_modules=[core],
    cmdclass={"build_ext": ParallelBuildExt},
    python_requires=">=3.9",
    zip_safe=False,
)
