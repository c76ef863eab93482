// Sharded checkpoints (docs/design.md section 6): one file per rank, "<prefix>.<rank>-of-<ranks>",
// holding that rank's shard of every group's state, and the conversions that
// move a run between cluster sizes.
//
// A shard file is a CRC-checked shard record — the rank, the rank count, the
// block size and the whole model's layout (group and tensor names, shapes,
// every rank's shard boundaries) — followed by an ordinary checkpoint
// (checkpoint.hpp) of the rank's shard optimizer, whose tensors are the
// shard's pieces ("weight[4096:8192]", shard.hpp). docs/checkpoints.md has
// the bytes. Loading checks the record against the loading run's layout and
// lists every difference, then loads the checkpoint with all of its checks.
//
// reshard_checkpoint (N files into M), merge_sharded_checkpoint (N files into
// one ordinary checkpoint) and split_checkpoint (one ordinary checkpoint into
// M files) stream: they verify every input's checksums, then copy each
// output's byte ranges straight from the inputs, so they hold a few KiB of
// state at a time however large the model; nothing is gathered. A sharded
// output set is published all at once by its manifest (shard_manifest.hpp):
// until the manifest's rename, readers see the previous set. No MPI here: adamx/mpi.hpp saves and loads through this
// header collectively, and tools/adamx_reshard.cpp is the command line.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/checkpoint.hpp"
#include "adamx/crc32.hpp"
#include "adamx/errors.hpp"
#include "adamx/layout.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/optimizers.hpp"
#include "adamx/options.hpp"
#include "adamx/shard.hpp"
#include "adamx/shard_manifest.hpp"

ADAMX_NAMESPACE_BEGIN

/// The shard record's format version.
inline constexpr std::uint32_t kShardRecordVersion = 1;

/// How a model's optimizer state is cut across ranks: what every shard file
/// records, and what a loading run must match.
struct ShardLayout {
  using Tensor = TensorShape;
  /// A group's names and shapes (layout.hpp) and where its shards start.
  struct Group : GroupLayout {
    /// ranks + 1 offsets into the group's tensors flattened one after the
    /// other: rank r holds [boundaries[r], boundaries[r + 1]).
    std::vector<Eigen::Index> boundaries;
  };
  int ranks = 1;
  std::int64_t block = detail::kNormBlock;  ///< the s-block the boundaries are aligned to
  std::vector<Group> groups;
};

/// A group's layout as shard_group cuts it for `ranks`.
inline ShardLayout::Group make_shard_layout_group(std::string name, std::vector<ShardLayout::Tensor> tensors,
                                                  int ranks) {
  ShardLayout::Group group;
  group.name = std::move(name);
  group.tensors = std::move(tensors);
  for (const GroupShard& shard : shard_group(group.sizes(), ranks)) group.boundaries.push_back(shard.begin);
  group.boundaries.push_back(group.size());
  return group;
}

/// The pieces of tensors rank `rank` holds of `group`: its range of the
/// flattened group cut at tensor boundaries (what shard_group's pieces are).
inline std::vector<ShardPiece> layout_pieces(const ShardLayout::Group& group, int rank) {
  const Eigen::Index begin = group.boundaries.at(static_cast<std::size_t>(rank));
  const Eigen::Index end = group.boundaries.at(static_cast<std::size_t>(rank) + 1);
  std::vector<ShardPiece> pieces;
  Eigen::Index offset = 0;
  for (std::size_t t = 0; t < group.tensors.size(); ++t) {
    const Eigen::Index n = group.tensors[t].size();
    const Eigen::Index lo = std::max(begin, offset);
    const Eigen::Index hi = std::min(end, offset + n);
    if (lo < hi) pieces.push_back({t, lo - offset, hi - lo});
    offset += n;
  }
  return pieces;
}

/// "<prefix>.<rank>-of-<ranks>": the name of rank `rank`'s file in a sharded
/// checkpoint of an older adamx (one without a manifest, still loaded), and
/// a natural name for save_shard_checkpoint's single file. The files of a
/// committed checkpoint are shard_checkpoint_files(prefix, ranks).
inline std::filesystem::path shard_checkpoint_path(const std::filesystem::path& prefix, int rank, int ranks) {
  std::filesystem::path path = prefix;
  path += "." + std::to_string(rank) + "-of-" + std::to_string(ranks);
  return path;
}

/// The rank counts N of the sharded checkpoints under `prefix`, in
/// increasing order: those with a manifest "<prefix>.manifest-of-N" (a
/// committed save) and legacy ones without, "<prefix>.0-of-N". An
/// uncommitted save's files are not counted.
inline std::vector<int> find_sharded_checkpoints(const std::filesystem::path& prefix) {
  return detail::find_shard_sets(prefix);
}

/// Every way in which `found` (a file's layout) differs from `expected` (the
/// loading run's), in words; empty when they are the same.
inline std::vector<std::string> shard_layout_differences(const ShardLayout& expected, const ShardLayout& found) {
  std::vector<std::string> out;
  if (found.ranks != expected.ranks)
    out.push_back("the checkpoint holds the shards of " + std::to_string(found.ranks) + " rank(s), this run has " +
                  std::to_string(expected.ranks) +
                  " (re-shard it first: adamx::reshard_checkpoint or the adamx_reshard tool)");
  if (found.block != expected.block)
    out.push_back("the checkpoint's shards are aligned to blocks of " + std::to_string(found.block) +
                  " elements, this adamx uses " + std::to_string(expected.block));
  if (found.groups.size() != expected.groups.size())
    out.push_back("the checkpoint has " + std::to_string(found.groups.size()) + " group(s), this run has " +
                  std::to_string(expected.groups.size()));
  for (std::size_t g = 0; g < std::min(found.groups.size(), expected.groups.size()); ++g) {
    const ShardLayout::Group& e = expected.groups[g];
    const ShardLayout::Group& f = found.groups[g];
    const std::string where = "group " + std::to_string(g) + " ('" + e.name + "')";
    if (f.name != e.name) out.push_back(where + " is named '" + f.name + "' in the checkpoint");
    if (f.tensors.size() != e.tensors.size()) {
      out.push_back(where + " has " + std::to_string(f.tensors.size()) + " tensor(s) in the checkpoint, " +
                    std::to_string(e.tensors.size()) + " in this run");
      continue;
    }
    bool same_sizes = true;
    for (std::size_t t = 0; t < e.tensors.size(); ++t) {
      const ShardLayout::Tensor& et = e.tensors[t];
      const ShardLayout::Tensor& ft = f.tensors[t];
      if (ft.name != et.name)
        out.push_back(where + ": tensor " + std::to_string(t) + " is '" + ft.name + "' in the checkpoint, '" +
                      et.name + "' in this run");
      if (ft.rows != et.rows || ft.cols != et.cols || ft.row_major != et.row_major)
        out.push_back(where + ": tensor '" + et.name + "' is " + ft.describe() + " in the checkpoint, " +
                      et.describe() + " in this run");
      same_sizes = same_sizes && ft.size() == et.size();
    }
    if (same_sizes && found.ranks == expected.ranks && f.boundaries != e.boundaries) {
      std::string cut;
      for (std::size_t r = 0; r + 1 < f.boundaries.size(); ++r)
        cut += (r == 0 ? "" : ", ") + std::to_string(f.boundaries[r]) + ":" + std::to_string(f.boundaries[r + 1]);
      out.push_back(where + " is cut into shards differently in the checkpoint (" + cut + ")");
    }
  }
  return out;
}

namespace detail {

inline constexpr char kShardMagic[8] = {'A', 'D', 'A', 'M', 'X', 'S', 'H', 'D'};

inline std::string encode_shard_record(const ShardLayout& layout, int rank) {
  std::string body;
  put_u32(body, static_cast<std::uint32_t>(rank));
  put_u32(body, static_cast<std::uint32_t>(layout.ranks));
  put_i64(body, layout.block);
  put_u32(body, static_cast<std::uint32_t>(layout.groups.size()));
  for (const ShardLayout::Group& group : layout.groups) {
    put_string(body, group.name);
    put_u32(body, static_cast<std::uint32_t>(group.tensors.size()));
    for (const ShardLayout::Tensor& tensor : group.tensors) {
      put_string(body, tensor.name);
      put_i64(body, tensor.rows);
      put_i64(body, tensor.cols);
      put_u8(body, tensor.row_major ? 1 : 0);
    }
    for (const Eigen::Index boundary : group.boundaries) put_i64(body, boundary);
  }
  std::ostringstream out;
  Crc32 crc;
  write_checked_block(out, crc, kShardMagic, kShardRecordVersion, body);
  return out.str();
}

struct ShardRecord {
  int rank = 0;
  ShardLayout layout;
  std::uint64_t bytes = 0;  ///< the record's length in the file; the checkpoint follows
};

// Reads and checks a shard record (magic, version, CRC, then every field).
inline ShardRecord read_shard_record(std::istream& in) {
  CheckpointInput input(in);
  char magic[sizeof kShardMagic];
  input.read(magic, sizeof magic, "the magic bytes");
  if (std::memcmp(magic, kCheckpointMagic, sizeof magic) == 0)
    checkpoint_failure("this is an ordinary checkpoint of a whole model, not one rank's shard "
                       "(adamx::split_checkpoint cuts it into shards)");
  if (std::memcmp(magic, kShardMagic, sizeof magic) != 0)
    checkpoint_failure("bad magic bytes: this is not an adamx shard checkpoint");
  const std::string body = read_checked_block(input, {kShardRecordVersion}, "shard record version", "shard record");

  HeaderReader reader(body, sizeof kShardMagic + 8);
  ShardRecord record;
  const std::uint32_t rank = reader.u32("rank");
  const std::uint32_t ranks = reader.u32("rank count");
  if (ranks < 1 || ranks > static_cast<std::uint32_t>(INT32_MAX) || rank >= ranks)
    reader.malformed("rank " + std::to_string(rank) + " of " + std::to_string(ranks));
  record.rank = static_cast<int>(rank);
  record.layout.ranks = static_cast<int>(ranks);
  record.layout.block = reader.i64("block size");
  if (record.layout.block < 1) reader.malformed("block size " + std::to_string(record.layout.block));
  const std::uint32_t groups = reader.u32("group count");
  for (std::uint32_t g = 0; g < groups; ++g) {
    ShardLayout::Group group;
    group.name = reader.string("group name");
    const std::uint32_t tensors = reader.u32("tensor count");
    Eigen::Index total = 0;
    for (std::uint32_t t = 0; t < tensors; ++t) {
      ShardLayout::Tensor tensor;
      tensor.name = reader.string("tensor name");
      tensor.rows = static_cast<Eigen::Index>(reader.i64("rows"));
      tensor.cols = static_cast<Eigen::Index>(reader.i64("cols"));
      tensor.row_major = reader.boolean("row_major");
      if (tensor.rows < 0 || tensor.cols < 0 || (tensor.cols > 0 && tensor.rows > INT64_MAX / tensor.cols))
        reader.malformed("tensor '" + group.name + "." + tensor.name + "' has an impossible shape");
      // The group's total must be representable too (group.size() adds).
      if (tensor.size() > INT64_MAX - total)
        reader.malformed("group '" + group.name + "' has more elements than a 64-bit count holds");
      total += tensor.size();
      group.tensors.push_back(std::move(tensor));
    }
    Eigen::Index previous = 0;
    for (std::uint32_t r = 0; r <= ranks; ++r) {
      const Eigen::Index boundary = static_cast<Eigen::Index>(reader.i64("shard boundary"));
      if (boundary < previous || (r == 0 && boundary != 0))
        reader.malformed("the shard boundaries of group '" + group.name + "' are not increasing from 0");
      group.boundaries.push_back(boundary);
      previous = boundary;
    }
    if (previous != total)
      reader.malformed("the shards of group '" + group.name + "' end at element " + std::to_string(previous) +
                       " of " + std::to_string(total));
    record.layout.groups.push_back(std::move(group));
  }
  if (!reader.at_end()) reader.malformed("unexpected bytes after the last group");
  record.bytes = input.offset();
  return record;
}

// The tensors a shard optimizer has for `group` on `rank`, as state (no
// arrays): what add_shard_group creates.
template <class State>
void set_shard_tensors(State& state, const ShardLayout::Group& group, int rank) {
  state.tensors.clear();
  for (const ShardPiece& piece : layout_pieces(group, rank)) {
    typename decltype(state.tensors)::value_type tensor;
    tensor.name = shard_piece_name(group.tensors[piece.tensor].name, piece.start, piece.length);
    tensor.rows = piece.length;
    tensor.cols = 1;
    state.tensors.push_back(std::move(tensor));
  }
  if (state.tensors.empty()) {
    typename decltype(state.tensors)::value_type tensor;
    tensor.name = kEmptyShardName;
    tensor.rows = 0;
    tensor.cols = 1;
    state.tensors.push_back(std::move(tensor));
  }
}

// "" if `optimizer`'s groups are the shard `layout` gives `rank`, else the
// first difference.
template <class Scalar, class Flavour>
std::string shard_structure_problem(const Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout,
                                    int rank) {
  using State = typename Optimizer<Scalar, Flavour>::State;
  if (rank < 0 || rank >= layout.ranks)
    return "rank " + std::to_string(rank) + " is outside the layout's " + std::to_string(layout.ranks) + " rank(s)";
  std::vector<State> expected(layout.groups.size());
  for (std::size_t g = 0; g < layout.groups.size(); ++g) {
    expected[g].name = layout.groups[g].name;
    set_shard_tensors(expected[g], layout.groups[g], rank);
  }
  if (optimizer.num_groups() != expected.size())
    return "the optimizer has " + std::to_string(optimizer.num_groups()) + " group(s), the layout " +
           std::to_string(expected.size());
  for (std::size_t g = 0; g < expected.size(); ++g) {
    const GroupLayout& mine = optimizer.layout(g);
    if (mine.name != expected[g].name) return "group " + std::to_string(g) + " is '" + mine.name + "', the layout's '" + expected[g].name + "'";
    if (mine.tensors.size() != expected[g].tensors.size())
      return "group '" + mine.name + "' has " + std::to_string(mine.tensors.size()) + " tensor(s), rank " +
             std::to_string(rank) + "'s shard of it " + std::to_string(expected[g].tensors.size());
    for (std::size_t t = 0; t < mine.tensors.size(); ++t)
      if (mine.tensors[t].name != expected[g].tensors[t].name || mine.tensors[t].size() != expected[g].tensors[t].size())
        return "group '" + mine.name + "': tensor '" + mine.tensors[t].name + "' (" +
               std::to_string(mine.tensors[t].size()) + " elements) is not rank " + std::to_string(rank) +
               "'s piece '" + expected[g].tensors[t].name + "' (" + std::to_string(expected[g].tensors[t].size()) +
               " elements)";
  }
  return {};
}

// Reads and checks a shard file's bytes from `in` for `optimizer` (rank
// `rank` of `layout`) without changing it; restore() of the result cannot
// fail.
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> read_shard_checkpoint(
    const Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank, std::istream& in) {
  const ShardRecord record = read_shard_record(in);
  std::vector<std::string> differences = shard_layout_differences(layout, record.layout);
  if (record.rank != rank && record.layout.ranks == layout.ranks)
    differences.push_back("the file holds rank " + std::to_string(record.rank) + "'s shard, this is rank " +
                          std::to_string(rank));
  if (!differences.empty()) {
    std::string message = "the sharded checkpoint does not match this run's layout:";
    for (const std::string& difference : differences) message += "\n  - " + difference;
    checkpoint_failure(message);
  }
  return read_checkpoint(optimizer, in, record.bytes);
}

// The same from a file, which must hold exactly one shard checkpoint.
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> read_shard_checkpoint(
    const Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank,
    const std::filesystem::path& path) {
  std::ifstream in;
  open_for_reading(in, path, "adamx::load_shard_checkpoint");
  try {
    auto states = read_shard_checkpoint(optimizer, layout, rank, in);
    if (in.peek() != std::char_traits<char>::eof()) checkpoint_failure("unexpected bytes after the checkpoint's checksum");
    return states;
  } catch (const CheckpointError& error) {
    throw CheckpointError(std::string(error.what()) + " (file '" + path.string() + "')");
  }
}

}  // namespace detail

/// Writes rank `rank`'s shard checkpoint to a stream (what
/// save_shard_checkpoint writes to its file).
template <class Scalar, class Flavour>
void save_shard_checkpoint(const Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank,
                           std::ostream& out) {
  const std::string problem = detail::shard_structure_problem(optimizer, layout, rank);
  if (!problem.empty()) throw std::invalid_argument("adamx::save_shard_checkpoint: " + problem);
  const std::string record = detail::encode_shard_record(layout, rank);
  out.write(record.data(), static_cast<std::streamsize>(record.size()));
  save_checkpoint(optimizer, out);
}

/// Saves `optimizer`, a process's optimizer over its shards (add_shard_group
/// in group order), as rank `rank`'s file of a sharded checkpoint of
/// `layout`: the shard record, then the optimizer's checkpoint, written to
/// `path` + ".partial" and renamed over `path`. Throws std::invalid_argument
/// if the optimizer's groups are not that rank's shards of `layout`, and
/// CheckpointError if writing fails; the optimizer is never changed.
template <class Scalar, class Flavour>
void save_shard_checkpoint(const Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank,
                           const std::filesystem::path& path) {
  const std::string problem = detail::shard_structure_problem(optimizer, layout, rank);
  if (!problem.empty()) throw std::invalid_argument("adamx::save_shard_checkpoint: " + problem);
  detail::save_file_atomically(path, "adamx::save_shard_checkpoint",
                               [&](std::ostream& out) { save_shard_checkpoint(optimizer, layout, rank, out); });
}

/// Loads rank `rank`'s file of a sharded checkpoint into `optimizer` (its
/// shards of `layout`). The record must match `layout` — every difference is
/// listed — and the checkpoint passes all of load_checkpoint's checks; on any
/// problem CheckpointError says what and the optimizer is unchanged.
template <class Scalar, class Flavour>
void load_shard_checkpoint(Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank,
                           const std::filesystem::path& path) {
  optimizer.restore(detail::read_shard_checkpoint(optimizer, layout, rank, path));
}

/// The same from a stream, reading exactly the shard checkpoint's bytes.
template <class Scalar, class Flavour>
void load_shard_checkpoint(Optimizer<Scalar, Flavour>& optimizer, const ShardLayout& layout, int rank,
                           std::istream& in) {
  optimizer.restore(detail::read_shard_checkpoint(optimizer, layout, rank, in));
}

namespace detail {

// Which optimizer and scalar types a checkpoint holds.
struct CheckpointKind {
  std::string optimizer;
  std::uint8_t parameter = 0;
  std::uint8_t state = 0;
};

inline CheckpointKind read_checkpoint_kind(std::istream& in, std::uint64_t start) {
  CheckpointInput input(in, start);
  const std::string header = read_header_bytes(input);
  HeaderReader reader(header, static_cast<std::size_t>(start) + kCheckpointPreamble);
  CheckpointKind kind;
  kind.optimizer = reader.string("optimizer name");
  kind.parameter = reader.u8("parameter type");
  kind.state = reader.u8("state type");
  return kind;
}

template <class T>
struct Type {
  using type = T;
};

// Calls action(Type<Scalar>, Type<Flavour>) for the optimizer `kind` names:
// float or double parameters with state of the same type, or bfloat16 or
// half parameters with float state (what adamx::mpi shards).
template <class Action>
void with_checkpoint_type(const CheckpointKind& kind, const std::string& who, Action&& action) {
  const auto with_flavour = [&](auto scalar) {
#define ADAMX_IF_NAMED(Name) \
  if (kind.optimizer == flavour::Name::name) return action(scalar, Type<flavour::Name>{});
    ADAMX_FOR_EACH_OPTIMIZER(ADAMX_IF_NAMED)
#undef ADAMX_IF_NAMED
    throw CheckpointError(who + ": unknown optimizer '" + kind.optimizer + "'");
  };
  if (kind.parameter == scalar_code<float>::value && kind.state == scalar_code<float>::value)
    return with_flavour(Type<float>{});
  if (kind.parameter == scalar_code<double>::value && kind.state == scalar_code<double>::value)
    return with_flavour(Type<double>{});
  if (kind.parameter == scalar_code<Eigen::bfloat16>::value && kind.state == scalar_code<float>::value)
    return with_flavour(Type<Eigen::bfloat16>{});
  if (kind.parameter == scalar_code<Eigen::half>::value && kind.state == scalar_code<float>::value)
    return with_flavour(Type<Eigen::half>{});
  throw CheckpointError(who + ": the checkpoint holds " + describe_scalar(kind.parameter) + " parameters with " +
                        describe_scalar(kind.state) + " state, which no adamx optimizer has");
}

// Re-cuts checkpoint files: `from` (one ordinary checkpoint, or the N files
// of a sharded one) into `to` (likewise), streaming. See the top of the file.
template <class Scalar, class Flavour>
class Converter {
  using Opt = Optimizer<Scalar, Flavour>;
  using State = typename Opt::State;
  using StateScalar = typename Opt::state_scalar_type;
  using Index = Eigen::Index;
  static constexpr std::uint64_t kElement = sizeof(StateScalar);
  // The rule's state slots (the Adam family's m, v, v_max): their order in a checkpoint
  static constexpr int kFields = Flavour::Rule::kSlots;

 public:
  explicit Converter(std::string who) : who_(std::move(who)) {}

  // Reads and verifies the inputs: every file's record, checksums and values,
  // and that they are the shards of one model at one step.
  void scan(const std::vector<std::filesystem::path>& from, bool sharded) {
    inputs_.clear();
    for (std::size_t i = 0; i < from.size(); ++i) {
      Input input;
      input.path = from[i];
      std::ifstream in;
      open_for_reading(in, input.path, who_);
      try {
        scan_one(in, input, static_cast<int>(i), static_cast<int>(from.size()), sharded);
      } catch (const CheckpointError& error) {
        fail(std::string(error.what()) + " (file '" + input.path.string() + "')");
      }
      inputs_.push_back(std::move(input));
    }
  }

  // Writes the model as `to`: M shard files when sharded, each complete and
  // on disk under exactly its name (names no reader looks at until a
  // manifest commits them; on failure all are removed), else one ordinary
  // checkpoint, via ".partial" and a rename.
  void write(const std::vector<std::filesystem::path>& to, bool sharded) {
    ShardLayout out = model_;
    out.ranks = sharded ? static_cast<int>(to.size()) : 1;
    for (ShardLayout::Group& group : out.groups)
      group = make_shard_layout_group(group.name, group.tensors, out.ranks);
    if (!sharded) {
      save_file_atomically(to.at(0), who_, [&](std::ostream& stream) { write_one(stream, out, 0, false); });
      return;
    }
    std::size_t written = 0;
    try {
      for (; written < to.size(); ++written)
        write_synced_file(to[written], who_, [&](std::ostream& stream) {
          write_one(stream, out, static_cast<int>(written), true);
        });
    } catch (...) {
      for (std::size_t o = 0; o < written; ++o) {
        std::error_code ignored;
        std::filesystem::remove(to[o], ignored);
      }
      throw;
    }
  }

 private:
  struct Piece {
    Index flat_begin = 0;
    Index length = 0;
    std::uint64_t array[kFields] = {};  // byte offset of each array in the file
  };
  struct Input {
    std::filesystem::path path;
    std::vector<std::vector<Piece>> groups;
  };

  [[noreturn]] void fail(const std::string& what) const { throw CheckpointError(who_ + ": " + what); }

  static bool has_field(const State& group, int field) {
    return Opt::keeps_slot(group.options, field);
  }

  // The group scalars that every input must share, as bytes.
  static std::string scalars_of(const State& g) {
    std::string out;
    put_string(out, g.name);
    put_options(out, g.options);
    put_i64(out, g.t);
    put_group_scalars(out, g.scalars());
    return out;
  }

  void scan_one(std::istream& in, Input& input, int rank, int ranks, bool sharded) {
    std::uint64_t start = 0;
    ShardLayout layout;
    if (sharded) {
      ShardRecord record = read_shard_record(in);
      if (record.rank != rank || record.layout.ranks != ranks)
        checkpoint_failure("the file holds rank " + std::to_string(record.rank) + " of " +
                           std::to_string(record.layout.ranks) + ", expected rank " + std::to_string(rank) + " of " +
                           std::to_string(ranks));
      layout = std::move(record.layout);
      start = record.bytes;
    }
    CheckpointInput reader(in, start);
    std::vector<State> states = read_header<Scalar, Flavour>(reader);
    check_header_values<Scalar, Flavour>(states);  // what loading checks, so no bad value is copied on
    if (!sharded) {  // an ordinary checkpoint is its model's only shard
      for (const State& g : states) {
        layout.groups.push_back(make_shard_layout_group(g.name, g.layout().tensors, 1));
      }
    }
    if (rank == 0) {
      model_ = layout;
      scalars_.clear();
      for (const State& g : states) scalars_.push_back(scalars_of(g));
      group_states_ = states;
    } else {
      const std::vector<std::string> differences = shard_layout_differences(model_, layout);
      if (!differences.empty()) {
        std::string message = "not a shard of the same model as '" + inputs_[0].path.string() + "':";
        for (const std::string& difference : differences) message += "\n  - " + difference;
        checkpoint_failure(message);
      }
    }
    // The checkpoint's groups must be this rank's pieces of the layout.
    if (states.size() != layout.groups.size())
      checkpoint_failure("the checkpoint has " + std::to_string(states.size()) + " group(s), its shard record " +
                         std::to_string(layout.groups.size()));
    for (std::size_t g = 0; g < states.size(); ++g) {
      State expected;
      if (sharded) set_shard_tensors(expected, layout.groups[g], rank);
      const auto& tensors = states[g].tensors;
      if (states[g].name != layout.groups[g].name)
        checkpoint_failure("group " + std::to_string(g) + " is '" + states[g].name + "' in the checkpoint, '" +
                           layout.groups[g].name + "' in its shard record");
      if (sharded) {
        bool same = tensors.size() == expected.tensors.size();
        for (std::size_t t = 0; same && t < tensors.size(); ++t)
          same = tensors[t].name == expected.tensors[t].name && tensors[t].size() == expected.tensors[t].size();
        if (!same)
          checkpoint_failure("the tensors of group '" + states[g].name +
                             "' are not the pieces its shard record gives rank " + std::to_string(rank));
      }
      if (rank > 0 && scalars_of(states[g]) != scalars_[g])
        checkpoint_failure("group '" + states[g].name + "' has other options, step count (t = " +
                           std::to_string(states[g].t) + "), gamma or h than in '" + inputs_[0].path.string() +
                           "' (t = " + std::to_string(group_states_[g].t) + "): the files are not from one save");
    }
    // Where each piece's arrays lie, then the checksum over all of them.
    std::uint64_t at = reader.offset();
    for (std::size_t g = 0; g < states.size(); ++g) {
      input.groups.emplace_back();
      const std::vector<ShardPiece> pieces = layout_pieces(layout.groups[g], sharded ? rank : 0);
      const std::vector<Index> tensor_offsets = offsets_of_tensors(layout.groups[g]);
      // An ordinary checkpoint also stores its zero-sized tensors' (empty)
      // arrays, and a shard file its empty shard's: neither takes bytes.
      for (const ShardPiece& piece : pieces) {
        Piece located;
        located.flat_begin = tensor_offsets[piece.tensor] + piece.start;
        located.length = piece.length;
        // A crafted file could claim sizes whose byte offsets overflow.
        if (static_cast<std::uint64_t>(piece.length) > (UINT64_MAX - at) / (kFields * kElement))
          checkpoint_failure("implausible tensor sizes in group '" + states[g].name + "'");
        for (int field = 0; field < kFields; ++field) {
          located.array[field] = at;
          if (has_field(states[g], field)) at += static_cast<std::uint64_t>(piece.length) * kElement;
        }
        input.groups.back().push_back(located);
      }
    }
    reader.skip(at - reader.offset(), "the state arrays");
    const std::uint32_t computed = reader.crc();
    const std::uint32_t stored = reader.u32("the checksum");
    if (kVerifyChecksums && stored != computed)
      checkpoint_failure("checksum mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) +
                         "): the file is corrupt");
    if (in.peek() != std::char_traits<char>::eof()) checkpoint_failure("unexpected bytes after the checkpoint's checksum");
  }

  // Where each tensor of `group` starts in the group flattened.
  static std::vector<Index> offsets_of_tensors(const ShardLayout::Group& group) {
    std::vector<Index> offsets;
    Index at = 0;
    for (const auto& tensor : group.tensors) {
      offsets.push_back(at);
      at += tensor.size();
    }
    return offsets;
  }

  // Copies elements [lo, lo + length) of group g's flattened `field` from the
  // inputs that hold them.
  void copy_range(std::size_t g, int field, Index lo, Index length, std::ostream& out, Crc32& crc) {
    const Index hi = lo + length;
    std::vector<char>& buffer = copy_buffer_;
    for (std::size_t i = 0; i < inputs_.size(); ++i)
      for (const Piece& piece : inputs_[i].groups[g]) {
        const Index from = std::max(lo, piece.flat_begin);
        const Index to = std::min(hi, piece.flat_begin + piece.length);
        if (from >= to) continue;
        std::ifstream& in = open_input(i);
        in.seekg(static_cast<std::streamoff>(piece.array[field] +
                                             static_cast<std::uint64_t>(from - piece.flat_begin) * kElement));
        std::uint64_t left = static_cast<std::uint64_t>(to - from) * kElement;
        while (left > 0) {
          const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
          errno = 0;
          in.read(buffer.data(), static_cast<std::streamsize>(count));
          const int error = errno;
          if (in.bad()) fail(file_error("reading", inputs_[i].path, error));
          if (static_cast<std::size_t>(in.gcount()) != count)
            fail("'" + inputs_[i].path.string() + "' changed while it was being read");
          crc.update(buffer.data(), count);
          out.write(buffer.data(), static_cast<std::streamsize>(count));
          left -= count;
        }
      }
  }

  // One input open at a time, so that any number of shards can be read.
  std::ifstream& open_input(std::size_t i) {
    if (open_index_ != i) {
      open_.close();
      open_.clear();
      errno = 0;
      open_.open(inputs_[i].path, std::ios::binary);
      if (!open_) fail("cannot reopen '" + inputs_[i].path.string() + "': " + os_reason(errno));
      open_index_ = i;
    }
    open_.clear();
    return open_;
  }

  void write_one(std::ostream& out, const ShardLayout& layout, int rank, bool sharded) {
    if (sharded) {
      const std::string record = encode_shard_record(layout, rank);
      out.write(record.data(), static_cast<std::streamsize>(record.size()));
    }
    std::vector<State> states = group_states_;
    for (std::size_t g = 0; g < states.size(); ++g) {
      if (sharded) {
        set_shard_tensors(states[g], layout.groups[g], rank);
        continue;
      }
      states[g].tensors.clear();
      for (const ShardLayout::Tensor& tensor : layout.groups[g].tensors) {
        typename State::Tensor ts;
        ts.name = tensor.name;
        ts.rows = tensor.rows;
        ts.cols = tensor.cols;
        ts.row_major = tensor.row_major;
        states[g].tensors.push_back(std::move(ts));
      }
    }
    Crc32 crc;
    write_checked_block(out, crc, kCheckpointMagic, kCheckpointVersion, encode_header<Scalar, Flavour>(states));
    for (std::size_t g = 0; g < states.size(); ++g) {
      const std::vector<Index> tensor_offsets = offsets_of_tensors(layout.groups[g]);
      std::vector<ShardPiece> pieces;
      if (sharded) {
        pieces = layout_pieces(layout.groups[g], rank);
      } else {  // every tensor whole, the empty ones too (no bytes)
        for (std::size_t t = 0; t < layout.groups[g].tensors.size(); ++t)
          pieces.push_back({t, 0, layout.groups[g].tensors[t].size()});
      }
      for (const ShardPiece& piece : pieces)
        for (int field = 0; field < kFields; ++field)
          if (has_field(states[g], field))
            copy_range(g, field, tensor_offsets[piece.tensor] + piece.start, piece.length, out, crc);
    }
    std::string final_crc;
    put_u32(final_crc, crc.value());
    out.write(final_crc.data(), static_cast<std::streamsize>(final_crc.size()));
    out.flush();
    if (!out) fail("writing the output failed");
  }

  std::string who_;
  std::vector<Input> inputs_;
  ShardLayout model_;
  std::vector<std::string> scalars_;
  std::vector<State> group_states_;  // input 0's groups (no arrays)
  std::ifstream open_;
  std::size_t open_index_ = static_cast<std::size_t>(-1);
  std::vector<char> copy_buffer_ = std::vector<char>(kStreamChunk);  // one, for every copied range
};

// Converts `from` (a sharded checkpoint's files, or one ordinary checkpoint
// as a one-file set without manifest) into the sharded checkpoint of
// `to_ranks` ranks under `to`, committed by its manifest, or into the
// ordinary checkpoint `to` when to_ranks is 0.
inline void convert_checkpoints(const ShardSet& from, bool from_sharded, const std::filesystem::path& to,
                                int to_ranks, const std::string& who) {
  CheckpointKind kind;
  {
    std::ifstream in;
    open_for_reading(in, from.files.at(0), who);
    try {
      const std::uint64_t start = from_sharded ? read_shard_record(in).bytes : 0;
      kind = read_checkpoint_kind(in, start);
    } catch (const CheckpointError& error) {
      throw CheckpointError(who + ": " + error.what() + " (file '" + from.files[0].string() + "')");
    }
  }
  with_checkpoint_type(kind, who, [&](auto scalar, auto flavour) {
    using Flavour = typename decltype(flavour)::type;
    // A rule that steps whole matrices has no sharded driver (adamx::mpi
    // refuses it): shards of its state could never be loaded.
    if (to_ranks > 0 && steps_matrices<typename Flavour::Rule>::value)
      throw CheckpointError(who + ": the checkpoint is " + Flavour::name +
                           "'s, which steps whole matrices and has no sharded driver, so it is not cut into shards");
    Converter<typename decltype(scalar)::type, Flavour> converter(who);
    converter.scan(from.files, from_sharded);
    // Every file passed its own checks; each must also be the one its
    // manifest records (not a file of another save put in its place).
    for (std::size_t r = 0; r < from.files.size(); ++r) check_against_manifest(from, static_cast<int>(r), who);
    // The output's directory is created if missing, as sharded saves do.
    if (const std::string problem = create_parent_directory(to); !problem.empty())
      throw CheckpointError(who + ": " + problem);
    if (to_ranks == 0) {
      converter.write({to}, false);
      return;
    }
    const std::uint64_t save_id = new_save_id();
    std::vector<std::filesystem::path> files;
    for (int r = 0; r < to_ranks; ++r) files.push_back(shard_generation_path(to, r, to_ranks, save_id));
    converter.write(files, true);
    try {
      std::vector<ShardFileEntry> entries;
      for (const std::filesystem::path& file : files) entries.push_back(describe_shard_file(file, who));
      commit_shard_set(to, to_ranks, save_id, entries, who);
    } catch (...) {
      for (const std::filesystem::path& file : files) {
        std::error_code ignored;
        std::filesystem::remove(file, ignored);
      }
      throw;
    }
    remove_superseded_shards(to, to_ranks, save_id);
  });
}

inline void check_ranks(int ranks, const char* what, const std::string& who) {
  if (ranks < 1) throw std::invalid_argument(who + ": invalid " + what + " = " + std::to_string(ranks) + " (must be >= 1)");
}

// Throws CheckpointError with the OS reason if the directory of `prefix`
// cannot be listed: an unreadable directory is not an empty one.
inline void check_listable(const std::filesystem::path& prefix, const std::string& who) {
  const std::filesystem::path directory = prefix.has_parent_path() ? prefix.parent_path() : ".";
  std::error_code error;
  const std::filesystem::directory_iterator listing(directory, error);
  if (error)
    throw CheckpointError(who + ": cannot list '" + directory.string() + "' to find '" + prefix.string() +
                          ".<r>-of-N': " + error.message());
}

// The one rank count of the sharded checkpoint under `prefix`.
inline int only_rank_count(const std::filesystem::path& prefix, const std::string& who) {
  const std::vector<int> counts = find_sharded_checkpoints(prefix);
  if (counts.size() == 1) return counts[0];
  if (counts.empty()) {
    check_listable(prefix, who);
    throw CheckpointError(who + ": no sharded checkpoint (no file '" + prefix.string() + ".0-of-N')");
  }
  std::string list;
  for (int n : counts) list += (list.empty() ? "" : ", ") + std::to_string(n);
  throw CheckpointError(who + ": '" + prefix.string() + "' has sharded checkpoints of " + list +
                        " ranks; say which one");
}

}  // namespace detail

/// Re-shards the sharded checkpoint of `from_ranks` ranks under `from` into
/// one of `to_ranks` ranks under `to`: the same state, cut as a run of
/// to_ranks ranks cuts it, bitwise. Streams (a few KiB of state in memory);
/// every input's records, checksums and values (as load_checkpoint checks
/// them, with its message) and its manifest, if it has one, are verified
/// first, and the outputs are committed all at once by their
/// manifest (shard_manifest.hpp), after which older files of `to` for
/// to_ranks ranks are removed. The directory of `to` is created if
/// missing. On any problem CheckpointError (or
/// std::invalid_argument for to_ranks < 1) says what; nothing is published
/// and what `to` held still loads.
inline void reshard_checkpoint(const std::filesystem::path& from, int from_ranks, const std::filesystem::path& to,
                               int to_ranks) {
  const std::string who = "adamx::reshard_checkpoint";
  detail::check_ranks(from_ranks, "from_ranks", who);
  detail::check_ranks(to_ranks, "to_ranks", who);
  detail::convert_checkpoints(detail::locate_shard_set(from, from_ranks, who), true, to, to_ranks, who);
}

/// As above, with from_ranks the one rank count found under `from`.
inline void reshard_checkpoint(const std::filesystem::path& from, const std::filesystem::path& to, int to_ranks) {
  reshard_checkpoint(from, detail::only_rank_count(from, "adamx::reshard_checkpoint"), to, to_ranks);
}

/// Merges the sharded checkpoint "<from>.<r>-of-<from_ranks>" into one
/// ordinary checkpoint `to` of the whole model (adamx::load_checkpoint of a
/// one-process optimizer with the model's groups reads it). Streams, like
/// reshard_checkpoint, with the same checks.
inline void merge_sharded_checkpoint(const std::filesystem::path& from, int from_ranks,
                                     const std::filesystem::path& to) {
  const std::string who = "adamx::merge_sharded_checkpoint";
  detail::check_ranks(from_ranks, "from_ranks", who);
  detail::convert_checkpoints(detail::locate_shard_set(from, from_ranks, who), true, to, 0, who);
}

/// As above, with from_ranks the one rank count found under `from`.
inline void merge_sharded_checkpoint(const std::filesystem::path& from, const std::filesystem::path& to) {
  merge_sharded_checkpoint(from, detail::only_rank_count(from, "adamx::merge_sharded_checkpoint"), to);
}

/// Cuts the ordinary checkpoint `from` (of a one-process optimizer) into the sharded checkpoint "<to>.<r>-of-<to_ranks>". Streams,
/// like reshard_checkpoint, with the same checks.
inline void split_checkpoint(const std::filesystem::path& from, const std::filesystem::path& to, int to_ranks) {
  const std::string who = "adamx::split_checkpoint";
  detail::check_ranks(to_ranks, "to_ranks", who);
  detail::convert_checkpoints(detail::ShardSet{{from}, std::nullopt}, false, to, to_ranks, who);
}

ADAMX_NAMESPACE_END  // namespace adamx
