// Non-owning views of a tensor's memory, so a training loop hands over its own
// buffers (Eigen Matrix, Array, Vector or a Map over user memory) without copies.
//
// A view records the shape and the strides it was made from (TensorLayout,
// layout.hpp); the optimizer checks them against the group's shapes before
// touching any state, so the error can name the group and tensor (the view
// itself does not know them).
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <type_traits>

#include "adamx/abi.hpp"
#include "adamx/layout.hpp"

ADAMX_NAMESPACE_BEGIN

using Index = Eigen::Index;

namespace detail {

template <class Derived, class Scalar>
constexpr bool is_direct_tensor_v =
    std::is_same<typename Derived::Scalar, Scalar>::value &&
    (Derived::Flags & Eigen::DirectAccessBit) != 0;

// ---- a tensor of the wrong scalar type: one clear compile error ------------
//
// A view of another scalar type has a constructor that exists only to fail:
// without it, a double gradient given to an optimizer over float is "no
// matching function for call to step(<brace-enclosed initializer list>…)".
// It instantiates wrong_scalar_type<Passed, Expected, Role>, whose
// static_assert states the rule, and for the four parameter types names
// both types in its text; the compiler also prints the template arguments.

template <class T>
struct always_false : std::false_type {};

// What the view is for, as the message words it; `Tensor` (the type passed)
// keeps the assertion dependent until a view is really made from it.
template <class Tensor>
struct parameter_role {};
template <class Tensor>
struct gradient_role {};

template <class Passed, class Expected, class Role>
struct wrong_scalar_type {
  static_assert(always_false<Role>::value,
                "adamx: a tensor's scalar type must be the optimizer's scalar type; this "
                "wrong_scalar_type<Passed, Expected, ...> names the type passed, then the type expected");
};

#define ADAMX_DETAIL_WRONG_SCALAR_TYPE(PASSED, EXPECTED)                                       \
  template <class Tensor>                                                                     \
  struct wrong_scalar_type<PASSED, EXPECTED, parameter_role<Tensor>> {                        \
    static_assert(always_false<Tensor>::value,                                                \
                  "adamx: parameter tensors of an optimizer over " #EXPECTED                  \
                  " must have scalar type " #EXPECTED "; got " #PASSED);                      \
  };                                                                                          \
  template <class Tensor>                                                                     \
  struct wrong_scalar_type<PASSED, EXPECTED, gradient_role<Tensor>> {                         \
    static_assert(always_false<Tensor>::value,                                                \
                  "adamx: gradient tensors (and add_group's tensors) of an optimizer over "   \
                  #EXPECTED " must have scalar type " #EXPECTED "; got " #PASSED);            \
  };
ADAMX_DETAIL_WRONG_SCALAR_TYPE(double, float)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::bfloat16, float)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::half, float)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(float, double)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::bfloat16, double)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::half, double)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(float, Eigen::bfloat16)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(double, Eigen::bfloat16)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::half, Eigen::bfloat16)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(float, Eigen::half)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(double, Eigen::half)
ADAMX_DETAIL_WRONG_SCALAR_TYPE(Eigen::bfloat16, Eigen::half)
#undef ADAMX_DETAIL_WRONG_SCALAR_TYPE

template <class Derived, class Scalar>
constexpr bool has_other_scalar_v = !std::is_same<typename Derived::Scalar, Scalar>::value;

}  // namespace detail

/// A writable view of a parameter tensor (contiguous memory of `Scalar`).
template <class Scalar>
class TensorRef {
 public:
  /// From any Eigen object with direct, writable memory access of the same
  /// scalar type: Matrix, Array, Vector, Map, contiguous Block.
  template <class Derived,
            class = std::enable_if_t<detail::is_direct_tensor_v<Derived, Scalar> &&
                                     (Derived::Flags & Eigen::LvalueBit) != 0>>
  TensorRef(Eigen::DenseBase<Derived>& x)  // NOLINT(google-explicit-constructor): views convert
      : data_(x.derived().data()), layout_(detail::TensorLayout::of(x)) {}

  /// From a temporary Map or Block (the memory is the user's, not the temporary's).
  template <class Derived,
            class = std::enable_if_t<detail::is_direct_tensor_v<Derived, Scalar> &&
                                     (Derived::Flags & Eigen::LvalueBit) != 0 &&
                                     !std::is_base_of<Eigen::PlainObjectBase<Derived>, Derived>::value>>
  TensorRef(Eigen::DenseBase<Derived>&& x)  // NOLINT(google-explicit-constructor)
      : data_(x.derived().data()), layout_(detail::TensorLayout::of(x)) {}

  /// From a tensor or view of another scalar type: does not compile, and
  /// says so (detail::wrong_scalar_type).
  template <class Derived, std::enable_if_t<detail::has_other_scalar_v<Derived, Scalar>, int> = 0>
  TensorRef(const Eigen::DenseBase<Derived>&)  // NOLINT(google-explicit-constructor)
      : data_(nullptr) {
    static_cast<void>(sizeof(detail::wrong_scalar_type<typename Derived::Scalar, Scalar,
                                                       detail::parameter_role<Derived>>));
  }

  template <class Other, std::enable_if_t<!std::is_same<Other, Scalar>::value, int> = 0>
  TensorRef(const TensorRef<Other>&)  // NOLINT(google-explicit-constructor)
      : data_(nullptr) {
    static_cast<void>(sizeof(detail::wrong_scalar_type<Other, Scalar, detail::parameter_role<TensorRef<Other>>>));
  }

  /// From raw memory holding rows*cols elements in column-major order.
  TensorRef(Scalar* data, Index rows, Index cols = 1) : data_(data) {
    layout_.rows = rows;
    layout_.cols = cols;
    layout_.outer_stride = rows;
  }

  Scalar* data() const { return data_; }
  Index rows() const { return layout_.rows; }
  Index cols() const { return layout_.cols; }
  Index size() const { return layout_.size(); }
  const detail::TensorLayout& layout() const { return layout_; }

 private:
  Scalar* data_;
  detail::TensorLayout layout_;
};

/// A read-only view of a gradient tensor (or of a parameter, to give a shape).
template <class Scalar>
class ConstTensorRef {
 public:
  template <class Derived, class = std::enable_if_t<detail::is_direct_tensor_v<Derived, Scalar>>>
  ConstTensorRef(const Eigen::DenseBase<Derived>& x)  // NOLINT(google-explicit-constructor)
      : data_(x.derived().data()), layout_(detail::TensorLayout::of(x)) {}

  ConstTensorRef(const TensorRef<Scalar>& x)  // NOLINT(google-explicit-constructor)
      : data_(x.data()), layout_(x.layout()) {}

  /// From a tensor or view of another scalar type: does not compile, and
  /// says so (detail::wrong_scalar_type).
  template <class Derived, std::enable_if_t<detail::has_other_scalar_v<Derived, Scalar>, int> = 0>
  ConstTensorRef(const Eigen::DenseBase<Derived>&)  // NOLINT(google-explicit-constructor)
      : data_(nullptr) {
    static_cast<void>(sizeof(detail::wrong_scalar_type<typename Derived::Scalar, Scalar,
                                                       detail::gradient_role<Derived>>));
  }
  template <class Other, std::enable_if_t<!std::is_same<Other, Scalar>::value, int> = 0>
  ConstTensorRef(const ConstTensorRef<Other>&)  // NOLINT(google-explicit-constructor)
      : data_(nullptr) {
    static_cast<void>(
        sizeof(detail::wrong_scalar_type<Other, Scalar, detail::gradient_role<ConstTensorRef<Other>>>));
  }
  template <class Other, std::enable_if_t<!std::is_same<Other, Scalar>::value, int> = 0>
  ConstTensorRef(const TensorRef<Other>&)  // NOLINT(google-explicit-constructor)
      : data_(nullptr) {
    static_cast<void>(sizeof(detail::wrong_scalar_type<Other, Scalar, detail::gradient_role<TensorRef<Other>>>));
  }

  /// From raw memory holding rows*cols elements in column-major order.
  ConstTensorRef(const Scalar* data, Index rows, Index cols = 1) : data_(data) {
    layout_.rows = rows;
    layout_.cols = cols;
    layout_.outer_stride = rows;
  }

  const Scalar* data() const { return data_; }
  Index rows() const { return layout_.rows; }
  Index cols() const { return layout_.cols; }
  Index size() const { return layout_.size(); }
  const detail::TensorLayout& layout() const { return layout_; }

 private:
  const Scalar* data_;
  detail::TensorLayout layout_;
};

ADAMX_NAMESPACE_END  // namespace adamx
