/* perfcount CMD [ARGS...]: runs CMD and prints its cycles, instructions, branch misses and
 * L1 data-cache read misses (hardware counters through perf_event_open, the command and its
 * threads, user and kernel as the host allows) on stderr: `perf stat` for machines without
 * perf installed (scripts/device_bench.sh). Exit status: CMD's, or 2 if no counter opened. */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_counter(uint32_t type, uint64_t config, pid_t pid) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = type;
    a.config = config;
    a.disabled = 1;
    a.enable_on_exec = 1;
    a.inherit = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, pid, -1, -1, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: perfcount CMD [ARGS...]\n");
        return 2;
    }
    int go[2];
    if (pipe(go)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(127);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    static const struct { const char *name; uint32_t type; uint64_t config; } ev[] = {
        {"cycles", PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES},
        {"instructions", PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS},
        {"branch-misses", PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES},
        {"L1d-read-misses", PERF_TYPE_HW_CACHE,
         PERF_COUNT_HW_CACHE_L1D | (PERF_COUNT_HW_CACHE_OP_READ << 8) | (PERF_COUNT_HW_CACHE_RESULT_MISS << 16)},
    };
    int fd[4], opened = 0;
    for (int i = 0; i < 4; i++) {
        fd[i] = open_counter(ev[i].type, ev[i].config, pid);
        opened += fd[i] >= 0;
    }
    close(go[0]);
    if (write(go[1], "x", 1) != 1) return 2;
    close(go[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    for (int i = 0; i < 4; i++) {
        uint64_t v = 0;
        if (fd[i] >= 0 && read(fd[i], &v, sizeof v) == sizeof v)
            fprintf(stderr, "%16llu %s\n", (unsigned long long)v, ev[i].name);
        else
            fprintf(stderr, "%16s %s\n", "n/a", ev[i].name);
    }
    if (!opened) return 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
