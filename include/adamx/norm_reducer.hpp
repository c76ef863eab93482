// The norm-reducer hook: how a step over one shard of each group learns the
// group's full squared gradient norm s (docs/design.md section 6).
//
// A step computes s as per-block partial sums (kernel.hpp, kNormBlock
// elements per block) and adds them up in block order. When each process
// holds only a shard of a group, whose first and last elements lie on block
// boundaries (shard.hpp), its blocks are a contiguous run of the group's
// blocks. A reducer receives this shard's partials of every group once per
// step and returns, per group, the sum over all shards' partials taken in the
// global block order — the very additions one process would make, so s, and
// with it γ and h, are bitwise those of one process for any number of shards.
//
// A reducer is any callable
//   void reducer(const std::vector<adamx::BlockPartials>& shard_partials,
//                std::vector<double>& s);
// given one BlockPartials per group (in group order) and `s` already sized to
// the group count; it sets s[g] for every group. It must call
// adamx::ordered_block_sum over the concatenation of every shard's partials
// in shard order (or make the same additions itself). adamx/mpi.hpp has one
// over MPI; this header needs no transport.
#pragma once

#include <cstddef>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// One group's per-block partial sums of s on this shard, in block order.
struct BlockPartials {
  const double* data = nullptr;
  std::size_t size = 0;
};

/// Adds `count` partials to `running`, first to last: the one order every
/// process uses to combine block partials (starting from running = 0.0).
inline double ordered_block_sum(const double* partials, std::size_t count, double running = 0.0) {
  for (std::size_t b = 0; b < count; ++b) running += partials[b];
  return running;
}

namespace detail {
/// Stands for "no reducer": the step sums its own partials.
struct NoNormReducer {};
}  // namespace detail

ADAMX_NAMESPACE_END  // namespace adamx
