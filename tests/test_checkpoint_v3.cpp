// Checkpoint format version 3 (docs/checkpoints.md): the options, the group
// scalars and the state slots are listed by name, as each optimizer's
// update rule declares them. The files are read here by an independent
// parser (checkpoint_layout.hpp, written from the documentation), and
// crafted files whose names, encodings or counts differ from the
// optimizer's declaration are refused by name with the optimizer unchanged.
// Version 2 files written by an earlier adamx (tests/data/checkpoints_v2)
// load, save as version 3 and load back to the same bits.
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "recorded_model.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using adamx_test::Contains;
using adamx_test::GroupFields;
using adamx_test::Layout;

template <class Opt>
class CheckpointV3 : public ::testing::Test {};
TYPED_TEST_SUITE(CheckpointV3, adamx_test::AllOptimizers, adamx_test::OptimizerName);

// The encoding docs/checkpoints.md gives each type of option: 1 f64, 2 u8
// bool, 3 u8 enumeration code.
template <class T>
unsigned documented_encoding() {
  if (std::is_same<T, double>::value) return 1;
  if (std::is_same<T, bool>::value) return 2;
  return 3;
}

template <class Opt>
std::string two_group_checkpoint(Opt& opt, int steps = 3) {
  return adamx_test::busy_checkpoint(opt, steps);
}

// Saving, loading into a fresh optimizer and saving again gives the same
// state, bit for bit, and the same bytes.
TYPED_TEST(CheckpointV3, RoundTripIsBitwise) {
  using Opt = TypeParam;
  Opt opt;
  const std::string bytes = two_group_checkpoint(opt);
  ASSERT_EQ(adamx_test::read_le(bytes, Layout::kVersion, 4), 3u);
  adamx_test::CheckpointModel<Opt> model;
  Opt loaded;
  model.add_groups(loaded);
  std::istringstream in(bytes, std::ios::binary);
  adamx::load_checkpoint(loaded, in);
  EXPECT_TRUE(loaded.state() == opt.state());
  EXPECT_EQ(adamx_test::saved(loaded), bytes);
}

// The options block lists exactly the optimizer's declared fields, in
// declaration order, each with its documented encoding and its value; the
// group scalars and the slot names likewise.
TYPED_TEST(CheckpointV3, BlocksListExactlyTheDeclaredFields) {
  using Opt = TypeParam;
  using Options = typename Opt::Options;
  Opt opt;
  const std::string bytes = two_group_checkpoint(opt);
  const Layout layout(bytes);
  ASSERT_EQ(layout.version, 3u);
  using Rule = typename adamx_test::FlavourOf_t<Opt>::Rule;
  const std::vector<std::string> slots(std::begin(Rule::slot_names), std::end(Rule::slot_names));
  EXPECT_EQ(layout.slot_names, slots);
  ASSERT_EQ(layout.groups.size(), 2u);
  for (std::size_t g = 0; g < 2; ++g) {
    const GroupFields& fields = layout.groups[g];
    const Options& o = opt.options(g);
    std::size_t i = 0;
    adamx::for_each_option_field<Options>([&](const auto& field) {
      using T = typename std::decay_t<decltype(field)>::value_type;
      ASSERT_LT(i, fields.options.size()) << "the file lacks " << field.name;
      const adamx_test::Field& stored = fields.options[i++];
      EXPECT_EQ(stored.name, field.name);
      EXPECT_EQ(stored.encoding, documented_encoding<T>()) << field.name;
      if constexpr (std::is_same<T, double>::value) {
        const std::uint64_t bits = adamx_test::read_le(bytes, stored.value_at, 8);
        double value;
        std::memcpy(&value, &bits, sizeof value);
        EXPECT_EQ(value, o.*field.member) << field.name;
      } else {
        EXPECT_EQ(adamx_test::read_le(bytes, stored.value_at, 1), static_cast<std::uint64_t>(o.*field.member))
            << field.name;
      }
    });
    EXPECT_EQ(i, fields.options.size()) << "the file has options the optimizer does not declare";
    EXPECT_EQ(adamx_test::read_le(bytes, fields.option_count, 4), fields.options.size());
    // The group scalars the rule declares (the Adam family's γ and h), by
    // name and bits.
    const auto group_state = opt.state_without_arrays(g);
    using Scalars = std::decay_t<decltype(group_state.scalars())>;
    std::size_t k = 0;
    adamx::for_each_group_scalar<Scalars>([&](const auto& field) {
      ASSERT_LT(k, fields.scalars.size()) << "the file lacks " << field.name;
      const adamx_test::Field& stored = fields.scalars[k++];
      EXPECT_EQ(stored.name, field.name);
      std::uint64_t bits;
      std::memcpy(&bits, &(group_state.scalars().*field.member), sizeof bits);
      EXPECT_EQ(adamx_test::read_le(bytes, stored.value_at, 8), bits) << field.name;
    });
    EXPECT_EQ(k, fields.scalars.size()) << "the file has group scalars the rule does not declare";
  }
  // An optimizer without AdaBound's options has none in its file.
  EXPECT_EQ(layout.groups[0].has_option("final_lr"), adamx::has_option_field<Options>("final_lr"));
  EXPECT_EQ(layout.groups[0].has_option("beta_step"), adamx::has_option_field<Options>("beta_step"));
}

// ---- files that differ from the declaration --------------------------------

using Opt = adamx::AdamX<float>;

// An optimizer with state of its own (one step taken), which a refused load
// must leave as it was.
struct Target {
  adamx_test::CheckpointModel<Opt> model;
  Opt opt;
  Target() {
    model.add_groups(opt);
    model.step(opt, 7);
  }
};

// What loading `bytes` into `target` says; fails the test if it loads or
// changes the state.
std::string refusal(const std::string& bytes) {
  Target target;
  const auto before = target.opt.state();
  std::istringstream in(bytes, std::ios::binary);
  try {
    adamx::load_checkpoint(target.opt, in);
  } catch (const adamx::CheckpointError& error) {
    EXPECT_TRUE(target.opt.state() == before) << "refused but changed the state: " << error.what();
    return error.what();
  }
  ADD_FAILURE() << "loaded a file that differs from the declaration";
  return {};
}

std::string valid_file() {
  Opt opt;
  return two_group_checkpoint(opt);
}

// `file` with the name at `name_at` (u32 length, then its bytes) replaced
// by `name` of the same length, checksums recomputed.
std::string renamed(const std::string& file, std::size_t name_at, const std::string& name) {
  EXPECT_EQ(adamx_test::read_le(file, name_at, 4), name.size());
  std::string out = file;
  out.replace(name_at + 4, name.size(), name);
  Layout(out).reseal(out);
  return out;
}

TEST(CheckpointV3Declaration, AnOptionOfAnotherNameIsRefusedNamingBoth) {
  const std::string file = valid_file();
  const Layout layout(file);
  const adamx_test::Field& beta3 = layout.groups[0].options.at(3);
  ASSERT_EQ(beta3.name, "beta3");
  const std::string message = refusal(renamed(file, beta3.name_at, "betaX"));
  EXPECT_TRUE(Contains(message, "the file's options of group 'layer1' have betaX where AdamX<float> expects beta3"))
      << message;
}

TEST(CheckpointV3Declaration, OptionsInAnotherOrderAreRefused) {
  const std::string file = valid_file();
  const Layout layout(file);
  const GroupFields& g = layout.groups[1];
  // beta1 and beta2: same length names, same encoding; swap the names only.
  std::string swapped = renamed(renamed(file, g.options.at(1).name_at, "beta2"), g.options.at(2).name_at, "beta1");
  const std::string message = refusal(swapped);
  EXPECT_TRUE(Contains(message, "the file's options of group 'layer2' have beta2 where AdamX<float> expects beta1"))
      << message;
}

TEST(CheckpointV3Declaration, AnOptionStoredInAnotherEncodingIsRefused) {
  const std::string file = valid_file();
  const Layout layout(file);
  const std::size_t tag = layout.groups[0].options.at(7).encoding_at;
  ASSERT_EQ(layout.groups[0].options.at(7).name, "decay_mode");
  std::string bad = file;
  adamx_test::write_le(bad, tag, 2, 1);  // u8 bool instead of u8 enum code: the same size
  layout.reseal(bad);
  const std::string message = refusal(bad);
  EXPECT_TRUE(Contains(message, "store decay_mode as u8 bool where AdamX<float> expects u8 enum code")) << message;

  adamx_test::write_le(bad, tag, 9, 1);  // no encoding has tag 9
  layout.reseal(bad);
  const std::string unknown = refusal(bad);
  EXPECT_TRUE(Contains(unknown, "malformed header")) << unknown;
  EXPECT_TRUE(Contains(unknown, "decay_mode has unknown encoding 9")) << unknown;
}

// One change of a header: bytes [from, to) of the file replaced by `insert`.
struct Splice {
  std::size_t from, to;
  std::string insert;
};

// `file` with its header changed by `splices` (offsets in `file`, not
// overlapping), resealed.
std::string spliced(const std::string& file, std::vector<Splice> splices) {
  const Layout layout(file);
  std::string header = file.substr(Layout::kHeader, layout.header_crc - Layout::kHeader);
  std::sort(splices.begin(), splices.end(), [](const Splice& a, const Splice& b) { return a.from > b.from; });
  for (const Splice& s : splices) header.replace(s.from - Layout::kHeader, s.to - s.from, s.insert);
  return adamx_test::with_header(file, header, 3);
}
std::string spliced(const std::string& file, std::size_t from, std::size_t to, const std::string& insert) {
  return spliced(file, {{from, to, insert}});
}

std::string u32_bytes(std::uint32_t value) {
  std::string out(4, '\0');
  adamx_test::write_le(out, 0, value, 4);
  return out;
}

TEST(CheckpointV3Declaration, MissingAndExtraOptionsAreRefused) {
  const std::string file = valid_file();
  const Layout layout(file);
  const GroupFields& g = layout.groups[0];
  const std::size_t count = g.options.size();
  ASSERT_EQ(count, 11u);
  // Without its last option (nonfinite): the count says 10, the list ends early.
  const std::string missing = refusal(spliced(
      file, {{g.option_count, g.option_count + 4, u32_bytes(10)}, {g.options.back().name_at, g.t, ""}}));
  EXPECT_TRUE(Contains(missing, "the file's options of group 'layer1' end after 10 field(s) where AdamX<float> "
                                "expects nonfinite"))
      << missing;
  // With AdaBound's final_lr after them.
  const std::string final_lr = u32_bytes(8) + "final_lr" + std::string(1, '\x01') + std::string(8, '\0');
  const std::string extra =
      refusal(spliced(file, {{g.t, g.t, final_lr}, {g.option_count, g.option_count + 4, u32_bytes(12)}}));
  EXPECT_TRUE(Contains(extra, "the file's options of group 'layer1' have final_lr after the 11 field(s) "
                              "AdamX<float> declares"))
      << extra;
  // A count larger than the fields that follow is a malformed header.
  const std::string overcounted = refusal(spliced(file, g.option_count, g.option_count + 4, u32_bytes(1000)));
  EXPECT_TRUE(Contains(overcounted, "malformed header")) << overcounted;
}

TEST(CheckpointV3Declaration, GroupScalarsAndSlotsOfOtherNamesAreRefused) {
  const std::string file = valid_file();
  const Layout layout(file);
  const std::string scalar = refusal(renamed(file, layout.groups[1].scalars.at(0).name_at, "gamme"));
  EXPECT_TRUE(Contains(scalar, "the file's group scalars of group 'layer2' have gamme where AdamX<float> expects "
                               "gamma"))
      << scalar;
  // Without h: the count says 1.
  const GroupFields& g = layout.groups[0];
  const std::string missing = refusal(spliced(
      file, {{g.scalar_count, g.scalar_count + 4, u32_bytes(1)}, {g.scalars.at(1).name_at, g.tensor_count, ""}}));
  EXPECT_TRUE(Contains(missing, "the file's group scalars of group 'layer1' end after 1 field(s) where "
                                "AdamX<float> expects h"))
      << missing;
  // The slot names, once in the header.
  std::size_t at = layout.slot_count + 4;
  for (int k = 0; k < 2; ++k) at += 4 + adamx_test::read_le(file, at, 4);  // past m and v
  const std::string slot = refusal(renamed(file, at, "v_min"));
  EXPECT_TRUE(Contains(slot, "the file's state slots have v_min where AdamX<float> expects v_max")) << slot;
  // Without step_avg's place: two slots, m and v.
  const std::string fewer =
      refusal(spliced(file, {{layout.slot_count, layout.slot_count + 4, u32_bytes(2)}, {at, at + 4 + 5, ""}}));
  EXPECT_TRUE(Contains(fewer, "the file's state slots end after 2 field(s) where AdamX<float> expects v_max"))
      << fewer;
}

// ---- version 2 files -----------------------------------------------------------

std::filesystem::path v2_dir() { return std::filesystem::path(ADAMX_TEST_DATA_DIR) / "checkpoints_v2"; }

// The model the committed version-2 files were written from
// (test_checkpoint_v2_files.cpp).
std::vector<recorded_model::GroupSpec> small_model() {
  using recorded_model::Regime;
  return {
      {"layer0", {{"weight", 3, 4, true, Regime::ordinary}, {"bias", 4, 1, false, Regime::sparse}}},
      {"layer1", {{"w", 2, 5, false, Regime::large}, {"tiny", 3, 1, false, Regime::tiny}}},
  };
}

// A committed version-2 file loads; saved again it is version 3, which
// loads back into the same state bit for bit.
template <class V2Opt>
void resave_as_version3(const char* file) {
  SCOPED_TRACE(file);
  std::ifstream in(v2_dir() / file, std::ios::binary);
  const std::string v2((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(adamx_test::read_le(v2, Layout::kVersion, 4), 2u);
  recorded_model::Model<typename V2Opt::scalar_type> model(small_model(), 2024);
  V2Opt loaded;
  model.add_groups(loaded);
  adamx::load_checkpoint(loaded, v2_dir() / file);
  std::ostringstream out(std::ios::binary);
  adamx::save_checkpoint(loaded, out);
  const std::string v3 = out.str();
  ASSERT_EQ(adamx_test::read_le(v3, Layout::kVersion, 4), 3u);
  // The arrays are the same bytes in both versions.
  EXPECT_EQ(v3.substr(Layout(v3).arrays, v3.size() - 4 - Layout(v3).arrays),
            v2.substr(Layout(v2).arrays, v2.size() - 4 - Layout(v2).arrays));
  V2Opt reloaded;
  recorded_model::Model<typename V2Opt::scalar_type> other(small_model(), 2024);
  other.add_groups(reloaded);
  std::istringstream back(v3, std::ios::binary);
  adamx::load_checkpoint(reloaded, back);
  EXPECT_TRUE(reloaded.state() == loaded.state());
}

TEST(CheckpointV3FromV2, EveryCommittedFileResavesAsVersion3Bitwise) {
  resave_as_version3<adamx::AdamX<float>>("adamx_float.ckpt");
  resave_as_version3<adamx::Adam<double>>("adam_double.ckpt");
  resave_as_version3<adamx::AdamW<float>>("adamw_float.ckpt");
  resave_as_version3<adamx::AdaMod<Eigen::bfloat16>>("adamod_bfloat16.ckpt");
  resave_as_version3<adamx::RAdam<Eigen::half>>("radam_half.ckpt");
  resave_as_version3<adamx::AdaBound<double>>("adabound_double.ckpt");
}

}  // namespace
