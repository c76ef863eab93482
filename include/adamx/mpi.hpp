// adamx over MPI (docs/design.md section 6): the norm reducer over a communicator, and a
// ZeRO stage-1 driver in which every rank owns a block-aligned shard of each
// group's optimizer state (m, v, v_max) and steps only that shard.
//
// The only header that includes <mpi.h>; the library itself never needs MPI.
// Per step the driver makes one reduce-scatter of the gradients (skipped by
// step_global) and one all-gather of the parameters per bucket of groups
// (consecutive groups up to a cap, 2^18 elements by default), plus one all-gather
// of s's block partials (a second one when a group's nonfinite policy is skip
// or error); a step that clips by the global gradient norm adds one all-gather
// of the norm's block parts. docs/distributed.md counts the bytes.
#pragma once

// adamx uses MPI's C interface only. The C++ bindings that OpenMPI and MPICH
// still ship (deprecated since MPI 2.2, removed in 3.0) would come in with
// <mpi.h> and trip a user's -Wextra -Werror build in code that is not theirs,
// and need libmpi_cxx at link time; a user who wants them defines neither.
#if !defined(OMPI_SKIP_MPICXX)
#define OMPI_SKIP_MPICXX 1
#endif
#if !defined(MPICH_SKIP_MPICXX)
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/checkpoint.hpp"
#include "adamx/clip.hpp"
#include "adamx/norm_reducer.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/optimizers.hpp"
#include "adamx/overlap.hpp"
#include "adamx/shard.hpp"
#include "adamx/sharded_checkpoint.hpp"

ADAMX_NAMESPACE_BEGIN
namespace mpi {

/// Thrown when an MPI call fails (its error string is in the message) or
/// when the ranks disagree (group layouts, refused input). In the second
/// case every rank throws, so none is left waiting in a collective.
class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw MpiError(std::string("adamx::mpi: ") + call + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

template <class Scalar>
MPI_Datatype datatype();
template <>
inline MPI_Datatype datatype<float>() {
  return MPI_FLOAT;
}
template <>
inline MPI_Datatype datatype<double>() {
  return MPI_DOUBLE;
}
// 16-bit floats travel as their bits; sums use reduced_sum() below.
template <>
inline MPI_Datatype datatype<Eigen::bfloat16>() {
  return MPI_UINT16_T;
}
template <>
inline MPI_Datatype datatype<Eigen::half>() {
  return MPI_UINT16_T;
}

// MPI has no 16-bit float types, so their gradient sum is a user-defined
// operation: each pairwise sum is computed in float and rounded to the
// 16-bit type, as Eigen's operator+ on them does (so one process adding the
// ranks' gradients in rank order gets the same bits with two ranks).
template <class Half>
void sum_16bit(void* in, void* inout, int* length, MPI_Datatype*) {
  const Half* a = static_cast<const Half*>(in);
  Half* b = static_cast<Half*>(inout);
  for (int i = 0; i < *length; ++i) b[i] = a[i] + b[i];
}

// The reduction that sums gradients of type Scalar: MPI_SUM for float and
// double, sum_16bit for bfloat16 and half (created on first use, freed by
// the driver that asked for it).
template <class Scalar>
class GradientSum {
 public:
  GradientSum() {
    if constexpr (!std::is_same<Scalar, float>::value && !std::is_same<Scalar, double>::value)
      check(MPI_Op_create(&sum_16bit<Scalar>, 1, &op_), "MPI_Op_create");
  }
  ~GradientSum() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (op_ != MPI_SUM && !finalized) MPI_Op_free(&op_);
  }
  GradientSum(const GradientSum&) = delete;
  GradientSum& operator=(const GradientSum&) = delete;
  MPI_Op op() const { return op_; }

 private:
  MPI_Op op_ = MPI_SUM;
};

inline int to_int(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw std::invalid_argument(std::string("adamx::mpi: ") + what + " has " + std::to_string(n) +
                                " elements; MPI counts are int (at most 2^31 - 1)");
  return static_cast<int>(n);
}

// Every rank learns whether every rank is ok; those that are not throw their
// own message, the others say which ranks refused. Collective.
inline void agree(MPI_Comm comm, const std::string& problem) {
  int rank = 0, ranks = 1;
  check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  check(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  const int mine = problem.empty() ? 0 : 1;
  std::vector<int> flags(static_cast<std::size_t>(ranks));
  check(MPI_Allgather(&mine, 1, MPI_INT, flags.data(), 1, MPI_INT, comm), "MPI_Allgather");
  std::string refused;
  for (int r = 0; r < ranks; ++r)
    if (flags[static_cast<std::size_t>(r)] != 0) refused += (refused.empty() ? "" : ", ") + std::to_string(r);
  if (refused.empty()) return;
  if (!problem.empty()) throw MpiError(problem);
  throw MpiError("adamx::mpi: rank " + std::to_string(rank) + " stops because rank(s) " + refused +
                 " refused the call (see their message); nothing was changed");
}

// A double's bit pattern in hex: equal strings, bitwise equal values.
inline std::string hex_bits(double value) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  char text[19];
  std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(bits));
  return text;
}

// Every rank's `mine`, in rank order (collective).
inline std::vector<std::string> allgather_strings(MPI_Comm comm, const std::string& mine) {
  int ranks = 1;
  check(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  int length = to_int(mine.size(), "a gathered string");
  std::vector<int> lengths(static_cast<std::size_t>(ranks)), offsets(static_cast<std::size_t>(ranks));
  check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm), "MPI_Allgather");
  std::size_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    offsets[static_cast<std::size_t>(r)] = to_int(total, "the gathered strings");
    total += static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]);
  }
  std::string all(total, '\0');
  check(MPI_Allgatherv(mine.data(), length, MPI_CHAR, &all[0], lengths.data(), offsets.data(), MPI_CHAR, comm),
        "MPI_Allgatherv");
  std::vector<std::string> out;
  for (int r = 0; r < ranks; ++r)
    out.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                             static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
  return out;
}

// Enables the container forms of step(): a container of parameter groups
// and one of gradient groups, each group a container of tensors or views.
template <class Scalar, class ParamGroups, class GradGroups>
using if_tensor_groups =
    std::enable_if_t<adamx::detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                     adamx::detail::is_range_of_ranges<GradGroups, ConstTensorRef<Scalar>>::value>;

}  // namespace detail

/// The norm reducer (norm_reducer.hpp) over an MPI communicator: one
/// MPI_Allgatherv of every group's block partials per call, after which every
/// rank adds all partials of a group in rank order — the global block order,
/// because rank r's shard precedes rank r+1's — giving every rank the s one
/// process computes, bit for bit.
class NormReducer {
 public:
  /// blocks[g][r]: how many blocks of group g rank r holds (the same table
  /// on every rank; GroupShard::blocks).
  NormReducer(MPI_Comm comm, std::vector<std::vector<std::size_t>> blocks)
      : comm_(comm), blocks_(std::move(blocks)) {
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &ranks_), "MPI_Comm_size");
    counts_.assign(static_cast<std::size_t>(ranks_), 0);
    displacements_.assign(static_cast<std::size_t>(ranks_), 0);
    std::size_t total = 0;
    for (int r = 0; r < ranks_; ++r) {
      std::size_t count = 0;
      for (const auto& group : blocks_) count += group.at(static_cast<std::size_t>(r));
      counts_[static_cast<std::size_t>(r)] = detail::to_int(count, "a rank's block partials");
      displacements_[static_cast<std::size_t>(r)] = detail::to_int(total, "the block partials");
      total += count;
    }
    send_.resize(static_cast<std::size_t>(counts_[static_cast<std::size_t>(rank_)]));
    received_.resize(total);
  }

  void operator()(const std::vector<BlockPartials>& mine, std::vector<double>& s) {
    if (mine.size() != blocks_.size() || s.size() != blocks_.size())
      throw std::logic_error("adamx::mpi::NormReducer: got " + std::to_string(mine.size()) +
                             " groups, was built for " + std::to_string(blocks_.size()));
    std::size_t at = 0;
    for (std::size_t g = 0; g < mine.size(); ++g) {
      if (mine[g].size != blocks_[g][static_cast<std::size_t>(rank_)])
        throw std::logic_error("adamx::mpi::NormReducer: group " + std::to_string(g) + " has " +
                               std::to_string(mine[g].size) + " blocks on this rank, expected " +
                               std::to_string(blocks_[g][static_cast<std::size_t>(rank_)]));
      std::copy(mine[g].data, mine[g].data + mine[g].size, send_.begin() + static_cast<std::ptrdiff_t>(at));
      at += mine[g].size;
    }
    detail::check(MPI_Allgatherv(send_.data(), counts_[static_cast<std::size_t>(rank_)], MPI_DOUBLE,
                                 received_.data(), counts_.data(), displacements_.data(), MPI_DOUBLE,
                                 comm_),
                  "MPI_Allgatherv (block partials of s)");
    // received_ holds rank 0's partials of every group, then rank 1's, ...
    for (std::size_t g = 0; g < blocks_.size(); ++g) {
      double running = 0.0;
      for (int r = 0; r < ranks_; ++r) {
        std::size_t offset = static_cast<std::size_t>(displacements_[static_cast<std::size_t>(r)]);
        for (std::size_t before = 0; before < g; ++before) offset += blocks_[before][static_cast<std::size_t>(r)];
        running = ordered_block_sum(received_.data() + offset, blocks_[g][static_cast<std::size_t>(r)], running);
      }
      s[g] = running;
    }
  }

 private:
  MPI_Comm comm_;
  std::vector<std::vector<std::size_t>> blocks_;
  int rank_ = 0;
  int ranks_ = 1;
  std::vector<int> counts_, displacements_;
  std::vector<double> send_, received_;
};

/// ZeRO-1 data parallelism: every rank holds the full parameters (replicated)
/// and owns the optimizer state of one contiguous, block-aligned shard of each
/// group (shard.hpp). step() averages the ranks' gradients with a
/// reduce-scatter (each rank receives its shard of the mean), steps the shard
/// and all-gathers the parameters; step_global() takes the global gradient on
/// every rank and skips the reduce-scatter. Every call is collective: all
/// ranks call add_group() with the same groups and then step together.
///
/// It offers the surface of the one-process Optimizer (optimizer.hpp) with
/// the same meaning, so a training loop moves to MPI by changing only the
/// optimizer's type and constructor: every form of step(), add_group(),
/// num_groups(), group_index(), options(), set_options() and every typed
/// setter, state(), last_reports(), set_threads()/threads(), and the
/// schedules' apply() and unqualified save_checkpoint()/load_checkpoint().
/// Bad input throws what one process throws, with the same message, on
/// every rank that got it. docs/distributed.md lists what still differs.
///
/// Bitwise claim: given the same global gradient, θ, m, v, v_max, γ and h
/// equal one process's Optimizer bit for bit for any rank count. step()'s
/// mean is MPI's floating-point sum divided by the rank count; it equals one
/// process's mean when the sum is exact (always for 2 ranks: one rounding of
/// a + b whatever the order), see docs/distributed.md.
template <class Scalar, class Flavour>
class ShardedOptimizer {
  static_assert(!adamx::detail::steps_matrices<typename Flavour::Rule>::value,
                "adamx::mpi: this optimizer steps whole matrices (Muon's Newton-Schulz reads every element of a "
                "matrix), and the sharded driver splits tensors element-wise across ranks; sharding it would need "
                "each matrix owned whole by one rank (its gradient reduced there, its update broadcast), which is "
                "not offered: step adamx::Muon on every rank with all-reduced gradients instead");

  static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value ||
                    std::is_same<Scalar, Eigen::bfloat16>::value || std::is_same<Scalar, Eigen::half>::value,
                "adamx::mpi::ShardedOptimizer: float, double, bfloat16 or half parameters");

 public:
  using Local = Optimizer<Scalar, Flavour>;
  /// m, v (and v_max): the parameter type, or float for bfloat16/half.
  using StateScalar = typename Local::state_scalar_type;
  using scalar_type = Scalar;
  using state_scalar_type = StateScalar;
  using Options = typename Local::Options;
  using State = typename Local::State;
  using Tensor = TensorRef<Scalar>;
  using ConstTensor = ConstTensorRef<Scalar>;

  static constexpr const char* name() { return Local::name(); }
  static Options default_options() { return Options{}; }

  /// Works on a duplicate of `comm` whose MPI errors are returned (and
  /// thrown as MpiError) rather than aborting.
  explicit ShardedOptimizer(MPI_Comm comm) {
    detail::check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &ranks_), "MPI_Comm_size");
  }
  ~ShardedOptimizer() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  ShardedOptimizer(const ShardedOptimizer&) = delete;
  ShardedOptimizer& operator=(const ShardedOptimizer&) = delete;

  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  /// The driver's duplicate of the communicator it was given.
  MPI_Comm communicator() const { return comm_; }

  // ---- groups -------------------------------------------------------------

  /// Adds a group with the shapes of `tensors` (values not read) and its
  /// shard on this rank, e.g. `opt.add_group({W1, b1}, options, "fc1")`.
  /// Local; the ranks' layouts are compared at the first step, which throws
  /// MpiError on every rank if they differ. Bad arguments throw what
  /// Optimizer::add_group throws, changing nothing.
  std::size_t add_group(std::initializer_list<ConstTensor> tensors, const Options& options = Options{},
                        std::string group_name = {}, std::vector<std::string> tensor_names = {}) {
    return add_group_impl(tensors, options, std::move(group_name), std::move(tensor_names));
  }
  /// Same, from any container of tensors or views.
  template <class Tensors,
            class = std::enable_if_t<adamx::detail::is_range_of<Tensors, ConstTensorRef<Scalar>>::value>>
  std::size_t add_group(const Tensors& tensors, const Options& options = Options{},
                        std::string group_name = {}, std::vector<std::string> tensor_names = {}) {
    return add_group_impl(tensors, options, std::move(group_name), std::move(tensor_names));
  }

  std::size_t num_groups() const { return groups_.size(); }
  /// Index of the group called `group_name`; throws std::out_of_range if none.
  std::size_t group_index(const std::string& group_name) const { return local_.group_index(group_name); }

  // ---- stepping -------------------------------------------------------------
  // Every form Optimizer::step accepts, with the same arguments: the full
  // parameters (the same on every rank) and this rank's gradients.

  /// A data-parallel step: `params` are the full parameters (the same on
  /// every rank), `grads` this rank's local gradients, one list per group,
  /// e.g. `opt.step({{W1, b1}, {W2}}, {{gW1, gb1}, {gW2}})`; the shard is
  /// stepped on the mean over ranks and `params` are then the new
  /// parameters on every rank. Returns one report per group (valid until
  /// the next step), the same on every rank.
  const std::vector<StepReport>& step(std::initializer_list<std::initializer_list<Tensor>> params,
                                      std::initializer_list<std::initializer_list<ConstTensor>> grads) {
    return step_impl(params, grads, true);
  }
  /// Same, from containers built once by the training loop.
  template <class ParamGroups, class GradGroups,
            class = detail::if_tensor_groups<Scalar, ParamGroups, GradGroups>>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads) {
    return step_impl(params, grads, true);
  }
  const std::vector<StepReport>& operator()(std::initializer_list<std::initializer_list<Tensor>> params,
                                            std::initializer_list<std::initializer_list<ConstTensor>> grads) {
    return step_impl(params, grads, true);
  }
  template <class ParamGroups, class GradGroups,
            class = detail::if_tensor_groups<Scalar, ParamGroups, GradGroups>>
  const std::vector<StepReport>& operator()(const ParamGroups& params, const GradGroups& grads) {
    return step_impl(params, grads, true);
  }
  /// A step on the global gradient, which every rank passes in full (only
  /// its shard is read): no reduce-scatter; bitwise one process's step.
  const std::vector<StepReport>& step_global(std::initializer_list<std::initializer_list<Tensor>> params,
                                             std::initializer_list<std::initializer_list<ConstTensor>> global_grads) {
    return step_impl(params, global_grads, false);
  }
  template <class ParamGroups, class GradGroups,
            class = detail::if_tensor_groups<Scalar, ParamGroups, GradGroups>>
  const std::vector<StepReport>& step_global(const ParamGroups& params, const GradGroups& global_grads) {
    return step_impl(params, global_grads, false);
  }

  // ---- stepping with clipping by the global norm --------------------------

  /// step() with the mean gradient clipped by its total norm over all groups
  /// and all ranks (clip_grad_norm's rule, adamx/clip.hpp): bitwise one
  /// process's clip_grad_norm then step on the same mean gradient. The
  /// clipping scales the driver's own copy of this rank's shard of the mean;
  /// the caller's local gradients are never modified. One extra collective
  /// per step: an all-gather of one double per block of kNormBlock elements
  /// (docs/distributed.md, "Clipping across ranks"). Every rank must pass
  /// the same `clip`: invalid arguments throw clip_grad_norm's
  /// std::invalid_argument and, with error_if_nonfinite, a non-finite norm
  /// throws its NonFiniteGradientError, on every rank with the same message
  /// and nothing changed; ranks passing different `clip`s throw MpiError.
  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads,
                                      const ClipGradNorm& clip) {
    return step_impl(params, grads, true, &clip);
  }
  /// step_global() with the same clipping of the global gradient; the
  /// caller's gradients are not modified (a clipped shard is a copy).
  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step_global(const ParamGroups& params, const GradGroups& global_grads,
                                             const ClipGradNorm& clip) {
    return step_impl(params, global_grads, false, &clip);
  }
  /// The same with braced lists, e.g. `opt.step({{W1, b1}}, {{gW1, gb1}}, clip)`.
  const std::vector<StepReport>& step(std::initializer_list<std::initializer_list<Tensor>> params,
                                      std::initializer_list<std::initializer_list<ConstTensor>> grads,
                                      const ClipGradNorm& clip) {
    return step_impl(params, grads, true, &clip);
  }
  const std::vector<StepReport>& step_global(std::initializer_list<std::initializer_list<Tensor>> params,
                                             std::initializer_list<std::initializer_list<ConstTensor>> global_grads,
                                             const ClipGradNorm& clip) {
    return step_impl(params, global_grads, false, &clip);
  }
  /// The total norm, before clipping, of the gradient of the last successful
  /// clipped step (the same on every rank); NaN before the first.
  double last_grad_norm() const { return last_grad_norm_; }

  /// The reports of the last step (one per group; s is the whole model's).
  const std::vector<StepReport>& last_reports() const { return local_.last_reports(); }

  // ---- the evaluation point (a rule that declares one) ----------------------

  /// Schedule-Free AdamW (a rule with an evaluation point): moves the full
  /// parameters on every rank to the point to evaluate, bitwise one
  /// process's Optimizer::eval. Each rank computes x on its shard (from its
  /// shard of z) and keeps its shard of y; then one all-gather per bucket,
  /// as after a step. step(), the checkpoint functions and restore_full()
  /// refuse until train(). Collective; `params` are the full parameters, the
  /// same on every rank. Bad arguments throw std::invalid_argument on every
  /// rank (or MpiError if only some ranks refuse), changing nothing.
  template <class ParamGroups, class R = typename Flavour::Rule, class = decltype(R::kEvaluationSlot),
            class = std::enable_if_t<adamx::detail::is_range_of_ranges<ParamGroups, Tensor>::value>>
  void eval(const ParamGroups& params) {
    switch_point(params, true);
  }
  /// Puts the training point back, bitwise, on every rank: each rank's kept
  /// shard of y, all-gathered. Collective, with eval()'s checks.
  template <class ParamGroups, class R = typename Flavour::Rule, class = decltype(R::kEvaluationSlot),
            class = std::enable_if_t<adamx::detail::is_range_of_ranges<ParamGroups, Tensor>::value>>
  void train(const ParamGroups& params) {
    switch_point(params, false);
  }
  /// Whether the parameters hold the evaluation point (the same on every rank).
  bool in_eval_mode() const { return local_.in_eval_mode(); }

  // ---- threads --------------------------------------------------------------

  /// Threads this rank's step may use, as Optimizer::set_threads (results
  /// are bitwise the same for any value, so ranks may differ).
  void set_threads(int threads) { local_.set_threads(threads); }
  int threads() const { return local_.threads(); }

  // ---- options --------------------------------------------------------------
  // As Optimizer's, with the same checks and messages. Collective by
  // convention: every rank must make the same calls before the next step,
  // which compares a digest of every group's options across the ranks
  // (folded into the agreement each step makes anyway) and throws MpiError
  // on every rank, changing nothing, if they differ.

  const Options& options(std::size_t group) const { return local_.options(group); }
  void set_options(std::size_t group, const Options& options) { local_.set_options(group, options); }
  void set_lr(std::size_t group, double lr) { local_.set_lr(group, lr); }
  /// Sets lr on every group (what a schedule's apply(opt) calls).
  void set_lr(double lr) { local_.set_lr(lr); }
  void set_betas(std::size_t group, double beta1, double beta2) { local_.set_betas(group, beta1, beta2); }
  // Options not every optimizer has (the Adam family's; Lion lacks them):
  // only where its options have the field.
  template <class O = Options, class = decltype(&O::beta3)>
  void set_beta3(std::size_t group, double beta3) { local_.set_beta3(group, beta3); }
  template <class O = Options, class = decltype(&O::beta_norm)>
  void set_beta_norm(std::size_t group, double beta_norm) { local_.set_beta_norm(group, beta_norm); }
  template <class O = Options, class = decltype(&O::eps)>
  void set_eps(std::size_t group, double eps) { local_.set_eps(group, eps); }
  void set_weight_decay(std::size_t group, double weight_decay) { local_.set_weight_decay(group, weight_decay); }
  template <class O = Options, class = decltype(&O::decay_mode)>
  void set_decay_mode(std::size_t group, WeightDecayMode mode) { local_.set_decay_mode(group, mode); }
  template <class O = Options, class = decltype(&O::amsgrad)>
  void set_amsgrad(std::size_t group, bool amsgrad) { local_.set_amsgrad(group, amsgrad); }
  void set_maximize(std::size_t group, bool maximize) { local_.set_maximize(group, maximize); }
  void set_nonfinite(std::size_t group, NonFinitePolicy policy) { local_.set_nonfinite(group, policy); }
  // A flavour's own options (AdaBound's, AdaMod's): only where its options have the field.
  template <class O = Options, class = decltype(&O::final_lr)>
  void set_final_lr(std::size_t group, double final_lr) { local_.set_final_lr(group, final_lr); }
  template <class O = Options, class = decltype(&O::bound_speed)>
  void set_bound_speed(std::size_t group, double bound_speed) { local_.set_bound_speed(group, bound_speed); }
  template <class O = Options, class = decltype(&O::beta_step)>
  void set_beta_step(std::size_t group, double beta_step) { local_.set_beta_step(group, beta_step); }
  /// Sets one option of a group, as Optimizer::set does.
  template <class T, class Owner>
  void set(std::size_t group, T Owner::*field, adamx::detail::option_value_t<T> value) { local_.set(group, field, value); }

  // ---- state ----------------------------------------------------------------

  /// Group `group`'s whole state, as one process stepping the model would
  /// hold it: every rank's shard of m, v, v_max all-gathered. Collective
  /// (every rank must ask for the same group) and it moves the group's
  /// state: inspect it, do not poll it every step. A bad index throws
  /// std::out_of_range on every rank before anything moves. The reference
  /// stays valid until the next state() call. local().state(group) is this
  /// rank's shard, without communication.
  const State& state(std::size_t group) {
    local_.options(group);  // the index check, with Optimizer's message
    ensure_ready();
    gathered_.resize(groups_.size());
    gathered_[group] = gather_group(group);
    return gathered_[group];
  }
  /// Every group's whole state (full_state()); collective, as state(group).
  const std::vector<State>& state() {
    gathered_ = full_state();
    return gathered_;
  }

 private:
  template <class Tensors>
  std::size_t add_group_impl(const Tensors& tensors, const Options& options, std::string group_name,
                             std::vector<std::string> tensor_names) {
    // Optimizer::add_group's checks (layout.hpp), with its messages: the
    // shard on this rank sees only pieces of the tensors.
    group_name = adamx::detail::new_group_name(Local::name(), std::move(group_name), groups_);
    validate(options, group_name);
    std::vector<TensorShape> shapes;
    for (const auto& tensor : tensors) shapes.push_back(ConstTensor(tensor).layout().shape());
    Group group;
    static_cast<GroupLayout&>(group) =
        adamx::detail::new_group_layout(Local::name(), std::move(group_name), std::move(shapes), std::move(tensor_names));
    detail::to_int(static_cast<std::size_t>(group.size()), "a group");
    group.shards = shard_group(group.sizes(), ranks_);
    const std::size_t index =
        add_shard_group(local_, group.shards[static_cast<std::size_t>(rank_)], options, group.name, group.names());
    for (const GroupShard& shard : group.shards) {
      group.counts.push_back(static_cast<int>(shard.size()));
      group.displacements.push_back(static_cast<int>(shard.begin));
    }
    std::size_t all_tensors = group.tensors.size();
    for (const Group& other : groups_) all_tensors += other.tensors.size();
    overlap_.reserve(all_tensors);
    groups_.push_back(std::move(group));
    reducer_.reset();  // the layout changed: checked (and the buckets rebuilt) at the next step
    return index;
  }

 public:
  /// This rank's optimizer over its shards: its state() is the shard's,
  /// without communication. Its setters change this rank only; every rank
  /// must call them alike (the next step compares the options).
  const Local& local() const { return local_; }
  Local& local() { return local_; }

  /// A one-process optimizer with this one's groups (names, shapes, options;
  /// state zero): what full_state() fits, e.g. to save it as a checkpoint.
  Local make_full() const {
    Local full;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      std::vector<ConstTensor> shapes;
      for (const TensorShape& shape : groups_[g].tensors) {
        if (shape.row_major)
          shapes.emplace_back(Eigen::Map<const RowMajor>(nullptr, shape.rows, shape.cols));
        else
          shapes.emplace_back(static_cast<const Scalar*>(nullptr), shape.rows, shape.cols);
      }
      full.add_group(shapes, local_.options(g), groups_[g].name, groups_[g].names());
    }
    return full;
  }

  /// The whole model's state, as one process stepping it would hold it:
  /// every rank's shard of m, v, v_max all-gathered (collective). With
  /// restore_full() it moves a run between rank counts (docs/distributed.md).
  std::vector<State> full_state() {
    ensure_ready();
    std::vector<State> out;
    for (std::size_t g = 0; g < groups_.size(); ++g) out.push_back(gather_group(g));
    return out;
  }

  /// Replaces every rank's shard state by its part of `states`, the whole
  /// model's (full_state() of any rank count, or a one-process optimizer's
  /// state()). Collective; the same `states` on every rank. Checked first on
  /// every rank (structure as Optimizer::restore, every difference listed,
  /// and values); any problem throws MpiError on every rank, nothing changed.
  void restore_full(const std::vector<State>& states) {
    ensure_ready();
    refuse_in_eval_mode("restore_full");
    std::string problem;
    std::vector<State> mine;
    // Compared with the whole model's names and shapes directly (layout.hpp):
    // no full-size optimizer is allocated for it.
    const std::vector<std::string> differences = adamx::detail::structure_differences(states, groups_);
    if (!differences.empty()) {
      problem = "adamx::mpi::ShardedOptimizer::restore_full: rank " + std::to_string(rank_) +
                ": the state does not match the optimizer's groups (nothing was changed):";
      for (const std::string& difference : differences) problem += "\n  - " + difference;
    } else {
      try {
        for (std::size_t g = 0; g < groups_.size(); ++g) {
          mine.push_back(slice(g, states[g]));
          local_.check_values(mine.back());
        }
      } catch (const std::exception& e) {
        problem = "adamx::mpi::ShardedOptimizer::restore_full: rank " + std::to_string(rank_) + ": " +
                  e.what() + " (nothing was changed)";
      }
    }
    detail::agree(comm_, problem);
    local_.restore(mine);
  }

  /// The default cap on one collective: 2^18 elements (1 MiB of float).
  /// Measured with 256 groups on this project's machine (shared memory,
  /// docs/distributed.md), a step was fastest with buckets of 2^16 to 2^18
  /// elements: they stay in cache. Per-group collectives were 10-25 % slower,
  /// and one collective for the whole model was 25-100 % slower.
  static constexpr Eigen::Index kDefaultBucketElements = Eigen::Index{1} << 18;

  /// Caps the elements whose gradients (and parameters) one collective
  /// moves: consecutive groups share a collective while they fit. The upper
  /// limit is 2^31 - 1, MPI's int counts. Over a network, where each
  /// collective costs latency, larger buckets may pay. A group larger than
  /// the cap has a pair of collectives of its own. Every rank must set the
  /// same cap (compared at the next step).
  void set_max_bucket_elements(Eigen::Index elements) {
    if (elements < 1 || elements > static_cast<Eigen::Index>(INT_MAX))
      throw std::invalid_argument("adamx::mpi::ShardedOptimizer::set_max_bucket_elements: invalid elements = " +
                                  std::to_string(elements) + " (must be in [1, 2^31 - 1])");
    max_bucket_elements_ = elements;
    reducer_.reset();  // the buckets are rebuilt at the next step
  }
  Eigen::Index max_bucket_elements() const { return max_bucket_elements_; }

  /// Rank r's shard of group g.
  const GroupShard& shard(std::size_t group, int rank) const {
    return groups_.at(group).shards.at(static_cast<std::size_t>(rank));
  }

  /// The whole model's groups and how they are cut across the ranks: what a
  /// sharded checkpoint records (sharded_checkpoint.hpp).
  ShardLayout layout() const {
    ShardLayout out;
    out.ranks = ranks_;
    for (const Group& group : groups_) {
      ShardLayout::Group g;
      static_cast<GroupLayout&>(g) = group;
      for (const GroupShard& shard : group.shards) g.boundaries.push_back(shard.begin);
      g.boundaries.push_back(group.shards.empty() ? 0 : group.shards.back().end);
      out.groups.push_back(std::move(g));
    }
    return out;
  }

  /// Saves a sharded checkpoint: every rank writes its own file — its shard
  /// record and its shard's checkpoint, CRC-checked — under a name of this
  /// save ("<prefix>.<rank>-of-<ranks>.<id>") and flushes it to disk; then
  /// rank 0 writes the manifest naming every rank's file, size and checksum,
  /// and renames it into place ("<prefix>.manifest-of-<ranks>"): the commit
  /// (shard_manifest.hpp). Until then the previous checkpoint under `prefix`
  /// is what loads; after it, each rank removes its older files. The
  /// directory of `prefix` is created if missing. Nothing is gathered but the
  /// sizes and checksums. Collective; a failure on any rank (with the OS
  /// reason for file errors) throws MpiError on every rank, removes this
  /// save's files and commits nothing. Rank 0's directory holds the manifest;
  /// each rank's file may be on a disk of its own (node-local disks work).
  void save_sharded_checkpoint(const std::filesystem::path& prefix) {
    ensure_ready();
    refuse_in_eval_mode("save_sharded_checkpoint");
    const std::string who = "adamx::mpi::ShardedOptimizer::save_sharded_checkpoint";
    const std::string me = "rank " + std::to_string(rank_) + ": ";
    std::string problem = adamx::detail::create_parent_directory(prefix);
    detail::agree(comm_, problem.empty() ? problem : me + who + ": " + problem + " (nothing was changed)");
    unsigned long long save_id = rank_ == 0 ? adamx::detail::new_save_id() : 0;
    detail::check(MPI_Bcast(&save_id, 1, MPI_UNSIGNED_LONG_LONG, 0, comm_), "MPI_Bcast");
    const std::filesystem::path mine = adamx::detail::shard_generation_path(prefix, rank_, ranks_, save_id);
    unsigned long long described[2] = {0, 0};  // this rank's file: size, last four bytes
    try {
      adamx::detail::write_synced_file(mine, who, [&](std::ostream& out) {
        adamx::save_shard_checkpoint(local_, layout(), rank_, out);
      });
      adamx::detail::sync_directory_of(mine);  // this rank's disk may not be rank 0's
      const adamx::detail::ShardFileEntry entry = adamx::detail::describe_shard_file(mine, who);
      described[0] = entry.bytes;
      described[1] = entry.last_crc;
    } catch (const std::exception& e) {
      problem = me + e.what();
    }
    try {
      detail::agree(comm_, problem);
      std::vector<unsigned long long> all(2 * static_cast<std::size_t>(ranks_));
      detail::check(MPI_Gather(described, 2, MPI_UNSIGNED_LONG_LONG, all.data(), 2, MPI_UNSIGNED_LONG_LONG, 0, comm_),
                    "MPI_Gather");
      if (rank_ == 0) {
        try {
          std::vector<adamx::detail::ShardFileEntry> files;
          for (int r = 0; r < ranks_; ++r)
            files.push_back({adamx::detail::shard_generation_path(prefix, r, ranks_, save_id).filename().string(),
                             all[2 * static_cast<std::size_t>(r)],
                             static_cast<std::uint32_t>(all[2 * static_cast<std::size_t>(r) + 1])});
          adamx::detail::commit_shard_set(prefix, ranks_, save_id, files, who);
        } catch (const std::exception& e) {
          problem = me + e.what();
        }
      }
      detail::agree(comm_, problem);
    } catch (...) {  // not committed: this save's files go, the previous checkpoint stays
      std::error_code ignored;
      std::filesystem::remove(mine, ignored);
      throw;
    }
    adamx::detail::remove_superseded_shards(prefix, ranks_, save_id, rank_);
  }

  /// Loads the sharded checkpoint under `prefix` saved by a run of the same
  /// rank count and layout (reshard_checkpoint converts between counts).
  /// Each rank reads the manifest and the file it names for the rank (or, for
  /// a checkpoint of an older adamx without a manifest,
  /// "<prefix>.<rank>-of-<ranks>") and checks it: the size and checksum the
  /// manifest records, the shard record against
  /// this run's layout (every difference listed), then all of
  /// load_checkpoint's checks; then the ranks check that their files are of
  /// one save (the same options, t, γ, h in every group). A problem on any
  /// rank throws MpiError on every rank with nothing changed. Collective.
  void load_sharded_checkpoint(const std::filesystem::path& prefix) {
    ensure_ready();
    refuse_in_eval_mode("load_sharded_checkpoint");
    std::string problem;
    std::vector<State> states;
    const std::string who = "adamx::mpi::ShardedOptimizer::load_sharded_checkpoint";
    // Rank 0 reads the manifest and sends it to the others, so a rank needs
    // only its own file: node-local disks work.
    const adamx::detail::ShardSet set = locate_shard_set(prefix, who);
    try {
      const std::filesystem::path& path = set.files.at(static_cast<std::size_t>(rank_));
      std::error_code error;
      if (!std::filesystem::exists(path, error)) {
        problem = "rank " + std::to_string(rank_) + ": " +
                  (error ? "cannot look for '" + path.string() + "': " + error.message()
                         : "no file '" + path.string() + "'");
        std::string found;
        for (int n : find_sharded_checkpoints(prefix)) found += (found.empty() ? "" : ", ") + std::to_string(n);
        if (!found.empty())
          problem += "; '" + prefix.string() + "' has sharded checkpoints of " + found + " rank(s), this run has " +
                     std::to_string(ranks_) + " (re-shard with adamx::reshard_checkpoint or adamx_reshard)";
      } else {
        states = adamx::detail::read_shard_checkpoint(local_, layout(), rank_, path);
        adamx::detail::check_against_manifest(set, rank_, who);
      }
    } catch (const std::exception& e) {
      problem = "rank " + std::to_string(rank_) + ": " + e.what();
    }
    detail::agree(comm_, problem + (problem.empty() ? "" : " (nothing was changed)"));
    // Files of different saves (a crash between two ranks' renames) differ
    // in their group scalars; every rank sees every rank's and refuses alike.
    std::string mine;
    for (const State& g : states) {
      mine += "'" + g.name + "': t=" + std::to_string(g.t);
      for_each_group_scalar<typename State::Scalars>([&](const auto& field) {
        mine += std::string(" ") + field.name + "=" + detail::hex_bits(g.scalars().*field.member);
      });
      mine += " options=" + options_digest(g.options) + "; ";
    }
    const std::vector<std::string> all = detail::allgather_strings(comm_, mine);
    std::string differences;
    for (std::size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0]) differences += "\n  rank " + std::to_string(r) + ": " + all[r];
    if (!differences.empty())
      throw MpiError("adamx::mpi::ShardedOptimizer::load_sharded_checkpoint: the ranks' files under '" +
                     prefix.string() + "' are not from one save (nothing was changed):\n  rank 0: " + all[0] +
                     differences);
    local_.restore(states);
  }

 private:
  using Index = Eigen::Index;

  // The whole model's group (names and shapes: GroupLayout, what step()'s
  // checks read) and how it is cut and carried.
  struct Group : GroupLayout {
    std::vector<GroupShard> shards;   // one per rank
    std::vector<int> counts, displacements;  // the shards, for gathering the state
    std::size_t bucket = 0;                  // whose collectives carry this group
    std::vector<Index> offset_in_rank;       // per rank: where its shard starts in the rank's part of the bucket
  };

  // Consecutive groups whose collectives are merged: per step one
  // reduce-scatter (step() only) and one all-gather per bucket, not per
  // group. A bucket holds at most max_bucket_elements_ elements, unless one
  // group alone is larger. In its part of flat_ the ranks' shards lie
  // rank by rank, and within a rank group by group: one reduce-scatter hands
  // every rank its shards of all the bucket's groups, one all-gather returns
  // them all.
  struct Bucket {
    Index base = 0;           // where the bucket starts in flat_
    Index received_base = 0;  // where this rank's part starts in received_
    std::vector<int> counts, displacements;  // per rank
  };

  // The files of the sharded checkpoint under `prefix` for this rank count,
  // as rank 0 finds them: it reads the manifest (if there is one) and
  // broadcasts what it records. Collective. A manifest rank 0 cannot read
  // throws MpiError on every rank.
  adamx::detail::ShardSet locate_shard_set(const std::filesystem::path& prefix, const std::string& who) {
    std::string problem;
    std::optional<adamx::detail::ShardManifest> manifest;
    if (rank_ == 0) {
      try {
        manifest = adamx::detail::locate_shard_set(prefix, ranks_, who).manifest;
      } catch (const std::exception& e) {
        problem = "rank 0: " + std::string(e.what()) + " (nothing was changed)";
      }
    }
    detail::agree(comm_, problem);
    // Whether there is a manifest, its save id, then each file's size and checksum.
    std::vector<unsigned long long> words(2 + 2 * static_cast<std::size_t>(ranks_), 0);
    if (manifest) {
      words[0] = 1;
      words[1] = manifest->save_id;
      for (std::size_t r = 0; r < manifest->files.size(); ++r) {
        words[2 + 2 * r] = manifest->files[r].bytes;
        words[3 + 2 * r] = manifest->files[r].last_crc;
      }
    }
    detail::check(MPI_Bcast(words.data(), static_cast<int>(words.size()), MPI_UNSIGNED_LONG_LONG, 0, comm_),
                  "MPI_Bcast (the manifest)");
    if (words[0] != 0 && rank_ != 0) {
      manifest.emplace();
      manifest->save_id = words[1];
      for (int r = 0; r < ranks_; ++r) {
        const auto at = 2 + 2 * static_cast<std::size_t>(r);
        manifest->files.push_back(
            {adamx::detail::shard_generation_path(prefix, r, ranks_, words[1]).filename().string(), words[at],
             static_cast<std::uint32_t>(words[at + 1])});
      }
    }
    return adamx::detail::shard_set_of(prefix, ranks_, std::move(manifest));
  }

  // A group's options as the hex CRC-32 of their checkpoint encoding.
  static std::string options_digest(const Options& options) {
    std::string bytes;
    adamx::detail::put_options(bytes, options);
    return adamx::detail::hex32(crc32(bytes.data(), bytes.size()));
  }

  // The groups as this rank sees them, in words; equal on every rank or the
  // layouts differ.
  std::string layout_description() const {
    std::ostringstream out;
    out << Local::name() << "<" << sizeof(Scalar) * 8 << "-bit> buckets of " << max_bucket_elements_ << ":";
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const Options& o = local_.options(g);
      out << (g == 0 ? " " : "; ") << groups_[g].name << "{";
      for (std::size_t t = 0; t < groups_[g].tensors.size(); ++t)
        out << (t == 0 ? "" : ", ") << groups_[g].tensors[t].name << ":" << groups_[g].tensors[t].size();
      out << "} slots=";  // the state slots the group keeps (amsgrad adds v_max)
      for (int k = 0; k < Flavour::Rule::kSlots; ++k)
        if (Local::keeps_slot(o, k)) out << Flavour::Rule::slot_names[k] << ",";
      out << " nonfinite=" << static_cast<int>(o.nonfinite);
    }
    return out.str();
  }

  // At the first step after groups were added: compare the layouts of all
  // ranks (every rank throws if they differ) and build the reducer.
  void ensure_ready() {
    if (reducer_.has_value()) return;
    const std::vector<std::string> layouts = detail::allgather_strings(comm_, layout_description());
    std::string differences;
    for (std::size_t r = 1; r < layouts.size(); ++r)
      if (layouts[r] != layouts[0]) differences += "\n  rank " + std::to_string(r) + ": " + layouts[r];
    if (!differences.empty())
      throw MpiError("adamx::mpi::ShardedOptimizer: the ranks' group layouts differ (nothing was "
                     "changed):\n  rank 0: " + layouts[0] + differences);
    std::vector<std::vector<std::size_t>> blocks;
    for (const Group& group : groups_) {
      blocks.emplace_back();
      for (const GroupShard& shard : group.shards) blocks.back().push_back(shard.blocks);
    }
    reducer_.emplace(comm_, std::move(blocks));
    build_buckets();
    build_clip_buffers();
  }

  // Each rank's message of the clip's all-gather: its clip arguments, then
  // one norm part per block of its shards, group by group.
  static constexpr std::size_t kClipHeader = 3;

  void build_clip_buffers() {
    clip_counts_.assign(static_cast<std::size_t>(ranks_), 0);
    clip_displacements_.assign(static_cast<std::size_t>(ranks_), 0);
    std::size_t total = 0;
    for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r) {
      std::size_t count = kClipHeader;
      for (const Group& group : groups_) count += group.shards[r].blocks;
      clip_counts_[r] = detail::to_int(count, "a rank's norm parts");
      clip_displacements_[r] = detail::to_int(total, "the norm parts");
      total += count;
    }
    clip_send_.resize(static_cast<std::size_t>(clip_counts_[static_cast<std::size_t>(rank_)]));
    clip_received_.resize(total);
  }

  // Clips this rank's shard of the gradient (grad_views_) by the norm over
  // every rank's shards and returns that norm. One all-gather of every
  // rank's block parts; every rank then combines all parts in the order one
  // process does (clip.hpp: block after block, group after group; rank r's
  // blocks of a group precede rank r+1's), so all get the same bits and make
  // the same decision. A clipped shard goes to received_ (where step()'s mean
  // already is), never to the caller's memory.
  double clip_shard(const ClipGradNorm& clip) {
    const auto me = static_cast<std::size_t>(rank_);
    clip_send_[0] = clip.max_norm;
    clip_send_[1] = clip.norm_type;
    clip_send_[2] = clip.error_if_nonfinite ? 1.0 : 0.0;
    std::size_t at = kClipHeader;
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (const ConstTensor& view : grad_views_[g])
        adamx::detail::for_each_norm_part(view.data(), view.size(), clip.norm_type,
                                          [&](double part) { clip_send_[at++] = part; });
    detail::check(MPI_Allgatherv(clip_send_.data(), clip_counts_[me], MPI_DOUBLE, clip_received_.data(),
                                 clip_counts_.data(), clip_displacements_.data(), MPI_DOUBLE, comm_),
                  "MPI_Allgatherv (norm parts for clipping)");
    bool differ = false;
    for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r)
      differ = differ || std::memcmp(clip_received_.data() + clip_displacements_[r], clip_received_.data(),
                                     kClipHeader * sizeof(double)) != 0;
    if (differ) {  // the message is built only now: a step does not allocate
      std::string arguments;
      for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r) {
        const double* header = clip_received_.data() + clip_displacements_[r];
        arguments += "\n  rank " + std::to_string(r) + ": max_norm = " + adamx::detail::format_value(header[0]) +
                     ", norm_type = " + adamx::detail::format_value(header[1]) +
                     ", error_if_nonfinite = " + (header[2] != 0.0 ? "true" : "false");
      }
      throw MpiError("adamx::mpi::ShardedOptimizer::step: the ranks passed different ClipGradNorm "
                     "arguments (nothing was changed):" + arguments);
    }
    double total = 0.0;
    std::size_t first_bad = std::numeric_limits<std::size_t>::max();
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r) {
        std::size_t offset = static_cast<std::size_t>(clip_displacements_[r]) + kClipHeader;
        for (std::size_t before = 0; before < g; ++before) offset += groups_[before].shards[r].blocks;
        for (std::size_t b = 0; b < groups_[g].shards[r].blocks; ++b)
          total = adamx::detail::add_norm_part(total, clip_received_[offset + b], clip.norm_type);
      }
      if (!std::isfinite(total) && first_bad == std::numeric_limits<std::size_t>::max()) first_bad = g;
    }
    const double norm = adamx::detail::finish_norm(total, clip.norm_type);
    if (!std::isfinite(norm)) {
      if (clip.error_if_nonfinite)
        throw NonFiniteGradientError(adamx::detail::nonfinite_norm_message(clip.norm_type, norm, first_bad),
                                     first_bad);
      return norm;  // nothing scaled: the groups' NonFinitePolicy decides
    }
    const double factor = adamx::detail::clip_factor(clip.max_norm, norm);
    if (!(factor < 1.0)) return norm;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const Group& group = groups_[g];
      Scalar* to = received_.data() + buckets_[group.bucket].received_base + group.offset_in_rank[me];
      for (ConstTensor& view : grad_views_[g]) {
        if (view.size() == 0) continue;
        const Index n = view.size();
        adamx::detail::scale_gradient(view.data(), to, n, factor);  // in place after the reduce-scatter
        view = ConstTensor(static_cast<const Scalar*>(to), n, 1);
        to += n;
      }
    }
    return norm;
  }

  void build_buckets() {
    const auto ranks = static_cast<std::size_t>(ranks_);
    buckets_.clear();
    Index flat_size = 0, received_size = 0, bucket_size = 0;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      Group& group = groups_[g];
      const Index total = group.shards.back().end;
      if (buckets_.empty() || (bucket_size > 0 && bucket_size + total > max_bucket_elements_)) {
        buckets_.emplace_back();
        buckets_.back().base = flat_size;
        buckets_.back().received_base = received_size;
        buckets_.back().counts.assign(ranks, 0);
        bucket_size = 0;
      }
      Bucket& bucket = buckets_.back();
      group.bucket = buckets_.size() - 1;
      group.offset_in_rank.assign(ranks, 0);
      for (std::size_t r = 0; r < ranks; ++r) {
        group.offset_in_rank[r] = bucket.counts[r];
        bucket.counts[r] += static_cast<int>(group.shards[r].size());
      }
      bucket_size += total;
      flat_size += total;
      received_size += group.shards[static_cast<std::size_t>(rank_)].size();
    }
    for (Bucket& bucket : buckets_) {
      int at = 0;
      bucket.displacements.assign(ranks, 0);
      for (std::size_t r = 0; r < ranks; ++r) {
        bucket.displacements[r] = at;
        at += bucket.counts[r];
      }
    }
    flat_.resize(static_cast<std::size_t>(flat_size));
    received_.resize(static_cast<std::size_t>(received_size));
  }

  // Where rank r's shard of group g lies in flat_.
  Scalar* flat_place(std::size_t g, std::size_t r) {
    const Group& group = groups_[g];
    const Bucket& bucket = buckets_[group.bucket];
    return flat_.data() + bucket.base + bucket.displacements[r] + group.offset_in_rank[r];
  }

  // Copies the pieces of `shard` out of the tensors at `bases` into `out`,
  // one after the other; unpack_pieces is the reverse.
  template <class Pointer>
  static void pack_pieces(const GroupShard& shard, const std::vector<Pointer>& bases, Scalar* out) {
    for (const ShardPiece& piece : shard.pieces) {
      const Scalar* from = bases[piece.tensor] + piece.start;
      out = std::copy(from, from + piece.length, out);
    }
  }
  static void unpack_pieces(const GroupShard& shard, const Scalar* in, const std::vector<Scalar*>& bases) {
    for (const ShardPiece& piece : shard.pieces) {
      std::copy(in, in + piece.length, bases[piece.tensor] + piece.start);
      in += piece.length;
    }
  }

  // Group g's whole state: its scalars and every rank's shard of its arrays
  // (collective).
  State gather_group(std::size_t g) {
    State full = local_.state_without_arrays(g).without_tensors();
    for (const TensorShape& shape : groups_[g].tensors) {
      typename State::Tensor ts;
      static_cast<TensorShape&>(ts) = shape;
      full.tensors.push_back(std::move(ts));
    }
    for (int k = 0; k < Flavour::Rule::kSlots; ++k)
      if (Local::keeps_slot(full.options, k)) gather_array(g, full, [k](auto& ts) -> auto& { return ts.slot(k); });
    return full;
  }

  // All-gathers one array (a state slot, chosen by `field`) of
  // group g into the full group state `full`. This rank's part is read in
  // place (state_view), not copied first.
  template <class Field>
  void gather_array(std::size_t g, State& full, Field field) {
    const Group& group = groups_[g];
    const GroupShard& shard = group.shards[static_cast<std::size_t>(rank_)];
    std::vector<StateScalar> whole(static_cast<std::size_t>(group.shards.back().end));
    Index at = shard.begin;
    for (std::size_t k = 0; k < shard.pieces.size(); ++k) {
      const typename Local::tensor_state_view_type view = local_.state_view(g, k);
      const auto& array = field(view);
      std::copy(array.data(), array.data() + array.size(), whole.begin() + at);
      at += array.size();
    }
    detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, whole.data(), group.counts.data(),
                                 group.displacements.data(), detail::datatype<StateScalar>(), comm_),
                  "MPI_Allgatherv (state)");
    at = 0;
    for (std::size_t t = 0; t < group.tensors.size(); ++t) {
      auto& array = field(full.tensors[t]);
      array = Eigen::Map<const typename State::Tensor::Array>(whole.data() + at, group.tensors[t].size());
      at += group.tensors[t].size();
    }
  }

  // This rank's part of group g's whole state (whose structure was checked).
  State slice(std::size_t g, const State& whole) const {
    const GroupShard& shard = groups_[g].shards[static_cast<std::size_t>(rank_)];
    const GroupLayout& mine = local_.layout(g);
    State out = whole.without_tensors();
    for (std::size_t k = 0; k < mine.tensors.size(); ++k) {
      typename State::Tensor ts;
      ts.name = mine.tensors[k].name;
      ts.rows = mine.tensors[k].rows;
      ts.cols = 1;
      if (k < shard.pieces.size()) {
        const ShardPiece& piece = shard.pieces[k];
        const typename State::Tensor& from = whole.tensors[piece.tensor];
        for (int s = 0; s < Flavour::Rule::kSlots; ++s)
          if (from.slot(s).size() != 0) ts.slot(s) = from.slot(s).segment(piece.start, piece.length);
      }  // else the empty shard's one empty tensor: every slot empty
      out.tensors.push_back(std::move(ts));
    }
    return out;
  }

  // "" if the full tensors follow the memory rule (overlap.hpp), else the
  // problem. Checked on the full tensors, not only this rank's shards: the
  // all-gather writes whole parameters, and the step packs whole gradients.
  template <class ParamGroups, class GradGroups>
  std::string memory_problem(const ParamGroups& params, const GradGroups& grads) {
    overlap_.collect<Scalar>(params, grads, groups_.size(), [&](std::size_t g) { return groups_[g].tensors.size(); });
    const adamx::detail::MemoryConflict conflict = overlap_.find();
    if (!conflict) return {};
    return std::string("adamx::") + Local::name() + "::step: " +
           adamx::detail::conflict_message(conflict, [&](const adamx::detail::TensorSpan& span) {
             return groups_[span.group].name + "." + groups_[span.group].tensors[span.tensor].name;
           });
  }

  // Every step's agreement, before any data moves, in one MPI_Allgather of
  // three words per rank: whether the rank refused its arguments, a CRC-32
  // of its message, and a CRC-32 of every group's options. Input that every
  // rank refuses alike (the usual mistake: one training loop on every rank)
  // throws std::invalid_argument with one process's message on every rank.
  // Otherwise the refusing ranks throw MpiError with their message and the
  // others say whom they stopped for. Options that differ between ranks (a
  // setter not called alike) throw MpiError on every rank naming them.
  void agree_step(const std::string& problem) {
    options_bytes_.clear();
    for (std::size_t g = 0; g < local_.num_groups(); ++g)
      adamx::detail::put_options(options_bytes_, local_.options(g));
    const unsigned mine[3] = {problem.empty() ? 0u : 1u,
                              problem.empty() ? 0u : static_cast<unsigned>(crc32(problem.data(), problem.size())),
                              static_cast<unsigned>(crc32(options_bytes_.data(), options_bytes_.size()))};
    verdicts_.resize(3 * static_cast<std::size_t>(ranks_));
    detail::check(MPI_Allgather(mine, 3, MPI_UNSIGNED, verdicts_.data(), 3, MPI_UNSIGNED, comm_),
                  "MPI_Allgather (step agreement)");
    std::string refused;
    bool alike = true;  // every rank refused with the same message as rank 0
    bool same_options = true;
    for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r) {
      if (verdicts_[3 * r] != 0) refused += (refused.empty() ? "" : ", ") + std::to_string(r);
      alike = alike && verdicts_[3 * r] != 0 && verdicts_[3 * r + 1] == verdicts_[1];
      same_options = same_options && verdicts_[3 * r + 2] == verdicts_[2];
    }
    if (!refused.empty()) {
      if (alike) throw std::invalid_argument(problem);
      if (!problem.empty())
        throw MpiError("adamx::mpi::ShardedOptimizer::step: rank " + std::to_string(rank_) + ": " + problem +
                       "; nothing was changed");
      throw MpiError("adamx::mpi: rank " + std::to_string(rank_) + " stops because rank(s) " + refused +
                     " refused the call (see their message); nothing was changed");
    }
    if (same_options) return;
    std::string described;
    for (std::size_t g = 0; g < local_.num_groups(); ++g)
      described += (g == 0 ? "'" : "; '") + groups_[g].name + "' lr=" +
                   adamx::detail::format_value(local_.options(g).lr) + " options=" + options_digest(local_.options(g));
    const std::vector<std::string> all = detail::allgather_strings(comm_, described);
    std::string listed;
    for (std::size_t r = 0; r < all.size(); ++r) listed += "\n  rank " + std::to_string(r) + ": " + all[r];
    throw MpiError("adamx::mpi::ShardedOptimizer::step: the ranks' options differ (every rank must call the "
                   "setters alike); nothing was changed:" + listed);
  }

  // Between eval() and train() every rank is in eval mode alike (both are
  // collective), so each refuses on its own, before any collective.
  void refuse_in_eval_mode(const char* function) const {
    if (local_.in_eval_mode())
      throw std::logic_error(std::string("adamx::mpi::ShardedOptimizer::") + function +
                             ": the parameters hold the evaluation point (eval()); call train(params) first");
  }

  // eval() (to_evaluation) or train(): the local optimizer switches this
  // rank's shard of the parameters, then the shards are all-gathered.
  template <class ParamGroups>
  void switch_point(const ParamGroups& params, bool to_evaluation) {
    ensure_ready();
    std::string problem;
    try {
      Local::check_step_arguments(groups_, params, params);
    } catch (const std::invalid_argument& e) {
      problem = e.what();
    }
    agree_step(problem);
    if (local_.in_eval_mode() == to_evaluation) return;
    const auto me = static_cast<std::size_t>(rank_);
    param_views_.resize(groups_.size());
    auto p = std::begin(params);
    for (std::size_t g = 0; g < groups_.size(); ++g, ++p) {
      param_bases_.clear();
      for (const auto& tensor : *p) param_bases_.push_back(Tensor(tensor).data());
      shard_views(groups_[g].shards[me], param_bases_, param_views_[g]);
    }
    if constexpr (adamx::detail::has_evaluation_point<typename Flavour::Rule>::value) {
      if (to_evaluation)
        local_.eval(param_views_);
      else
        local_.train(param_views_);
    }
    share_parameters(params);
  }

  // Every rank's shards of θ (the full `params`) to every rank: one
  // all-gather per bucket.
  template <class ParamGroups>
  void share_parameters(const ParamGroups& params) {
    const auto me = static_cast<std::size_t>(rank_);
    auto p = std::begin(params);
    for (std::size_t g = 0; g < groups_.size(); ++g, ++p) {
      param_bases_.clear();
      for (const auto& tensor : *p) param_bases_.push_back(Tensor(tensor).data());
      pack_pieces(groups_[g].shards[me], param_bases_, flat_place(g, me));
    }
    for (Bucket& bucket : buckets_)
      detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, flat_.data() + bucket.base,
                                   bucket.counts.data(), bucket.displacements.data(), detail::datatype<Scalar>(),
                                   comm_),
                    "MPI_Allgatherv (parameters)");
    p = std::begin(params);
    for (std::size_t g = 0; g < groups_.size(); ++g, ++p) {
      param_bases_.clear();
      for (const auto& tensor : *p) param_bases_.push_back(Tensor(tensor).data());
      for (std::size_t r = 0; r < groups_[g].shards.size(); ++r)
        if (r != me) unpack_pieces(groups_[g].shards[r], flat_place(g, r), param_bases_);
    }
  }

  // `clip` (may be null): clip the gradient by its global norm (clip_shard).
  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step_impl(const ParamGroups& params, const GradGroups& grads,
                                           bool reduce_scatter, const ClipGradNorm* clip = nullptr) {
    ensure_ready();
    refuse_in_eval_mode("step");
    // Input is checked on every rank and the verdict shared before any
    // collective that moves data, so a refusal cannot leave a rank waiting.
    // Invalid clip arguments come first and throw clip_grad_norm's
    // std::invalid_argument; the full tensors get one process's checks and
    // messages.
    std::string problem = clip ? adamx::detail::clip_argument_problem(clip->max_norm, clip->norm_type) : "";
    if (problem.empty()) {
      try {
        Local::check_step_arguments(groups_, params, grads);
        problem = memory_problem(params, grads);
      } catch (const std::invalid_argument& e) {
        problem = e.what();
      }
    }
    agree_step(problem);

    const auto me = static_cast<std::size_t>(rank_);
    param_views_.resize(groups_.size());
    grad_views_.resize(groups_.size());
    if (reduce_scatter) {
      // Every group's local gradient into flat_, rank-major per bucket; one
      // reduce-scatter per bucket sums it over the ranks into this rank's
      // shards; dividing by the rank count gives the mean.
      auto q = std::begin(grads);
      for (std::size_t g = 0; g < groups_.size(); ++g, ++q) {
        grad_bases_.clear();
        for (const auto& tensor : *q) grad_bases_.push_back(ConstTensor(tensor).data());
        for (std::size_t r = 0; r < groups_[g].shards.size(); ++r)
          pack_pieces(groups_[g].shards[r], grad_bases_, flat_place(g, r));
      }
      for (Bucket& bucket : buckets_)
        detail::check(MPI_Reduce_scatter(flat_.data() + bucket.base, received_.data() + bucket.received_base,
                                         bucket.counts.data(), detail::datatype<Scalar>(), gradient_sum_.op(),
                                         comm_),
                      "MPI_Reduce_scatter (gradients)");
      const Scalar ranks = static_cast<Scalar>(ranks_);
      for (Scalar& x : received_) x /= ranks;
    }
    auto p = std::begin(params);
    auto q = std::begin(grads);
    for (std::size_t g = 0; g < groups_.size(); ++g, ++p, ++q) {
      const Group& group = groups_[g];
      const GroupShard& shard = group.shards[me];
      param_bases_.clear();
      for (const auto& tensor : *p) param_bases_.push_back(Tensor(tensor).data());
      shard_views(shard, param_bases_, param_views_[g]);
      if (!reduce_scatter) {
        grad_bases_.clear();
        for (const auto& tensor : *q) grad_bases_.push_back(ConstTensor(tensor).data());
        shard_views(shard, grad_bases_, grad_views_[g]);
        continue;
      }
      // The pieces of the shard lie one after the other in received_.
      const Scalar* at = received_.data() + buckets_[group.bucket].received_base + group.offset_in_rank[me];
      grad_views_[g].clear();
      for (const ShardPiece& piece : shard.pieces) {
        grad_views_[g].emplace_back(at, piece.length, 1);
        at += piece.length;
      }
      if (shard.pieces.empty()) grad_views_[g].emplace_back(static_cast<const Scalar*>(nullptr), 0, 1);
    }

    const double norm = clip ? clip_shard(*clip) : 0.0;
    const std::vector<StepReport>& reports = local_.step(param_views_, grad_views_, *reducer_);

    // Every rank's new shards of θ to every rank.
    share_parameters(params);
    if (clip) last_grad_norm_ = norm;
    return reports;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int ranks_ = 1;
  Local local_;
  std::vector<Group> groups_;
  detail::GradientSum<Scalar> gradient_sum_;
  std::optional<NormReducer> reducer_;
  Index max_bucket_elements_ = kDefaultBucketElements;
  std::vector<Bucket> buckets_;
  std::vector<Scalar> flat_;      // every group, rank-major per bucket: gradients, then θ
  std::vector<Scalar> received_;  // this rank's shards of the mean gradient, bucket by bucket
  std::vector<std::vector<Tensor>> param_views_;
  std::vector<std::vector<ConstTensor>> grad_views_;
  std::vector<Scalar*> param_bases_;
  std::vector<const Scalar*> grad_bases_;
  adamx::detail::OverlapCheck overlap_;  // full tensors' memory, sized in add_group
  std::vector<State> gathered_;          // what state() last gathered
  std::string options_bytes_;            // every group's options, encoded for the step's digest
  std::vector<unsigned> verdicts_;       // the step agreement's words, per rank
  // Clipping (clip_shard): per rank, the all-gather's counts and places, and
  // this rank's message and everyone's, sized in ensure_ready.
  std::vector<int> clip_counts_, clip_displacements_;
  std::vector<double> clip_send_, clip_received_;
  double last_grad_norm_ = std::numeric_limits<double>::quiet_NaN();
};

/// ShardedOptimizer::save_sharded_checkpoint: every rank writes its own file.
template <class Scalar, class Flavour>
void save_sharded_checkpoint(ShardedOptimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& prefix) {
  optimizer.save_sharded_checkpoint(prefix);
}

/// ShardedOptimizer::load_sharded_checkpoint: every rank reads its own file.
template <class Scalar, class Flavour>
void load_sharded_checkpoint(ShardedOptimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& prefix) {
  optimizer.load_sharded_checkpoint(prefix);
}

/// Saves the whole model's optimizer state (full_state()) as an ordinary
/// one-process checkpoint (checkpoint.hpp: its format, CRC-32s, atomic
/// rename), written by rank 0. Collective. Any rank count, or one process
/// (adamx::load_checkpoint into a plain Optimizer), can resume from it.
template <class Scalar, class Flavour>
void save_checkpoint(ShardedOptimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& path) {
  if (optimizer.in_eval_mode())
    throw std::logic_error("adamx::mpi::save_checkpoint: the parameters hold the evaluation point (eval()); call "
                           "train(params) first");
  const auto states = optimizer.full_state();
  std::string problem;
  if (optimizer.rank() == 0) {
    try {
      auto full = optimizer.make_full();
      full.restore(states);
      adamx::save_checkpoint(full, path);
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
  detail::agree(optimizer.communicator(), problem);
}

/// Loads a checkpoint of the whole model (from save_checkpoint() above with
/// any rank count, or adamx::save_checkpoint of one process) into every
/// rank's shard. Every rank reads `path` and checks it (checkpoint.hpp's
/// checks: magic, version, types, names and shapes with every difference
/// listed, CRC-32s); a problem on any rank throws MpiError on every rank,
/// with the optimizer unchanged. Collective.
template <class Scalar, class Flavour>
void load_checkpoint(ShardedOptimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& path) {
  if (optimizer.in_eval_mode())
    throw std::logic_error("adamx::mpi::load_checkpoint: the parameters hold the evaluation point (eval()); call "
                           "train(params) first");
  auto full = optimizer.make_full();
  std::string problem;
  try {
    adamx::load_checkpoint(full, path);
  } catch (const std::exception& e) {
    problem = "rank " + std::to_string(optimizer.rank()) + ": " + e.what();
  }
  detail::agree(optimizer.communicator(), problem);
  optimizer.restore_full(full.state());
}

// Every optimizer of the library, sharded: adamx::mpi::AdamX<float>,
// adamx::mpi::RAdam<double>, … (the list is in rules.hpp).
#define ADAMX_MPI_ALIAS(Name) \
  template <class Scalar>     \
  using Name = ShardedOptimizer<Scalar, flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_MPI_ALIAS)
#undef ADAMX_MPI_ALIAS

}  // namespace mpi
ADAMX_NAMESPACE_END  // namespace adamx
