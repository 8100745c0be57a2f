/* Wake-up cost of this machine: the round trip of one byte between two
 * processes over a UNIX socketpair, both on one CPU and on two CPUs.
 * Every hop of distcache (application -> dc_client -> dc_server and back)
 * is such a wake-up, so this is what a cache operation costs at least here;
 * bench/run.sh prints it next to its results (row "(w)").
 *
 * Usage: wakeup_cost CPU_A CPU_B [ROUND_TRIPS]
 * Prints one line: "same_cpu_us=X cross_cpu_us=Y" (microseconds per round
 * trip, i.e. two wake-ups). Exit status 1 when a step fails. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* Microseconds per round trip with the parent on cpu_a, the child on cpu_b;
 * a negative value on failure. */
static double round_trip_us(int cpu_a, int cpu_b, long n) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char c;
    if (pin(cpu_b) != 0) _exit(1);
    for (long i = 0; i < n; ++i)
      if (read(sv[1], &c, 1) != 1 || write(sv[1], &c, 1) != 1) _exit(1);
    _exit(0);
  }
  if (pin(cpu_a) != 0) return -1;
  char c = 'x';
  double t0 = now_s();
  for (long i = 0; i < n; ++i)
    if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) return -1;
  double t1 = now_s();
  int st = 0;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
  close(sv[0]);
  close(sv[1]);
  return (t1 - t0) / (double)n * 1e6;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: wakeup_cost CPU_A CPU_B [ROUND_TRIPS]\n");
    return 2;
  }
  int a = atoi(argv[1]), b = atoi(argv[2]);
  long n = argc > 3 ? atol(argv[3]) : 50000;
  if (n <= 0) n = 50000;
  double same = round_trip_us(a, a, n);
  double cross = round_trip_us(a, b, n);
  if (same < 0 || cross < 0) {
    fprintf(stderr, "wakeup_cost: a round trip failed (CPUs %d and %d)\n", a, b);
    return 1;
  }
  printf("same_cpu_us=%.2f cross_cpu_us=%.2f\n", same, cross);
  return 0;
}
