// mpi_data_parallel.cpp - the Fashion-MNIST MLP of fashion_mnist_demo.cpp,
// trained data-parallel over MPI with sharded (ZeRO-1) Adam and AdamX.
//
//   mpirun -np 2 mpi_data_parallel [--data DIR] [--epochs N] [--batch N]
//
// Every rank loads the data, starts from the same weights and shuffles with
// the same seed, so all ranks see the same global batches; rank r computes the
// gradient on its contiguous part of each batch, weighted by its share of the
// batch, and adamx::mpi averages the ranks' gradients (reduce-scatter), steps
// each rank's shard of the optimizer state and all-gathers the weights. With
// the same global batch the numbers match the one-process demo up to the
// rounding of summing the batch in parts (docs/distributed.md).
//
// Exit codes: 0 success, 1 bad data, 2 bad arguments (checked before MPI
// starts, so --help needs no mpirun), 77 dataset not installed.
#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <mpi.h>

#include <array>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "command_line.hpp"
#include "epoch_table.hpp"
#include "mlp.hpp"

namespace {

using namespace adamx_example;  // the model and data (mlp.hpp)

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 3;
  Index batch = 128;
};

Config parse_args(int argc, char** argv) {
  Config c;
  adamx_cli::Parser parser("mpi_data_parallel", "[options]   (under mpirun -np N)",
                           "The demo's MLP trained data-parallel over MPI with sharded Adam and AdamX.");
  parser.add("--data", "DIR", "directory with the four Fashion-MNIST *-ubyte.gz files", c.data_dir)
      .add("--epochs", "N", "passes over the 60000 training images", c.epochs, 1, 1000)
      .add("--batch", "N", "global minibatch size (over all ranks)", c.batch, 1, 60000);
  parser.parse(argc, argv);
  return c;
}

struct EpochStats {
  double train_loss = 0.0;  // mean over all ranks' samples, each measured before its step
  double seconds = 0.0;     // training only, the slowest rank's
  std::array<GammaRange, 2> gamma;  // per parameter group: fc1, fc2 (the same on every rank)
};

// One epoch of data-parallel training.
template <class Sharded>
EpochStats train_epoch(Mlp& m, Sharded& opt, const Dataset& train, const Eigen::VectorXi& perm, Index batch,
                       Workspace& ws, int rank, int ranks) {
  MPI_Barrier(MPI_COMM_WORLD);  // time the epoch from a common start
  const double t0 = MPI_Wtime();
  EpochStats st;
  std::vector<std::vector<adamx::TensorRef<float>>> params{{m.w1, m.b1}, {m.w2, m.b2}};
  double loss_sum = 0.0;
  const Index n = perm.size();
  for (Index start = 0; start < n; start += batch) {
    const Index len = std::min(batch, n - start);
    // This rank's contiguous part of the global batch (possibly empty).
    const Index begin = start + len * rank / ranks, end = start + len * (rank + 1) / ranks;
    const auto idx = perm.segment(begin, end - begin);
    ws.x = train.x(Eigen::all, idx);
    ws.y.resize(static_cast<std::size_t>(idx.size()));
    for (Index j = 0; j < idx.size(); ++j) ws.y[static_cast<std::size_t>(j)] = train.labels[static_cast<std::size_t>(idx[j])];
    if (idx.size() > 0) {
      forward(m, ws.x, ws);
      loss_sum += softmax_xent(ws, ws.y, 0, true);  // gradient of this part's mean loss
      backward(m, ws);
      // The step averages over ranks; weighting each part's mean by its
      // share of the batch makes that average the batch's mean gradient.
      const float weight = static_cast<float>(idx.size() * ranks) / static_cast<float>(len);
      ws.gw1 *= weight;
      ws.gb1 *= weight;
      ws.gw2 *= weight;
      ws.gb2 *= weight;
    } else {
      ws.gw1.setZero(m.w1.rows(), m.w1.cols());
      ws.gb1.setZero(m.b1.size());
      ws.gw2.setZero(m.w2.rows(), m.w2.cols());
      ws.gb2.setZero(m.b2.size());
    }
    std::vector<std::vector<adamx::ConstTensorRef<float>>> grads{{ws.gw1, ws.gb1}, {ws.gw2, ws.gb2}};
    const auto& reports = opt.step(params, grads);
    for (std::size_t g = 0; g < st.gamma.size(); ++g) st.gamma[g].add(reports[g].gamma);
  }
  const double seconds = MPI_Wtime() - t0;
  MPI_Allreduce(&seconds, &st.seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  double total = 0.0;
  MPI_Allreduce(&loss_sum, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  st.train_loss = total / static_cast<double>(n);
  return st;
}

template <class Sharded>
void add_layer_groups(Sharded& opt, Mlp& m) {
  typename Sharded::Options o;
  o.lr = 1e-3;
  opt.add_group(std::vector<adamx::TensorRef<float>>{m.w1, m.b1}, o, "fc1", {"weight", "bias"});
  opt.add_group(std::vector<adamx::TensorRef<float>>{m.w2, m.b2}, o, "fc2", {"weight", "bias"});
}

int run(const Config& c, int rank, int ranks) {
  require_dataset(c.data_dir, "mpi_data_parallel");
  Dataset train = load_split(c.data_dir, kFiles[0], kFiles[1]);
  Dataset test = load_split(c.data_dir, kFiles[2], kFiles[3]);
  standardise(train, test);
  const Index batch = std::min<Index>(c.batch, train.x.cols());
  const std::uint32_t seed = 1;  // the demo's default seed and sizes
  const Mlp init = init_mlp(train.x.rows(), 128, kClasses, seed);
  Mlp m_adam = init, m_adamx = init;
  adamx::mpi::Adam<float> adam(MPI_COMM_WORLD);
  adamx::mpi::AdamX<float> adamx_opt(MPI_COMM_WORLD);
  add_layer_groups(adam, m_adam);
  add_layer_groups(adamx_opt, m_adamx);
  if (rank == 0) {
    std::printf("Adam vs AdamX on Fashion-MNIST, data-parallel on %d ranks (global batch %ld, lr 1e-3, seed %u)\n"
                "  each rank computes the gradient of its part of every batch; adamx::mpi averages them,\n"
                "  steps its shard of the optimizer state and all-gathers the weights\n\n",
                ranks, static_cast<long>(batch), seed);
    print_epoch_columns();
  }
  std::mt19937 order_rng(seed + 1u);
  Eigen::VectorXi perm = Eigen::VectorXi::LinSpaced(train.x.cols(), 0, static_cast<int>(train.x.cols() - 1));
  Workspace train_ws, eval_ws;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    shuffle(perm, order_rng);
    const EpochStats adam_stats = train_epoch(m_adam, adam, train, perm, batch, train_ws, rank, ranks);
    const Evaluation adam_test = evaluate(m_adam, test, eval_ws);
    const EpochStats adamx_stats = train_epoch(m_adamx, adamx_opt, train, perm, batch, train_ws, rank, ranks);
    const Evaluation adamx_test = evaluate(m_adamx, test, eval_ws);
    if (rank == 0) {
      print_epoch_row(epoch, "Adam", adam_stats.train_loss, adam_test.loss, adam_test.accuracy, adam_stats.seconds,
                      nullptr);
      print_epoch_row(0, "AdamX", adamx_stats.train_loss, adamx_test.loss, adamx_test.accuracy,
                      adamx_stats.seconds, adamx_stats.gamma.data());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse_args(argc, argv);
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  int status = 0;
  try {
    status = run(config, rank, ranks);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_data_parallel (rank %d): %s\n", rank, e.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
