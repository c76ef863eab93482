// The choice of instruction set (isa.hpp): the names, what this machine
// supports (against the CPU flags Linux lists), and refusals that change
// nothing. That every set computes the same bits is the determinism label's
// (test_bitwise_history.cpp, test_determinism.cpp) and the conversion
// label's; ADAMX_INSTRUCTION_SET is test_isa_environment.cpp's.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using adamx::InstructionSet;

constexpr InstructionSet kAllSets[] = {InstructionSet::baseline, InstructionSet::avx2, InstructionSet::avx512};

TEST(InstructionSet, NamesAreTheEnvironmentVariablesSpelling) {
  EXPECT_STREQ(adamx::instruction_set_name(InstructionSet::baseline), "baseline");
  EXPECT_STREQ(adamx::instruction_set_name(InstructionSet::avx2), "avx2");
  EXPECT_STREQ(adamx::instruction_set_name(InstructionSet::avx512), "avx512");
}

TEST(InstructionSet, TheBaselineIsAlwaysSupportedAndListedFirst) {
  const std::vector<InstructionSet> sets = adamx::supported_instruction_sets();
  ASSERT_FALSE(sets.empty());
  EXPECT_EQ(sets.front(), InstructionSet::baseline);
  for (std::size_t k = 1; k < sets.size(); ++k) EXPECT_LT(static_cast<int>(sets[k - 1]), static_cast<int>(sets[k]));
  for (const InstructionSet set : kAllSets) {
    const bool listed = std::find(sets.begin(), sets.end(), set) != sets.end();
    EXPECT_EQ(adamx::instruction_set_supported(set), listed) << adamx::instruction_set_name(set);
  }
  std::string listed;
  for (const InstructionSet set : sets) listed += std::string(" ") + adamx::instruction_set_name(set);
  std::printf("supported:%s; active: %s; baseline built for %s\n", listed.c_str(),
              adamx::instruction_set_name(adamx::instruction_set()), adamx::baseline_description());
}

// Linux lists a CPU feature in /proc/cpuinfo only when it also saves the
// registers the feature needs, so its flags say what the detection (cpuid
// and xgetbv) must find. A set needs all of its flags; AVX-512's include
// AVX2's.
TEST(InstructionSet, DetectionAgreesWithTheFlagsLinuxLists) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string flag; words >> flag;) flags.insert(flag);
    break;
  }
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo: not Linux on x86";
  const auto has = [&](std::initializer_list<const char*> names) {
    for (const char* name : names)
      if (flags.count(name) == 0) return false;
    return true;
  };
  const bool avx2 = has({"avx", "avx2", "f16c"});
  const bool avx512 = avx2 && has({"avx512f", "avx512bw", "avx512dq", "avx512vl"});
#if ADAMX_DISPATCH
  EXPECT_EQ(adamx::instruction_set_supported(InstructionSet::avx2), avx2);
  EXPECT_EQ(adamx::instruction_set_supported(InstructionSet::avx512), avx512);
  // With nothing chosen in the environment, the first use picks the best.
  if (std::getenv("ADAMX_INSTRUCTION_SET") == nullptr) {
    EXPECT_EQ(adamx::instruction_set(),
              avx512 ? InstructionSet::avx512 : avx2 ? InstructionSet::avx2 : InstructionSet::baseline);
  }
#else
  EXPECT_FALSE(adamx::instruction_set_supported(InstructionSet::avx2)) << "no dispatch in this build";
  EXPECT_FALSE(adamx::instruction_set_supported(InstructionSet::avx512)) << "no dispatch in this build";
  (void)avx512;
#endif
}

// Each set is either taken (and then reported) or refused with a message
// that names what is missing, leaving the choice as it was.
TEST(InstructionSet, EachSetIsTakenOrRefusedWithTheChoiceKept) {
  const InstructionSet before = adamx::instruction_set();
  for (const InstructionSet set : kAllSets) {
    SCOPED_TRACE(adamx::instruction_set_name(set));
    adamx::set_instruction_set(InstructionSet::baseline);
    if (adamx::instruction_set_supported(set)) {
      adamx::set_instruction_set(set);
      EXPECT_EQ(adamx::instruction_set(), set);
    } else {
      try {
        adamx::set_instruction_set(set);
        ADD_FAILURE() << "an unsupported set was accepted";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("lacks"), std::string::npos) << e.what();
      }
      EXPECT_EQ(adamx::instruction_set(), InstructionSet::baseline);
    }
  }
  adamx::set_instruction_set(before);
}

TEST(InstructionSet, AValueOutsideTheEnumerationIsRefused) {
  const InstructionSet before = adamx::instruction_set();
  try {
    adamx::set_instruction_set(static_cast<InstructionSet>(7));
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not an instruction set adamx knows"), std::string::npos) << e.what();
  }
  EXPECT_EQ(adamx::instruction_set(), before);
  EXPECT_FALSE(adamx::instruction_set_supported(static_cast<InstructionSet>(7)));
}

}  // namespace
