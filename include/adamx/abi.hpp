// The namespace every adamx header declares its names in.
//
// adamx is header-only: its functions are inline, compiled into each
// translation unit that uses them, and the linker keeps ONE body per name.
// Two choices change those bodies without changing the names they would
// otherwise have: ADAMX_OPENMP (threads or not) and the adamx release. So
// the names live in an inline namespace tagged with both, e.g.
// adamx::v0_1_0_openmp or adamx::v0_1_0_serial: translation units compiled
// with and without ADAMX_OPENMP, or against two releases, can be linked into
// one program, each keeping its own code, instead of the linker silently
// picking one. Code still writes adamx::AdamX<float>; the tag appears only
// in symbol names and diagnostics.
//
// Define ADAMX_OPENMP (if at all) before the first adamx header, on the
// command line as CMake's ADAMX_OPENMP option does: the tag is fixed when
// this header is first read.
//
// Every adamx header opens and closes its namespace with
//   ADAMX_NAMESPACE_BEGIN   // namespace adamx { inline namespace <tag> {
//   ...
//   ADAMX_NAMESPACE_END     // } }
#pragma once

#include "adamx/version.hpp"

// Two levels so that the version macros expand before ## pastes them; the
// threading suffix is written out, so no user macro can replace it.
#ifdef ADAMX_OPENMP
#define ADAMX_ABI_OPENMP  // the tag's choice, which parallel.hpp checks it still agrees with
#define ADAMX_ABI_PASTE(major, minor, patch) v##major##_##minor##_##patch##_openmp
#else
#define ADAMX_ABI_PASTE(major, minor, patch) v##major##_##minor##_##patch##_serial
#endif
#define ADAMX_ABI_EXPAND(major, minor, patch) ADAMX_ABI_PASTE(major, minor, patch)
#define ADAMX_ABI_TAG ADAMX_ABI_EXPAND(ADAMX_VERSION_MAJOR, ADAMX_VERSION_MINOR, ADAMX_VERSION_PATCH)

// No multiply-add contraction anywhere in the library. g++ in its GNU
// dialects (-std=gnu++17, CMake's default) contracts a*b+c into one fused
// instruction wherever the target has FMA (-march=native, -mfma), which
// changes the last bit of the per-step scalars (bias corrections, γ, the
// schedules) and so every result after them: a program built with
// -march=native would not reproduce one built without it. The element
// passes carry the same option themselves (unoptimised_builds.hpp); clang++
// contracts within one expression by default, which its pragmas turn off.
// With g++ the region below gives every function the library defines
// optimize("fp-contract=off"); such a function is not inlined into code
// compiled with other options (its callers in the user's program call it),
// which costs a call per step or per tensor, not per element.
#if defined(__clang__)
#define ADAMX_NO_CONTRACTION_BEGIN _Pragma("float_control(push)") _Pragma("clang fp contract(off)")
#define ADAMX_NO_CONTRACTION_END _Pragma("float_control(pop)")
#elif defined(__GNUC__)
#define ADAMX_NO_CONTRACTION_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=off\")")
#define ADAMX_NO_CONTRACTION_END _Pragma("GCC pop_options")
#else
#define ADAMX_NO_CONTRACTION_BEGIN
#define ADAMX_NO_CONTRACTION_END
#endif

#define ADAMX_NAMESPACE_BEGIN \
  ADAMX_NO_CONTRACTION_BEGIN  \
  namespace adamx {           \
  inline namespace ADAMX_ABI_TAG {
#define ADAMX_NAMESPACE_END \
  }                         \
  }                         \
  ADAMX_NO_CONTRACTION_END
