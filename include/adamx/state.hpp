// The optimizer's state as plain data: what a user inspects, compares, or
// serialises with their own tools (docs/design.md, "State layout and allocation"). Nothing here has
// behaviour beyond comparing and copying.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/layout.hpp"

ADAMX_NAMESPACE_BEGIN

/// Per-element state of one tensor, stored in the tensor's memory order.
/// Its name and shape (name, rows, cols, row_major, size()) are the
/// TensorShape it derives from: the one description of a tensor that
/// checkpoints, shards and the checks share (layout.hpp).
template <class Scalar>
struct TensorState : TensorShape {
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;

  Array m;                  ///< first moment
  Array v;                  ///< second moment (AdamX: of γ-scaled g²)
  Array v_max;              ///< running max of v; empty unless amsgrad
  Array step_avg;           ///< AdaMod's EMA of the per-element step size; empty for the others

  /// The name and shape alone.
  const TensorShape& shape() const { return *this; }

  /// How many slots TensorState has room for, and their names in slot
  /// order. A rule's slots (rules/, slot_names) are the first of these,
  /// named alike; a slot a group does not keep has size 0.
  static constexpr int kSlots = 4;
  static constexpr const char* slot_names[kSlots] = {"m", "v", "v_max", "step_avg"};

  /// State slot k in the numbering every update rule shares (rules/:
  /// m = 0, v = 1, v_max = 2, step_avg = 3).
  Array& slot(int k) { return k == 0 ? m : k == 1 ? v : k == 2 ? v_max : step_avg; }
  const Array& slot(int k) const { return const_cast<TensorState&>(*this).slot(k); }

  /// Bitwise equality of every field (NaNs compare by bit pattern).
  friend bool operator==(const TensorState& a, const TensorState& b) {
    const auto same = [](const Array& x, const Array& y) {
      return x.size() == y.size() &&
             std::equal(reinterpret_cast<const unsigned char*>(x.data()),
                        reinterpret_cast<const unsigned char*>(x.data() + x.size()),
                        reinterpret_cast<const unsigned char*>(y.data()));
    };
    return a.shape() == b.shape() && same(a.m, b.m) && same(a.v, b.v) &&
           same(a.v_max, b.v_max) && same(a.step_avg, b.step_avg);
  }
  friend bool operator!=(const TensorState& a, const TensorState& b) { return !(a == b); }
};

/// One tensor's state read in place, inside the optimizer's storage
/// (Optimizer::state_view): the same fields as TensorState, without a copy.
/// Valid until the optimizer's storage changes (restore(), set_options()
/// turning a slot on or off, add_group(), destruction); a slot the group
/// does not keep has size 0.
template <class Scalar>
struct TensorStateView {
  using Map = Eigen::Map<const typename TensorState<Scalar>::Array>;

  const TensorShape& shape;
  Map m;
  Map v;
  Map v_max;
  Map step_avg;

  /// Slot k in TensorState's numbering (TensorState::slot).
  const Map& slot(int k) const { return k == 0 ? m : k == 1 ? v : k == 2 ? v_max : step_avg; }
};

/// Everything one parameter group carries from step to step. The update
/// rule's group scalars (group_scalars.hpp; the Adam family's γ and h, as
/// `gamma` and `h`) are the base.
template <class Scalar, class Options>
struct GroupState : GroupScalarsFor<Options> {
  using Scalars = GroupScalarsFor<Options>;

  std::string name;          ///< e.g. "fc1" or the default "group0"
  Options options;           ///< validated hyperparameters
  std::int64_t t = 0;        ///< steps taken (64-bit: bias corrections stay right past 2^24)
  std::vector<TensorState<Scalar>> tensors;

  /// The rule's group scalars alone.
  const Scalars& scalars() const { return *this; }
  Scalars& scalars() { return *this; }

  /// The group's name, options, t and scalars with no tensors: the start of
  /// a state for other tensors (a shard of this group, or a subset of its
  /// tensors).
  GroupState without_tensors() const {
    GroupState out;
    out.name = name;
    out.options = options;
    out.t = t;
    out.scalars() = scalars();
    return out;
  }

  /// The group's name and its tensors' names and shapes.
  GroupLayout layout() const {
    GroupLayout out;
    out.name = name;
    for (const TensorState<Scalar>& tensor : tensors) out.tensors.push_back(tensor.shape());
    return out;
  }

  /// Bitwise equality of the whole state (doubles compared by bit pattern).
  friend bool operator==(const GroupState& a, const GroupState& b) {
    return a.name == b.name && a.options == b.options && a.t == b.t &&
           group_scalars_same_bits(a.scalars(), b.scalars()) && a.tensors == b.tensors;
  }
  friend bool operator!=(const GroupState& a, const GroupState& b) { return !(a == b); }
};

namespace detail {
constexpr bool same_name(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}
/// Whether update rule `Rule`'s slots (its slot_names) are the first of
/// `Tensor`'s, named alike: what lets the driver copy a rule's slot k into
/// and out of Tensor::slot(k).
template <class Rule, class Tensor>
constexpr bool slots_named_as_tensor_state() {
  if (Rule::kSlots < 1 || Rule::kSlots > Tensor::kSlots) return false;
  for (int k = 0; k < Rule::kSlots; ++k)
    if (!same_name(Rule::slot_names[k], Tensor::slot_names[k])) return false;
  return true;
}
}  // namespace detail

ADAMX_NAMESPACE_END  // namespace adamx
