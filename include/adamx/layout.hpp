// Names and shapes of a group's tensors, and the one set of checks made of
// them (docs/design.md, "State layout and allocation" and "Names").
//
// One type, TensorShape, says what a tensor of a group is: its name, rows,
// cols and memory order. The optimizer's state (TensorState derives from
// it), the sharded driver's groups (adamx/mpi.hpp), the sharded checkpoint's
// record (ShardLayout) and the headers of checkpoints all carry it, so a
// shape is compared and printed one way everywhere. A view of user memory
// (TensorLayout, below) adds the strides it was made with and converts to a
// TensorShape in one place, shape().
//
// The checks live here too, each once, so that a mistake reads the same
// whichever entry point met it: add_group's (names, counts, dimensions),
// step's (counts, shapes, contiguity, memory) and restore's structure
// comparison (every difference listed). Default names are made here only:
// "group<i>" and "tensor<j>".
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// The name and shape of one tensor of a group. Plain data, so that state
/// deriving from it (TensorState) stays an aggregate.
struct TensorShape {
  std::string name;         ///< e.g. "bias" or the default "tensor1"
  Eigen::Index rows = 0;    ///< the shape the group was created with
  Eigen::Index cols = 0;
  bool row_major = false;   ///< memory order; true only when rows > 1 and cols > 1

  Eigen::Index size() const { return rows * cols; }

  /// The same rows and cols, and the same memory order where it matters:
  /// a vector is the same sequence of elements either way.
  bool same_shape(const TensorShape& other) const {
    if (rows != other.rows || cols != other.cols) return false;
    return !(rows > 1 && cols > 1) || row_major == other.row_major;
  }

  /// "3x4 row-major", "3x4 column-major", or "5x1" for a vector.
  std::string describe() const {
    std::ostringstream out;
    out << rows << "x" << cols;
    if (rows > 1 && cols > 1) out << (row_major ? " row-major" : " column-major");
    return out.str();
  }

  friend bool operator==(const TensorShape& a, const TensorShape& b) {
    return a.name == b.name && a.rows == b.rows && a.cols == b.cols && a.row_major == b.row_major;
  }
  friend bool operator!=(const TensorShape& a, const TensorShape& b) { return !(a == b); }
};

/// A group's name and its tensors' names and shapes, in order: what a
/// checkpoint records of a group besides its state.
struct GroupLayout {
  std::string name;                  ///< e.g. "fc1" or the default "group0"
  std::vector<TensorShape> tensors;

  /// Elements of all tensors together.
  Eigen::Index size() const {
    Eigen::Index total = 0;
    for (const TensorShape& tensor : tensors) total += tensor.size();
    return total;
  }
  /// Each tensor's number of elements, in order.
  std::vector<Eigen::Index> sizes() const {
    std::vector<Eigen::Index> out;
    out.reserve(tensors.size());
    for (const TensorShape& tensor : tensors) out.push_back(tensor.size());
    return out;
  }
  /// Each tensor's name, in order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors.size());
    for (const TensorShape& tensor : tensors) out.push_back(tensor.name);
    return out;
  }

  friend bool operator==(const GroupLayout& a, const GroupLayout& b) {
    return a.name == b.name && a.tensors == b.tensors;
  }
  friend bool operator!=(const GroupLayout& a, const GroupLayout& b) { return !(a == b); }
};

/// The name group `index` gets when none is given: "group<index>".
inline std::string default_group_name(std::size_t index) { return "group" + std::to_string(index); }
/// The name tensor `index` of a group gets when none is given: "tensor<index>".
inline std::string default_tensor_name(std::size_t index) { return "tensor" + std::to_string(index); }

namespace detail {

// The layout of a view of user memory: its shape and the strides it was made
// with (an Eigen object's, or those of raw column-major memory).
struct TensorLayout {
  Eigen::Index rows = 0;
  Eigen::Index cols = 0;
  Eigen::Index inner_stride = 1;
  Eigen::Index outer_stride = 0;
  bool row_major = false;

  Eigen::Index size() const { return rows * cols; }
  // Contiguous: elements 0..size-1 are consecutive in memory.
  bool contiguous() const {
    if (size() <= 1) return true;
    const Eigen::Index inner_size = row_major ? cols : rows;
    const Eigen::Index outer_size = row_major ? rows : cols;
    // Element (k, j) sits at k·inner_stride + j·outer_stride; a stride along a
    // dimension of length 1 is never used.
    return (inner_size <= 1 || inner_stride == 1) && (outer_size <= 1 || outer_stride == inner_size);
  }
  // The view's shape as a group records it: the memory order is kept only
  // for a matrix (a vector is the same sequence of elements either way).
  // The one conversion from a view to a shape. An empty name does not
  // allocate, so step() may call it.
  TensorShape shape(std::string name = {}) const {
    return {std::move(name), rows, cols, row_major && rows > 1 && cols > 1};
  }

  template <class Derived>
  static TensorLayout of(const Eigen::DenseBase<Derived>& x) {
    const Derived& d = x.derived();
    TensorLayout layout;
    layout.rows = d.rows();
    layout.cols = d.cols();
    layout.inner_stride = d.innerStride();
    layout.outer_stride = d.outerStride();
    layout.row_major = (Derived::Flags & Eigen::RowMajorBit) != 0;
    return layout;
  }
};

// "adamx::AdamX::add_group: ": how every message of an optimizer's function
// starts. Built only when a check fails (step() must not allocate).
inline std::string message_prefix(const char* optimizer, const char* function) {
  return std::string("adamx::") + optimizer + "::" + function + ": ";
}

// ---- add_group ------------------------------------------------------------

// The new group's name, `given` or the default for the next index, checked
// to be unused by `existing` (anything with .name per group).
template <class Groups>
std::string new_group_name(const char* optimizer, std::string given, const Groups& existing) {
  std::string name = given.empty() ? default_group_name(existing.size()) : std::move(given);
  for (const auto& other : existing)
    if (other.name == name)
      throw std::invalid_argument(message_prefix(optimizer, "add_group") + "a group named '" + name +
                                  "' already exists (names must be unique)");
  return name;
}

// The layout of new group `group_name` from its tensors' `shapes` (names
// unset) and the names given (none: the defaults). Throws
// std::invalid_argument unless it has at least one tensor, as many names as
// tensors, non-empty unique names and no negative dimension.
inline GroupLayout new_group_layout(const char* optimizer, std::string group_name, std::vector<TensorShape> shapes,
                                    std::vector<std::string> tensor_names) {
  const auto fail = [&](const std::string& what) {
    throw std::invalid_argument(message_prefix(optimizer, "add_group") + what);
  };
  const std::size_t count = shapes.size();
  if (count == 0) fail("group '" + group_name + "' has no tensors (a group needs at least one)");
  if (!tensor_names.empty() && tensor_names.size() != count)
    fail("group '" + group_name + "' has " + std::to_string(count) + " tensors but " +
         std::to_string(tensor_names.size()) + " tensor names");
  GroupLayout layout;
  layout.name = std::move(group_name);
  for (std::size_t j = 0; j < count; ++j) {
    TensorShape& tensor = shapes[j];
    tensor.name = tensor_names.empty() ? default_tensor_name(j) : std::move(tensor_names[j]);
    if (tensor.name.empty())
      fail("group '" + layout.name + "' tensor " + std::to_string(j) + " has an empty name");
    for (const TensorShape& earlier : layout.tensors)
      if (earlier.name == tensor.name)
        fail("group '" + layout.name + "' has two tensors named '" + tensor.name + "'");
    if (tensor.rows < 0 || tensor.cols < 0)
      fail("tensor '" + layout.name + "." + tensor.name + "' has a negative dimension");
    layout.tensors.push_back(std::move(tensor));
  }
  return layout;
}

// ---- step -----------------------------------------------------------------

// Whether view `layout` (with data unless `has_data` is false) fits the
// tensor `expected`: its shape, contiguous, with memory. A few integer
// comparisons and no TensorShape built: step() asks this of every tensor.
inline bool view_fits(const TensorShape& expected, const TensorLayout& layout, bool has_data) {
  if (layout.rows != expected.rows || layout.cols != expected.cols) return false;
  // The memory order matters only for a matrix (TensorShape::same_shape).
  const bool matrix = expected.rows > 1 && expected.cols > 1;
  if (matrix && layout.row_major != expected.row_major) return false;
  return layout.contiguous() && (has_data || expected.size() == 0);
}

// Throws the message for a view that does not fit tensor j of `group`
// (view_fits is false): a function of its own, so that the check a step
// makes per tensor stays a few comparisons.
template <class Group>
[[noreturn]] void fail_view(const char* optimizer, const Group& group, std::size_t j, const char* role,
                            const TensorLayout& layout) {
  const TensorShape& expected = group.tensors[j];
  const TensorShape given = layout.shape();
  std::ostringstream message;
  message << message_prefix(optimizer, "step") << "tensor '" << group.name << "." << expected.name << "': the "
          << role;
  if (!given.same_shape(expected))
    message << " has shape " << given.describe() << " but the group was created with " << expected.describe();
  else if (!layout.contiguous())
    message << " is not contiguous (inner stride " << layout.inner_stride << ", outer stride "
            << layout.outer_stride << "); pass a Matrix, Array or Map over contiguous memory";
  else
    message << " has no memory (null data pointer)";
  throw std::invalid_argument(message.str());
}

// Throws unless view `layout` (with data unless `has_data` is false) fits
// tensor j of `group` (anything with .name and .tensors of TensorShapes):
// its shape, contiguous, with memory. `role` is "parameter" or "gradient".
// The message is built only on failure: step() must not allocate.
template <class Group>
void check_view(const char* optimizer, const Group& group, std::size_t j, const char* role,
                const TensorLayout& layout, bool has_data) {
  if (!view_fits(group.tensors[j], layout, has_data)) fail_view(optimizer, group, j, role, layout);
}

// step()'s checks of its arguments against `groups`: one list of parameters
// and one of gradients per group, as many as the group has tensors, each
// fitting (check_view). Reads only names and shapes, so the sharded driver
// checks its full tensors with it too.
template <class Tensor, class ConstTensor, class Groups, class ParamGroups, class GradGroups>
void check_step_arguments(const char* optimizer, const Groups& groups, const ParamGroups& params,
                          const GradGroups& grads) {
  const auto n_params = static_cast<std::size_t>(std::distance(std::begin(params), std::end(params)));
  const auto n_grads = static_cast<std::size_t>(std::distance(std::begin(grads), std::end(grads)));
  if (n_params != groups.size() || n_grads != groups.size()) {
    std::ostringstream message;
    message << message_prefix(optimizer, "step") << "got " << n_params << " parameter groups and " << n_grads
            << " gradient groups, but the optimizer has " << groups.size() << " groups";
    throw std::invalid_argument(message.str());
  }
  auto param_group = std::begin(params);
  auto grad_group = std::begin(grads);
  for (std::size_t gi = 0; gi < groups.size(); ++gi, ++param_group, ++grad_group) {
    const auto& g = groups[gi];
    const auto np = static_cast<std::size_t>(std::distance(std::begin(*param_group), std::end(*param_group)));
    const auto ng = static_cast<std::size_t>(std::distance(std::begin(*grad_group), std::end(*grad_group)));
    if (np != g.tensors.size() || ng != g.tensors.size()) {
      std::ostringstream message;
      message << message_prefix(optimizer, "step") << "group '" << g.name << "' has " << g.tensors.size()
              << " tensors but got " << np << " parameters and " << ng << " gradients";
      throw std::invalid_argument(message.str());
    }
    auto param = std::begin(*param_group);
    auto grad = std::begin(*grad_group);
    for (std::size_t j = 0; j < g.tensors.size(); ++j, ++param, ++grad) {
      const Tensor p = *param;
      const ConstTensor q = *grad;
      check_view(optimizer, g, j, "parameter", p.layout(), p.data() != nullptr);
      check_view(optimizer, g, j, "gradient", q.layout(), q.data() != nullptr);
    }
  }
}

// ---- restore --------------------------------------------------------------

// Every way the groups `given` differ in structure from `own` (the
// optimizer's): group count, order and names, tensor count, order, names and
// shapes, in words; empty when they match. Both are anything with .name and
// .tensors of TensorShapes.
template <class Given, class Own>
std::vector<std::string> structure_differences(const std::vector<Given>& given, const std::vector<Own>& own) {
  std::vector<std::string> differences;
  if (given.size() != own.size())
    differences.push_back(std::to_string(given.size()) + " groups given, the optimizer has " +
                          std::to_string(own.size()));
  for (std::size_t gi = 0; gi < std::min(given.size(), own.size()); ++gi) {
    const auto& theirs = given[gi];
    const auto& ours = own[gi];
    const std::string where = "group " + std::to_string(gi);
    if (theirs.name != ours.name)
      differences.push_back(where + " is named '" + theirs.name + "', the optimizer's is '" + ours.name + "'");
    if (theirs.tensors.size() != ours.tensors.size())
      differences.push_back(where + " ('" + ours.name + "') has " + std::to_string(theirs.tensors.size()) +
                            " tensors, the optimizer's has " + std::to_string(ours.tensors.size()));
    for (std::size_t j = 0; j < std::min(theirs.tensors.size(), ours.tensors.size()); ++j) {
      const TensorShape& a = theirs.tensors[j];
      const TensorShape& b = ours.tensors[j];
      const std::string tensor = where + " ('" + ours.name + "') tensor " + std::to_string(j);
      if (a.name != b.name)
        differences.push_back(tensor + " is named '" + a.name + "', the optimizer's is '" + b.name + "'");
      // Exact equality: a recorded vector is never row-major (checkpoints
      // refuse one that claims to be), so this is same_shape plus that.
      if (a.rows != b.rows || a.cols != b.cols || a.row_major != b.row_major)
        differences.push_back(tensor + " ('" + b.name + "') has shape " + a.describe() + ", the optimizer's has " +
                              b.describe());
    }
  }
  return differences;
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
