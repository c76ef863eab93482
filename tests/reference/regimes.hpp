// The gradient regimes the reference tests run every optimizer through, and
// their names (which name the test cases). Each reference test shapes its
// own gradients for a regime over its own number of steps; this header only
// keeps the list and the spelling in one place, so a regime means the same
// thing in every test that names it.
#pragma once

namespace reference {

enum class Regime {
  stationary,        // unit-scale normals around fixed means
  burst,             // the noise ×100 for a stretch of steps, then back
  decaying,          // the noise shrinking exponentially
  mixed_scales,      // tensors whose gradients differ in scale by orders of magnitude
  zero_stretches,    // stretches of steps whose whole gradient is exactly 0
  nonfinite_bursts,  // NaN and ±Inf entering at a few steps
};

inline const char* name(Regime r) {
  switch (r) {
    case Regime::stationary: return "stationary";
    case Regime::burst: return "burst";
    case Regime::decaying: return "decaying";
    case Regime::mixed_scales: return "mixed_scales";
    case Regime::zero_stretches: return "zero_stretches";
    case Regime::nonfinite_bursts: return "nonfinite_bursts";
  }
  return "?";
}

}  // namespace reference
