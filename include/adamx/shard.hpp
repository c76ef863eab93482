// Where a group is cut into shards for sharded (ZeRO-1) stepping
// (docs/design.md section 6).
//
// A group's tensors, flattened one after the other, are cut into `ranks`
// contiguous shards whose boundaries fall on the blocks s is summed over
// (kNormBlock elements from each tensor's own start; a tensor's end is a
// block end too). Each shard is then a run of whole blocks in the group's
// block order, so a shard's partials of s, concatenated in rank order, are the
// partials one process computes, in its order. A shard is described by the
// pieces of tensors it holds; it may be empty when a group has fewer blocks
// than there are ranks.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/kernel.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN

/// A contiguous part of one tensor of a group, in its flattened memory order.
struct ShardPiece {
  std::size_t tensor = 0;   ///< index of the tensor in the group
  Eigen::Index start = 0;   ///< first element (a multiple of kNormBlock)
  Eigen::Index length = 0;
};

/// One rank's shard of one group.
struct GroupShard {
  Eigen::Index begin = 0;   ///< first element in the group's flattened order
  Eigen::Index end = 0;     ///< one past the last
  std::size_t first_block = 0;   ///< the group's blocks [first_block, first_block + blocks)
  std::size_t blocks = 0;
  std::vector<ShardPiece> pieces;  ///< in order; empty for an empty shard

  Eigen::Index size() const { return end - begin; }
};

/// Cuts a group whose tensors have `tensor_sizes` elements into `ranks`
/// block-aligned shards of nearly equal size (one per rank, in rank order):
/// rank r starts at the first block boundary at or after element r·N/ranks.
inline std::vector<GroupShard> shard_group(const std::vector<Eigen::Index>& tensor_sizes,
                                           int ranks) {
  if (ranks < 1)
    throw std::invalid_argument("adamx::shard_group: invalid ranks = " + std::to_string(ranks) +
                                " (must be >= 1)");
  // The group's blocks, as the optimizer lays them out (add_group).
  struct Block {
    std::size_t tensor;
    Eigen::Index start, length, offset;
  };
  std::vector<Block> blocks;
  Eigen::Index total = 0;
  for (std::size_t t = 0; t < tensor_sizes.size(); ++t) {
    const Eigen::Index n = tensor_sizes[t];
    if (n < 0)
      throw std::invalid_argument("adamx::shard_group: tensor " + std::to_string(t) +
                                  " has negative size " + std::to_string(n));
    for (Eigen::Index start = 0; start < n; start += detail::kNormBlock)
      blocks.push_back({t, start, std::min(detail::kNormBlock, n - start), total + start});
    total += n;
  }
  // first[r]: the first block of rank r; first[ranks] = the block count.
  std::vector<std::size_t> first(static_cast<std::size_t>(ranks) + 1, blocks.size());
  std::size_t b = 0;
  for (int r = 0; r < ranks; ++r) {
    const Eigen::Index target = total * r / ranks;
    while (b < blocks.size() && blocks[b].offset < target) ++b;
    first[static_cast<std::size_t>(r)] = b;
  }
  std::vector<GroupShard> shards(static_cast<std::size_t>(ranks));
  for (std::size_t r = 0; r < shards.size(); ++r) {
    GroupShard& shard = shards[r];
    shard.first_block = first[r];
    shard.blocks = first[r + 1] - first[r];
    shard.begin = first[r] < blocks.size() ? blocks[first[r]].offset : total;
    shard.end = first[r + 1] < blocks.size() ? blocks[first[r + 1]].offset : total;
    for (std::size_t k = first[r]; k < first[r + 1]; ++k) {
      const Block& block = blocks[k];
      if (!shard.pieces.empty() && shard.pieces.back().tensor == block.tensor)
        shard.pieces.back().length += block.length;
      else
        shard.pieces.push_back({block.tensor, block.start, block.length});
    }
  }
  return shards;
}

/// The name of a shard's piece of tensor `tensor` in a process's optimizer
/// over its shards (and in its sharded checkpoint): "weight[4096:8192]".
inline std::string shard_piece_name(const std::string& tensor, Eigen::Index start, Eigen::Index length) {
  return tensor + "[" + std::to_string(start) + ":" + std::to_string(start + length) + "]";
}
/// The one zero-sized tensor standing for an empty shard.
inline const char* const kEmptyShardName = "(empty shard)";

/// Adds one rank's shard of a group to `optimizer` (a process's optimizer
/// over its shards): one vector per piece, named "<tensor>[<begin>:<end>]",
/// or a single empty tensor "(empty shard)". Blocks of the pieces are then the
/// group's blocks, because every piece starts on a block boundary.
template <class Optimizer>
std::size_t add_shard_group(Optimizer& optimizer, const GroupShard& shard,
                            const typename Optimizer::Options& options, std::string group_name,
                            const std::vector<std::string>& tensor_names) {
  using Scalar = typename Optimizer::scalar_type;
  std::vector<ConstTensorRef<Scalar>> shapes;
  std::vector<std::string> names;
  for (const ShardPiece& piece : shard.pieces) {
    shapes.emplace_back(static_cast<const Scalar*>(nullptr), piece.length, 1);
    names.push_back(shard_piece_name(tensor_names.at(piece.tensor), piece.start, piece.length));
  }
  if (shapes.empty()) {
    shapes.emplace_back(static_cast<const Scalar*>(nullptr), 0, 1);
    names.emplace_back(kEmptyShardName);
  }
  return optimizer.add_group(shapes, options, std::move(group_name), std::move(names));
}

/// The views a step of `shard` takes: its pieces of the group's tensors,
/// whose first elements are at `bases` (one pointer per tensor of the
/// group). `out` is resized, so a reused vector allocates only once.
template <class View, class Pointer>
void shard_views(const GroupShard& shard, const std::vector<Pointer>& bases, std::vector<View>& out) {
  out.clear();
  for (const ShardPiece& piece : shard.pieces)
    out.emplace_back(bases.at(piece.tensor) + piece.start, piece.length, 1);
  if (shard.pieces.empty()) out.emplace_back(static_cast<Pointer>(nullptr), 0, 1);
}

ADAMX_NAMESPACE_END  // namespace adamx
