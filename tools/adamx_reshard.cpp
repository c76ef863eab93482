// adamx_reshard: moves an adamx sharded checkpoint between rank counts, or
// between a sharded and an ordinary (one-process) checkpoint, streaming
// (adamx/sharded_checkpoint.hpp). Exit status 0 on success, 1 when the
// conversion is refused (the message says why, with the OS reason for file
// errors; no output is written), 2 for a usage error.
#include <adamx/sharded_checkpoint.hpp>

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
    "      <from-prefix>.<r>-of-<N> (N found from the files unless given) into\n"
    "      <to-prefix>.<r>-of-<ranks>\n"
    "  merge <from-prefix> <to-file> [--from-ranks N]\n"
    "      the shards into one ordinary checkpoint of the whole model\n"
    "  split <from-file> <to-prefix> <ranks>\n"
    "      an ordinary checkpoint into <to-prefix>.<r>-of-<ranks>\n"
    "  list <prefix>\n"
    "      the rank counts N for which <prefix>.0-of-N exists\n"
    "\n"
    "Exit status: 0 done, 1 conversion refused (nothing written), 2 usage error.";

// A rank count: decimal digits only, 1 to 2^31 - 1.
bool parse_ranks(const std::string& text, int& out) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  const long long value = std::stoll(text);
  if (value < 1 || value > 2147483647LL) return false;
  out = static_cast<int>(value);
  return true;
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
      std::cout << "wrote " << to_ranks << " shard file(s) " << adamx::shard_checkpoint_path(args[2], 0, to_ranks).string()
                << " ...\n";
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
      std::cout << "wrote " << to_ranks << " shard file(s) " << adamx::shard_checkpoint_path(args[2], 0, to_ranks).string()
                << " ...\n";
    } else if (command == "list") {
      if (args.size() != 2 || from_ranks != 0) return usage("list takes <prefix>");
      adamx::detail::check_listable(args[1], "adamx::find_sharded_checkpoints");
      for (const int n : adamx::find_sharded_checkpoints(args[1])) std::cout << n << "\n";
    } else {
      return usage("unknown command '" + command + "'");
    }
  } catch (const std::exception& error) {
    std::cerr << "adamx_reshard: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
