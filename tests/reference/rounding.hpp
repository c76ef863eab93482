// What the long-double references of the rules (naive_lion.hpp,
// naive_adan.hpp, naive_schedule_free.hpp) share to build their rounding
// bounds: the precision of the library's Scalar they bound against, the
// subnormal a rounded result may be charged, and the relative error of a
// bias correction 1 − β^t computed in double. Nothing from the library is
// included: the references must stay independent of the code they check.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace reference {

using Real = long double;

/// The rounding of the library's arithmetic: its Scalar's, and double's for
/// the per-step constants it computes in double before rounding them once.
struct Precision {
  Real u;    // unit roundoff of the library's Scalar
  Real eta;  // its smallest subnormal
  Real u_double = std::numeric_limits<double>::epsilon() / 2;
  template <class Scalar>
  static Precision of() {
    return {std::numeric_limits<Scalar>::epsilon() / 2, std::numeric_limits<Scalar>::denorm_min()};
  }
};

// a ≠ 0 ? e : 0, to charge a subnormal only where a result can be one.
inline Real tiny(Real a, Real eta) { return a != 0 ? eta : 0; }

// Relative error of 1 − β^t computed in double: pow within 2 ulps of β^t,
// then a subtraction whose condition number is β^t/(1 − β^t).
inline Real one_minus_power_relative_error(Real beta, std::int64_t t, Real ud) {
  const Real power = std::pow(beta, static_cast<Real>(t));
  return 2 * ud * power / (1 - power) + ud;
}

}  // namespace reference
