// adamx::mpi::AdamX from an installed adamx, under mpirun -np 2: one sharded
// step of one 1000-element tensor with w = 1 everywhere. Rank 0's local
// gradient is 3·c_i, rank 1's is -c_i (c_i = 1, 2, 3, ...), so the mean is c_i:
// the step averages them, steps each rank's shard and all-gathers w. Every
// rank's w must then be bitwise a one-process adamx::AdamX<float> stepped on
// the mean gradient, and about 1 - lr = 0.9 (the first Adam-family step moves
// each element by lr·g/(|g| + ε') ≈ lr against the gradient's sign). A rank
// that stepped on its own gradient would hold 1.1 on its shard instead.
#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

namespace {

int run() {
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (ranks != 2) {
    if (rank == 0) std::fprintf(stderr, "adamx::mpi consumer: run it with 2 ranks, not %d\n", ranks);
    return 1;
  }
  const Eigen::Index n = 1000;
  adamx::AdamXOptions options;
  options.lr = 0.1;

  Eigen::VectorXf mean_grad(n), local_grad(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    mean_grad[i] = static_cast<float>(1 + i % 3);
    local_grad[i] = (rank == 0 ? 3.0f : -1.0f) * mean_grad[i];  // (3c + (-c)) / 2 = c, exactly
  }

  Eigen::VectorXf w = Eigen::VectorXf::Ones(n);
  adamx::mpi::AdamX<float> sharded(MPI_COMM_WORLD);
  sharded.add_group(std::vector<adamx::TensorRef<float>>{w}, options, "fc", {"weight"});
  std::vector<std::vector<adamx::TensorRef<float>>> params{{w}};
  std::vector<std::vector<adamx::ConstTensorRef<float>>> grads{{local_grad}};
  sharded.step(params, grads);

  Eigen::VectorXf reference = Eigen::VectorXf::Ones(n);
  adamx::AdamX<float> one;
  one.add_group({reference}, options, "fc", {"weight"});
  one.step({{reference}}, {{mean_grad}});

  int mismatches = 0;
  for (Eigen::Index i = 0; i < n; ++i)
    if (!(w[i] == reference[i]) || !(std::abs(w[i] - 0.9f) < 1e-4f)) ++mismatches;
  int total = 0;
  MPI_Allreduce(&mismatches, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("adamx::mpi consumer: %d ranks, w[0] = %.6f, w[999] = %.6f after one step (expected about 0.9, "
                "bitwise one process's); %d element(s) differ\n",
                ranks, static_cast<double>(w[0]), static_cast<double>(w[n - 1]), total);
  return total == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 1;
  try {
    status = run();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "adamx::mpi consumer: %s\n", error.what());
  }
  // A rank that failed alone must not leave the other waiting.
  int worst = 0;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
