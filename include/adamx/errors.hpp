// Exceptions the library throws besides std::invalid_argument (bad options,
// wrong tensor counts or shapes).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace adamx {

/// Thrown by step() when a group with NonFinitePolicy::error receives a
/// gradient whose squared norm is NaN or infinite. Nothing was changed.
class NonFiniteGradientError : public std::runtime_error {
 public:
  NonFiniteGradientError(const std::string& message, std::size_t group)
      : std::runtime_error(message), group_(group) {}
  /// Index of the (first) offending group.
  std::size_t group() const { return group_; }

 private:
  std::size_t group_;
};

}  // namespace adamx
