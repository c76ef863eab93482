// adamx over MPI (docs/design.md section 6): the norm reducer over a communicator, and a
// ZeRO stage-1 driver in which every rank owns a block-aligned shard of each
// group's optimizer state (m, v, v_max) and steps only that shard.
//
// The only header that includes <mpi.h>; the library itself never needs MPI.
// Per step the driver makes one reduce-scatter of the gradients (skipped by
// step_global) and one all-gather of the parameters per bucket of groups
// (consecutive groups up to a cap, 2^18 elements by default), plus one all-gather
// of s's block partials (a second one when a group's nonfinite policy is skip
// or error). docs/distributed.md counts the bytes.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/checkpoint.hpp"
#include "adamx/norm_reducer.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/overlap.hpp"
#include "adamx/shard.hpp"
#include "adamx/sharded_checkpoint.hpp"

namespace adamx {
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
/// Bitwise claim: given the same global gradient, θ, m, v, v_max, γ and h
/// equal one process's Optimizer bit for bit for any rank count. step()'s
/// mean is MPI's floating-point sum divided by the rank count; it equals one
/// process's mean when the sum is exact (always for 2 ranks: one rounding of
/// a + b whatever the order), see docs/distributed.md.
template <class Scalar, class Flavour>
class ShardedOptimizer {
  static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value ||
                    std::is_same<Scalar, Eigen::bfloat16>::value || std::is_same<Scalar, Eigen::half>::value,
                "adamx::mpi::ShardedOptimizer: float, double, bfloat16 or half parameters");

 public:
  using Local = Optimizer<Scalar, Flavour>;
  /// m, v (and v_max): the parameter type, or float for bfloat16/half.
  using StateScalar = typename Local::state_scalar_type;
  using Options = typename Local::Options;
  using Tensor = TensorRef<Scalar>;
  using ConstTensor = ConstTensorRef<Scalar>;

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

  /// Adds a group with the shapes of `tensors` (values not read) and its
  /// shard on this rank. Local; the ranks' layouts are compared at the first
  /// step, which throws MpiError on every rank if they differ.
  template <class Tensors>
  std::size_t add_group(const Tensors& tensors, const Options& options = Options{},
                        std::string group_name = {}, std::vector<std::string> tensor_names = {}) {
    Group group;
    for (const auto& tensor : tensors) {
      const ConstTensor view = tensor;
      group.sizes.push_back(view.size());
      group.shapes.push_back({view.rows(), view.cols(),
                              view.layout().row_major && view.rows() > 1 && view.cols() > 1});
    }
    if (tensor_names.empty())
      for (std::size_t j = 0; j < group.sizes.size(); ++j) tensor_names.push_back("tensor" + std::to_string(j));
    if (tensor_names.size() != group.sizes.size())
      throw std::invalid_argument("adamx::mpi::ShardedOptimizer::add_group: " +
                                  std::to_string(group.sizes.size()) + " tensors but " +
                                  std::to_string(tensor_names.size()) + " tensor names");
    Index total = 0;
    for (Index n : group.sizes) total += n;
    detail::to_int(static_cast<std::size_t>(total), "a group");
    group.shards = shard_group(group.sizes, ranks_);
    if (group_name.empty()) group_name = "group" + std::to_string(groups_.size());
    const std::size_t index =
        add_shard_group(local_, group.shards[static_cast<std::size_t>(rank_)], options, group_name, tensor_names);
    group.name = std::move(group_name);
    group.tensor_names = std::move(tensor_names);
    for (const GroupShard& shard : group.shards) {
      group.counts.push_back(static_cast<int>(shard.size()));
      group.displacements.push_back(static_cast<int>(shard.begin));
    }
    std::size_t all_tensors = group.sizes.size();
    for (const Group& other : groups_) all_tensors += other.sizes.size();
    overlap_.reserve(all_tensors);
    groups_.push_back(std::move(group));
    reducer_.reset();  // the layout changed: checked (and the buckets rebuilt) at the next step
    return index;
  }

  /// A data-parallel step: `params` are the full parameters (the same on
  /// every rank), `grads` this rank's local gradients; the shard is stepped
  /// on the mean over ranks and `params` are then the new parameters on
  /// every rank.
  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads) {
    return step_impl(params, grads, true);
  }
  /// A step on the global gradient, which every rank passes in full (only
  /// its shard is read): no reduce-scatter; bitwise one process's step.
  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step_global(const ParamGroups& params, const GradGroups& global_grads) {
    return step_impl(params, global_grads, false);
  }

  /// This rank's optimizer over its shards: state(), options, setters
  /// (which every rank must call alike), last_reports().
  const Local& local() const { return local_; }
  Local& local() { return local_; }
  using State = typename Local::State;

  /// A one-process optimizer with this one's groups (names, shapes, options;
  /// state zero): what full_state() fits, e.g. to save it as a checkpoint.
  Local make_full() const {
    Local full;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      std::vector<ConstTensor> shapes;
      for (const Shape& shape : groups_[g].shapes) {
        if (shape.row_major)
          shapes.emplace_back(Eigen::Map<const RowMajor>(nullptr, shape.rows, shape.cols));
        else
          shapes.emplace_back(static_cast<const Scalar*>(nullptr), shape.rows, shape.cols);
      }
      full.add_group(shapes, local_.options(g), groups_[g].name, groups_[g].tensor_names);
    }
    return full;
  }

  /// The whole model's state, as one process stepping it would hold it:
  /// every rank's shard of m, v, v_max all-gathered (collective). With
  /// restore_full() it moves a run between rank counts (docs/distributed.md).
  std::vector<State> full_state() {
    ensure_ready();
    std::vector<State> out;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const State& mine = local_.state(g);
      State full = mine.without_tensors();
      for (std::size_t t = 0; t < groups_[g].sizes.size(); ++t) {
        TensorState<StateScalar> ts;
        ts.name = groups_[g].tensor_names[t];
        ts.rows = groups_[g].shapes[t].rows;
        ts.cols = groups_[g].shapes[t].cols;
        ts.row_major = groups_[g].shapes[t].row_major;
        full.tensors.push_back(std::move(ts));
      }
      gather_array(g, full, [](auto& ts) -> auto& { return ts.m; });
      gather_array(g, full, [](auto& ts) -> auto& { return ts.v; });
      if (mine.options.amsgrad) gather_array(g, full, [](auto& ts) -> auto& { return ts.v_max; });
      if (keeps_step_average<Flavour>) gather_array(g, full, [](auto& ts) -> auto& { return ts.step_avg; });
      out.push_back(std::move(full));
    }
    return out;
  }

  /// Replaces every rank's shard state by its part of `states`, the whole
  /// model's (full_state() of any rank count, or a one-process optimizer's
  /// state()). Collective; the same `states` on every rank. Checked first on
  /// every rank (structure as Optimizer::restore, every difference listed,
  /// and values); any problem throws MpiError on every rank, nothing changed.
  void restore_full(const std::vector<State>& states) {
    ensure_ready();
    std::string problem;
    std::vector<State> mine;
    const std::vector<std::string> differences = make_full().structure_differences(states);
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
    local_.restore(std::move(mine));
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
      g.name = group.name;
      for (std::size_t t = 0; t < group.sizes.size(); ++t)
        g.tensors.push_back({group.tensor_names[t], group.shapes[t].rows, group.shapes[t].cols,
                             group.shapes[t].row_major});
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
  /// save's files and commits nothing. The ranks must see one file system.
  void save_sharded_checkpoint(const std::filesystem::path& prefix) {
    ensure_ready();
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
    std::string problem;
    std::vector<State> states;
    try {
      const std::string who = "adamx::mpi::ShardedOptimizer::load_sharded_checkpoint";
      // The files the manifest names (a legacy checkpoint has none).
      const adamx::detail::ShardSet set = adamx::detail::locate_shard_set(prefix, ranks_, who);
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
    for (const State& g : states)
      mine += "'" + g.name + "': t=" + std::to_string(g.t) + " gamma=" + detail::hex_bits(g.gamma) +
              " h=" + detail::hex_bits(g.h) + " options=" + options_digest(g.options) + "; ";
    const std::vector<std::string> all = detail::allgather_strings(comm_, mine);
    std::string differences;
    for (std::size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0]) differences += "\n  rank " + std::to_string(r) + ": " + all[r];
    if (!differences.empty())
      throw MpiError("adamx::mpi::ShardedOptimizer::load_sharded_checkpoint: the ranks' files under '" +
                     prefix.string() + "' are not from one save (nothing was changed):\n  rank 0: " + all[0] +
                     differences);
    local_.restore(std::move(states));
  }

 private:
  using Index = Eigen::Index;

  struct Shape {
    Index rows, cols;
    bool row_major;
  };
  struct Group {
    std::string name;
    std::vector<std::string> tensor_names;
    std::vector<Index> sizes;
    std::vector<Shape> shapes;
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
      for (std::size_t t = 0; t < groups_[g].sizes.size(); ++t)
        out << (t == 0 ? "" : ", ") << groups_[g].tensor_names[t] << ":" << groups_[g].sizes[t];
      out << "} amsgrad=" << o.amsgrad << " nonfinite=" << static_cast<int>(o.nonfinite);
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

  // All-gathers one array (m, v, v_max or step_avg, chosen by `field`) of
  // group g into the full group state `full`.
  template <class Field>
  void gather_array(std::size_t g, State& full, Field field) {
    const Group& group = groups_[g];
    const GroupShard& shard = group.shards[static_cast<std::size_t>(rank_)];
    const State& mine = local_.state(g);
    std::vector<StateScalar> whole(static_cast<std::size_t>(group.shards.back().end));
    Index at = shard.begin;
    for (std::size_t k = 0; k < shard.pieces.size(); ++k) {
      const auto& array = field(mine.tensors[k]);
      std::copy(array.data(), array.data() + array.size(), whole.begin() + at);
      at += array.size();
    }
    detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, whole.data(), group.counts.data(),
                                 group.displacements.data(), detail::datatype<StateScalar>(), comm_),
                  "MPI_Allgatherv (state)");
    at = 0;
    for (std::size_t t = 0; t < group.sizes.size(); ++t) {
      auto& array = field(full.tensors[t]);
      array = Eigen::Map<const typename TensorState<StateScalar>::Array>(whole.data() + at, group.sizes[t]);
      at += group.sizes[t];
    }
  }

  // This rank's part of group g's whole state (whose structure was checked).
  State slice(std::size_t g, const State& whole) const {
    const GroupShard& shard = groups_[g].shards[static_cast<std::size_t>(rank_)];
    const State& mine = local_.state(g);
    State out = whole.without_tensors();
    for (std::size_t k = 0; k < mine.tensors.size(); ++k) {
      TensorState<StateScalar> ts;
      ts.name = mine.tensors[k].name;
      ts.rows = mine.tensors[k].rows;
      ts.cols = 1;
      if (k < shard.pieces.size()) {
        const ShardPiece& piece = shard.pieces[k];
        const TensorState<StateScalar>& from = whole.tensors[piece.tensor];
        ts.m = from.m.segment(piece.start, piece.length);
        ts.v = from.v.segment(piece.start, piece.length);
        if (from.v_max.size() != 0) ts.v_max = from.v_max.segment(piece.start, piece.length);
        if (from.step_avg.size() != 0) ts.step_avg = from.step_avg.segment(piece.start, piece.length);
      } else {  // the empty shard's one empty tensor
        ts.m.resize(0);
        ts.v.resize(0);
        if (whole.options.amsgrad) ts.v_max.resize(0);
        if (keeps_step_average<Flavour>) ts.step_avg.resize(0);
      }
      out.tensors.push_back(std::move(ts));
    }
    return out;
  }

  // "" if `tensors` (one group's) have the group's sizes, else the problem.
  template <class List>
  std::string size_problem(std::size_t g, const List& tensors, const char* role) const {
    const Group& group = groups_[g];
    std::size_t j = 0;
    for (const auto& tensor : tensors) {
      const ConstTensor view = tensor;
      if (j < group.sizes.size() && view.size() != group.sizes[j])
        return std::string("adamx::mpi::ShardedOptimizer::step: rank ") + std::to_string(rank_) + ": the " +
               role + " '" + group.name + "." + group.tensor_names[j] + "' has " +
               std::to_string(view.size()) + " elements, the group was created with " +
               std::to_string(group.sizes[j]) + "; nothing was changed";
      ++j;
    }
    if (j != group.sizes.size())
      return std::string("adamx::mpi::ShardedOptimizer::step: rank ") + std::to_string(rank_) + ": group '" +
             group.name + "' got " + std::to_string(j) + " " + role + " tensors, it has " +
             std::to_string(group.sizes.size()) + "; nothing was changed";
    return {};
  }

  // "" if the full tensors follow the memory rule (overlap.hpp), else the
  // problem. Checked on the full tensors, not only this rank's shards: the
  // all-gather writes whole parameters, and the step packs whole gradients.
  template <class ParamGroups, class GradGroups>
  std::string memory_problem(const ParamGroups& params, const GradGroups& grads) {
    overlap_.collect<Scalar>(params, grads, groups_.size(), [&](std::size_t g) { return groups_[g].sizes.size(); });
    const adamx::detail::MemoryConflict conflict = overlap_.find();
    if (!conflict) return {};
    return "adamx::mpi::ShardedOptimizer::step: rank " + std::to_string(rank_) + ": " +
           adamx::detail::conflict_message(conflict, [&](const adamx::detail::TensorSpan& span) {
             return groups_[span.group].name + "." + groups_[span.group].tensor_names[span.tensor];
           });
  }

  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step_impl(const ParamGroups& params, const GradGroups& grads,
                                           bool reduce_scatter) {
    ensure_ready();
    // Input is checked on every rank and the verdict shared before any
    // collective that moves data, so a refusal cannot leave a rank waiting.
    std::string problem;
    const auto n_params = static_cast<std::size_t>(std::distance(std::begin(params), std::end(params)));
    const auto n_grads = static_cast<std::size_t>(std::distance(std::begin(grads), std::end(grads)));
    if (n_params != groups_.size() || n_grads != groups_.size()) {
      problem = "adamx::mpi::ShardedOptimizer::step: rank " + std::to_string(rank_) + ": got " +
                std::to_string(n_params) + " parameter groups and " + std::to_string(n_grads) +
                " gradient groups, the optimizer has " + std::to_string(groups_.size()) +
                "; nothing was changed";
    } else {
      auto p = std::begin(params);
      auto q = std::begin(grads);
      for (std::size_t g = 0; g < groups_.size() && problem.empty(); ++g, ++p, ++q) {
        problem = size_problem(g, *p, "parameter");
        if (problem.empty()) problem = size_problem(g, *q, "gradient");
      }
      if (problem.empty()) problem = memory_problem(params, grads);
    }
    detail::agree(comm_, problem);

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

    const std::vector<StepReport>& reports = local_.step(param_views_, grad_views_, *reducer_);

    // Every rank's new shards of θ to every rank: one all-gather per bucket.
    p = std::begin(params);
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

template <class Scalar>
using AdamX = ShardedOptimizer<Scalar, flavour::AdamX>;
template <class Scalar>
using Adam = ShardedOptimizer<Scalar, flavour::Adam>;
template <class Scalar>
using AdamW = ShardedOptimizer<Scalar, flavour::AdamW>;

}  // namespace mpi
}  // namespace adamx
