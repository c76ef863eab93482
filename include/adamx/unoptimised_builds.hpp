// How the element passes (kernel.hpp) stay fast when a user's program is
// built without optimisation (-O0, CMake's Debug), where a step otherwise
// costs hundreds of times what it costs at -O2: every helper is a real call
// and nothing is kept in registers. README.md ("Benchmarks") has the numbers.
//
// ADAMX_ALWAYS_INLINE: on the per-chunk helpers (chunk.hpp, simd.hpp,
//   kernel.hpp). g++ and clang++ inline these at every optimisation level,
//   so a pass makes no call per chunk. With clang++ -O0 this is what there
//   is: the pass is then inlined but unoptimised code.
// ADAMX_ALWAYS_INLINE_LAMBDA: the same for a lambda (after its parameter
//   list), for a chunk's body handed to a loop helper: called from more
//   than one loop, it would otherwise be compiled once out of line.
// ADAMX_OPTIMISED_PASS: on the functions that loop over elements. With g++
//   in an unoptimised build it compiles them (and the always-inlined helpers
//   in them) at -O2, so they run at the speed of a release build; in an
//   optimised build, or with another compiler, it is empty. -O2 changes no
//   result here: no -ffast-math, and the kernel's arithmetic is IEEE
//   elementwise either way (the exact reference and invariant tests pass in
//   the debug preset too). clang++ has no such attribute (`optnone` only
//   turns optimisation off).
#pragma once

#if defined(__GNUC__)
#define ADAMX_ALWAYS_INLINE inline __attribute__((always_inline))
#define ADAMX_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
// A condition that is almost never true (a NaN among the values a pass
// converts): its code is laid out off the straight path.
#define ADAMX_UNLIKELY(condition) __builtin_expect(static_cast<bool>(condition), 0)
#else
#define ADAMX_ALWAYS_INLINE inline
#define ADAMX_ALWAYS_INLINE_LAMBDA
#define ADAMX_UNLIKELY(condition) (condition)
#endif

// ADAMX_KERNEL_PASS: on the passes themselves (kernel_passes.hpp). With g++
//   it is ADAMX_OPTIMISED_PASS's -O2 (in an unoptimised build) and, in every
//   build, no contraction of a multiplication and an addition into a fused
//   multiply-add: g++ contracts by default in its GNU dialects wherever the
//   target has FMA (-march=native, and AVX-512F, which the AVX-512 passes
//   target), and a fused result differs from the two roundings of the
//   reference and of the sets without FMA. The rules' code inlined into a
//   pass follows the pass's setting. (Every function of the library is
//   also compiled without contraction, abi.hpp; the attribute keeps the
//   passes so whatever surrounds them.)
// ADAMX_EXACT_ARITHMETIC_BEGIN / _END: for an update rule written outside
//   the library (a rule of one's own, docs/design.md): around its element
//   code, clang++ does not contract a multiplication and an addition of one
//   expression, so its results too are the same on every instruction set.
//   The library's own code needs no marker (abi.hpp); g++ ignores it.
// ADAMX_KERNEL_PASS_LAMBDA: the same for a lambda that holds a pass's loops
//   and is called from code compiled for the baseline (a rule's visit,
//   kernel_passes.hpp), so it cannot be always inlined there.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#define ADAMX_OPTIMISED_PASS __attribute__((optimize("O2")))
#define ADAMX_KERNEL_PASS __attribute__((optimize("O2", "fp-contract=off")))
#define ADAMX_KERNEL_PASS_LAMBDA __attribute__((optimize("O2", "fp-contract=off")))
#elif defined(__GNUC__) && !defined(__clang__)
#define ADAMX_OPTIMISED_PASS
#define ADAMX_KERNEL_PASS __attribute__((optimize("fp-contract=off")))
#define ADAMX_KERNEL_PASS_LAMBDA __attribute__((optimize("fp-contract=off")))
#else
#define ADAMX_OPTIMISED_PASS
#define ADAMX_KERNEL_PASS
#define ADAMX_KERNEL_PASS_LAMBDA
#endif

#if defined(__clang__)
#define ADAMX_EXACT_ARITHMETIC_BEGIN _Pragma("float_control(push)") _Pragma("clang fp contract(off)")
#define ADAMX_EXACT_ARITHMETIC_END _Pragma("float_control(pop)")
#else
#define ADAMX_EXACT_ARITHMETIC_BEGIN
#define ADAMX_EXACT_ARITHMETIC_END
#endif
