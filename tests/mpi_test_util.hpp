// What every test executable run under mpirun shares: the rank and rank
// count of MPI_COMM_WORLD, and a main() that fails on every rank when any
// rank failed (so mpirun's exit code does not depend on which rank it reads).
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

namespace mpi_test {

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

// MPI_Init, every test, MPI_Finalize; 1 on every rank if any rank failed.
inline int run_all_tests(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed;
}

}  // namespace mpi_test
