// The optimizer's state as plain data: what a user inspects, compares, or
// serialises with their own tools (docs/design.md, "State layout and allocation"). Nothing here has
// behaviour beyond comparing and copying.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/layout.hpp"

ADAMX_NAMESPACE_BEGIN

namespace detail {
/// Whether every entry of update rule `Rule`'s slot table (Slots::members)
/// names a member: a table shorter than kSlots leaves null entries.
template <class Rule>
constexpr bool slot_table_complete() {
  using Table = typename Rule::template Slots<int>;
  for (int k = 0; k < Rule::kSlots; ++k)
    if (Table::members[k] == nullptr) return false;
  return true;
}

/// The update rule of the optimizer whose options are `Options`.
template <class Options>
struct options_rule;
template <class Flavour>
struct options_rule<BasicOptions<Flavour>> {
  using type = typename Flavour::Rule;
};
}  // namespace detail

/// Per-element state of one tensor, stored in the tensor's memory order.
/// The arrays are the update rule's own slots, declared by the rule as
/// members of its `Slots` (rules/: the Adam family's m, v and v_max, AdaMod's
/// step_avg besides, Lion's m alone), so `ts.m` and `ts.v` read as the rule
/// names them and an optimizer carries no field for a slot it does not have.
/// Its name and shape (name, rows, cols, row_major, size()) are the
/// TensorShape it derives from: the one description of a tensor that
/// checkpoints, shards and the checks share (layout.hpp). An optimizer's
/// TensorState is `Optimizer::tensor_state_type` (or `GroupState::Tensor`).
template <class Scalar, class Rule>
struct TensorState : TensorShape, Rule::template Slots<Eigen::Array<Scalar, Eigen::Dynamic, 1>> {
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  using Slots = typename Rule::template Slots<Array>;
  static_assert(detail::slot_table_complete<Rule>(),
                "adamx: a rule's Slots::members must list a member for each of its kSlots slots");
  // Every slot a member of Slots itself (no base holding some of them), so
  // that its members brace-initialise in slot order (TensorStateView::of).
  static_assert(std::is_standard_layout<typename Rule::template Slots<int>>::value,
                "adamx: a rule's Slots must declare every slot itself, without a base class");

  /// The name and shape alone.
  const TensorShape& shape() const { return *this; }

  /// How many slots the rule has, and their names in slot order.
  static constexpr int kSlots = Rule::kSlots;
  static constexpr const char* const* slot_names = Rule::slot_names;

  /// State slot k in the rule's numbering (its Slot enumeration, e.g. the
  /// Adam family's m = 0, v = 1, v_max = 2); a slot the group's options do
  /// not use has size 0.
  Array& slot(int k) { return this->*Slots::members[k]; }
  const Array& slot(int k) const { return this->*Slots::members[k]; }

  /// Bitwise equality of every field (NaNs compare by bit pattern).
  friend bool operator==(const TensorState& a, const TensorState& b) {
    if (a.shape() != b.shape()) return false;
    for (int k = 0; k < kSlots; ++k) {
      const Array& x = a.slot(k);
      const Array& y = b.slot(k);
      if (x.size() != y.size() ||
          !std::equal(reinterpret_cast<const unsigned char*>(x.data()),
                      reinterpret_cast<const unsigned char*>(x.data() + x.size()),
                      reinterpret_cast<const unsigned char*>(y.data())))
        return false;
    }
    return true;
  }
  friend bool operator!=(const TensorState& a, const TensorState& b) { return !(a == b); }
};

/// One tensor's state read in place, inside the optimizer's storage
/// (Optimizer::state_view): the same slots as TensorState, as read-only
/// Eigen::Maps, without a copy. Valid until the optimizer's storage changes
/// (restore(), set_options() turning a slot on or off, add_group(),
/// destruction); a slot the group does not keep has size 0.
template <class Scalar, class Rule>
struct TensorStateView : Rule::template Slots<Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>> {
  using Map = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
  using Slots = typename Rule::template Slots<Map>;

  const TensorShape& shape;

  /// How many slots the rule has, and their names in slot order.
  static constexpr int kSlots = Rule::kSlots;
  static constexpr const char* const* slot_names = Rule::slot_names;

  /// Slot k in the rule's numbering (TensorState::slot).
  const Map& slot(int k) const { return this->*Slots::members[k]; }

  /// The view of `shape` whose slot k is `map_of(k)`.
  template <class MapOf>
  static TensorStateView of(const TensorShape& shape, const MapOf& map_of) {
    return make(shape, map_of, std::make_integer_sequence<int, Rule::kSlots>{});
  }

 private:
  template <class MapOf, int... K>
  static TensorStateView make(const TensorShape& shape, const MapOf& map_of, std::integer_sequence<int, K...>) {
    return TensorStateView{{map_of(K)...}, shape};
  }
};

/// Everything one parameter group carries from step to step. The update
/// rule's group scalars (group_scalars.hpp; the Adam family's γ and h, as
/// `gamma` and `h`) are the base.
template <class Scalar, class Options>
struct GroupState : GroupScalarsFor<Options> {
  using Scalars = GroupScalarsFor<Options>;
  /// One tensor's state: the slots of the options' update rule.
  using Tensor = TensorState<Scalar, typename detail::options_rule<Options>::type>;

  std::string name;          ///< e.g. "fc1" or the default "group0"
  Options options;           ///< validated hyperparameters
  std::int64_t t = 0;        ///< steps taken (64-bit: bias corrections stay right past 2^24)
  std::vector<Tensor> tensors;

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
    for (const Tensor& tensor : tensors) out.tensors.push_back(tensor.shape());
    return out;
  }

  /// Bitwise equality of the whole state (doubles compared by bit pattern).
  friend bool operator==(const GroupState& a, const GroupState& b) {
    return a.name == b.name && a.options == b.options && a.t == b.t &&
           group_scalars_same_bits(a.scalars(), b.scalars()) && a.tensors == b.tensors;
  }
  friend bool operator!=(const GroupState& a, const GroupState& b) { return !(a == b); }
};

ADAMX_NAMESPACE_END  // namespace adamx
