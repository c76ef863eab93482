// ADAMX_OUT_OF_LINE: on the driver's entry points that do a whole call's
// work once (step, clipped step, restore, add_group, the state copies).
// Member functions defined in a class are inline, and at -O2 g++ copies
// such a body into every place that calls it; a program that steps from
// many places (a training loop has one, a test suite hundreds) then
// compiles the whole driver, checks and passes included, at each of them.
// Kept out of line, each is compiled once per instantiation in a
// translation unit and called: a call costs nanoseconds against a step's
// pass over the tensors, and no result changes (the arithmetic is the same
// code either way). The element passes keep their own inlining
// (unoptimised_builds.hpp).
#pragma once

#if defined(__GNUC__)
#define ADAMX_OUT_OF_LINE __attribute__((noinline))
#else
#define ADAMX_OUT_OF_LINE
#endif
