// fortunes_text.hpp - the text of the study's language-model tasks
// (task_char_lm.hpp, task_transformer.hpp): English fortune cookies from
// Debian's `fortunes` package (source fortune-mod 1.99.1, /usr/share/games/
// fortunes), split into training, validation and test text by entry.
//
// Data source and licence. The files come with BSD fortune(6) (Ken Arnold,
// University of California, Berkeley), extended for Linux by Florian LaRoche
// and Amy A. Lewis; "cookie" is Karl Lehenbauer's (not used here). The
// package's copyright file (/usr/share/doc/fortunes/copyright) states the
// BSD licence of the Regents of the University of California for the
// package and names no separate licence for the quotations themselves, which
// are short excerpts by many authors; Debian distributes them in main. The
// study reads them where the package installs them and ships none of the
// text.
//
// What is read: the plain-text fortune files named in fortune_files() (not
// the strfile(8) indexes *.dat nor the *.u8 links), a fixed list of files of
// ordinary English prose chosen for that reason (no ASCII art, program code,
// song lyrics, non-English text or the "offensive" set), 1.16 MB. Each file
// is a sequence of entries separated by lines holding a lone "%".
//
// Vocabulary: kVocab = 98 symbols: 0 stands for any byte outside the others
// (276 bytes in all, mostly the backspaces and bells of old overstruck
// text), 1 newline, 2 tab (the attributions are indented with tabs), 3..97
// the printable ASCII characters ' ' .. '~'.
//
// Splits: an entry's split follows from its contents alone: a fixed 64-bit
// hash of its bytes, modulo 20, sends 1/20 of the entries to validation,
// 1/20 to test, the rest to training. So the splits never depend on a run's
// seed, on the order of the files, or on the platform, and a quotation that
// appears twice lands in one split only (exact repeats after the first are
// dropped). Each split is its entries, in file order, each followed by the
// "%\n" line that ends it in the files, as one sequence of symbols. With the
// package's version 1:1.99.1-7.3: training 1,040,871 symbols (6009
// entries), validation 58,266 (331), test 61,915 (358); 5 repeats dropped.
// For scale: on validation an add-one unigram model of the training text
// scores 3.28 nats (4.73 bits) per symbol, a bigram model 2.57 (3.70 bits).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "study_main.hpp"

namespace study::fortunes {

/// The files read, in this order (the text of each split keeps it).
inline const std::vector<std::string>& fortune_files() {
  static const std::vector<std::string> files = {
      "fortunes", "computers", "science",  "literature", "people", "wisdom", "work",  "education",
      "law",      "medicine",  "humorists", "politics",  "food",   "sports", "love", "kids"};
  return files;
}

constexpr int kVocab = 98;
constexpr int kUnknown = 0;

/// The symbol of one byte.
inline std::uint8_t symbol_of(unsigned char c) {
  if (c == '\n') return 1;
  if (c == '\t') return 2;
  if (c >= ' ' && c <= '~') return static_cast<std::uint8_t>(3 + (c - ' '));
  return kUnknown;
}

/// One split: its symbols and how many entries they hold.
struct Split {
  std::vector<std::uint8_t> symbols;
  std::size_t entries = 0;
};

struct Corpus {
  Split train, validation, test;
  std::size_t duplicates = 0;  ///< entries dropped as exact repeats of an earlier one
  std::size_t unknown = 0;     ///< bytes mapped to kUnknown
};

/// FNV-1a over the bytes, then the splitmix64 finaliser (so the low bits the
/// modulo uses depend on every byte).
inline std::uint64_t entry_hash(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

/// The entries of one fortune file: the text between lone "%" lines, each
/// with its final newline; empty entries are skipped.
inline std::vector<std::string> read_entries(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::vector<std::string> entries;
  std::string line, entry;
  const auto finish = [&] {
    if (entry.find_first_not_of(" \t\n") != std::string::npos) entries.push_back(entry);
    entry.clear();
  };
  while (std::getline(in, line)) {
    if (line == "%") {
      finish();
    } else {
      entry += line;
      entry += '\n';
    }
  }
  if (in.bad()) throw std::runtime_error("reading " + file.string() + " failed");
  finish();
  return entries;
}

/// Reads the files of fortune_files() from `dir` and splits them; throws
/// MissingData when any is absent.
inline Corpus load(const std::string& dir) {
  namespace fs = std::filesystem;
  for (const auto& name : fortune_files())
    if (!fs::is_regular_file(fs::path(dir) / name))
      throw MissingData("fortunes text not found in " + dir + " (no file '" + name +
                        "'; apt-get install fortunes)");
  Corpus c;
  std::set<std::string> seen;
  for (const auto& name : fortune_files()) {
    for (const auto& entry : read_entries(fs::path(dir) / name)) {
      if (!seen.insert(entry).second) {
        ++c.duplicates;
        continue;
      }
      const std::uint64_t bucket = entry_hash(entry) % 20;
      Split& s = bucket == 0 ? c.validation : bucket == 1 ? c.test : c.train;
      for (const char ch : entry + "%\n") {
        const std::uint8_t sym = symbol_of(static_cast<unsigned char>(ch));
        if (sym == kUnknown) ++c.unknown;
        s.symbols.push_back(sym);
      }
      ++s.entries;
    }
  }
  return c;
}

// ------------------------------------------------ windows for the tasks --

/// `batch` windows of `length` symbols at uniformly random starts in `text`
/// (a batch × length int64 tensor): the training batches, drawn with the
/// run's own generator so that the batch order follows the seed alone.
inline torch::Tensor random_windows(const std::vector<std::uint8_t>& text, std::int64_t batch,
                                    std::int64_t length, std::mt19937& rng) {
  std::uniform_int_distribution<std::size_t> start(0, text.size() - static_cast<std::size_t>(length));
  torch::Tensor out = torch::empty({batch, length}, torch::kLong);
  auto a = out.accessor<std::int64_t, 2>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::size_t s = start(rng);
    for (std::int64_t t = 0; t < length; ++t) a[b][t] = text[s + static_cast<std::size_t>(t)];
  }
  return out;
}

/// `count` windows of `length` symbols spread evenly over the whole of `text`
/// (first at its start, last at its end): the fixed held-out windows that
/// every run of a task is scored on.
inline torch::Tensor even_windows(const std::vector<std::uint8_t>& text, std::int64_t count,
                                  std::int64_t length) {
  const std::size_t span = text.size() - static_cast<std::size_t>(length);
  torch::Tensor out = torch::empty({count, length}, torch::kLong);
  auto a = out.accessor<std::int64_t, 2>();
  for (std::int64_t w = 0; w < count; ++w) {
    const std::size_t s = count == 1 ? 0 : span * static_cast<std::size_t>(w) / static_cast<std::size_t>(count - 1);
    for (std::int64_t t = 0; t < length; ++t) a[w][t] = text[s + static_cast<std::size_t>(t)];
  }
  return out;
}

}  // namespace study::fortunes
