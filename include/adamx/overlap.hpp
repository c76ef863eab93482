// The memory rule of a step (docs/design.md, "Aliasing"): no two parameter
// tensors may share memory, and a gradient may share memory only with its own
// parameter, and then exactly (the same first element, the same size).
//
// Two parameters in the same memory would be stepped twice, with two sets of
// moments, and a gradient inside another tensor's parameter would be read
// before or after that parameter is written depending on the order of the
// tensors (and, with threads, on timing). A gradient that is exactly its own
// parameter is well defined: each element of g is read before the same
// element of θ is written, in every pass.
//
// The check sorts the parameters' address ranges, O(n log n) in the number
// of tensors (O(n) when they are already in address order), in buffers sized
// by reserve() so that a step allocates nothing;
// when a step passes the very same memory as the last checked one (the usual
// training loop), one comparison per tensor replaces the sort.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// One tensor's memory in bytes, [begin, end), with its place in the groups.
struct TensorSpan {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::size_t group = 0;
  std::size_t tensor = 0;

  bool empty() const { return begin == end; }
  bool same_tensor(const TensorSpan& other) const {
    return group == other.group && tensor == other.tensor;
  }
  bool operator==(const TensorSpan& other) const {
    return begin == other.begin && end == other.end && same_tensor(other);
  }
  bool operator!=(const TensorSpan& other) const { return !(*this == other); }
};

template <class Scalar>
TensorSpan span_of(const Scalar* data, std::ptrdiff_t size, std::size_t group, std::size_t tensor) {
  // Addresses as integers: comparing pointers into unrelated objects with <
  // is unspecified, comparing their integer values is not.
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const auto bytes = static_cast<std::uintptr_t>(size < 0 ? 0 : size) * sizeof(Scalar);
  return {begin, begin + bytes, group, tensor};
}

// What the check found: `first` and `second` share memory.
struct MemoryConflict {
  enum class Kind {
    none,
    parameters,         // two parameters overlap
    gradient_other,     // a gradient overlaps another tensor's parameter
    gradient_partial,   // a gradient overlaps its own parameter, but not exactly
  };
  Kind kind = Kind::none;
  TensorSpan first;   // a parameter; for the gradient kinds, the gradient
  TensorSpan second;  // a parameter

  explicit operator bool() const { return kind != Kind::none; }
};

// The message for a conflict; `name(span)` gives a tensor's "group.tensor".
template <class Name>
std::string conflict_message(const MemoryConflict& conflict, const Name& name) {
  const std::string first = "'" + name(conflict.first) + "'";
  const std::string second = "'" + name(conflict.second) + "'";
  switch (conflict.kind) {
    case MemoryConflict::Kind::parameters:
      return "the parameters " + first + " and " + second +
             " share memory; every parameter tensor needs memory of its own (the same buffer "
             "twice would be stepped twice); nothing was changed";
    case MemoryConflict::Kind::gradient_other:
      return "the gradient of " + first + " shares memory with the parameter " + second +
             ", which the step writes; a gradient may share memory only with its own parameter; "
             "nothing was changed";
    case MemoryConflict::Kind::gradient_partial:
      return "the gradient of " + first +
             " overlaps its own parameter without being exactly its memory (same first element, "
             "same size); nothing was changed";
    case MemoryConflict::Kind::none: break;
  }
  return {};
}

class OverlapCheck {
 public:
  /// Sizes the buffers for `tensors` tensors in all (the only allocation).
  void reserve(std::size_t tensors) {
    params_.reserve(tensors);
    grads_.reserve(tensors);
    sorted_.reserve(tensors);
    checked_params_.reserve(tensors);
    checked_grads_.reserve(tensors);
  }

  /// Lists a step's tensors: `params` and `grads` hold one list per group,
  /// `tensors_in(g)` of them in group g (counts already checked).
  template <class Scalar, class ParamGroups, class GradGroups, class Count>
  void collect(const ParamGroups& params, const GradGroups& grads, std::size_t groups, Count tensors_in) {
    params_.clear();
    grads_.clear();
    auto param_group = std::begin(params);
    auto grad_group = std::begin(grads);
    for (std::size_t g = 0; g < groups; ++g, ++param_group, ++grad_group) {
      auto param = std::begin(*param_group);
      auto grad = std::begin(*grad_group);
      for (std::size_t j = 0; j < tensors_in(g); ++j, ++param, ++grad) {
        const TensorRef<Scalar> p = *param;
        const ConstTensorRef<Scalar> q = *grad;
        params_.push_back(span_of(p.data(), p.size(), g, j));
        grads_.push_back(span_of(q.data(), q.size(), g, j));
      }
    }
  }

  /// The first conflict among the collected tensors, or none. Remembers memory that passed, so that the
  /// same memory next step costs one comparison per tensor.
  MemoryConflict find() {
    if (checked_ && params_ == checked_params_ && grads_ == checked_grads_) return {};
    checked_ = false;
    const MemoryConflict conflict = search();
    if (conflict) return conflict;
    checked_params_.assign(params_.begin(), params_.end());
    checked_grads_.assign(grads_.begin(), grads_.end());
    checked_ = true;
    return {};
  }

 private:
  MemoryConflict search() {
    sorted_.clear();
    for (const TensorSpan& p : params_)
      if (!p.empty()) sorted_.push_back(p);  // empty tensors have no memory to share
    const auto by_address = [](const TensorSpan& a, const TensorSpan& b) {
      return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
    };
    // Tensors allocated one after another are often already in address
    // order: one pass then replaces the sort.
    if (!std::is_sorted(sorted_.begin(), sorted_.end(), by_address))
      std::sort(sorted_.begin(), sorted_.end(), by_address);
    // Sorted by start, ranges overlap iff one starts before the furthest end
    // so far; that furthest range is the one it overlaps.
    for (std::size_t i = 1, widest = 0; i < sorted_.size(); ++i) {
      if (sorted_[i].begin < sorted_[widest].end)
        return {MemoryConflict::Kind::parameters, sorted_[widest], sorted_[i]};
      if (sorted_[i].end > sorted_[widest].end) widest = i;
    }
    // The parameters are now disjoint and sorted, so their ends are sorted
    // too: the first parameter ending after a gradient's start is the only
    // one that can overlap it, unless it is the gradient's own parameter
    // exactly, after which the next one starts at or after the gradient's end.
    for (const TensorSpan& g : grads_) {
      if (g.empty()) continue;
      const auto p = std::partition_point(sorted_.begin(), sorted_.end(),
                                          [&](const TensorSpan& s) { return s.end <= g.begin; });
      if (p == sorted_.end() || p->begin >= g.end) continue;
      if (!p->same_tensor(g)) return {MemoryConflict::Kind::gradient_other, g, *p};
      if (p->begin != g.begin || p->end != g.end) return {MemoryConflict::Kind::gradient_partial, g, *p};
    }
    return {};
  }

  std::vector<TensorSpan> params_;
  std::vector<TensorSpan> grads_;
  std::vector<TensorSpan> sorted_;
  std::vector<TensorSpan> checked_params_;
  std::vector<TensorSpan> checked_grads_;
  bool checked_ = false;
};

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
