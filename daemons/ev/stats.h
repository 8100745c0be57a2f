// A daemon's statistics as one table, so that every number has one name
// wherever it shows: each row is printed as `key=value` in the statistics
// line (-progress, SIGHUP, the -stats file) and as a Prometheus series
// (the -metrics endpoint, -stats-format prom), and docs/dc_server.md lists
// the same rows. A daemon builds its table from its counters when asked
// (rarely: a log line, a scrape), so counting stays a plain increment.
//
// Prometheus naming: a row's series is PREFIX + family, with the row's
// labels; rows of one family are adjacent in the table and the first of them
// carries the family's help. Counters' families end in _total; values are in
// base units (a row whose key says _ms has scale 1e-3 and a family in
// seconds). Labels take a handful of fixed values (an operation, a result,
// a reason), never a client or a session.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dc::ev {

class Loop;

enum class StatKind : uint8_t { counter, gauge, histogram };

// Counts of durations by fixed bounds, in microseconds: 50 us (two wake-ups
// on one host) to 0.5 s (far past any deadline of the protocol's clients).
class Histogram {
 public:
  static constexpr std::array<int64_t, 13> kBoundsUs = {
      50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000};

  void observe(int64_t us);
  uint64_t count() const { return count_; }
  int64_t sum_us() const { return sum_us_; }
  // Observations per bucket (not cumulative); the last is above every bound.
  const std::array<uint64_t, kBoundsUs.size() + 1>& buckets() const { return buckets_; }

 private:
  std::array<uint64_t, kBoundsUs.size() + 1> buckets_{};
  uint64_t count_ = 0;
  int64_t sum_us_ = 0;
};

struct Stat {
  // The name in the statistics line, the code and the documentation. A
  // histogram prints KEY_count= and KEY_sum_us=.
  const char* key;
  // The Prometheus family without the daemon's prefix (e.g. "requests_total").
  const char* family;
  // "" or the row's labels, e.g. R"(op="get",result="hit")".
  const char* labels;
  StatKind kind;
  // The family's help: on its first row (nullptr on the others).
  const char* help;
  int64_t value = 0;
  // value * scale is in the family's base unit (1e-3 for a key in ms).
  double scale = 1;
  const Histogram* hist = nullptr;  // StatKind::histogram only
};

// "key=value key=value ..." (no newline).
std::string stats_line(std::span<const Stat> table);
// The table in the Prometheus text exposition format 0.0.4, each family's
// name prefixed with `prefix` (e.g. "distcache_server_"); ends with a newline.
std::string prometheus_text(std::string_view prefix, std::span<const Stat> table);

// Appends the rows of the loop's limits on untrusted connections (see
// ConnectionLimits): buffered, refused, displaced, frame_timeouts,
// memory_closes. Both daemons have them, with the same names.
void append_limit_stats(std::vector<Stat>& table, const Loop& loop);

}  // namespace dc::ev
