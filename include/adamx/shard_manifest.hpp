// The commit point of a sharded checkpoint (docs/checkpoints.md, "The
// manifest"). A set of shard files is published all at once or not at all:
//
//   1. every file is written under a name no reader looks at yet,
//      "<prefix>.<r>-of-<N>.<id>" (<id>: 16 hex digits, one per save), and
//      flushed to disk;
//   2. the manifest "<prefix>.manifest-of-<N>" — the save's id and each
//      file's size and last four bytes (its checkpoint's CRC-32) — is written
//      as ".partial", flushed, and renamed into place: that rename is the
//      commit;
//   3. only then are the files of older saves of <prefix> for N ranks removed.
//
// A reader opens the manifest first and only the files it names, each of
// which must have the recorded size and checksum. So a crash or a failure
// anywhere before the rename leaves the previous manifest and the previous
// files, which still load; after it, the new set loads. Files not named by
// the manifest are never read; the next save at the prefix removes them.
//
// Sets written by older adamx versions have no manifest: "<prefix>.<r>-of-<N>".
// They are still read (legacy), with the checks they always had, so that
// existing runs resume; re-sharding one (even to the same N) gives it a
// manifest.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/checkpoint.hpp"
#include "adamx/crc32.hpp"
#include "adamx/errors.hpp"

ADAMX_NAMESPACE_BEGIN

/// The manifest's format version.
inline constexpr std::uint32_t kShardManifestVersion = 1;

/// The manifest of the sharded checkpoint of `ranks` ranks under `prefix`:
/// "<prefix>.manifest-of-<ranks>". Its rename into place commits a save.
inline std::filesystem::path shard_manifest_path(const std::filesystem::path& prefix, int ranks) {
  std::filesystem::path path = prefix;
  path += ".manifest-of-" + std::to_string(ranks);
  return path;
}

namespace detail {

inline constexpr char kShardManifestMagic[8] = {'A', 'D', 'A', 'M', 'X', 'M', 'A', 'N'};

inline std::string save_id_hex(std::uint64_t id) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

// Rank `rank`'s file of save `save_id`: "<prefix>.<rank>-of-<ranks>.<id>".
inline std::filesystem::path shard_generation_path(const std::filesystem::path& prefix, int rank, int ranks,
                                                   std::uint64_t save_id) {
  std::filesystem::path path = prefix;
  path += "." + std::to_string(rank) + "-of-" + std::to_string(ranks) + "." + save_id_hex(save_id);
  return path;
}

// A fresh save id: random, so that two saves (or two runs writing the same
// prefix) never name the same files. Never 0.
inline std::uint64_t new_save_id() {
  std::random_device device;
  std::uint64_t id = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  id ^= static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) * 0x9E3779B97F4A7C15ull;
  return id == 0 ? 1 : id;
}

// What the manifest records of one file.
struct ShardFileEntry {
  std::string name;              // the file's name in the prefix's directory
  std::uint64_t bytes = 0;       // its size
  std::uint32_t last_crc = 0;    // its last four bytes: its checkpoint's CRC-32
};

struct ShardManifest {
  std::uint64_t save_id = 0;
  std::vector<ShardFileEntry> files;  // rank by rank
};

// The size and last four bytes of a file just written.
inline ShardFileEntry describe_shard_file(const std::filesystem::path& path, const std::string& who) {
  std::ifstream in;
  open_for_reading(in, path, who);
  ShardFileEntry entry;
  entry.name = path.filename().string();
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  unsigned char last[4] = {0, 0, 0, 0};
  if (size >= 4) {
    in.seekg(size - 4);
    in.read(reinterpret_cast<char*>(last), 4);
  }
  if (size < 4 || !in) throw CheckpointError(who + ": cannot read the end of '" + path.string() + "'");
  entry.bytes = static_cast<std::uint64_t>(size);
  entry.last_crc = get_le<std::uint32_t>(last);
  return entry;
}

inline std::string encode_shard_manifest(const ShardManifest& manifest) {
  std::string body;
  put_i64(body, static_cast<std::int64_t>(manifest.save_id));
  put_u32(body, static_cast<std::uint32_t>(manifest.files.size()));
  for (const ShardFileEntry& file : manifest.files) {
    put_string(body, file.name);
    put_i64(body, static_cast<std::int64_t>(file.bytes));
    put_u32(body, file.last_crc);
  }
  std::ostringstream out;
  Crc32 crc;
  write_checked_block(out, crc, kShardManifestMagic, kShardManifestVersion, body);
  return out.str();
}

// Reads and checks the manifest of `ranks` ranks under `prefix`: magic,
// version, CRC, and that it names exactly the files of its save id, rank by
// rank (so a crafted manifest cannot point elsewhere).
inline ShardManifest read_shard_manifest(const std::filesystem::path& prefix, int ranks, const std::string& who) {
  const std::filesystem::path path = shard_manifest_path(prefix, ranks);
  std::ifstream in;
  open_for_reading(in, path, who);
  try {
    CheckpointInput input(in);
    char magic[sizeof kShardManifestMagic];
    input.read(magic, sizeof magic, "the magic bytes");
    if (std::memcmp(magic, kShardManifestMagic, sizeof magic) != 0)
      checkpoint_failure("bad magic bytes: this is not an adamx shard manifest");
    const std::string body = read_checked_block(input, {kShardManifestVersion}, "manifest version", "manifest");
    if (in.peek() != std::char_traits<char>::eof()) checkpoint_failure("unexpected bytes after the manifest's checksum");

    HeaderReader reader(body, sizeof kShardManifestMagic + 8);
    ShardManifest manifest;
    manifest.save_id = static_cast<std::uint64_t>(reader.i64("save id"));
    const std::uint32_t count = reader.u32("file count");
    if (count != static_cast<std::uint32_t>(ranks))
      reader.malformed("it names " + std::to_string(count) + " file(s) for " + std::to_string(ranks) + " rank(s)");
    for (int r = 0; r < ranks; ++r) {
      ShardFileEntry file;
      file.name = reader.string("file name");
      file.bytes = static_cast<std::uint64_t>(reader.i64("file size"));
      file.last_crc = reader.u32("file checksum");
      const std::string expected = shard_generation_path(prefix, r, ranks, manifest.save_id).filename().string();
      if (file.name != expected)
        reader.malformed("rank " + std::to_string(r) + "'s file is named '" + file.name + "', not '" + expected + "'");
      manifest.files.push_back(std::move(file));
    }
    if (!reader.at_end()) reader.malformed("unexpected bytes after the last file");
    return manifest;
  } catch (const CheckpointError& error) {
    throw CheckpointError(who + ": " + error.what() + " (manifest '" + path.string() + "')");
  }
}

// The files of a sharded checkpoint and, unless it is a legacy one, its
// manifest.
struct ShardSet {
  std::vector<std::filesystem::path> files;  // rank by rank
  std::optional<ShardManifest> manifest;
};

// The set of `ranks` ranks under `prefix`: the files `manifest` names, or,
// without one, the legacy names "<prefix>.<r>-of-<ranks>".
// locate_shard_set reads the manifest, if there is one; nothing else is
// opened here.
inline ShardSet shard_set_of(const std::filesystem::path& prefix, int ranks, std::optional<ShardManifest> manifest) {
  ShardSet set;
  set.manifest = std::move(manifest);
  for (int r = 0; r < ranks; ++r) {
    std::filesystem::path legacy = prefix;
    legacy += "." + std::to_string(r) + "-of-" + std::to_string(ranks);
    set.files.push_back(set.manifest ? shard_generation_path(prefix, r, ranks, set.manifest->save_id) : legacy);
  }
  return set;
}

inline ShardSet locate_shard_set(const std::filesystem::path& prefix, int ranks, const std::string& who) {
  const std::filesystem::path manifest = shard_manifest_path(prefix, ranks);
  std::error_code error;
  const bool committed = std::filesystem::exists(manifest, error);
  if (error)
    throw CheckpointError(who + ": cannot look for '" + manifest.string() + "': " + error.message());
  if (!committed) return shard_set_of(prefix, ranks, std::nullopt);
  return shard_set_of(prefix, ranks, read_shard_manifest(prefix, ranks, who));
}

// Throws CheckpointError unless rank `rank`'s file has the size and last
// four bytes its manifest records (a legacy set has nothing to check).
inline void check_against_manifest(const ShardSet& set, int rank, const std::string& who) {
  if (!set.manifest) return;
  const std::filesystem::path& path = set.files.at(static_cast<std::size_t>(rank));
  const ShardFileEntry& expected = set.manifest->files.at(static_cast<std::size_t>(rank));
  const ShardFileEntry found = describe_shard_file(path, who);
  if (found.bytes != expected.bytes || found.last_crc != expected.last_crc)
    throw CheckpointError(who + ": '" + path.string() + "' has " + std::to_string(found.bytes) +
                          " bytes ending in checksum " + hex32(found.last_crc) + ", its manifest records " +
                          std::to_string(expected.bytes) + " bytes ending in " + hex32(expected.last_crc) +
                          ": it is not the file that save wrote");
}

// Writes the manifest of `ranks` ranks under `prefix` naming `files` (of save
// `save_id`, complete and on disk) and renames it into place: the commit.
// Throws CheckpointError, committing nothing, if any step fails.
inline void commit_shard_set(const std::filesystem::path& prefix, int ranks, std::uint64_t save_id,
                             const std::vector<ShardFileEntry>& files, const std::string& who) {
  ShardManifest manifest;
  manifest.save_id = save_id;
  manifest.files = files;
  const std::string bytes = encode_shard_manifest(manifest);
  // The shard files' directory entries reach the disk before the manifest
  // that names them can.
  sync_directory_of(shard_manifest_path(prefix, ranks));
  save_file_atomically(shard_manifest_path(prefix, ranks), who, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

// After the commit of save `save_id`: removes the files of `ranks` ranks
// under `prefix` that no longer belong to a checkpoint — older saves'
// "<prefix>.<r>-of-<ranks>.<id>", legacy "<prefix>.<r>-of-<ranks>", and
// leftover ".partial" files of either — of rank `only_rank` (every rank when
// negative). Best effort: a file that cannot be removed is left (it is never
// read) for the next save to remove; the save has already succeeded.
inline void remove_superseded_shards(const std::filesystem::path& prefix, int ranks, std::uint64_t save_id,
                                     int only_rank = -1) noexcept {
  try {
    const std::filesystem::path directory = prefix.has_parent_path() ? prefix.parent_path() : ".";
    const std::string base = prefix.filename().string() + ".";
    const std::string of = "-of-" + std::to_string(ranks);
    const std::string current = save_id_hex(save_id);
    std::vector<std::filesystem::path> doomed;
    std::error_code error;
    for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
      std::string name = it->path().filename().string();
      if (name.compare(0, base.size(), base) != 0) continue;
      std::string rest = name.substr(base.size());
      // "<r>-of-<ranks>", then ".<id>" or nothing, then ".partial" or nothing.
      const std::size_t dash = rest.find(of);
      if (dash == 0 || dash > 9 || rest.find_first_not_of("0123456789") != dash) continue;
      const int rank = std::stoi(rest.substr(0, dash));
      if (rank >= ranks || (only_rank >= 0 && rank != only_rank)) continue;
      rest = rest.substr(dash + of.size());
      const std::string partial = ".partial";
      if (rest.size() >= partial.size() && rest.compare(rest.size() - partial.size(), partial.size(), partial) == 0)
        rest.resize(rest.size() - partial.size());
      const bool legacy = rest.empty();
      const bool generation = rest.size() == 17 && rest[0] == '.' &&
                              rest.find_first_not_of("0123456789abcdef", 1) == std::string::npos;
      if (legacy || (generation && rest.substr(1) != current)) doomed.push_back(it->path());
    }
    for (const std::filesystem::path& path : doomed) {
      if (injected_fault(FileOperation::remove, path) != 0) continue;
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
  } catch (...) {  // (allocation) the files stay, as above
  }
}

// Creates the directory `prefix` lies in, with its parents, if missing;
// returns "" or what went wrong, with the OS reason. Safe when several
// processes do it at once: what counts is that it is a directory afterwards.
inline std::string create_parent_directory(const std::filesystem::path& prefix) {
  if (!prefix.has_parent_path()) return {};
  const std::filesystem::path directory = prefix.parent_path();
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  std::error_code again;
  if (!error || std::filesystem::is_directory(directory, again)) return {};
  return "cannot create the directory '" + directory.string() + "': " + error.message();
}

// The rank counts N under `prefix` with a manifest ("<prefix>.manifest-of-N")
// or a legacy set ("<prefix>.0-of-N"), each once, in increasing order;
// `legacy` gets those with no manifest.
inline std::vector<int> find_shard_sets(const std::filesystem::path& prefix, std::vector<int>* legacy = nullptr) {
  const std::filesystem::path directory = prefix.has_parent_path() ? prefix.parent_path() : ".";
  const std::string base = prefix.filename().string() + ".";
  std::vector<int> manifests, old;
  std::error_code error;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= base.size() || name.compare(0, base.size(), base) != 0) continue;
    const std::string rest = name.substr(base.size());
    for (const auto& [start, into] : {std::pair<std::string, std::vector<int>*>{"manifest-of-", &manifests},
                                      std::pair<std::string, std::vector<int>*>{"0-of-", &old}}) {
      if (rest.size() <= start.size() || rest.compare(0, start.size(), start) != 0) continue;
      const std::string digits = rest.substr(start.size());
      if (digits.size() > 9 || digits[0] == '0' || digits.find_first_not_of("0123456789") != std::string::npos)
        continue;
      into->push_back(std::stoi(digits));
    }
  }
  std::vector<int> counts = manifests;
  for (const int n : old)
    if (std::find(manifests.begin(), manifests.end(), n) == manifests.end()) {
      counts.push_back(n);
      if (legacy != nullptr) legacy->push_back(n);
    }
  std::sort(counts.begin(), counts.end());
  if (legacy != nullptr) std::sort(legacy->begin(), legacy->end());
  return counts;
}

}  // namespace detail

/// The files of the sharded checkpoint of `ranks` ranks under `prefix`, rank
/// by rank: those its manifest names ("<prefix>.<r>-of-<ranks>.<id>"), or for
/// a legacy checkpoint without one "<prefix>.<r>-of-<ranks>". Throws
/// CheckpointError if the manifest is unreadable or corrupt.
inline std::vector<std::filesystem::path> shard_checkpoint_files(const std::filesystem::path& prefix, int ranks) {
  return detail::locate_shard_set(prefix, ranks, "adamx::shard_checkpoint_files").files;
}

ADAMX_NAMESPACE_END  // namespace adamx
