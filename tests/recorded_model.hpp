// A small deterministic training problem for the tests that compare today's
// results with results recorded earlier (test_bitwise_history.cpp,
// test_checkpoint_v2_files.cpp). Everything that decides the bits is written
// here with integer arithmetic and exact scalings, never with <random>'s
// distributions (whose output differs between standard libraries), so the
// recorded files stay valid on any platform with IEEE arithmetic:
//
//   splitmix64 (tests/golden/golden_inputs.hpp, the stream tests/data/README.md
//   describes), one integer k in [-2^20, 2^20) per element: initial θ = k · 2^-20;
//   a gradient follows its tensor's regime (Regime).
//
// Every value has at most 21 significant bits, so the conversion to float,
// double, bfloat16 or half is one deterministic rounding.
#pragma once

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "golden/golden_inputs.hpp"

namespace recorded_model {

using Index = Eigen::Index;

using golden::SplitMix64;

/// A double's bit pattern.
inline std::uint64_t bits_of(double x) {
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

/// FNV-1a, 64 bits, over exact bytes.
class Fnv1a64 {
 public:
  void add_bytes(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
      value_ ^= bytes[i];
      value_ *= 0x100000001B3ull;
    }
  }
  /// A value's bytes (a double's bit pattern, an integer's little- or
  /// big-endian bytes as the host stores them).
  template <class T>
  void add(const T& value) {
    static_assert(std::is_trivially_copyable<T>::value, "hash plain values only");
    add_bytes(&value, sizeof value);
  }
  /// An array's length, then its elements' bytes.
  template <class T>
  void add_array(const T* data, Index size) {
    add(static_cast<std::int64_t>(size));
    add_bytes(data, sizeof(T) * static_cast<std::size_t>(size));
  }
  std::uint64_t value() const { return value_; }

 private:
  std::uint64_t value_ = 0xCBF29CE484222325ull;
};

/// How a tensor's gradient element is made from its integer k.
enum class Regime {
  ordinary,  ///< k · 2^-20, in [-1, 1)
  tiny,      ///< k · 2^-120, up to about 8e-31: its square underflows in float
  large,     ///< k · 2^-8, up to 4096
  zero,      ///< exactly 0, every step
  sparse,    ///< k · 2^-20 when k is a multiple of 8, exactly 0 otherwise
};

inline double gradient_value(Regime regime, std::int64_t integer) {
  const double k = static_cast<double>(integer);
  switch (regime) {
    case Regime::ordinary: return std::ldexp(k, -20);
    case Regime::tiny: return std::ldexp(k, -120);
    case Regime::large: return std::ldexp(k, -8);
    case Regime::zero: return 0.0;
    case Regime::sparse: return integer % 8 == 0 ? std::ldexp(k, -20) : 0.0;
  }
  return 0.0;
}

struct TensorSpec {
  std::string name;
  Index rows = 0;
  Index cols = 1;
  bool row_major = false;  ///< storage order, for a matrix
  Regime regime = Regime::ordinary;
  Index size() const { return rows * cols; }
};

struct GroupSpec {
  std::string name;
  std::vector<TensorSpec> tensors;
};

/// `x` (at most 21 significant bits, or 0) as a parameter or gradient element.
template <class Scalar>
Scalar to_scalar(double x) {
  if constexpr (std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value)
    return static_cast<Scalar>(x);
  else
    return Scalar(static_cast<float>(x));  // exact in float, then Eigen's one rounding
}

template <class Scalar>
const char* scalar_name() {
  if constexpr (std::is_same<Scalar, float>::value) return "float";
  else if constexpr (std::is_same<Scalar, double>::value) return "double";
  else if constexpr (std::is_same<Scalar, Eigen::bfloat16>::value) return "bfloat16";
  else return "half";
}

/// Parameters and gradients of a model of groups of tensors, each tensor one
/// contiguous buffer in its storage order, stepped with gradients drawn from
/// one splitmix64 stream.
template <class Scalar>
class Model {
 public:
  using Buffers = std::vector<std::vector<std::vector<Scalar>>>;

  Model(std::vector<GroupSpec> groups, std::uint64_t seed) : groups_(std::move(groups)), rng_(seed) {
    for (const GroupSpec& group : groups_) {
      theta.emplace_back();
      grad.emplace_back();
      for (const TensorSpec& tensor : group.tensors) {
        std::vector<Scalar> values(static_cast<std::size_t>(tensor.size()));
        for (Scalar& value : values) value = to_scalar<Scalar>(std::ldexp(static_cast<double>(rng_.int21()), -20));
        theta.back().push_back(values);
        grad.back().emplace_back(values.size(), to_scalar<Scalar>(0.0));
      }
    }
  }

  const std::vector<GroupSpec>& groups() const { return groups_; }

  /// Adds every group to `opt` with its default options, under the groups'
  /// and tensors' names.
  template <class Opt>
  void add_groups(Opt& opt) {
    const auto params = param_views();
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      std::vector<std::string> names;
      for (const TensorSpec& tensor : groups_[g].tensors) names.push_back(tensor.name);
      opt.add_group(params[g], typename Opt::Options{}, groups_[g].name, names);
    }
  }

  /// Draws the next gradient of every element (group by group, tensor by
  /// tensor, in memory order).
  void draw_gradients() {
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (std::size_t t = 0; t < groups_[g].tensors.size(); ++t)
        for (Scalar& value : grad[g][t])
          value = to_scalar<Scalar>(gradient_value(groups_[g].tensors[t].regime, rng_.int21()));
  }

  /// Draws gradients and takes one step of every group.
  template <class Opt>
  void step(Opt& opt) {
    draw_gradients();
    opt.step(param_views(), grad_views());
  }

  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views() { return views<adamx::TensorRef<Scalar>>(theta); }
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views() {
    return views<adamx::ConstTensorRef<Scalar>>(grad);
  }

  Buffers theta;  ///< θ of every tensor of every group
  Buffers grad;   ///< the last gradients drawn

 private:
  template <class View>
  std::vector<std::vector<View>> views(Buffers& buffers) const {
    std::vector<std::vector<View>> out(groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (std::size_t t = 0; t < groups_[g].tensors.size(); ++t)
        out[g].emplace_back(view(buffers[g][t].data(), groups_[g].tensors[t]));
    return out;
  }
  static adamx::TensorRef<Scalar> view(Scalar* data, const TensorSpec& tensor) {
    using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    if (tensor.row_major) return Eigen::Map<RowMajor>(data, tensor.rows, tensor.cols);
    return adamx::TensorRef<Scalar>(data, tensor.rows, tensor.cols);
  }

  std::vector<GroupSpec> groups_;
  SplitMix64 rng_;
};

/// Bitwise equality of two models' parameters.
template <class Scalar>
bool same_parameters(const Model<Scalar>& a, const Model<Scalar>& b) {
  if (a.theta.size() != b.theta.size()) return false;
  for (std::size_t g = 0; g < a.theta.size(); ++g) {
    if (a.theta[g].size() != b.theta[g].size()) return false;
    for (std::size_t t = 0; t < a.theta[g].size(); ++t)
      if (a.theta[g][t].size() != b.theta[g][t].size() ||
          std::memcmp(a.theta[g][t].data(), b.theta[g][t].data(), sizeof(Scalar) * a.theta[g][t].size()) != 0)
        return false;
  }
  return true;
}

}  // namespace recorded_model
