// Version 2's options block is one union layout for every optimizer (lr ...
// nonfinite, then AdaBound's final_lr and bound_speed and AdaMod's
// beta_step: docs/checkpoints.md), while each optimizer's options now hold
// only its own fields. These tests pin how the two meet: an optimizer writes
// its own fields where they are and, where it has no field, the value
// version 2 held by default (AdaBound's and AdaMod's defaults of that
// version); reading accepts there any value version 2 accepted (a version-2
// file may have set final_lr on Adam, which ignored it) and drops it, and
// refuses a value version 2 refused. Version 3 writes each optimizer's own
// fields only, so what version 2 wrote is checked in the files an earlier
// adamx wrote (tests/data/checkpoints_v2), and the reading of version 2 in
// version-3 files rewritten in version 2's layout (as_version2,
// checkpoint_layout.hpp).
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace {

using adamx_test::Layout;

double f64_at(const std::string& bytes, std::size_t offset) {
  const std::uint64_t bits = adamx_test::read_le(bytes, offset, 8);
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

std::string with_f64(const std::string& bytes, std::size_t offset, double value) {
  std::string out = bytes;
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  adamx_test::write_le(out, offset, bits, 8);
  Layout(out).reseal(out);
  return out;
}

template <class Opt>
std::string load_message(const std::string& bytes) {
  return adamx_test::loader_message<Opt>(bytes);
}

// The three baseline slots of group g, in file order.
struct BaselineSlots {
  double final_lr, bound_speed, beta_step;
};
BaselineSlots slots_of(const std::string& bytes, std::size_t group) {
  const Layout layout(bytes);  // owns the groups g refers to
  const auto& g = layout.groups.at(group);
  EXPECT_EQ(g.option("bound_speed"), g.option("final_lr") + 8);  // version 2's fixed order
  EXPECT_EQ(g.option("beta_step"), g.option("final_lr") + 16);
  return {f64_at(bytes, g.option("final_lr")), f64_at(bytes, g.option("bound_speed")),
          f64_at(bytes, g.option("beta_step"))};
}

// A file an earlier adamx wrote in version 2 (tests/test_checkpoint_v2_files.cpp
// loads them all).
std::string committed_v2_file(const char* name) {
  const std::filesystem::path path = std::filesystem::path(ADAMX_TEST_DATA_DIR) / "checkpoints_v2" / name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << "cannot open " << path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(adamx_test::read_le(bytes, Layout::kVersion, 4), 2u);
  return bytes;
}

TEST(CheckpointV2Options, AnOptimizerWithoutTheBaselineOptionsWroteVersionTwosValues) {
  const std::string bytes = committed_v2_file("adamx_float.ckpt");
  for (std::size_t g = 0; g < 2; ++g) {
    const BaselineSlots slots = slots_of(bytes, g);
    EXPECT_EQ(slots.final_lr, 0.1);
    EXPECT_EQ(slots.bound_speed, 1e-3);
    EXPECT_EQ(slots.beta_step, 0.999);
  }
}

TEST(CheckpointV2Options, EachBaselineWroteItsOwnOptionsAndVersionTwosValuesForTheOthers) {
  {
    // Written with final_lr 0.05 in group 1 (test_checkpoint_v2_files.cpp).
    const BaselineSlots slots = slots_of(committed_v2_file("adabound_double.ckpt"), 1);
    EXPECT_EQ(slots.final_lr, 0.05);
    EXPECT_EQ(slots.bound_speed, adamx::AdaBoundOptions{}.bound_speed);
    EXPECT_EQ(slots.beta_step, 0.999);
  }
  {
    // Written with beta_step 0.9 in group 0.
    const BaselineSlots slots = slots_of(committed_v2_file("adamod_bfloat16.ckpt"), 0);
    EXPECT_EQ(slots.final_lr, 0.1);
    EXPECT_EQ(slots.bound_speed, 1e-3);
    EXPECT_EQ(slots.beta_step, 0.9);
  }
}

TEST(CheckpointV2Options, ASlotOfAnOptionTheOptimizerLacksTakesWhatVersionTwoTookAndIsDropped) {
  adamx::Adam<double> opt;
  const std::string bytes = adamx_test::as_version2(adamx_test::busy_checkpoint(opt, 2));
  ASSERT_EQ(load_message<adamx::Adam<double>>(bytes), "");
  const std::size_t at = Layout(bytes).groups.at(1).option("final_lr");
  // Version 2 stored (and validated) final_lr and beta_step for Adam too: a
  // file that set them still loads, the values ignored as Adam ignored them.
  const std::string set_anyway = with_f64(with_f64(bytes, at, 0.05), at + 16, 0.9);
  ASSERT_EQ(load_message<adamx::Adam<double>>(set_anyway), "");
  {
    adamx_test::CheckpointModel<adamx::Adam<double>> model;
    adamx::Adam<double> loaded;
    model.add_groups(loaded);
    std::istringstream in(set_anyway, std::ios::binary);
    adamx::load_checkpoint(loaded, in);
    EXPECT_EQ(loaded.state(), opt.state());  // bitwise: the ignored values change nothing
  }
  // Values version 2 refused are refused, naming the rule.
  const std::string message = load_message<adamx::Adam<double>>(with_f64(bytes, at, -1.0));
  EXPECT_TRUE(adamx_test::Contains(message, "invalid final_lr = -1 (must be finite and >= 0)")) << message;
  EXPECT_TRUE(adamx_test::Contains(message, "Adam has no option final_lr")) << message;
  const std::string step_message = load_message<adamx::Adam<double>>(with_f64(bytes, at + 16, 1.0));
  EXPECT_TRUE(adamx_test::Contains(step_message, "invalid beta_step = 1 (must be in [0, 1))")) << step_message;
  const std::string speed_message = load_message<adamx::Adam<double>>(with_f64(bytes, at + 8, 0.0));
  EXPECT_TRUE(adamx_test::Contains(speed_message, "invalid bound_speed = 0 (must be finite and > 0)"))
      << speed_message;
}

TEST(CheckpointV2Options, AnOwnOptionOutOfItsRangeIsRefusedAsBefore) {
  adamx::AdaBound<float> opt;
  const std::string bytes = adamx_test::as_version2(adamx_test::busy_checkpoint(opt, 2));
  const std::size_t at = Layout(bytes).groups.at(0).option("final_lr");
  const std::string message = load_message<adamx::AdaBound<float>>(with_f64(bytes, at + 8, 0.0));
  EXPECT_TRUE(adamx_test::Contains(message, "invalid bound_speed = 0")) << message;
  EXPECT_TRUE(adamx_test::Contains(message, "must be finite and > 0")) << message;
}

}  // namespace
