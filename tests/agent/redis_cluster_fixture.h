// What the Redis Cluster tests share: a real Redis Cluster of 3 masters and
// 3 replicas (Debian's redis-server, started here on free loopback ports in
// a temporary directory, no persistence, made a cluster with redis-cli
// --cluster create), asked about with redis-cli; and a real dc_client
// ($DC_AGENT) with -server REDIS-CLUSTER:... in front of it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "agent_fixture.h"
#include "harness.h"

namespace dc::test {

inline const char* kRedisServer = "/usr/bin/redis-server";
inline const char* kRedisCliPath = "/usr/bin/redis-cli";

inline bool redis_installed() {
  return access(kRedisServer, X_OK) == 0 && access(kRedisCliPath, X_OK) == 0;
}

// Whether 127.0.0.1:port can be bound now.
inline bool port_free(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return fd && bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
}

// A port for a cluster node: free, and so is its cluster bus port (+10000).
inline uint16_t cluster_port(const std::vector<uint16_t>& taken) {
  for (int i = 0; i < 1000; ++i) {
    uint16_t p = free_tcp_port();
    bool dup = false;
    for (uint16_t t : taken) dup = dup || t == p || t + 10000 == p || p + 10000 == t;
    if (!dup && p <= 55000 && port_free(uint16_t(p + 10000))) return p;
  }
  fail_msg("no free port pair for a cluster node");
  return 0;
}

// The redis-cli output of `args` against 127.0.0.1:port (the default user).
inline std::string redis_cli(uint16_t port, const std::vector<std::string>& args,
                             const std::vector<std::string>& tls = {}) {
  std::vector<std::string> argv = {kRedisCliPath, "-h", "127.0.0.1", "-p", std::to_string(port)};
  argv.insert(argv.end(), tls.begin(), tls.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  run(argv, out, 10000);
  return out;
}

struct RedisClusterFixture {
  static constexpr int kNodes = 6;
  TempDir dir;
  std::vector<uint16_t> ports;
  std::vector<Process> procs;
  // More lines for every node's configuration (ACL users, TLS).
  std::string extra_conf;
  // redis-cli's own flags (TLS).
  std::vector<std::string> cli_flags;
  // TLS: the tls-cert-file, tls-key-file and tls-ca-cert-file lines. When
  // set, each node listens on its port with TLS only (clients, the cluster
  // bus and replication).
  std::string tls_conf;

  RedisClusterFixture() : procs(kNodes) {
    for (int i = 0; i < kNodes; ++i) ports.push_back(cluster_port(ports));
  }
  ~RedisClusterFixture() {
    for (Process& p : procs)
      if (p.pid() > 0) p.signal(SIGKILL);
  }
  // "127.0.0.1:P1,127.0.0.1:P2" of the first n nodes.
  std::string seeds(int n = 2) const {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(ports[i]);
    return s;
  }
  std::string cli(uint16_t port, const std::vector<std::string>& args) const {
    return redis_cli(port, args, cli_flags);
  }
  void start_node(int i) {
    std::string d = dir.file(std::to_string(ports[i]));
    mkdir(d.c_str(), 0700);
    std::string conf = d + "/redis.conf";
    std::string listen = "port " + std::to_string(ports[i]) + "\n";
    if (!tls_conf.empty())
      listen = "port 0\ntls-port " + std::to_string(ports[i]) +
               "\ntls-cluster yes\ntls-replication yes\ntls-auth-clients yes\n" + tls_conf;
    std::ofstream(conf) << listen << "bind 127.0.0.1\nsave \"\"\nappendonly no\n"
                        << "dir " << d << "\ncluster-enabled yes\n"
                        << "cluster-config-file nodes.conf\ncluster-node-timeout 2000\n"
                        << "cluster-replica-validity-factor 0\n"
                        << extra_conf;
    procs[i] = Process::spawn({kRedisServer, conf}, {}, d + "/redis.log");
  }
  bool accepting(int i) const {
    for (int k = 0; k < 100; ++k) {
      if (cli(ports[i], {"PING"}).find("PONG") != std::string::npos) return true;
      usleep(50000);
    }
    return false;
  }
  // Starts the six nodes, makes them a cluster and waits until every node
  // says cluster_state:ok and every replica is in sync with its master.
  void start() {
    for (int i = 0; i < kNodes; ++i) start_node(i);
    for (int i = 0; i < kNodes; ++i)
      if (!accepting(i))
        fail_msg("redis-server on port %u did not start: %s", ports[i],
                 slurp(dir.file(std::to_string(ports[i])) + "/redis.log").c_str());
    std::vector<std::string> argv = {kRedisCliPath, "--cluster", "create"};
    for (uint16_t p : ports) argv.push_back("127.0.0.1:" + std::to_string(p));
    argv.insert(argv.end(), {"--cluster-replicas", "1", "--cluster-yes"});
    argv.insert(argv.end(), cli_flags.begin(), cli_flags.end());
    std::string out;
    if (run(argv, out, 60000) != 0) fail_msg("redis-cli --cluster create: %s", out.c_str());
    for (int i = 0; i < kNodes; ++i) wait_ok(ports[i]);
    for (uint16_t p : replicas()) {
      bool synced = false;
      for (int k = 0; k < 300 && !synced; ++k) {
        synced = cli(p, {"INFO", "replication"}).find("master_link_status:up") != std::string::npos;
        if (!synced) usleep(50000);
      }
      if (!synced) fail_msg("the replica on port %u did not sync", p);
    }
  }
  void wait_ok(uint16_t port) const {
    for (int k = 0; k < 400; ++k) {
      if (cli(port, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos) return;
      usleep(50000);
    }
    fail_msg("the node on port %u never said cluster_state:ok", port);
  }
  std::vector<uint16_t> role(const char* which) const {
    std::vector<uint16_t> out;
    for (int i = 0; i < kNodes; ++i)
      if (procs[i].pid() > 0 && cli(ports[i], {"ROLE"}).rfind(which, 0) == 0)
        out.push_back(ports[i]);
    return out;
  }
  std::vector<uint16_t> masters() const { return role("master"); }
  std::vector<uint16_t> replicas() const { return role("slave"); }
  std::string id(uint16_t port) const { return first_line(cli(port, {"CLUSTER", "MYID"})); }
  // The master `key` lives on: the one that does not answer MOVED.
  uint16_t owner(const std::string& key) const {
    for (uint16_t p : masters())
      if (cli(p, {"EXISTS", key}).find("MOVED") == std::string::npos) return p;
    fail_msg("no master owns %s", key.c_str());
    return 0;
  }
  long slot(const std::string& key) const {
    return std::atol(cli(ports[0], {"CLUSTER", "KEYSLOT", key}).c_str());
  }
  long dbsize(uint16_t port) const { return std::atol(cli(port, {"DBSIZE"}).c_str()); }
  // Starts moving the slot of `key` from its master (returned first) to
  // another master (second), as redis-cli --cluster reshard does (IMPORTING
  // there, MIGRATING here), and moves `key` itself over.
  std::pair<uint16_t, uint16_t> migrate_key(const std::string& key) const {
    uint16_t from = owner(key), to = 0;
    for (uint16_t m : masters())
      if (m != from) to = m;
    std::string s = std::to_string(slot(key));
    expect_ok(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", id(from)});
    expect_ok(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", id(to)});
    expect_ok(from, {"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS", key});
    return {from, to};
  }
  // Ends the move: the slot of `key` is `to`'s (told to both nodes; the
  // others learn it from them).
  void assign_slot(const std::string& key, uint16_t from, uint16_t to) const {
    std::string s = std::to_string(slot(key));
    expect_ok(to, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
    expect_ok(from, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
  }
  void expect_ok(uint16_t port, const std::vector<std::string>& args) const {
    std::string out = cli(port, args);
    if (out.rfind("OK", 0) != 0) fail_msg("%s on port %u: %s", args[0].c_str(), port, out.c_str());
  }
  int index(uint16_t port) const {
    for (int i = 0; i < kNodes; ++i)
      if (ports[i] == port) return i;
    fail_msg("no node on port %u", port);
    return -1;
  }
};

// dc_client with -server REDIS-CLUSTER:seeds on a UNIX socket.
struct ClusterAgent {
  TempDir dir;
  Process proc;
  Address addr;
  std::string log;
  void start(const std::string& seeds, const std::vector<std::string>& extra = {},
             int timeout_ms = 1000) {
    std::string sock = dir.file("agent.sock");
    log = dir.file("agent.log");
    std::vector<std::string> argv = {
        env_or_die("DC_AGENT"),    "-listen", "UNIX:" + sock, "-server",
        "REDIS-CLUSTER:" + seeds,  "-retry",  "100",          "-timeout",
        std::to_string(timeout_ms)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = Process::spawn(argv, {}, log);
    if (!wait_for_unix_socket(sock)) fail_msg("dc_client did not start: %s", slurp(log).c_str());
    addr = test::addr("UNIX:" + sock);
  }
  std::string stats() { return request_stats(proc, log); }
  long long stat(const std::string& key) { return stat_value(stats(), key); }
  // Waits until `slots` slots have a master the agent is connected to.
  bool wait_slots_up(long long slots = 16384, int timeout_ms = 20000) {
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
      if (stat("redis_cluster_slots_up") == slots) return true;
      usleep(100000);
    }
    return false;
  }
};

// A started cluster, an agent in front of it with its whole slot map, and a
// client of the agent.
struct ClusterAndAgent {
  RedisClusterFixture cluster;
  ClusterAgent agent;
  RawConn c;
  explicit ClusterAndAgent(int timeout_ms = 1000) {
    cluster.start();
    agent.start(cluster.seeds(), {}, timeout_ms);
    if (!agent.wait_slots_up()) fail_msg("the agent has no slot map: %s", slurp(agent.log).c_str());
    if (!c.connect(agent.addr)) fail_msg("cannot connect to the agent");
  }
};

// The main() of a Redis test program: SKIP (exit 77) without redis-server
// or redis-cli, else runs `tests`.
template <size_t N>
int run_redis_tests(const CMUnitTest (&tests)[N]) {
  if (!redis_installed()) {
    std::printf("SKIP: redis-server or redis-cli is not installed\n");
    return 77;
  }
  return _cmocka_run_group_tests("tests", tests, N, nullptr, nullptr);
}

}  // namespace dc::test
