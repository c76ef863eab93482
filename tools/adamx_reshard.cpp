// adamx_reshard: moves an adamx sharded checkpoint between rank counts, or
// between a sharded and an ordinary (one-process) checkpoint, streaming
// (adamx/sharded_checkpoint.hpp). Exit status 0 on success, 1 when the
// conversion is refused (the message says why, with the OS reason for file
// errors; nothing is published), 2 for a usage error.
#include <adamx/sharded_checkpoint.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "command_line.hpp"

namespace {

const char* const kCommands =
    "commands:\n"
    "  reshard <from-prefix> <to-prefix> <ranks> [--from-ranks N]\n"
    "      the sharded checkpoint of N ranks under <from-prefix> (N found from\n"
    "      the files unless given) into one of <ranks> ranks under <to-prefix>,\n"
    "      committed by <to-prefix>.manifest-of-<ranks>\n"
    "  merge <from-prefix> <to-file> [--from-ranks N]\n"
    "      the shards into one ordinary checkpoint of the whole model\n"
    "  split <from-file> <to-prefix> <ranks>\n"
    "      an ordinary checkpoint into a sharded one of <ranks> ranks\n"
    "  list <prefix>\n"
    "      the rank counts N of the sharded checkpoints under <prefix>, one a\n"
    "      line; \"N legacy\" for one without a manifest (an older adamx's\n"
    "      <prefix>.<r>-of-N files; reshard converts it)\n"
    "\n"
    "Exit status: 0 done, 1 conversion refused (nothing published), 2 usage error.";

// A rank count: decimal digits only, 1 to 2^31 - 1.
bool parse_ranks(const std::string& text, int& out) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  const long long value = std::stoll(text);
  if (value < 1 || value > 2147483647LL) return false;
  out = static_cast<int>(value);
  return true;
}

// What a conversion into a sharded checkpoint published.
void report_written(const std::string& prefix, int ranks) {
  std::cout << "wrote " << ranks << " shard file(s) " << adamx::shard_checkpoint_files(prefix, ranks)[0].string()
            << " ..., committed by " << adamx::shard_manifest_path(prefix, ranks).string() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
#if defined(SIGXFSZ)
  // Past a file-size limit (ulimit -f) a write fails with "File too large",
  // which the tool reports (exit status 1, output removed), instead of the
  // signal ending the process with a half-written ".partial" file.
  std::signal(SIGXFSZ, SIG_IGN);
#endif
  std::vector<std::string> args;  // the command and its operands
  int from_ranks = 0;
  adamx_cli::Parser parser("adamx_reshard", "<command> <operands>... [--from-ranks N]", kCommands);
  parser.add("--from-ranks", "N", "the source's rank count (reshard, merge)", from_ranks, 1, 2147483647)
      .shown_default("found from the files")
      .operands(args);
  parser.parse(argc, argv);
  if (args.empty()) parser.fail("missing command (reshard, merge, split or list)");
  const auto usage = [&parser](const std::string& problem) -> int { parser.fail(problem); };
  const std::string& command = args[0];
  try {
    if (command == "reshard") {
      int to_ranks = 0;
      if (args.size() != 4) return usage("reshard takes <from-prefix> <to-prefix> <ranks>");
      if (!parse_ranks(args[3], to_ranks)) return usage("'" + args[3] + "' is not a rank count >= 1");
      if (from_ranks > 0)
        adamx::reshard_checkpoint(args[1], from_ranks, args[2], to_ranks);
      else
        adamx::reshard_checkpoint(args[1], args[2], to_ranks);
      report_written(args[2], to_ranks);
    } else if (command == "merge") {
      if (args.size() != 3) return usage("merge takes <from-prefix> <to-file>");
      if (from_ranks > 0)
        adamx::merge_sharded_checkpoint(args[1], from_ranks, args[2]);
      else
        adamx::merge_sharded_checkpoint(args[1], args[2]);
      std::cout << "wrote " << args[2] << "\n";
    } else if (command == "split") {
      int to_ranks = 0;
      if (args.size() != 4 || from_ranks != 0) return usage("split takes <from-file> <to-prefix> <ranks>");
      if (!parse_ranks(args[3], to_ranks)) return usage("'" + args[3] + "' is not a rank count >= 1");
      adamx::split_checkpoint(args[1], args[2], to_ranks);
      report_written(args[2], to_ranks);
    } else if (command == "list") {
      if (args.size() != 2 || from_ranks != 0) return usage("list takes <prefix>");
      adamx::detail::check_listable(args[1], "adamx::find_sharded_checkpoints");
      std::vector<int> legacy;
      for (const int n : adamx::detail::find_shard_sets(args[1], &legacy))
        std::cout << n << (std::find(legacy.begin(), legacy.end(), n) != legacy.end() ? " legacy" : "") << "\n";
    } else {
      return usage("unknown command '" + command + "'");
    }
  } catch (const std::exception& error) {
    std::cerr << "adamx_reshard: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
