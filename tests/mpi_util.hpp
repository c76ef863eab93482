// Helpers of the MPI tests (test_mpi.cpp, test_mpi_clip.cpp): this process's
// place in MPI_COMM_WORLD, and the shared model (shard_model.hpp) added to a
// sharded driver.
#pragma once

#include <mpi.h>

#include <adamx/mpi.hpp>

#include <cstddef>
#include <vector>

#include "shard_model.hpp"

namespace mpi_util {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}
inline int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

template <class Sharded>
void add_model(Sharded& sharded, shard_model::Tensors<typename Sharded::Local::scalar_type>& params) {
  const std::vector<shard_model::GroupSpec> specs = shard_model::groups();
  for (std::size_t g = 0; g < specs.size(); ++g)
    sharded.add_group(params[g], shard_model::options_of<typename Sharded::Local>(specs[g]), specs[g].name,
                      specs[g].tensor_names);
}

// This rank's shard of every group.
template <class Sharded>
std::vector<adamx::GroupShard> my_shards(const Sharded& sharded) {
  std::vector<adamx::GroupShard> out;
  for (std::size_t g = 0; g < sharded.local().num_groups(); ++g) out.push_back(sharded.shard(g, sharded.rank()));
  return out;
}

}  // namespace mpi_util
