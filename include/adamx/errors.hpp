// Exceptions the library throws besides std::invalid_argument (bad options,
// wrong tensor counts or shapes).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// Thrown by step() when a group with NonFinitePolicy::error receives a
/// gradient whose squared norm is NaN or infinite. Nothing was changed.
class NonFiniteGradientError : public std::runtime_error {
 public:
  /// tensor() of a group whose first non-finite tensor is not known here
  /// (it lies in another process's shard, or the norm spans all groups).
  static constexpr std::size_t kUnknownTensor = static_cast<std::size_t>(-1);

  NonFiniteGradientError(const std::string& message, std::size_t group,
                         std::size_t tensor = kUnknownTensor)
      : std::runtime_error(message), group_(group), tensor_(tensor) {}
  /// Index of the (first) offending group.
  std::size_t group() const { return group_; }
  /// Index, within group(), of the tensor at which the group's running sum
  /// of s first stopped being finite; kUnknownTensor if not known.
  std::size_t tensor() const { return tensor_; }

 private:
  std::size_t group_;
  std::size_t tensor_;
};

/// Thrown by load_checkpoint() and save_checkpoint() when a checkpoint cannot
/// be read or written: bad magic, unsupported version, wrong optimizer or
/// scalar type, groups that do not match, truncation, checksum mismatch,
/// invalid values, I/O failure. The message names what is wrong; a failed
/// load leaves the optimizer unchanged.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

ADAMX_NAMESPACE_END  // namespace adamx
