// A daemon's statistics table: see stats.h.
#include "ev/stats.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "ev/loop.h"

namespace dc::ev {

namespace {

void append_int(std::string& out, int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRId64, v);
  out += buf;
}

void append_uint(std::string& out, uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRIu64, v);
  out += buf;
}

// A value in base units: integers as such, others with enough digits for a
// millisecond of a year.
void append_scaled(std::string& out, int64_t v, double scale) {
  if (scale == 1) return append_int(out, v);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.12g", double(v) * scale);
  out += buf;
}

// HELP text escapes backslash and newline (the format's rule).
void append_help(std::string& out, const char* help) {
  for (const char* p = help; *p; ++p) {
    if (*p == '\\')
      out += "\\\\";
    else if (*p == '\n')
      out += "\\n";
    else
      out += *p;
  }
}

// NAME{labels} or NAME{labels,extra} or NAME{extra} or NAME.
void append_series(std::string& out, std::string_view prefix, const char* family,
                   const char* suffix, const char* labels, const std::string& extra) {
  out += prefix;
  out += family;
  out += suffix;
  bool have = labels && *labels;
  if (!have && extra.empty()) return;
  out += '{';
  if (have) out += labels;
  if (have && !extra.empty()) out += ',';
  out += extra;
  out += '}';
}

void append_histogram(std::string& out, std::string_view prefix, const Stat& s) {
  const Histogram& h = *s.hist;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets().size(); ++i) {
    cumulative += h.buckets()[i];
    char le[48];
    if (i < Histogram::kBoundsUs.size())
      std::snprintf(le, sizeof le, "le=\"%.12g\"", double(Histogram::kBoundsUs[i]) * 1e-6);
    else
      std::snprintf(le, sizeof le, "le=\"+Inf\"");
    append_series(out, prefix, s.family, "_bucket", s.labels, le);
    out += ' ';
    append_uint(out, cumulative);
    out += '\n';
  }
  append_series(out, prefix, s.family, "_sum", s.labels, "");
  out += ' ';
  append_scaled(out, h.sum_us(), 1e-6);
  out += '\n';
  append_series(out, prefix, s.family, "_count", s.labels, "");
  out += ' ';
  append_uint(out, h.count());
  out += '\n';
}

}  // namespace

void Histogram::observe(int64_t us) {
  if (us < 0) us = 0;  // a clock read once per wake-up never goes back; be safe
  size_t i = 0;
  while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
  ++buckets_[i];
  ++count_;
  sum_us_ += us;
}

std::string stats_line(std::span<const Stat> table) {
  std::string out;
  out.reserve(table.size() * 24);
  for (const Stat& s : table) {
    if (!out.empty()) out += ' ';
    out += s.key;
    if (s.kind == StatKind::histogram) {
      out += "_count=";
      append_uint(out, s.hist->count());
      out += ' ';
      out += s.key;
      out += "_sum_us=";
      append_int(out, s.hist->sum_us());
    } else {
      out += '=';
      append_int(out, s.value);
    }
  }
  return out;
}

std::string prometheus_text(std::string_view prefix, std::span<const Stat> table) {
  std::string out;
  out.reserve(table.size() * 160);
  // The format wants a family's lines together: each family is written
  // whole at its first row (the table keeps them adjacent anyway).
  std::vector<bool> done(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    if (done[i]) continue;
    const Stat& first = table[i];
    static const char* const kType[] = {"counter", "gauge", "histogram"};
    out += "# HELP ";
    out += prefix;
    out += first.family;
    out += ' ';
    append_help(out, first.help ? first.help : "");
    out += "\n# TYPE ";
    out += prefix;
    out += first.family;
    out += ' ';
    out += kType[size_t(first.kind)];
    out += '\n';
    for (size_t j = i; j < table.size(); ++j) {
      const Stat& s = table[j];
      if (done[j] || std::strcmp(s.family, first.family) != 0) continue;
      done[j] = true;
      if (s.kind == StatKind::histogram) {
        append_histogram(out, prefix, s);
        continue;
      }
      append_series(out, prefix, s.family, "", s.labels, "");
      out += ' ';
      append_scaled(out, s.value, s.scale);
      out += '\n';
    }
  }
  return out;
}

void append_limit_stats(std::vector<Stat>& t, const Loop& loop) {
  const LimitCounters& lc = loop.limit_counters();
  t.push_back({"buffered", "buffered_bytes", "", StatKind::gauge,
               "Bytes held in the buffers of client connections (unread answers, held input, "
               "requests in pieces), bounded by -connmemory.",
               int64_t(loop.buffered())});
  t.push_back({"refused", "connections_refused_total", "", StatKind::counter,
               "Client connections closed as soon as accepted: -maxconns were open.",
               int64_t(lc.refused)});
  t.push_back({"displaced", "connections_closed_total", R"(reason="displaced")", StatKind::counter,
               "Client connections closed by the limits, by reason: displaced (to make room at "
               "-maxconns), frame_timeout (a request not whole within -frametimeout), memory "
               "(the largest buffers past -connmemory).",
               int64_t(lc.displaced)});
  t.push_back({"frame_timeouts", "connections_closed_total", R"(reason="frame_timeout")",
               StatKind::counter, nullptr, int64_t(lc.frame_timeouts)});
  t.push_back({"memory_closes", "connections_closed_total", R"(reason="memory")", StatKind::counter,
               nullptr, int64_t(lc.memory_closes)});
}

}  // namespace dc::ev
