// pingpong: the Linux side of the IPC benchmark. It runs as /init (PID 1) in
// a one-file initramfs under Debian's kernel, in the same QEMU as our
// ipcbench (see README.md), and times the usual ways for two Linux processes
// to pass a byte back and forth. Each case warms up, then times kSamples
// operations one by one with rdtsc and prints one line:
//
//   [linuxbench] case NAME: n=10000 median=M mean=A min=L max=H p99=P overhead=O
//
// in TSC ticks per operation; under QEMU -icount shift=0 a tick is one guest
// instruction. `overhead` is the cost of the timing itself (an empty rdtsc
// pair, measured the same way) — stated beside the figures, not subtracted
// from them. Then the machine powers off.
//
// Build: gcc -static -O2 -Wall -Wextra -o init pingpong.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

enum { kWarmup = 1000, kSamples = 10000 };

static uint64_t g_samples[kSamples];
static uint64_t g_overhead;

// ---- Leaving the machine ----------------------------------------------------

// QEMU's isa-debug-exit device (-device isa-debug-exit,iobase=0xf4): writing
// V makes QEMU exit with status (V << 1) | 1. The same codes as our kernel.
enum { kDebugExitPort = 0xf4, kExitPass = 0x10, kExitFail = 0x11 };

static void power_off(int passed) __attribute__((noreturn));
static void power_off(int passed) {
    fflush(stdout);
    if (getpid() != 1) exit(passed ? 0 : 1);  // run as an ordinary program, on a host
    tcdrain(STDOUT_FILENO);                   // out of the serial port before QEMU goes away
    sync();
    if (ioperm(kDebugExitPort, 4, 1) == 0) outb(passed ? kExitPass : kExitFail, kDebugExitPort);
    // No debug-exit device (or no permission): an ordinary power-off, which
    // QEMU run with -no-reboot also ends on.
    reboot(RB_POWER_OFF);
    for (;;) pause();  // PID 1 must not exit: the kernel would panic
}

// Reports a failed call (errno says why) and powers off: the run is over.
static void fail(const char* what) __attribute__((noreturn));
static void fail(const char* what) {
    printf("[linuxbench] error: %s: %s\n", what, strerror(errno));
    power_off(0);
}

// The same, for the child side of a case: it says what failed and exits; the
// parent sees it end and fails in turn.
static void child_fail(const char* what) __attribute__((noreturn));
static void child_fail(const char* what) {
    printf("[linuxbench] error: child: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    _exit(1);
}

// ---- The console ------------------------------------------------------------

// The kernel starts /init with /dev/console open as fds 0, 1 and 2 if the
// initramfs has that node (the kernel's built-in initramfs does). If it has
// not, init starts with no fds at all: mount devtmpfs on /dev and open the
// console ourselves.
static int open_console(void) {
    if (fcntl(STDOUT_FILENO, F_GETFD) != -1) return 0;
    if (mkdir("/dev", 0755) != 0 && errno != EEXIST) return -1;
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0) {
        if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0) return -1;
        fd = open("/dev/console", O_RDWR | O_NOCTTY);
        if (fd < 0) return -1;
    }
    for (int want = 0; want <= 2; ++want) {
        if (fd != want && dup2(fd, want) != want) return -1;
    }
    if (fd > 2) close(fd);
    return 0;
}

// ---- Timing -----------------------------------------------------------------

static inline uint64_t tsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

struct figures {
    uint64_t median, mean, min, max, p99;
};

static int compare_ticks(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return (x > y) - (x < y);
}

static struct figures summarize(void) {
    qsort(g_samples, kSamples, sizeof g_samples[0], compare_ticks);
    uint64_t sum = 0;
    for (int i = 0; i < kSamples; ++i) sum += g_samples[i];
    return (struct figures){
        .median = g_samples[kSamples / 2],
        .mean = sum / kSamples,
        .min = g_samples[0],
        .max = g_samples[kSamples - 1],
        .p99 = g_samples[kSamples * 99 / 100],
    };
}

// Times op(arg) kSamples times after kWarmup untimed runs. Always inlined, so
// that each op (a static function known here) is inlined too and the timed
// span holds the operation and nothing else: no call through a pointer.
static inline __attribute__((always_inline)) struct figures measure(void (*op)(void*), void* arg) {
    for (int i = 0; i < kWarmup; ++i) op(arg);
    for (int i = 0; i < kSamples; ++i) {
        uint64_t t0 = tsc();
        op(arg);
        g_samples[i] = tsc() - t0;
    }
    return summarize();
}

static void report(const char* name, struct figures f) {
    printf("[linuxbench] case %s: n=%d median=%" PRIu64 " mean=%" PRIu64 " min=%" PRIu64
           " max=%" PRIu64 " p99=%" PRIu64 " overhead=%" PRIu64 "\n",
           name, kSamples, f.median, f.mean, f.min, f.max, f.p99, g_overhead);
    // Wait until the line has left the serial port: its interrupts would
    // otherwise land in the next case's samples. (Not a terminal: no wait.)
    tcdrain(STDOUT_FILENO);
}

// ---- The cases --------------------------------------------------------------

static void nothing(void* arg) {
    (void)arg;
}

// The cheapest real round trip into the kernel and back (getppid cannot fail).
static void null_syscall(void* arg) {
    (void)arg;
    syscall(SYS_getppid);
}

// Forks a child that runs child_main(arg) and exits; returns its pid.
static pid_t start_child(void (*child_main)(void*), void* arg) {
    fflush(stdout);  // or the child would print the parent's unwritten output again
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        child_main(arg);
        _exit(0);
    }
    return pid;
}

static void wait_child(pid_t pid, const char* name) {
    int status;
    if (waitpid(pid, &status, 0) != pid) fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("[linuxbench] error: %s: child ended with status 0x%x\n", name, status);
        power_off(0);
    }
}

// Pipes and sockets: the parent writes a byte to the child and reads it back.
struct byte_channel {
    int to_peer, from_peer;  // one side's ends: the same socket, or two pipes
};

static void close_channel(struct byte_channel c) {
    close(c.to_peer);
    if (c.from_peer != c.to_peer) close(c.from_peer);
}

static void byte_round_trip(void* arg) {
    const struct byte_channel* c = arg;
    char byte = 'x';
    if (write(c->to_peer, &byte, 1) != 1) fail("write");
    ssize_t n = read(c->from_peer, &byte, 1);
    if (n < 0) fail("read");
    if (n == 0) {
        printf("[linuxbench] error: the child closed its end\n");
        power_off(0);
    }
}

// Both sides' ends; each process closes the other's after the fork.
struct echo_pair {
    struct byte_channel parent, child;
};

// The child: echoes each byte until the parent closes its end. Its copy of
// the parent's ends is closed first, or it would never read end-of-file.
static void echo_bytes(void* arg) {
    const struct echo_pair* p = arg;
    close_channel(p->parent);
    char byte;
    for (;;) {
        ssize_t n = read(p->child.from_peer, &byte, 1);
        if (n == 0) return;  // the case is over
        if (n < 0) child_fail("read");
        if (write(p->child.to_peer, &byte, 1) != 1) child_fail("write");
    }
}

// Forks an echo child on the child's ends and times round trips on the parent's.
static void echo_case(const char* name, struct echo_pair p) {
    pid_t pid = start_child(echo_bytes, &p);
    close_channel(p.child);
    report(name, measure(byte_round_trip, &p.parent));
    close_channel(p.parent);  // the child reads end-of-file and exits
    wait_child(pid, name);
}

static void pipe_ping_pong(void) {
    int down[2], up[2];  // [0] reads, [1] writes
    if (pipe(down) != 0 || pipe(up) != 0) fail("pipe");
    echo_case("pipe_ping_pong", (struct echo_pair){
                                    .parent = {.to_peer = down[1], .from_peer = up[0]},
                                    .child = {.to_peer = up[1], .from_peer = down[0]},
                                });
}

static void unix_socket_ping_pong(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair");
    echo_case("unix_socket_ping_pong", (struct echo_pair){
                                           .parent = {.to_peer = sv[0], .from_peer = sv[0]},
                                           .child = {.to_peer = sv[1], .from_peer = sv[1]},
                                       });
}

// Futexes: two words in memory both processes map. The parent stores round
// i in `ping` and wakes the child; the child copies it to `pong` and wakes
// the parent. Each waits in FUTEX_WAIT while its word is unchanged. Not
// FUTEX_PRIVATE_FLAG: the two are separate processes.
struct futex_pair {
    uint32_t ping, pong;
};

static const uint32_t kStop = UINT32_MAX;    // in ping: the case is over
static const uint32_t kFailed = UINT32_MAX;  // in pong: the child failed

static uint32_t load(const uint32_t* word) {
    return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

static void store(uint32_t* word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
}

// Sleeps while *word == expected. 0, or -1 with errno; EAGAIN (it had already
// changed) and EINTR just mean "look again".
static int futex_wait(uint32_t* word, uint32_t expected) {
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0) == 0) return 0;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

static int futex_wake(uint32_t* word) {
    return syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0) < 0 ? -1 : 0;
}

static void futex_round_trip(void* arg) {
    struct futex_pair* f = arg;
    uint32_t round = load(&f->ping) + 1;  // only this side writes ping
    store(&f->ping, round);
    if (futex_wake(&f->ping) != 0) fail("futex wake");
    for (uint32_t seen; (seen = load(&f->pong)) != round;) {
        if (seen == kFailed) {
            printf("[linuxbench] error: the futex child failed\n");
            power_off(0);
        }
        if (futex_wait(&f->pong, seen) != 0) fail("futex wait");
    }
}

static void futex_echo(void* arg) {
    struct futex_pair* f = arg;
    uint32_t last = 0;
    for (;;) {
        uint32_t now = load(&f->ping);
        if (now == last) {
            if (futex_wait(&f->ping, last) == 0) continue;
        } else if (now == kStop) {
            return;
        } else {
            last = now;
            store(&f->pong, now);
            if (futex_wake(&f->pong) == 0) continue;
        }
        int saved = errno;  // tell the parent, which may be asleep on pong
        store(&f->pong, kFailed);
        futex_wake(&f->pong);
        errno = saved;
        child_fail("futex");
    }
}

static void futex_ping_pong(void) {
    struct futex_pair* f =
        mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (f == MAP_FAILED) fail("mmap");
    f->ping = f->pong = 0;
    pid_t pid = start_child(futex_echo, f);
    report("futex_ping_pong", measure(futex_round_trip, f));
    store(&f->ping, kStop);
    if (futex_wake(&f->ping) != 0) fail("futex wake");
    wait_child(pid, "futex_ping_pong");
    munmap(f, sizeof *f);
}

int main(void) {
    if (open_console() != 0) power_off(0);  // nowhere to say why
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct utsname u;
    if (uname(&u) != 0) fail("uname");
    printf("[linuxbench] config: linux %s\n", u.release);

    // First, as the others' lines carry its median.
    struct figures timer = measure(nothing, NULL);
    g_overhead = timer.median;
    report("timer_overhead", timer);

    report("null_syscall", measure(null_syscall, NULL));
    pipe_ping_pong();
    futex_ping_pong();
    unix_socket_ping_pong();

    printf("[linuxbench] done\n");
    power_off(1);
}
