# Shared setup for scripts/test and scripts/demo; source it, then call
# adamx_setup. It installs the Debian packages the build, the tests and the
# demo need, and touches apt only when something is actually missing.
#
# shellcheck shell=bash

ADAMX_DEBIAN_PACKAGES=(
  cmake
  ninja-build
  g++
  clang
  libclang-rt-14-dev
  libomp-dev
  libeigen3-dev
  libgtest-dev
  libbenchmark-dev
  zlib1g-dev
  pkg-config
  valgrind
  dataset-fashion-mnist
  libopenmpi-dev
  openmpi-bin
  # adamx::torch and its `torch` tests. The largest by far: on a fresh Debian 12
  # beside the packages above it brings about 370 more (libtorch1.13, LLVM 15,
  # GDAL, fonts, ...), about 290 MB to download and 1.2 GB installed
  # (apt-cache, November 2026); the build and tests skip it when absent.
  libtorch-dev
  # The Python package (python/) and its tests: Debian's Python, pybind11's
  # headers, PyTorch and NumPy for its modules, pytest and hypothesis.
  python3-dev
  python3-venv
  python3-pip
  python3-setuptools
  python3-wheel
  pybind11-dev
  python3-torch
  python3-numpy
  python3-pytest
  python3-hypothesis
)

# What the optimizer study (scripts/results, and its --quick run in the test
# suite) needs beyond the build: the text its language models read, the
# tabular data set, and Debian's Python with the libraries of its report
# (numpy and scipy come with python3-sklearn).
ADAMX_STUDY_PACKAGES=(
  fortunes
  python3-sklearn
  python3-matplotlib
)

# Print the packages from ADAMX_DEBIAN_PACKAGES that are not installed.
adamx_missing_packages() {
  local pkg status
  for pkg in "${ADAMX_DEBIAN_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

adamx_setup() {
  local -a missing sudo=()
  mapfile -t missing < <(adamx_missing_packages)
  if ((${#missing[@]} == 0)); then
    echo "setup: all ${#ADAMX_DEBIAN_PACKAGES[@]} required packages are installed; apt not run"
    return 0
  fi
  echo "setup: installing missing packages: ${missing[*]}"
  if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: not root and sudo is unavailable; install these yourself: ${missing[*]}" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  # Explicit checks: set -e does not apply when this runs under adamx_timed.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" || return 1
  mapfile -t missing < <(adamx_missing_packages)
  if ((${#missing[@]} != 0)); then
    echo "setup: still missing after apt-get install: ${missing[*]}" >&2
    return 1
  fi
}

# adamx_timed <label> <command...>: run a command and report how long it took.
adamx_timed() {
  local label="$1" start end rc=0
  shift
  start=$(date +%s)
  "$@" || rc=$?
  end=$(date +%s)
  if ((rc == 0)); then
    echo "timing: ${label}: $((end - start)) s"
  else
    echo "timing: ${label}: FAILED (exit ${rc}) after $((end - start)) s" >&2
  fi
  return "$rc"
}
