// command_line.hpp - the one command-line parser of the programs adamx builds
// (the examples and adamx_reshard). Not part of the library: the programs
// include it from this directory.
//
// A program declares its options, each with a name, the name of its value,
// a help line and the variable it sets, whose value at declaration is the
// default shown by --help. Values are written `--name value` or
// `--name=value`; a value is checked whole (no trailing characters, within
// the declared range), so a typo is reported rather than half-read.
//
//   --help, -h                       usage, options and defaults on stdout; exit 0
//   an unknown option, a missing,    "<program>: <what is wrong>" and
//   malformed or out-of-range value, "try '<program> --help'" on stderr; exit 2
//   a required option left out
//
// Exit status 2 is the usage error everywhere; the examples report a missing
// dataset with kMissingDatasetExit (examples/mlp.hpp) instead.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace adamx_cli {

/// The exit status of every usage error.
constexpr int kUsageExit = 2;

class Parser {
 public:
  /// `usage` follows "usage: <program> " in --help and error output (e.g.
  /// "[options]"); `description` is printed under it by --help.
  Parser(std::string program, std::string usage, std::string description = "")
      : program_(std::move(program)), usage_(std::move(usage)), description_(std::move(description)) {}

  /// A string option; `choices`, when given, are the only values accepted.
  Parser& add(const std::string& name, const std::string& value_name, const std::string& help,
              std::string& target, std::vector<std::string> choices = {}) {
    std::string shown = help;
    if (!choices.empty()) shown += ": " + join(choices, ", ");
    return declare(name, value_name, shown, target.empty() ? "" : target,
                   [&target, choices](const std::string& text) -> std::string {
                     if (!choices.empty() && !contains(choices, text))
                       return "expects one of " + join(choices, ", ");
                     target = text;
                     return "";
                   });
  }

  /// An integer option of any integer type, accepted only within [lo, hi].
  template <class Integer, class = std::enable_if_t<std::is_integral<Integer>::value>>
  Parser& add(const std::string& name, const std::string& value_name, const std::string& help,
              Integer& target, long long lo = std::numeric_limits<Integer>::min(),
              long long hi = largest<Integer>()) {
    return declare(name, value_name, help, std::to_string(target),
                   [&target, lo, hi](const std::string& text) -> std::string {
                     long long value = 0;
                     if (!parse_integer(text, value) || value < lo || value > hi)
                       return "expects an integer in [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]";
                     target = static_cast<Integer>(value);
                     return "";
                   });
  }

  /// A finite real option greater than `above` (by default: positive).
  Parser& add(const std::string& name, const std::string& value_name, const std::string& help,
              double& target, double above = 0.0) {
    std::ostringstream shown_default, shown_bound;
    shown_default << target;
    shown_bound << above;
    return declare(name, value_name, help, shown_default.str(),
                   [&target, above, bound = shown_bound.str()](const std::string& text) -> std::string {
                     double value = 0.0;
                     if (!parse_real(text, value) || !(value > above))
                       return "expects a finite number > " + bound;
                     target = value;
                     return "";
                   });
  }

  /// An option without a value: present sets `target` to true.
  Parser& flag(const std::string& name, const std::string& help, bool& target) {
    options_.push_back({name, "", help, "", [&target](const std::string&) {
                          target = true;
                          return std::string();
                        }});
    return *this;
  }

  /// What --help shows as the default of the option declared last, in place
  /// of its initial value (e.g. "found from the files"); "" shows none.
  Parser& shown_default(const std::string& text) {
    options_.back().default_text = text;
    return *this;
  }

  /// Makes the option declared last required (--help says so).
  Parser& required() {
    options_.back().required = true;
    return *this;
  }

  /// Lets the command line hold operands (arguments that are not options),
  /// collected in order; `what` names them in the usage error if they are
  /// not allowed. Without this call any operand is a usage error.
  Parser& operands(std::vector<std::string>& target) {
    operands_ = &target;
    return *this;
  }

  enum class Outcome { run, help, usage_error };

  /// Parses without exiting: writes --help to `out`, errors to `err`.
  Outcome try_parse(int argc, const char* const* argv, std::FILE* out, std::FILE* err) {
    bool only_operands = false;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (only_operands || arg.size() < 2 || arg[0] != '-') {
        if (!operands_) return error(err, "unexpected argument '" + arg + "'");
        operands_->push_back(arg);
        continue;
      }
      if (arg == "--") {
        only_operands = true;
        continue;
      }
      if (arg == "-h" || arg == "--help") {
        print_help(out);
        return Outcome::help;
      }
      const std::size_t equals = arg.find('=');
      const std::string name = arg.substr(0, equals);
      Option* option = find(name);
      if (!option) return error(err, "unknown option '" + name + "'");
      std::string value;
      if (option->value_name.empty()) {
        if (equals != std::string::npos) return error(err, name + " takes no value");
      } else if (equals != std::string::npos) {
        value = arg.substr(equals + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];  // may start with one '-': a negative number, checked by the option
      } else {
        return error(err, name + " needs a value (" + name + " " + option->value_name + ")");
      }
      const std::string problem = option->set(value);
      if (!problem.empty()) return error(err, name + " " + problem + ", got '" + value + "'");
      option->seen = true;
    }
    for (const Option& option : options_)
      if (option.required && !option.seen) return error(err, option.name + " is required");
    return Outcome::run;
  }

  /// Parses; exits 0 after --help and kUsageExit after a usage error.
  void parse(int argc, const char* const* argv) {
    switch (try_parse(argc, argv, stdout, stderr)) {
      case Outcome::run:
        return;
      case Outcome::help:
        std::exit(0);
      case Outcome::usage_error:
        std::exit(kUsageExit);
    }
  }
  void parse(int argc, char** argv) { parse(argc, const_cast<const char* const*>(argv)); }

  /// A usage error found after parsing (e.g. the wrong number of operands):
  /// the same message and exit status as the parser's own.
  [[noreturn]] void fail(const std::string& message) const {
    error(stderr, message);
    std::exit(kUsageExit);
  }

  void print_help(std::FILE* out) const {
    std::fprintf(out, "usage: %s %s\n", program_.c_str(), usage_.c_str());
    if (!description_.empty()) std::fprintf(out, "\n%s\n", description_.c_str());
    std::fprintf(out, "\noptions:\n");
    std::vector<std::pair<std::string, std::string>> rows;
    for (const Option& o : options_) {
      std::string text = o.help;
      if (o.required) text += " (required)";
      else if (!o.default_text.empty()) text += " (default " + o.default_text + ")";
      rows.emplace_back(o.value_name.empty() ? o.name : o.name + " " + o.value_name, text);
    }
    rows.emplace_back("-h, --help", "print this help and exit");
    std::size_t width = 0;
    for (const auto& row : rows) width = std::max(width, row.first.size());
    for (const auto& row : rows)
      std::fprintf(out, "  %-*s  %s\n", static_cast<int>(width), row.first.c_str(), row.second.c_str());
  }

 private:
  struct Option {
    std::string name, value_name, help, default_text;
    std::function<std::string(const std::string&)> set;  // "" or what is wrong with the value
    bool required = false;
    bool seen = false;
  };

  Parser& declare(const std::string& name, const std::string& value_name, const std::string& help,
                  const std::string& default_text, std::function<std::string(const std::string&)> set) {
    options_.push_back({name, value_name, help, default_text, std::move(set)});
    return *this;
  }

  // Integer's largest value, or long long's if that is smaller.
  template <class Integer>
  static constexpr long long largest() {
    return static_cast<unsigned long long>(std::numeric_limits<Integer>::max()) >
                   static_cast<unsigned long long>(std::numeric_limits<long long>::max())
               ? std::numeric_limits<long long>::max()
               : static_cast<long long>(std::numeric_limits<Integer>::max());
  }

  Option* find(const std::string& name) {
    for (Option& o : options_)
      if (o.name == name) return &o;
    return nullptr;
  }

  Outcome error(std::FILE* err, const std::string& message) const {
    std::fprintf(err, "%s: %s\ntry '%s --help'\n", program_.c_str(), message.c_str(), program_.c_str());
    return Outcome::usage_error;
  }

  // Optional sign and decimal digits, nothing else, within long long.
  static bool parse_integer(const std::string& text, long long& value) {
    const std::size_t digits = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
    if (text.size() == digits || text.find_first_not_of("0123456789", digits) != std::string::npos)
      return false;
    errno = 0;
    value = std::strtoll(text.c_str(), nullptr, 10);
    return errno != ERANGE;
  }

  // The whole text a finite number, as strtod reads it.
  static bool parse_real(const std::string& text, double& value) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    char* end = nullptr;
    errno = 0;
    value = std::strtod(text.c_str(), &end);
    return end == text.c_str() + text.size() && errno != ERANGE && std::isfinite(value);
  }

  static bool contains(const std::vector<std::string>& items, const std::string& item) {
    for (const std::string& x : items)
      if (x == item) return true;
    return false;
  }

  static std::string join(const std::vector<std::string>& items, const char* separator) {
    std::string out;
    for (const std::string& x : items) out += (out.empty() ? "" : separator) + x;
    return out;
  }

  std::string program_, usage_, description_;
  std::vector<Option> options_;
  std::vector<std::string>* operands_ = nullptr;
};

}  // namespace adamx_cli
