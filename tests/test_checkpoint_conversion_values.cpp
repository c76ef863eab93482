// Checkpoint conversions (split, merge, reshard; adamx/sharded_checkpoint.hpp)
// refuse every file that load_checkpoint refuses for its values, in the
// loader's own words, and write nothing. The files are well-formed (both
// checksums recomputed, tests/checkpoint_layout.hpp) and carry one invalid
// value each: a conversion that only checked the checksums would copy it on
// into files that no run could load.
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "temp_dir.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using adamx_test::CheckpointModel;
using adamx_test::Contains;
using adamx_test::GroupFields;
using adamx_test::Layout;
using adamx_test::TempDir;

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void put_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// One invalid value: `width` bytes `bits` at the field `where` picks in the
// second group, "layer2" (so a check that stopped after the first group
// would be caught).
struct BadValue {
  std::string what;
  std::function<std::size_t(const GroupFields&)> where;
  std::uint64_t bits;
  int width;

  // `checkpoint` with the value written in and both checksums recomputed.
  std::string written_into(const std::string& checkpoint) const {
    const Layout layout(checkpoint);
    std::string out = checkpoint;
    adamx_test::write_le(out, where(layout.groups.at(1)), bits, width);
    layout.reseal(out);
    return out;
  }
};

std::uint64_t bits_of(double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Every value check of the loader: each f64 option out of its range, t,
// gamma and h, the enumerations and flags, and a tensor dimension.
template <class Opt>
std::vector<BadValue> bad_values() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<BadValue> out;
  // The f64 options, found by name; a file holds only its optimizer's own.
  const auto option = [&](const char* field, double value) {
    if (!adamx::has_option_field<typename Opt::Options>(field)) return;
    out.push_back({std::string(field) + " = " + adamx::detail::format_value(value),
                   [=](const GroupFields& g) { return g.option(field); }, bits_of(value), 8});
  };
  option("lr", nan);
  option("lr", -1e-3);
  option("beta1", 1.0);
  option("beta2", inf);
  option("beta3", 1.5);
  if (adamx_test::kGammaFixed<Opt>) option("beta3", 0.5);  // only AdamX's γ moves
  option("beta_norm", -0.5);
  option("eps", -1e-8);
  option("weight_decay", nan);
  option("final_lr", -1.0);
  option("bound_speed", 0.0);
  option("beta_step", 1.0);
  const auto gamma = [](const GroupFields& g) { return g.gamma; };
  const auto h = [](const GroupFields& g) { return g.h; };
  out.push_back({"gamma = inf", gamma, bits_of(inf), 8});
  out.push_back({"gamma = -0.25", gamma, bits_of(-0.25), 8});
  if (adamx_test::kGammaFixed<Opt>) out.push_back({"gamma = 1.5", gamma, bits_of(1.5), 8});
  out.push_back({"h = nan", h, bits_of(nan), 8});
  out.push_back({"h = -1", h, bits_of(-1.0), 8});
  out.push_back({"t = -5", [](const GroupFields& g) { return g.t; }, static_cast<std::uint64_t>(-5), 8});
  out.push_back({"decay_mode = 2", [](const GroupFields& g) { return g.option("decay_mode"); }, 2, 1});
  out.push_back({"amsgrad = 2", [](const GroupFields& g) { return g.option("amsgrad"); }, 2, 1});
  out.push_back({"maximize = 255", [](const GroupFields& g) { return g.option("maximize"); }, 255, 1});
  out.push_back({"nonfinite = 3", [](const GroupFields& g) { return g.option("nonfinite"); }, 3, 1});
  out.push_back({"rows = -1", [](const GroupFields& g) { return g.rows.at(0); }, static_cast<std::uint64_t>(-1), 8});
  return out;
}

// A valid checkpoint of the two-group model after a few steps, amsgrad on in
// layer2 (so v_max is in the files too).
template <class Opt>
std::string valid_checkpoint() {
  Opt opt;
  return adamx_test::busy_checkpoint(opt, 4);
}

using adamx_test::loader_message;

// Success iff `convert` throws CheckpointError whose message holds the
// loader's message and names `file`, and `dir` still holds only `inputs`.
template <class Convert>
::testing::AssertionResult RefusedLikeTheLoader(Convert&& convert, const std::string& loader, const std::string& file,
                                                const TempDir& dir, const std::vector<std::string>& inputs) {
  if (loader.empty()) return ::testing::AssertionFailure() << "the loader accepted the file";
  std::string message;
  try {
    convert();
    return ::testing::AssertionFailure() << "the conversion accepted what the loader refuses: " << loader;
  } catch (const adamx::CheckpointError& error) {
    message = error.what();
  }
  if (!Contains(message, loader))
    return ::testing::AssertionFailure() << "the conversion says\n  " << message << "\nthe loader\n  " << loader;
  if (!Contains(message, file)) return ::testing::AssertionFailure() << "'" << file << "' is not named in: " << message;
  if (dir.files() != inputs) {
    auto failure = ::testing::AssertionFailure() << "the conversion left files behind:";
    for (const std::string& name : dir.files()) failure << " " << name;
    return failure;
  }
  return ::testing::AssertionSuccess();
}

// A shard file's checkpoint part (after its shard record) with `bad` written in.
std::string shard_with(const fs::path& path, const BadValue& bad) {
  const std::string bytes = file_bytes(path);
  std::istringstream in(bytes, std::ios::binary);
  const auto start = static_cast<std::size_t>(adamx::detail::read_shard_record(in).bytes);
  return bytes.substr(0, start) + bad.written_into(bytes.substr(start));
}

template <class Opt>
class ConversionValues : public ::testing::Test {};
using Optimizers = ::testing::Types<adamx::AdamX<float>, adamx::Adam<double>>;
TYPED_TEST_SUITE(ConversionValues, Optimizers);

TYPED_TEST(ConversionValues, SplitRefusesEveryValueTheLoaderRefuses) {
  using Opt = TypeParam;
  const std::string valid = valid_checkpoint<Opt>();
  ASSERT_EQ(loader_message<Opt>(valid), "");
  int refused = 0;
  for (const BadValue& bad : bad_values<Opt>()) {
    SCOPED_TRACE(bad.what);
    TempDir dir("split");
    const std::string bytes = bad.written_into(valid);
    put_file(dir / "bad", bytes);
    EXPECT_TRUE(RefusedLikeTheLoader([&] { adamx::split_checkpoint(dir / "bad", dir / "out", 2); },
                                     loader_message<Opt>(bytes), (dir / "bad").string(), dir, {"bad"}));
    ++refused;
  }
  // The same split of the valid file succeeds: the refusals are the values'.
  TempDir dir("split_valid");
  put_file(dir / "good", valid);
  adamx::split_checkpoint(dir / "good", dir / "out", 2);
  std::vector<std::string> expected{"good", adamx::shard_manifest_path(dir / "out", 2).filename().string()};
  for (const fs::path& file : adamx::shard_checkpoint_files(dir / "out", 2)) expected.push_back(file.filename().string());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(dir.files(), expected);
  std::cout << "[ conversions ] split refused " << refused << " well-formed files with invalid values\n";
}

// Shard sets with lr = NaN (and a few other values): in every shard, as one
// save of a bad state writes them, or in one shard only, which without the
// value check would surface as "not from one save" or not at all.
TYPED_TEST(ConversionValues, MergeAndReshardRefuseShardsTheLoaderRefuses) {
  using Opt = TypeParam;
  const std::string valid = valid_checkpoint<Opt>();
  TempDir source("source");
  put_file(source / "good", valid);
  adamx::split_checkpoint(source / "good", source / "set", 2);
  // The damaged shards are written under the names of a set without a
  // manifest (as earlier versions saved them, still loaded): a manifest would
  // refuse them by its checksums before their values were read.
  const std::vector<fs::path> sources = adamx::shard_checkpoint_files(source / "set", 2);
  const std::vector<std::string> inputs = {"set.0-of-2", "set.1-of-2"};
  std::vector<BadValue> chosen;
  for (const BadValue& bad : bad_values<Opt>())
    if (bad.what == "lr = nan" || bad.what == "eps = -1e-08" || bad.what == "t = -5") chosen.push_back(bad);
  ASSERT_EQ(chosen.size(), 3u);
  for (const BadValue& bad : chosen) {
    SCOPED_TRACE(bad.what);
    const std::string loader = loader_message<Opt>(bad.written_into(valid));
    for (const bool only_rank_1 : {false, true}) {
      SCOPED_TRACE(only_rank_1 ? "rank 1's shard only" : "both shards");
      TempDir dir(only_rank_1 ? "one" : "both");
      for (int r = 0; r < 2; ++r) {
        const fs::path& shard = sources[static_cast<std::size_t>(r)];
        put_file(dir / inputs[static_cast<std::size_t>(r)],
                 r == 1 || !only_rank_1 ? shard_with(shard, bad) : file_bytes(shard));
      }
      const std::string named = (dir / (only_rank_1 ? inputs[1] : inputs[0])).string();
      EXPECT_TRUE(RefusedLikeTheLoader([&] { adamx::merge_sharded_checkpoint(dir / "set", dir / "merged"); }, loader,
                                       named, dir, inputs));
      EXPECT_TRUE(RefusedLikeTheLoader([&] { adamx::reshard_checkpoint(dir / "set", dir / "out", 3); }, loader, named,
                                       dir, inputs));
    }
  }
}

}  // namespace
