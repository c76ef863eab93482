// How the optimizer stores a group's per-element state (docs/design.md,
// "State layout and allocation"): one allocation per state slot of the
// update rule (rules/), the group's tensors one after another in it, each
// tensor's segment starting on a 64-byte boundary. One buffer per slot
// instead of one per tensor and slot keeps a group of many small tensors
// one stream through memory, as one large tensor is; the alignment keeps the
// kernel's chunk loads of every tensor as aligned as a tensor's own
// allocation would. The plain-data form users see is state.hpp's.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

/// Where every tensor's segment of a slot buffer starts: a cache line, and
/// the widest vector register (AVX-512) the chunks may be loaded into.
constexpr std::size_t kStateAlignment = 64;

/// A zero-filled array of n values on a kStateAlignment boundary. Copies
/// are deep (an optimizer copy owns its own state); moves and swaps do not
/// allocate and cannot throw.
template <class Scalar>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(Index n) : data_(allocate(n)), size_(n) { std::fill_n(data_.get(), n, Scalar(0)); }
  AlignedArray(const AlignedArray& other) : data_(allocate(other.size_)), size_(other.size_) {
    std::copy(other.data(), other.data() + size_, data_.get());
  }
  AlignedArray& operator=(const AlignedArray& other) {
    AlignedArray copy(other);
    swap(copy);
    return *this;
  }
  AlignedArray(AlignedArray&&) noexcept = default;
  AlignedArray& operator=(AlignedArray&&) noexcept = default;

  Scalar* data() { return data_.get(); }
  const Scalar* data() const { return data_.get(); }
  Index size() const { return size_; }
  void swap(AlignedArray& other) noexcept {
    data_.swap(other.data_);
    std::swap(size_, other.size_);
  }

 private:
  struct Free {
    void operator()(Scalar* p) const { ::operator delete(p, std::align_val_t(kStateAlignment)); }
  };
  static Scalar* allocate(Index n) {
    if (n == 0) return nullptr;
    return static_cast<Scalar*>(::operator new(static_cast<std::size_t>(n) * sizeof(Scalar),
                                               std::align_val_t(kStateAlignment)));
  }
  std::unique_ptr<Scalar, Free> data_;
  Index size_ = 0;
};

/// The per-element state of one group: for each of the rule's Slots slots,
/// one buffer holding every tensor's segment in order (or nothing, when the
/// group's options leave the slot unused), and where each segment starts.
/// The padding between segments is zero and never read.
template <class Scalar, int Slots>
class FlatState {
 public:
  static_assert(kStateAlignment % sizeof(Scalar) == 0, "segments must start on whole elements");
  /// Elements per kStateAlignment bytes: every segment starts at a multiple.
  static constexpr Index kAlignedElements = static_cast<Index>(kStateAlignment / sizeof(Scalar));

  FlatState() = default;
  /// Zeroed state for tensors of `sizes` elements, allocating the slots k
  /// for which in_use[k] is true.
  FlatState(const std::vector<Index>& sizes, const std::array<bool, Slots>& in_use) {
    offsets_.reserve(sizes.size() + 1);
    Index at = 0;
    for (const Index n : sizes) {
      offsets_.push_back(at);
      at += (n + kAlignedElements - 1) / kAlignedElements * kAlignedElements;
    }
    offsets_.push_back(at);
    for (int k = 0; k < Slots; ++k) {
      in_use_[k] = in_use[k];
      if (in_use[k]) AlignedArray<Scalar>(at).swap(slots_[k]);
    }
  }

  /// Whether slot k is allocated.
  bool in_use(int k) const { return k < Slots && in_use_[k]; }
  /// The first element of tensor j's segment of slot k; null if the slot is
  /// not in use (or the group has no elements).
  Scalar* data(int k, std::size_t j) {
    return in_use(k) && slots_[k].data() ? slots_[k].data() + offsets_[j] : nullptr;
  }
  const Scalar* data(int k, std::size_t j) const {
    return in_use(k) && slots_[k].data() ? slots_[k].data() + offsets_[j] : nullptr;
  }
  /// The same without the checks, for the step's per-block set-up: slot k
  /// must be in use. (Null plus 0 when the group has no elements.)
  Scalar* segment(int k, std::size_t j) { return slots_[k].data() + offsets_[j]; }
  /// Where tensor j's segment starts in every slot buffer, in elements.
  Index offset(std::size_t j) const { return offsets_[j]; }
  /// Elements of one slot buffer, padding included.
  Index capacity() const { return offsets_.empty() ? 0 : offsets_.back(); }

  /// Replaces slot k's buffer by a zeroed one (in use) or none (not in
  /// use); `fresh` must come from fresh_slot(in_use), so that this cannot
  /// throw.
  void replace_slot(int k, bool in_use, AlignedArray<Scalar>& fresh) noexcept {
    slots_[k].swap(fresh);
    in_use_[k] = in_use;
  }
  /// The buffer replace_slot(k, in_use, ·) takes: zeroed, or empty.
  AlignedArray<Scalar> fresh_slot(bool in_use) const {
    return in_use ? AlignedArray<Scalar>(capacity()) : AlignedArray<Scalar>();
  }

 private:
  std::vector<Index> offsets_;  // one per tensor, then the total
  AlignedArray<Scalar> slots_[Slots];
  std::array<bool, Slots> in_use_{};
};

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
