// The Redis Cluster backend: see redis_cluster.h.
#include "agent/redis_cluster.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <set>

#include "agent/agent.h"
#include "agent/redis_backend.h"

namespace dc::agent {

namespace {

// CRC16/XMODEM by table: polynomial 0x1021, most significant bit first.
constexpr std::array<uint16_t, 256> make_crc_table() {
  std::array<uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    uint16_t c = uint16_t(i << 8);
    for (int b = 0; b < 8; ++b) c = uint16_t((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint16_t, 256> kCrcTable = make_crc_table();

std::string_view text_of(const redisReply* r) {
  if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
    return std::string_view(r->str, r->len);
  return {};
}

std::string node_name(const std::string& host, uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// A decimal number in [0, max] filling all of `s`.
bool parse_number(std::string_view s, uint32_t max, uint32_t& out) {
  if (s.empty() || s.size() > 6) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint32_t(c - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

}  // namespace

uint16_t crc16_xmodem(std::string_view b) {
  uint16_t crc = 0;
  for (unsigned char c : b) crc = uint16_t((crc << 8) ^ kCrcTable[((crc >> 8) ^ c) & 0xff]);
  return crc;
}

uint16_t key_slot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return uint16_t(crc16_xmodem(key) % kClusterSlots);
}

bool parse_cluster_shards(const redisReply* r, bool tls, const std::string& asked,
                          std::vector<SlotRange>& out, std::string& err) {
  out.clear();
  if (r->type != REDIS_REPLY_ARRAY) {
    err = "CLUSTER SHARDS: not an array";
    return false;
  }
  for (size_t s = 0; s < r->elements; ++s) {
    const redisReply* shard = r->element[s];
    if (shard->type != REDIS_REPLY_ARRAY || shard->elements % 2 != 0) {
      err = "CLUSTER SHARDS: a shard is not a map";
      return false;
    }
    const redisReply* slots = nullptr;
    const redisReply* nodes = nullptr;
    for (size_t i = 0; i + 1 < shard->elements; i += 2) {
      std::string_view k = text_of(shard->element[i]);
      if (k == "slots") slots = shard->element[i + 1];
      if (k == "nodes") nodes = shard->element[i + 1];
    }
    if (!slots || !nodes || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0 ||
        nodes->type != REDIS_REPLY_ARRAY) {
      err = "CLUSTER SHARDS: a shard without its slots and nodes";
      return false;
    }
    if (slots->elements == 0) continue;  // e.g. a failed master replaced
    // The shard's master: role master, an online one first.
    std::string host;
    uint16_t port = 0;
    bool online = false;
    for (size_t n = 0; n < nodes->elements; ++n) {
      const redisReply* node = nodes->element[n];
      if (node->type != REDIS_REPLY_ARRAY || node->elements % 2 != 0) {
        err = "CLUSTER SHARDS: a node is not a map";
        return false;
      }
      std::string_view ip, role, health;
      long long plain = 0, secure = 0;
      for (size_t i = 0; i + 1 < node->elements; i += 2) {
        std::string_view k = text_of(node->element[i]);
        const redisReply* v = node->element[i + 1];
        if (k == "ip") ip = text_of(v);
        if (k == "role") role = text_of(v);
        if (k == "health") health = text_of(v);
        if (k == "port" && v->type == REDIS_REPLY_INTEGER) plain = v->integer;
        if (k == "tls-port" && v->type == REDIS_REPLY_INTEGER) secure = v->integer;
      }
      long long p = tls ? (secure > 0 ? secure : plain) : (plain > 0 ? plain : secure);
      std::string at = ip.empty() ? asked : std::string(ip);
      if (role != "master" || !is_ip_literal(at) || p <= 0 || p > 65535) continue;
      bool on = health == "online";
      if (!host.empty() && (online || !on)) continue;  // keep the first online one
      host = at;
      port = uint16_t(p);
      online = on;
    }
    if (host.empty()) continue;
    for (size_t i = 0; i + 1 < slots->elements; i += 2) {
      const redisReply* a = slots->element[i];
      const redisReply* b = slots->element[i + 1];
      if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER || a->integer < 0 ||
          b->integer < a->integer || b->integer >= static_cast<long long>(kClusterSlots)) {
        err = "CLUSTER SHARDS: a slot range out of 0..16383";
        return false;
      }
      out.push_back({uint16_t(a->integer), uint16_t(b->integer), host, port});
    }
  }
  return true;
}

bool parse_cluster_slots(const redisReply* r, const std::string& asked,
                         std::vector<SlotRange>& out, std::string& err) {
  out.clear();
  if (r->type != REDIS_REPLY_ARRAY) {
    err = "CLUSTER SLOTS: not an array";
    return false;
  }
  for (size_t s = 0; s < r->elements; ++s) {
    const redisReply* e = r->element[s];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2) {
      err = "CLUSTER SLOTS: an entry is not [first, last, [ip, port, ...], ...]";
      return false;
    }
    long long a = e->element[0]->integer, b = e->element[1]->integer;
    if (a < 0 || b < a || b >= static_cast<long long>(kClusterSlots)) {
      err = "CLUSTER SLOTS: a slot range out of 0..16383";
      return false;
    }
    const redisReply* m = e->element[2];
    std::string_view ip = text_of(m->element[0]);
    if (m->element[1]->type != REDIS_REPLY_INTEGER) {
      err = "CLUSTER SLOTS: a port is not a number";
      return false;
    }
    long long port = m->element[1]->integer;
    std::string at = ip.empty() ? asked : std::string(ip);  // nil or "": the node asked
    if (!is_ip_literal(at) || port <= 0 || port > 65535) continue;  // endpoint unknown ("?")
    out.push_back({uint16_t(a), uint16_t(b), at, uint16_t(port)});
  }
  return true;
}

bool parse_redirect(std::string_view error, Redirect& out) {
  std::string_view rest;
  if (error.substr(0, 6) == "MOVED ") {
    out.ask = false;
    rest = error.substr(6);
  } else if (error.substr(0, 4) == "ASK ") {
    out.ask = true;
    rest = error.substr(4);
  } else {
    return false;
  }
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos) return false;
  uint32_t slot = 0, port = 0;
  if (!parse_number(rest.substr(0, sp), kClusterSlots - 1, slot)) return false;
  std::string_view ep = rest.substr(sp + 1);
  size_t colon = ep.rfind(':');
  if (colon == std::string_view::npos) return false;
  if (!parse_number(ep.substr(colon + 1), 65535, port) || port == 0) return false;
  std::string_view host = ep.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out.slot = uint16_t(slot);
  out.port = uint16_t(port);
  out.host = std::string(host);
  return true;
}

RedisCluster::RedisCluster(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg,
                           RedisConfig rc)
    : loop_(loop),
      host_(host),
      cfg_(cfg),
      rc_(std::move(rc)),
      slots_(kClusterSlots, nullptr),
      refresh_(loop, [this] { refresh(); }),
      reap_(loop, [this] { reap(); }) {
  key_ = rc_.prefix;
  for (const Address& a : rc_.seeds) node(a.host, a.port).seed = true;
}

RedisCluster::~RedisCluster() = default;

RedisCluster::Node& RedisCluster::node(const std::string& host, uint16_t port) {
  std::string name = node_name(host, port);
  auto it = nodes_.find(name);
  if (it != nodes_.end()) return *it->second;
  auto n = std::make_unique<Node>();
  n->name = name;
  n->addr.kind = Address::Kind::ip;
  n->addr.host = host;
  n->addr.port = port;
  n->addr.ipv6_literal = host.find(':') != std::string::npos;
  LinkSettings s = link_settings(cfg_, rc_, n->addr, "Redis Cluster node " + name);
  s.db = 0;  // a cluster has database 0 only
  s.keep_commands = true;
  n->link = std::make_unique<RedisLink>(loop_, host_, cfg_, std::move(s),
                                        static_cast<RedisLink::Owner*>(this));
  Node& ref = *n;
  nodes_.emplace(name, std::move(n));
  return ref;
}

RedisCluster::Node* RedisCluster::node_of(const RedisLink& l) {
  for (auto& [name, n] : nodes_)
    if (n->link.get() == &l) return n.get();
  return nullptr;
}

std::optional<Disconnected> RedisCluster::submit(const Ticket& t, const proto::Message& m,
                                                 proto::Bytes id) {
  key_.resize(rc_.prefix.size());
  key_.append(reinterpret_cast<const char*>(id.data()), id.size());
  Node* n = slots_[key_slot(key_)];
  if (!n || !n->link->up()) return Disconnected::no_upstream;
  RedisLink::Request r;
  r.ticket = t;
  r.cmd = request_command(m, key_, r.fixed);
  r.since_ms = loop_.now_ms();
  return n->link->submit(std::move(r));
}

bool RedisCluster::on_error(RedisLink& l, RedisLink::Request& r, std::string_view error) {
  Redirect d;
  if (!parse_redirect(error, d)) return false;          // TRYAGAIN, CLUSTERDOWN, ...: refused
  if (d.host.empty()) d.host = l.settings().addr.host;  // "the node that answered"
  if (r.redirects >= 1 || !is_ip_literal(d.host)) return false;
  bool fresh = !nodes_.count(node_name(d.host, d.port));
  if (fresh) {
    size_t extras = 0;
    for (const auto& [name, x] : nodes_) extras += x->redirected;
    if (extras >= kMaxRedirectNodes) return false;  // a node sending us everywhere
  }
  Node& n = node(d.host, d.port);
  if (fresh) n.redirected = true;
  if (d.ask) {
    ++asks_;
  } else {
    ++moved_;
    n.master = true;
    slots_[d.slot] = &n;
    want_refresh();
  }
  ++r.redirects;
  Ticket t = r.ticket;
  if (std::optional<Disconnected> why = n.link->submit(std::move(r), d.ask)) host_.fail(t, *why);
  return true;
}

void RedisCluster::link_up(RedisLink&) {
  // The first map; or one owed since no node was up to ask (a refresh is
  // always planned otherwise).
  if (!mapped_ || !refresh_.active()) want_refresh();
}

void RedisCluster::link_down(RedisLink& l) {
  if (&l == asking_) asking_ = nullptr;
  Node* n = node_of(l);
  if (!mapped_ || (n && n->master)) want_refresh();
}

void RedisCluster::want_refresh() {
  if (asking_) return;  // its answer comes first
  int64_t now = loop_.now_ms();
  int64_t at = std::max(now, last_query_ms_ + kRefreshSoonMs);
  if (at <= now) return refresh();
  refresh_.start(at - now);
}

void RedisCluster::refresh() {
  refresh_.stop();
  if (asking_) return;
  // Any node the agent is connected to: a master first (the seeds may be
  // replicas, or gone).
  RedisLink* via = nullptr;
  for (auto& [name, n] : nodes_) {
    if (!n->link->up()) continue;
    if (!via || n->master) via = n->link.get();
    if (n->master) break;
  }
  if (!via) return;  // link_up asks once one is up
  const char* argv[] = {"CLUSTER", use_slots_ ? "SLOTS" : "SHARDS"};
  if (!via->query(RedisCommand(2, argv))) return;
  asking_ = via;
  last_query_ms_ = loop_.now_ms();
  ++refreshes_;
}

void RedisCluster::schedule_next() {
  bool whole = true;
  for (Node* n : slots_)
    if (!n || !n->link->up()) {
      whole = false;
      break;
    }
  refresh_.start(whole ? kRefreshEveryMs : kRefreshSoonMs);
}

void RedisCluster::on_query(RedisLink& l, const redisReply* r) {
  if (&l == asking_) asking_ = nullptr;
  std::vector<SlotRange> ranges;
  std::string err;
  bool ok = false;
  if (r->type == REDIS_REPLY_ERROR) {
    std::string_view e(r->str, r->len);
    if (!use_slots_ && (e.find("nknown subcommand") != std::string_view::npos ||
                        e.find("nknown command") != std::string_view::npos)) {
      use_slots_ = true;  // Redis before 7.0
      want_refresh();
      return;
    }
    err = std::string(use_slots_ ? "CLUSTER SLOTS" : "CLUSTER SHARDS") +
          " refused: " + for_log(e) +
          " (the -redis-auth user needs +cluster|shards +cluster|slots)";
  } else {
    const std::string& asked = l.settings().addr.host;
    ok = use_slots_ ? parse_cluster_slots(r, asked, ranges, err)
                    : parse_cluster_shards(r, cfg_.tls != nullptr, asked, ranges, err);
    if (ok && !apply(ranges)) {
      ok = false;
      err = "it names more than " + std::to_string(kMaxMasters) + " masters";
    }
  }
  if (!ok) {
    int64_t now = loop_.now_ms();
    if (now - last_map_error_log_ms_ >= 60000) {
      last_map_error_log_ms_ = now;
      std::fprintf(stderr, "dc_client: Redis Cluster node %s: no slot map: %s\n",
                   l.settings().addr.host.c_str(), err.c_str());
    }
    refresh_.start(kRefreshSoonMs);
    return;
  }
  schedule_next();
}

bool RedisCluster::apply(const std::vector<SlotRange>& ranges) {
  std::set<std::pair<std::string, uint16_t>> named;
  for (const SlotRange& s : ranges)
    if (named.emplace(s.host, s.port).second && named.size() > kMaxMasters) return false;
  std::vector<Node*> fresh(kClusterSlots, nullptr);
  for (auto& [name, n] : nodes_) n->master = n->redirected = false;
  for (const SlotRange& s : ranges) {
    Node& n = node(s.host, s.port);
    n.master = true;
    std::fill(fresh.begin() + s.first, fresh.begin() + s.last + 1, &n);
  }
  slots_.swap(fresh);
  mapped_ = true;
  // Nodes no longer masters (a failed master replaced, a removed node) are
  // let go, unless they are seeds (kept to ask for the map).
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    Node& n = *it->second;
    if (n.master || n.seed) {
      ++it;
      continue;
    }
    retired_refusals_ += n.link->refusals();
    n.link->retire();
    retired_.push_back(std::move(n.link));
    it = nodes_.erase(it);
  }
  if (!retired_.empty()) reap_.start(0);
  // One line when the masters change.
  std::string said;
  size_t masters = 0, covered = 0;
  for (auto& [name, n] : nodes_)
    if (n->master) {
      said += " " + name;
      ++masters;
    }
  for (Node* n : slots_) covered += n != nullptr;
  said += covered == kClusterSlots ? ""
                                   : " (" + std::to_string(kClusterSlots - covered) +
                                         " slots without a master: answered DISCONNECTED)";
  if (said != map_said_) {
    std::fprintf(stderr, "dc_client: Redis Cluster: %zu slots on %zu master%s:%s\n", covered,
                 masters, masters == 1 ? "" : "s", said.c_str());
    map_said_ = said;
  }
  return true;
}

void RedisCluster::reap() {
  retired_.clear();
}

bool RedisCluster::up() const {
  for (const auto& [name, n] : nodes_)
    if (n->master && n->link->up()) return true;
  return false;
}

bool RedisCluster::backing_off() const {
  for (const auto& [name, n] : nodes_)
    if (!n->link->backing_off()) return false;
  return true;
}

size_t RedisCluster::pending() const {
  size_t p = 0;
  for (const auto& [name, n] : nodes_) p += n->link->pending();
  return p;
}

void RedisCluster::append_stats(std::vector<ev::Stat>& t) {
  using ev::StatKind;
  int64_t masters = 0, masters_up = 0, slots_up = 0, refusals = int64_t(retired_refusals_);
  for (const auto& [name, n] : nodes_) {
    refusals += int64_t(n->link->refusals());
    if (!n->master) continue;
    ++masters;
    masters_up += n->link->up() ? 1 : 0;
  }
  for (Node* n : slots_) slots_up += n && n->link->up() ? 1 : 0;
  t.push_back({"redis_up", "backend_node_up", R"(node="redis")", StatKind::gauge,
               "Whether the Redis backend is connected and ready (a cluster: to a master).",
               int64_t(up() ? 1 : 0)});
  t.push_back({"redis_refusals", "redis_refusals_total", "", StatKind::counter,
               "Error replies from Redis (answered DISCONNECTED).", refusals});
  t.push_back({"redis_pending", "backend_node_pending", R"(node="redis")", StatKind::gauge,
               "Requests sent to Redis and not answered yet.", int64_t(pending())});
  t.push_back({"redis_cluster_masters", "redis_cluster_masters", "", StatKind::gauge,
               "Masters in the Redis Cluster's slot map.", masters});
  t.push_back({"redis_cluster_masters_up", "redis_cluster_masters_up", "", StatKind::gauge,
               "Masters of the slot map the agent is connected to.", masters_up});
  t.push_back({"redis_cluster_slots_up", "redis_cluster_slots_up", "", StatKind::gauge,
               "Slots whose master the agent is connected to (of 16384).", slots_up});
  t.push_back({"redis_cluster_moved", "redis_cluster_moved_total", "", StatKind::counter,
               "MOVED replies followed (the request sent again to the node named).",
               int64_t(moved_)});
  t.push_back({"redis_cluster_asks", "redis_cluster_asks_total", "", StatKind::counter,
               "ASK replies followed (ASKING and the request sent to the node named).",
               int64_t(asks_)});
  t.push_back({"redis_cluster_refreshes", "redis_cluster_map_queries_total", "", StatKind::counter,
               "Slot map queries (CLUSTER SHARDS or SLOTS) sent.", int64_t(refreshes_)});
}

}  // namespace dc::agent
