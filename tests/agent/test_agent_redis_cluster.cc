// dc_client with -server REDIS-CLUSTER:seeds against a real Redis Cluster of
// 3 masters and 3 replicas (redis_cluster_fixture.h): the four operations
// over ids that land on every master, each key on the master Redis itself
// says (so the agent's CRC16 slots are Redis's: no MOVED at all); a prefix
// with a hash tag puts every key on one master; a slot moved by hand
// (MOVED: followed, and the map refreshed); a slot being migrated (ASK:
// followed with ASKING, the map unchanged); a master killed: DISCONNECTED
// within the deadline for its slots only, the others keep working, and
// after its replica takes over caching works there again by itself; seeds
// unreachable at start; an ACL user with a password on every node, and a
// wrong one; -redis-db refused. Skips (exit 77) without redis-server.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "harness.h"
#include "proto.h"
#include "redis_cluster_fixture.h"

// Last: cmocka defines macros that clash with the standard headers.
#include "cmocka_cpp.h"

using namespace dc;
using namespace dc::test;

namespace {

constexpr int kDisc = int(proto::Status::disconnected);

// Every node has the ACL user "dc" (password s3cret) allowed the agent's
// commands on keys dc:* (and {dc}:*, for the hash tag case) only.
const char* kAclConf =
    "user default on nopass ~* &* +@all\n"
    "user dc on >s3cret ~dc:* ~{dc}:* -@all +get +set +del +exists +getdel +asking "
    "+cluster|shards +cluster|slots\n";

std::string auth_file(const TempDir& d, const std::string& text) {
  std::string path = d.file("auth");
  std::ofstream(path) << text << "\n";
  chmod(path.c_str(), 0600);
  return path;
}

std::string id_of(int i) {
  return "session-" + std::to_string(i);
}
std::string data_of(int i) {
  return "data-of-session-" + std::to_string(i);
}

// A GET that Redis answered (not DISCONNECTED) within the time.
bool answered_get(RawConn& c, const std::string& id, int timeout_ms = 20000) {
  int64_t end = now_ms() + timeout_ms;
  while (now_ms() < end) {
    auto r = c.call(proto::Op::get, bytes(id));
    if (r && !(r->size() == 1 && (*r)[0] == kDisc)) return true;
    usleep(100000);
  }
  return false;
}

void test_operations_spread_over_masters(void**) {
  RedisClusterFixture cluster;
  cluster.extra_conf = kAclConf;
  cluster.start();
  ClusterAgent agent;
  agent.start(cluster.seeds(), {"-redis-auth", auth_file(agent.dir, "dc s3cret")});
  assert_true(agent.wait_slots_up());
  RawConn c;
  assert_true(c.connect(agent.addr));
  const int n = 300;
  for (int i = 0; i < n; ++i)
    assert_int_equal(c.add(id_of(i), data_of(i), 60000), int(proto::AddStatus::ok));
  assert_int_equal(c.add(id_of(0), "another-session", 60000),
                   int(proto::AddStatus::matching_session));
  for (int i = 0; i < n; ++i) {
    auto got = c.get(id_of(i));
    if (!got || *got != data_of(i)) fail_msg("GET %s: wrong answer", id_of(i).c_str());
    assert_int_equal(c.have(id_of(i)), int(proto::Status::ok));
  }
  assert_int_equal(c.have("nothing"), int(proto::Status::notok));
  // Every master holds some; together they hold them all.
  std::vector<uint16_t> masters = cluster.masters();
  assert_int_equal(masters.size(), 3);
  long total = 0;
  for (uint16_t m : masters) {
    long k = cluster.dbsize(m);
    if (k == 0) fail_msg("no key on the master on port %u", m);
    total += k;
  }
  assert_int_equal(total, n);
  // Each key is where Redis says its slot is, and the agent was never told
  // otherwise: its slots are Redis's.
  for (int i = 0; i < 20; ++i) {
    std::string key = "dc:" + id_of(i);
    uint16_t owner = cluster.owner(key);
    assert_true(cluster.cli(owner, {"EXISTS", key}).rfind("1", 0) == 0);
  }
  assert_int_equal(agent.stat("redis_cluster_moved"), 0);
  assert_int_equal(agent.stat("redis_cluster_asks"), 0);
  for (int i = 0; i < n; i += 2) assert_int_equal(c.remove(id_of(i)), int(proto::Status::ok));
  assert_int_equal(c.remove(id_of(0)), int(proto::Status::notok));
  total = 0;
  for (uint16_t m : masters) total += cluster.dbsize(m);
  assert_int_equal(total, n / 2);
  assert_int_equal(agent.stat("disconnected_refused"), 0);

  // A wrong password: every request DISCONNECTED at once, a line saying so.
  ClusterAgent wrong;
  wrong.start(cluster.seeds(), {"-redis-auth", auth_file(wrong.dir, "dc wrong-password")});
  RawConn w;
  assert_true(w.connect(wrong.addr));
  usleep(500000);
  for (int i = 0; i < 3; ++i) {
    int64_t t0 = now_ms();
    assert_int_equal(w.add(id_of(i), data_of(i), 60000), kDisc);
    assert_true(now_ms() - t0 < 1000);
  }
  std::string log = slurp(wrong.log);
  if (log.find("refused the connection's start") == std::string::npos)
    fail_msg("no line about the refused AUTH:\n%s", log.c_str());
  assert_true(wrong.proc.running());

  // A prefix holding a hash tag: every key in one slot, on one master.
  ClusterAgent tagged;
  tagged.start(cluster.seeds(),
               {"-redis-auth", auth_file(tagged.dir, "dc s3cret"), "-redis-prefix", "{dc}:"});
  assert_true(tagged.wait_slots_up());
  RawConn t;
  assert_true(t.connect(tagged.addr));
  std::vector<long> before;
  for (uint16_t m : masters) before.push_back(cluster.dbsize(m));
  for (int i = 0; i < 30; ++i)
    assert_int_equal(t.add(id_of(i), data_of(i), 60000), int(proto::AddStatus::ok));
  uint16_t owner = cluster.owner("{dc}:x");
  std::string slot = std::to_string(cluster.slot("{dc}:x"));
  assert_int_equal(std::atol(cluster.cli(owner, {"CLUSTER", "COUNTKEYSINSLOT", slot}).c_str()), 30);
  for (size_t i = 0; i < masters.size(); ++i)
    assert_int_equal(cluster.dbsize(masters[i]), before[i] + (masters[i] == owner ? 30 : 0));
}

// A slot moved by hand from its master A to master B while the agent's map
// still says A: A answers MOVED, the agent sends the request to B, and
// refreshes its map (later requests go to B at once).
void test_moved(void**) {
  ClusterAndAgent setup;
  RedisClusterFixture& cluster = setup.cluster;
  ClusterAgent& agent = setup.agent;
  RawConn& c = setup.c;
  std::string id = "moving-session";
  std::string key = "dc:" + id;
  assert_int_equal(c.add(id, "data-that-moves", 60000), int(proto::AddStatus::ok));
  auto [a, b] = cluster.migrate_key(key);
  cluster.assign_slot(key, a, b);
  assert_int_equal(cluster.owner(key), b);

  auto got = c.get(id);
  assert_true(got && *got == "data-that-moves");
  long long moved = agent.stat("redis_cluster_moved");
  assert_true(moved >= 1);
  // Stored again: on B.
  assert_int_equal(c.remove(id), int(proto::Status::ok));
  assert_int_equal(c.add(id, "data-that-moved", 60000), int(proto::AddStatus::ok));
  assert_true(cluster.cli(b, {"EXISTS", key}).rfind("1", 0) == 0);
  // Once the map is refreshed (at most a second after a MOVED, and the
  // nodes have told each other), requests go to B at once: no more MOVED.
  bool settled = false;
  for (int i = 0; i < 100 && !settled; ++i) {
    usleep(200000);
    long long before = agent.stat("redis_cluster_moved");
    got = c.get(id);
    assert_true(got && *got == "data-that-moved");
    settled = agent.stat("redis_cluster_moved") == before;
  }
  assert_true(settled);
  assert_int_equal(agent.stat("disconnected_refused"), 0);
}

// A slot in migration (MIGRATING on A, IMPORTING on B) with one of its keys
// already on B: A answers ASK for that key (and for a new one), the agent
// sends ASKING and the request to B; a key still on A is answered by A; the
// map does not change (no MOVED).
void test_ask(void**) {
  ClusterAndAgent setup;
  RedisClusterFixture& cluster = setup.cluster;
  ClusterAgent& agent = setup.agent;
  RawConn& c = setup.c;
  // The ids' hash tag puts their keys in one slot.
  assert_int_equal(c.add("{tag}a", "data-a-data", 60000), int(proto::AddStatus::ok));
  assert_int_equal(c.add("{tag}b", "data-b-data", 60000), int(proto::AddStatus::ok));
  auto [a, b] = cluster.migrate_key("dc:{tag}a");
  assert_int_equal(cluster.owner("dc:{tag}b"), a);
  // On B now, and A says ASK.
  assert_true(cluster.cli(a, {"GET", "dc:{tag}a"}).find("ASK") == 0);

  auto got = c.get("{tag}a");
  assert_true(got && *got == "data-a-data");
  long long asks = agent.stat("redis_cluster_asks");
  assert_true(asks >= 1);
  got = c.get("{tag}b");  // still on A: no ASK
  assert_true(got && *got == "data-b-data");
  assert_int_equal(agent.stat("redis_cluster_asks"), asks);
  // A new session of the slot: A has no such key, so B stores it.
  assert_int_equal(c.add("{tag}c", "data-c-data", 60000), int(proto::AddStatus::ok));
  assert_true(agent.stat("redis_cluster_asks") > asks);
  std::string out;
  run({"/bin/sh", "-c",
       "printf 'ASKING\\nEXISTS dc:{tag}c\\n' | " + std::string(kRedisCliPath) +
           " -h 127.0.0.1 -p " + std::to_string(b)},
      out);
  if (out.find("OK\n1") == std::string::npos) fail_msg("dc:{tag}c is not on B: %s", out.c_str());
  got = c.get("{tag}c");
  assert_true(got && *got == "data-c-data");
  assert_int_equal(agent.stat("redis_cluster_moved"), 0);
  assert_int_equal(agent.stat("disconnected_refused"), 0);
}

// A master killed: its slots are answered DISCONNECTED within the deadline,
// every other slot keeps working; its replica takes over (node timeout 2 s)
// and the agent finds it by itself.
void test_dead_master_and_failover(void**) {
  // Generous, so that a busy machine does not make a live master late; a
  // dead master's requests are answered at once anyway.
  const int timeout_ms = 2000;
  ClusterAndAgent setup(timeout_ms);
  RedisClusterFixture& cluster = setup.cluster;
  ClusterAgent& agent = setup.agent;
  RawConn& c = setup.c;
  const int n = 60;
  for (int i = 0; i < n; ++i)
    assert_int_equal(c.add(id_of(i), data_of(i), 600000), int(proto::AddStatus::ok));
  std::vector<uint16_t> owner(n);
  for (int i = 0; i < n; ++i) owner[i] = cluster.owner("dc:" + id_of(i));
  uint16_t victim = owner[0];
  cluster.procs[size_t(cluster.index(victim))].signal(SIGKILL);
  cluster.procs[size_t(cluster.index(victim))].wait(5000);
  int64_t killed = now_ms();

  int dead = 0, alive = 0;
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < n; ++i) {
      int64_t t0 = now_ms();
      auto got = c.call(proto::Op::get, bytes(id_of(i)), timeout_ms + 3000);
      int64_t took = now_ms() - t0;
      assert_true(got.has_value());
      if (took > timeout_ms + 1000) fail_msg("GET took %lld ms", (long long)took);
      bool disconnected = got->size() == 1 && (*got)[0] == kDisc;
      if (owner[i] == victim) {
        if (!disconnected)
          fail_msg("GET %s (%lld ms after the kill) on the dead master: not DISCONNECTED",
                   id_of(i).c_str(), (long long)(now_ms() - killed));
        ++dead;
      } else {
        if (std::string(got->begin(), got->end()) != data_of(i))
          fail_msg("GET %s on a live master: not the session", id_of(i).c_str());
        ++alive;
      }
    }
  assert_true(dead > 0 && alive > 0);

  // Failover: the replica is promoted, the agent's map follows.
  assert_true(answered_get(c, id_of(0), 30000));
  for (int i = 0; i < n; ++i) {
    if (owner[i] != victim) continue;
    // Its slots work again (the session itself may or may not have
    // reached the replica before the kill).
    assert_true(c.remove(id_of(i)) != kDisc);
    assert_int_equal(c.add(id_of(i), "again-" + data_of(i), 60000), int(proto::AddStatus::ok));
    auto got = c.get(id_of(i));
    assert_true(got && *got == "again-" + data_of(i));
  }
  std::string log = slurp(agent.log);
  assert_true(log.find("lost Redis Cluster node 127.0.0.1:" + std::to_string(victim)) !=
              std::string::npos);
  assert_true(agent.proc.running());
}

// Seeds that do not answer yet: DISCONNECTED at once; once the cluster is
// up, the agent finds it by itself.
void test_seeds_unreachable_at_start(void**) {
  RedisClusterFixture cluster;
  ClusterAgent agent;
  agent.start(cluster.seeds(3));
  RawConn c;
  assert_true(c.connect(agent.addr));
  for (int i = 0; i < 3; ++i) {
    int64_t t0 = now_ms();
    assert_int_equal(c.add(id_of(i), data_of(i), 60000), kDisc);
    assert_true(now_ms() - t0 < 1000);
  }
  std::string log = slurp(agent.log);
  if (log.find("Redis Cluster node 127.0.0.1:" + std::to_string(cluster.ports[0])) ==
      std::string::npos)
    fail_msg("no line about the unreachable seed:\n%s", log.c_str());
  cluster.start();
  assert_true(agent.wait_slots_up(16384, 30000));
  assert_int_equal(c.add(id_of(1), data_of(1), 60000), int(proto::AddStatus::ok));
  auto got = c.get(id_of(1));
  assert_true(got && *got == data_of(1));
}

// A cluster of one node that holds every slot: its CLUSTER SHARDS says
// "ip" "" (it does not know its own address), which means the node asked.
void test_cluster_of_one(void**) {
  RedisClusterFixture cluster;
  cluster.start_node(0);
  assert_true(cluster.accepting(0));
  cluster.expect_ok(cluster.ports[0], {"CLUSTER", "ADDSLOTSRANGE", "0", "16383"});
  cluster.wait_ok(cluster.ports[0]);
  ClusterAgent agent;
  agent.start(cluster.seeds(1));
  if (!agent.wait_slots_up())
    fail_msg("no slot map from a cluster of one: %s", slurp(agent.log).c_str());
  RawConn c;
  assert_true(c.connect(agent.addr));
  assert_int_equal(c.add(id_of(7), data_of(7), 60000), int(proto::AddStatus::ok));
  auto got = c.get(id_of(7));
  assert_true(got && *got == data_of(7));
}

void test_bad_flags(void**) {
  std::string agent = env_or_die("DC_AGENT");
  TempDir d;
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const Case cases[] = {
      {{"-server", "REDIS-CLUSTER:127.0.0.1:7000", "-redis-db", "1"}, "database 0 only"},
      {{"-server", "REDIS-CLUSTER:127.0.0.1:7000", "-redis-db", "0"}, "database 0 only"},
      {{"-server", "REDIS-CLUSTER:127.0.0.1:7000,127.0.0.1"}, "is not host:port"},
      {{"-server", "REDIS-CLUSTER:"}, "is not host:port"},
      {{"-server", "REDIS-CLUSTER:127.0.0.1:7000", "-server", "IP:127.0.0.1:9001"}, "alone"},
      {{"-server", "REDIS-CLUSTER:127.0.0.1:7000,localhost:7001"}, "not an IP address"},
  };
  for (const Case& k : cases) {
    std::vector<std::string> argv = {agent, "-listen", "UNIX:" + d.file("a.sock")};
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    std::string out;
    int rc = run(argv, out, 5000);
    assert_int_equal(rc, 2);
    if (out.find(k.says) == std::string::npos)
      fail_msg("%s: expected '%s' in: %s", k.args.back().c_str(), k.says, out.c_str());
  }
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_flags),
      cmocka_unit_test(test_operations_spread_over_masters),
      cmocka_unit_test(test_moved),
      cmocka_unit_test(test_ask),
      cmocka_unit_test(test_dead_master_and_failover),
      cmocka_unit_test(test_seeds_unreachable_at_start),
      cmocka_unit_test(test_cluster_of_one),
  };
  return run_redis_tests(tests);
}
