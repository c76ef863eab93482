// Which instruction set the element passes run on.
//
// The passes over memory (kernel.hpp) are compiled, in every program that
// steps an optimizer, for each instruction set below that the compiler can
// target: the *baseline* (what the program's own flags give: SSE2 on
// x86-64 unless it is compiled for more), AVX2 and AVX-512. The first step
// picks the best one that both the CPU and the operating system support
// (cpuid, and xgetbv for the vector registers the OS saves on a context
// switch); the environment variable ADAMX_INSTRUCTION_SET (`baseline`,
// `avx2`, `avx512`), read once, or set_instruction_set() choose another.
// Every set computes the same bits (docs/design.md, "Instruction sets"), so
// the choice changes speed only, and it may be changed at any time, even
// while another thread steps.
//
// Run-time dispatch needs GCC or Clang on x86-64; elsewhere (MSVC, other
// architectures) only the baseline exists and this header reports that.
// Defining ADAMX_NO_DISPATCH before the first adamx header also limits a
// program to the baseline.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "adamx/abi.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(ADAMX_NO_DISPATCH)
#define ADAMX_DISPATCH 1
#include <cpuid.h>
#else
#define ADAMX_DISPATCH 0
#endif

ADAMX_NAMESPACE_BEGIN

/// The instruction sets the element passes are compiled for.
enum class InstructionSet : int {
  baseline = 0,  ///< the program's own compiler flags (SSE2 on x86-64 by default)
  avx2 = 1,      ///< AVX2 with F16C (256-bit registers; no FMA: results stay those of the baseline)
  avx512 = 2,    ///< AVX-512 F, BW, DQ and VL (512-bit registers)
};

/// "baseline", "avx2" or "avx512": the names ADAMX_INSTRUCTION_SET accepts.
inline const char* instruction_set_name(InstructionSet set) {
  switch (set) {
    case InstructionSet::baseline: return "baseline";
    case InstructionSet::avx2: return "avx2";
    case InstructionSet::avx512: return "avx512";
  }
  return "unknown";
}

/// What the baseline is in this translation unit: the widest x86 vector
/// extension its compiler flags enable ("SSE2", "AVX", "AVX2", "AVX-512"),
/// or "portable" without one.
inline const char* baseline_description() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE2__)
  return "SSE2";
#else
  return "portable";
#endif
}

namespace detail {

/// The CPU's and OS's support, read once (cpuid; xgetbv for the register
/// state the OS saves). Empty of support without dispatch.
struct CpuSupport {
  bool avx2 = false;    ///< AVX, AVX2 and F16C, and the OS saves YMM registers
  bool avx512 = false;  ///< AVX-512 F/BW/DQ/VL and the above, and the OS saves ZMM and mask registers
  std::string missing_avx2;    ///< what AVX2 lacks, for the error message
  std::string missing_avx512;  ///< what AVX-512 lacks
};

#if ADAMX_DISPATCH
inline std::uint64_t read_xcr0() {
  std::uint32_t low = 0, high = 0;
  // The instruction itself: the intrinsic would need the xsave target.
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<std::uint64_t>(high) << 32) | low;
}
#endif

inline CpuSupport detect_cpu_support() {
  CpuSupport s;
#if ADAMX_DISPATCH
  unsigned a = 0, b = 0, c = 0, d = 0;
  const auto missing = [](std::string& list, bool has, const char* name) {
    if (!has) list += list.empty() ? name : std::string(", ") + name;
  };
  bool osxsave = false, avx = false, f16c = false;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    osxsave = (c & (1u << 27)) != 0;
    avx = (c & (1u << 28)) != 0;
    f16c = (c & (1u << 29)) != 0;
  }
  bool avx2 = false, avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
  if (__get_cpuid_max(0, nullptr) >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    avx2 = (b & (1u << 5)) != 0;
    avx512f = (b & (1u << 16)) != 0;
    avx512dq = (b & (1u << 17)) != 0;
    avx512bw = (b & (1u << 30)) != 0;
    avx512vl = (b & (1u << 31)) != 0;
  }
  const std::uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // and opmask, ZMM_Hi256, Hi16_ZMM
  missing(s.missing_avx2, avx, "avx");
  missing(s.missing_avx2, avx2, "avx2");
  missing(s.missing_avx2, f16c, "f16c");
  missing(s.missing_avx2, os_ymm, "the operating system's support for AVX registers");
  s.avx2 = s.missing_avx2.empty();
  s.missing_avx512 = s.missing_avx2;
  missing(s.missing_avx512, avx512f, "avx512f");
  missing(s.missing_avx512, avx512bw, "avx512bw");
  missing(s.missing_avx512, avx512dq, "avx512dq");
  missing(s.missing_avx512, avx512vl, "avx512vl");
  missing(s.missing_avx512, os_zmm, "the operating system's support for AVX-512 registers");
  s.avx512 = s.missing_avx512.empty();
#else
  s.missing_avx2 = s.missing_avx512 = "run-time dispatch (this build has the baseline only)";
#endif
  return s;
}

inline const CpuSupport& cpu_support() {
  static const CpuSupport support = detect_cpu_support();
  return support;
}

/// Why `set` cannot run here, or "" if it can.
inline std::string instruction_set_problem(InstructionSet set) {
  switch (set) {
    case InstructionSet::baseline: return {};
    case InstructionSet::avx2:
      return cpu_support().avx2 ? std::string() : "this CPU or build lacks " + cpu_support().missing_avx2;
    case InstructionSet::avx512:
      return cpu_support().avx512 ? std::string() : "this CPU or build lacks " + cpu_support().missing_avx512;
  }
  return "it is not an instruction set adamx knows";
}

inline InstructionSet best_supported_instruction_set() {
  if (cpu_support().avx512) return InstructionSet::avx512;
  if (cpu_support().avx2) return InstructionSet::avx2;
  return InstructionSet::baseline;
}

/// The set ADAMX_INSTRUCTION_SET names, or the best supported one when it is
/// unset or empty; std::invalid_argument for an unknown or unsupported name.
inline InstructionSet initial_instruction_set() {
  const char* const value = std::getenv("ADAMX_INSTRUCTION_SET");
  if (value == nullptr || *value == '\0') return best_supported_instruction_set();
  for (InstructionSet set : {InstructionSet::baseline, InstructionSet::avx2, InstructionSet::avx512}) {
    if (std::string(value) != instruction_set_name(set)) continue;
    const std::string problem = instruction_set_problem(set);
    if (!problem.empty())
      throw std::invalid_argument("adamx: ADAMX_INSTRUCTION_SET=" + std::string(value) + " cannot be used: " +
                                  problem);
    return set;
  }
  throw std::invalid_argument("adamx: ADAMX_INSTRUCTION_SET=" + std::string(value) +
                              " is not an instruction set (expected baseline, avx2 or avx512)");
}

/// The active set, or −1 before the first use chooses it.
inline std::atomic<int>& active_instruction_set() {
  static std::atomic<int> active{-1};
  return active;
}

}  // namespace detail

/// Whether the element passes can run on `set` in this program on this machine.
inline bool instruction_set_supported(InstructionSet set) { return detail::instruction_set_problem(set).empty(); }

/// Every set instruction_set_supported() accepts, baseline first.
inline std::vector<InstructionSet> supported_instruction_sets() {
  std::vector<InstructionSet> sets;
  for (InstructionSet set : {InstructionSet::baseline, InstructionSet::avx2, InstructionSet::avx512})
    if (instruction_set_supported(set)) sets.push_back(set);
  return sets;
}

/// The set the element passes run on now. Unless set_instruction_set() was
/// called first, the first call reads ADAMX_INSTRUCTION_SET and throws
/// std::invalid_argument if it names an unknown or unsupported set (a step
/// asks before changing anything, so it then throws with nothing changed).
inline InstructionSet instruction_set() {
  std::atomic<int>& active = detail::active_instruction_set();
  int set = active.load(std::memory_order_relaxed);
  if (set < 0) {
    // Chosen once: concurrent first calls agree on the first stored choice,
    // and set_instruction_set() before any step wins over the environment.
    int unset = -1;
    active.compare_exchange_strong(unset, static_cast<int>(detail::initial_instruction_set()),
                                   std::memory_order_relaxed);
    set = active.load(std::memory_order_relaxed);
  }
  return static_cast<InstructionSet>(set);
}

/// Runs the element passes on `set` from now on (every thread). Throws
/// std::invalid_argument, changing nothing, if `set` cannot run here.
inline void set_instruction_set(InstructionSet set) {
  const std::string problem = detail::instruction_set_problem(set);
  if (!problem.empty())
    throw std::invalid_argument(std::string("adamx: instruction set ") + instruction_set_name(set) +
                                " cannot be used: " + problem);
  detail::active_instruction_set().store(static_cast<int>(set), std::memory_order_relaxed);
}

ADAMX_NAMESPACE_END  // namespace adamx
