// The program that test_mpi_kill.cpp runs under mpirun and kills: the shared
// model (shard_model.hpp) sharded over MPI_COMM_WORLD, stepped on the global
// gradient and saved with adamx::mpi::save_sharded_checkpoint after every
// few steps, so that most of its run is spent inside saves.
//
//   mpi_save_child <prefix> <first> <saves> <stride>
//
// saves under <prefix> the states after first, first + stride, ...,
// first + (saves - 1) * stride steps. Not a GoogleTest program: its checks
// are made by the test that kills it, on what it leaves on disk.
#include <mpi.h>

#include <adamx/mpi.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "mpi_util.hpp"
#include "shard_model.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <prefix> <first> <saves> <stride>\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  try {
    const std::string prefix = argv[1];
    const int first = std::atoi(argv[2]);
    const int saves = std::atoi(argv[3]);
    const int stride = std::atoi(argv[4]);
    shard_model::Tensors<float> params = shard_model::initial_params<float>();
    adamx::mpi::AdamX<float> opt(MPI_COMM_WORLD);
    mpi_util::add_model(opt, params);
    shard_model::Tensors<float> grads = shard_model::zeros<float>();
    const auto p = shard_model::mutable_views(params);
    const auto g = shard_model::const_views(grads);
    int steps = 0;
    for (int save = 0; save < saves; ++save) {
      for (const int target = first + save * stride; steps < target;) {
        shard_model::global_gradient(++steps, grads);
        opt.step_global(p, g);
      }
      adamx::mpi::save_sharded_checkpoint(opt, prefix);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_save_child: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}
