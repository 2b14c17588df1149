// The servers end to end (servers.iso: init runs it with run=servertest).
// One "ok - NAME" / "not ok - NAME" line per case (tests/qemu reads them);
// the exit status is the number of failed cases.
//
// The same module is its own helper processes: StartInfo::arg says which
// part it plays (kDriver runs the cases; the others get a pipe end as their
// first start handle).
#include "common.hpp"
#include "mk/pipe.hpp"
#include "mk/port.hpp"
#include "mk/proc.hpp"
#include "mk/services.hpp"

using namespace mk;
using ipc::Endpoint;
using ipc::Result;

namespace {

// StartInfo::arg: the mode in bits 0-7, a value above them.
enum Mode : uint64_t {
    kDriver = 0,
    kWriteMiB = 1,         // writes kStreamBytes of the pattern to handle 0, then exits
    kWriteForever = 2,     // writes the pattern to handle 0 until it is killed
    kExitWith = 3,         // exits with the value at once
    kFault = 4,            // writes to address 0: a page fault kills it
    kReadToEof = 5,        // reads handle 0 until EOF, then exits with the value
    kPostPackets = 6,      // posts the value's count of packets to ports 0 and 1, then exits
    kExitTsc = 7,          // exits with the low 32 bits of the TSC as its status
    kStressClient = 8,     // uses all three servers for the value's count of rounds
    kExitWithThreads = 9,  // exits with the value while three more threads run or wait
};

constexpr uint64_t mode_arg(Mode m, uint64_t value = 0) {
    return (value << 8) | m;
}

constexpr size_t kStreamBytes = 1u << 20;

uint8_t pattern(size_t i) {
    return uint8_t((i * 131 + (i >> 9) * 7 + 3) & 0xFF);
}

int failures = 0;

void report(bool ok, const char* name) {
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    if (!ok) ++failures;
}

// Writes the pattern from byte `from` in pieces of 1,000 bytes (not a
// multiple of a message or of the pipe) until `until`.
bool write_pattern(const Endpoint& end, size_t from, size_t until) {
    uint8_t chunk[1000];
    while (from < until) {
        size_t n = until - from < sizeof chunk ? until - from : sizeof chunk;
        for (size_t i = 0; i < n; ++i) chunk[i] = pattern(from + i);
        Result<size_t> w = pipe::write(end, chunk, n);
        if (!w || *w != n) return false;
        from += n;
    }
    return true;
}

// Reads until EOF; checks every byte against the pattern. Returns the
// count, or SIZE_MAX on a mismatch or an error.
size_t read_pattern(const Endpoint& end, size_t from = 0) {
    uint8_t buf[abi::kMaxPayload];
    size_t at = from;
    for (;;) {
        Result<size_t> r = pipe::read(end, buf, sizeof buf);
        if (!r) {
            printf("read: %s\n", ipc::error_name(r.error()));
            return SIZE_MAX;
        }
        if (*r == 0) return at - from;
        for (size_t i = 0; i < *r; ++i) {
            if (buf[i] != pattern(at + i)) {
                printf("byte %zu: %#x, expected %#x\n", at + i, buf[i], pattern(at + i));
                return SIZE_MAX;
            }
        }
        at += *r;
    }
}

// A read that must not be answered within `ms` (the pipe stays open).
bool read_waits(const Endpoint& end, uint64_t ms) {
    Result<ipc::Received> r =
        ipc::call(end, ipc::Message(pipe::kRead).set_word(0, 1), ms * 1000000);
    return !r && r.error() == abi::Err::TimedOut;
}

struct Child {
    proc::Child child;
    bool ok = false;
};

// Starts a helper playing `mode` with `end` moved to it (its only handle).
Child start_child(const services::Services& s, Mode mode, Endpoint& end) {
    ipc::Handle h = std::move(end);
    Result<proc::Child> c = proc::spawn_raw(s.proc, "servertest", "", mode, &h, 1);
    Child child;
    if (!c) {
        printf("spawn: %s\n", ipc::error_name(c.error()));
        return child;
    }
    child.child = std::move(c).value();
    child.ok = true;
    return child;
}

void pipe_basics(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    if (!p) {
        report(false, "pipe_create");
        return;
    }
    report(true, "pipe_create");
    char buf[16] = {};
    Result<size_t> w = pipe::write(p->write, "hello", 5);
    Result<size_t> r = pipe::read(p->read, buf, 3);
    Result<size_t> r2 = pipe::read(p->read, buf + 3, sizeof buf - 3);
    report(w && *w == 5 && r && *r == 3 && r2 && *r2 == 2 && __builtin_memcmp(buf, "hello", 5) == 0,
           "pipe_write_then_read");
    // Each end refuses the other's request.
    Result<size_t> wrong_w = pipe::write(p->read, "x", 1);
    Result<size_t> wrong_r = pipe::read(p->write, buf, 1);
    report(!wrong_w && wrong_w.error() == abi::Err::NoRights && !wrong_r &&
               wrong_r.error() == abi::Err::NoRights,
           "pipe_wrong_end_refused");
    // The service handle names no pipe.
    Result<size_t> svc = pipe::read(s.pipe, buf, 1);
    report(!svc && svc.error() == abi::Err::BadHandle, "pipe_service_handle_is_no_end");
    // EOF once the write end is closed.
    (void)pipe::write(p->write, "z", 1);
    (void)pipe::close(p->write);
    Result<size_t> last = pipe::read(p->read, buf, sizeof buf);
    Result<size_t> eof = pipe::read(p->read, buf, sizeof buf);
    report(last && *last == 1 && buf[0] == 'z' && eof && *eof == 0, "pipe_eof_after_close");
    // No reader: broken pipe.
    Result<pipe::Pipe> q = pipe::create(s.pipe);
    if (q) {
        (void)pipe::close(q->read);
        Result<size_t> broken = pipe::write(q->write, "x", 1);
        report(!broken && broken.error() == pipe::kErrBrokenPipe, "pipe_broken_pipe");
    } else {
        report(false, "pipe_broken_pipe");
    }
}

// 1 MiB from another process, nothing lost, EOF at the end.
void pipe_mebibyte(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    if (!p) {
        report(false, "pipe_1mib_between_processes");
        return;
    }
    Child writer = start_child(s, kWriteMiB, p->write);
    size_t n = writer.ok ? read_pattern(p->read) : 0;
    if (n != kStreamBytes) printf("read %zu bytes, expected %zu\n", n, kStreamBytes);
    Result<proc::Exited> e = proc::wait4(s.proc, writer.ok ? writer.child.pid : 1);
    report(writer.ok && n == kStreamBytes && e && e->status == 0, "pipe_1mib_between_processes");
}

// A dup keeps the write end open: no EOF until both handles are closed.
void pipe_dup(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    if (!p) {
        report(false, "pipe_dup_keeps_it_open");
        return;
    }
    Result<Endpoint> d = pipe::dup(p->write);
    bool ok = d.ok();
    ok = ok && pipe::close(p->write).ok();
    ok = ok && read_waits(p->read, 20);  // the dup is open: no EOF
    ok = ok && write_pattern(*d, 0, 3000);
    char buf[abi::kMaxPayload];
    size_t got = 0;
    while (ok && got < 3000) {
        Result<size_t> r = pipe::read(p->read, buf, sizeof buf);
        ok = r && *r > 0;
        if (ok) got += *r;
    }
    ok = ok && got == 3000 && read_waits(p->read, 20);
    ok = ok && pipe::close(*d).ok();
    Result<size_t> eof = pipe::read(p->read, buf, sizeof buf);
    report(ok && eof && *eof == 0, "pipe_dup_keeps_it_open");
}

// The writer's process is killed mid-stream: the reader gets what was
// written, then EOF (the kernel closed the write end with the process).
void pipe_killed_writer(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    if (!p) {
        report(false, "pipe_killed_writer_gives_eof");
        return;
    }
    Child writer = start_child(s, kWriteForever, p->write);
    bool ok = writer.ok;
    uint8_t buf[abi::kMaxPayload];
    size_t at = 0;
    while (ok && at < 20000) {
        Result<size_t> r = pipe::read(p->read, buf, sizeof buf);
        ok = r && *r > 0;
        for (size_t i = 0; ok && i < *r; ++i) ok = buf[i] == pattern(at + i);
        if (ok) at += *r;
    }
    ok = ok && sys::invoke(abi::Sys::ProcessKill, writer.child.process.get()).ok();
    size_t rest = ok ? read_pattern(p->read, at) : SIZE_MAX;
    Result<proc::Exited> e = proc::wait4(s.proc, writer.ok ? writer.child.pid : 1);
    report(ok && rest != SIZE_MAX && e && proc::killed(e->status), "pipe_killed_writer_gives_eof");
}

Result<proc::Child> spawn_mode(const services::Services& s, Mode m, uint64_t value = 0,
                               uint32_t cpu = abi::kAnyCpu) {
    return proc::spawn_raw(s.proc, "servertest", "", mode_arg(m, value), nullptr, 0, cpu);
}

// wait4 collects several children in whatever order they end, one of them
// killed by a fault, with the status of each; then there is no child left.
void proc_collects_children(const services::Services& s) {
    uint64_t pids[3] = {};
    Result<proc::Child> a = spawn_mode(s, kExitWith, 11);
    Result<proc::Child> b = spawn_mode(s, kFault);
    Result<proc::Child> c = spawn_mode(s, kExitWith, 13);
    bool ok = a && b && c;
    if (ok) {
        pids[0] = a->pid;
        pids[1] = b->pid;
        pids[2] = c->pid;
    }
    bool seen[3] = {};
    for (int i = 0; ok && i < 3; ++i) {
        Result<proc::Exited> e = proc::wait4(s.proc, 0);
        ok = e.ok();
        if (!ok) break;
        if (e->pid == pids[0]) {
            ok = !seen[0] && proc::exited_normally(e->status) && proc::exit_code(e->status) == 11;
            seen[0] = true;
        } else if (e->pid == pids[1]) {
            ok = !seen[1] && proc::faulted(e->status) && proc::fault_vector(e->status) == 14;
            seen[1] = true;
        } else if (e->pid == pids[2]) {
            ok = !seen[2] && proc::exit_code(e->status) == 13;
            seen[2] = true;
        } else {
            printf("wait4: unexpected pid %lu\n", e->pid);
            ok = false;
        }
    }
    Result<proc::Exited> none = proc::wait4(s.proc, 0);
    report(ok && !none && none.error() == proc::kErrNoChild, "proc_wait4_collects_children");
}

// WNOHANG returns at once; no such child is ECHILD; a killed child's
// status says so.
void proc_wnohang_echild_killed(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    if (!p) {
        report(false, "proc_wnohang_and_echild");
        return;
    }
    Child waiter = start_child(s, kReadToEof, p->read);
    bool ok = waiter.ok;
    uint64_t pid = ok ? waiter.child.pid : 1;
    Result<proc::Exited> now = proc::wait4(s.proc, pid, proc::kWaitNoHang);
    ok = ok && now && now->pid == 0;
    Result<proc::Exited> stranger = proc::wait4(s.proc, pid + 1000);
    ok = ok && !stranger && stranger.error() == proc::kErrNoChild;
    Result<proc::Exited> bad = proc::wait4(s.proc, pid, 0x80);
    ok = ok && !bad && bad.error() == abi::Err::InvalidArgument;
    (void)pipe::close(p->write);  // EOF: it exits with its value (0)
    Result<proc::Exited> e = proc::wait4(s.proc, pid);
    ok = ok && e && e->pid == pid && e->status == 0;
    report(ok, "proc_wnohang_and_echild");

    Result<pipe::Pipe> q = pipe::create(s.pipe);
    Child victim;
    if (q) victim = start_child(s, kReadToEof, q->read);
    ok = victim.ok && sys::invoke(abi::Sys::ProcessKill, victim.child.process.get()).ok();
    Result<proc::Exited> k = proc::wait4(s.proc, victim.ok ? victim.child.pid : 1);
    report(ok && k && proc::killed(k->status), "proc_killed_child_status");
}

// exit and wait4 raced: the child may end before or after its parent
// waits; every round returns its own pid and status, and nothing hangs.
void proc_exit_wait4_race(const services::Services& s) {
    constexpr int kRounds = 1000;
    bool ok = true;
    int i = 0;
    for (; ok && i < kRounds; ++i) {
        Result<proc::Child> c = spawn_mode(s, kExitWith, uint64_t(i) & 0xFF);
        ok = c.ok();
        if (!ok) break;
        // Half the time the child has surely ended (a zombie); half the
        // time the parent is first to wait.
        if (i % 2 != 0) {
            for (int y = 0; y < 3; ++y) (void)sys::yield();
        }
        Result<proc::Exited> e = proc::wait4(s.proc, i % 4 < 2 ? c->pid : 0);
        ok = e && e->pid == c->pid && e->status == (uint64_t(i) & 0xFF);
        if (!ok) printf("round %d: pid %lu status %lu\n", i, e ? e->pid : 0, e ? e->status : 0);
    }
    printf("%d spawn/exit/wait4 rounds\n", i);
    report(ok && i == kRounds, "proc_exit_wait4_race_1000");
}

port::Packet packet(uint64_t i, uint64_t port_index) {
    return port::Packet{i, port_index, {i * 3, i ^ 0x5555}};
}

void port_basics(const services::Services& s) {
    Result<Endpoint> p = port::create(s.port);
    if (!p) {
        report(false, "port_create");
        return;
    }
    report(true, "port_create");
    bool ok = true;
    for (uint64_t i = 0; i < 3; ++i) ok = ok && port::post(*p, packet(i, 9)).ok();
    port::Packet got[8] = {};
    Result<size_t> n = port::wait(*p, got, 8, 1);
    ok = ok && n && *n == 3;
    for (uint64_t i = 0; ok && i < 3; ++i) {
        ok = got[i].key == i && got[i].status == 9 && got[i].data[0] == i * 3 &&
             got[i].data[1] == (i ^ 0x5555);
    }
    report(ok, "port_packets_come_back_unchanged_in_order");
    // min = 0 polls; a deadline with nothing there is TimedOut.
    Result<size_t> poll = port::wait(*p, got, 8, 0);
    Result<size_t> late = port::wait(*p, got, 8, 1, 5 * 1000000);
    report(poll && *poll == 0 && !late && late.error() == abi::Err::TimedOut,
           "port_poll_and_deadline");
    // Full: try_post says so at once, nothing is dropped.
    size_t accepted = 0;
    while (accepted < port::kCapacity + 10 && port::try_post(*p, packet(accepted, 1)).ok()) {
        ++accepted;
    }
    ipc::Status full = port::try_post(*p, packet(0, 1));
    size_t drained = 0;
    for (;;) {
        Result<size_t> r = port::wait(*p, got, 8, 0);
        if (!r || *r == 0) break;
        for (size_t i = 0; i < *r; ++i) ok = ok && got[i].key == drained + i;
        drained += *r;
    }
    report(ok && accepted == port::kCapacity && !full && full.error() == port::kErrPortFull &&
               drained == port::kCapacity,
           "port_full_refuses_try_post_and_drops_nothing");
    Result<size_t> bad = port::wait(*p, got, 0, 0);
    report(!bad && bad.error() == abi::Err::InvalidArgument, "port_wait_max_0_refused");
    (void)port::close(*p);
}

// Several ports, several waiting threads, a producer in another process:
// every packet reaches exactly one waiter.
struct PortWorker {
    Endpoint port;  // its own handle: the main thread's goes at the close
    uint64_t count = 0;
    uint64_t key_sum = 0;
    bool bad = false;
    abi::Err error = abi::Err::Ok;  // what ended its waits, if not the close
    bool done = false;
};

void port_worker(void* arg) {
    auto* w = static_cast<PortWorker*>(arg);
    port::Packet got[port::kMaxBatch];
    for (;;) {
        Result<size_t> n = port::wait(w->port, got, port::kMaxBatch, 1);
        if (!n) {
            // The port closed under it: the end of the run.
            if (n.error() != port::kErrPortClosed) {
                w->bad = true;
                w->error = n.error();
            }
            break;
        }
        for (size_t i = 0; i < *n; ++i) {
            if (got[i].data[0] != got[i].key * 3) {
                printf("ports: packet %lu came back with data %lu\n", got[i].key, got[i].data[0]);
                w->bad = true;
            }
            ++w->count;
            w->key_sum += got[i].key;
        }
    }
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

void port_producer_consumer(const services::Services& s) {
    constexpr uint64_t kPackets = 2000;  // per port
    Result<Endpoint> a = port::create(s.port);
    Result<Endpoint> b = port::create(s.port);
    if (!a || !b) {
        report(false, "port_producer_consumer_several_waiters_and_ports");
        return;
    }
    // Each worker waits through a handle of its own: port::close() also
    // closes the handle it is given, and a worker between two waits must
    // still hold a good one then (its next wait gets kErrPortClosed).
    PortWorker workers[4];
    bool ok = true;
    for (int i = 0; i < 4; ++i) {
        Result<Endpoint> own = port::dup(i < 2 ? *a : *b);
        if (own) workers[i].port = std::move(own).value();
        bool started = own && ipc::start_thread(port_worker, &workers[i]).ok();
        if (!started) workers[i].done = true;  // nothing to wait for
        ok = ok && started;
    }
    Result<Endpoint> da = port::dup(*a);
    Result<Endpoint> db = port::dup(*b);
    ipc::Handle given[2];
    if (da && db) {
        given[0] = std::move(da).value();
        given[1] = std::move(db).value();
    }
    Result<proc::Child> producer =
        proc::spawn_raw(s.proc, "servertest", "", mode_arg(kPostPackets, kPackets), given, 2);
    Result<proc::Exited> e = proc::wait4(s.proc, producer ? producer->pid : 1);
    ok = ok && producer && e && e->status == 0;
    // Everything posted is in or taken; wait until the workers have it all.
    for (int spins = 0; spins < 100000; ++spins) {
        uint64_t taken = 0;
        for (PortWorker& w : workers) taken += __atomic_load_n(&w.count, __ATOMIC_ACQUIRE);
        if (taken >= 2 * kPackets) break;
        (void)sys::yield();
    }
    (void)port::close(*a);  // the workers' waits end with kErrPortClosed
    (void)port::close(*b);
    for (PortWorker& w : workers) {
        while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    }
    uint64_t count[2] = {}, sum[2] = {};
    if (!producer || !e || e->status != 0) {
        printf("ports: producer %s, wait4 %s, status %lu\n",
               producer ? "started" : ipc::error_name(producer.error()),
               e ? "ok" : ipc::error_name(e.error()), e ? e->status : 0);
    }
    for (int i = 0; i < 4; ++i) {
        if (workers[i].error != abi::Err::Ok) {
            printf("ports: worker %d's wait failed: %s\n", i, ipc::error_name(workers[i].error));
        }
        ok = ok && !workers[i].bad;
        count[i / 2] += workers[i].count;
        sum[i / 2] += workers[i].key_sum;
    }
    constexpr uint64_t kSum = kPackets * (kPackets - 1) / 2;
    if (count[0] != kPackets || count[1] != kPackets) {
        printf("ports: %lu and %lu packets taken of %lu each\n", count[0], count[1], kPackets);
    }
    report(ok && count[0] == kPackets && count[1] == kPackets && sum[0] == kSum && sum[1] == kSum,
           "port_producer_consumer_several_waiters_and_ports");
}

// A parent blocked in wait4 runs next when its child exits, while
// CPU-bound threads are Ready: the exit donates to the kernel's reaper, the
// death notice to the process server, its answer to the parent. Each busy
// thread notes the TSC as it spins; the child exits with the TSC as its
// status. No busy thread may have run between the child's exit and the
// parent's return (one CPU: one TSC). Five rounds.
struct Busy {
    uint32_t last = 0;
    bool started = false;
    bool stop = false;
    bool done = false;
};

void busy_loop(void* arg) {
    auto* b = static_cast<Busy*>(arg);
    while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&b->last, uint32_t(utest::rdtsc()), __ATOMIC_RELEASE);
    }
    __atomic_store_n(&b->done, true, __ATOMIC_RELEASE);
}

// Whether a busy thread ran between TSC value `from` (low 32 bits) and now;
// says so if one did.
bool busy_ran_since(Busy (&busy)[2], uint32_t from, const char* what) {
    uint32_t waited = uint32_t(utest::rdtsc()) - from;
    bool ran = false;
    for (Busy& b : busy) {
        // A busy thread that ran in between noted a TSC in between.
        uint32_t since = __atomic_load_n(&b.last, __ATOMIC_ACQUIRE) - from;
        if (since < waited) {
            printf("%s: a busy thread ran %u ticks after it, %u before the waiter returned\n", what,
                   since, waited);
            ran = true;
        }
    }
    return ran;
}

void start_busy(Busy (&busy)[2], bool& ok) {
    for (Busy& b : busy) {
        b.started = ok && ipc::start_thread(busy_loop, &b).ok();
        ok = ok && b.started;
    }
}

void stop_busy(Busy (&busy)[2]) {
    for (Busy& b : busy) __atomic_store_n(&b.stop, true, __ATOMIC_RELEASE);
    for (Busy& b : busy) {
        while (b.started && !__atomic_load_n(&b.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    }
}

// The driver's CPU, where it stays (main).
uint32_t g_driver_cpu = 0;

void proc_parent_runs_next_after_exit(const services::Services& s) {
    Busy busy[2];
    bool ok = true;
    start_busy(busy, ok);
    for (int round = 0; ok && round < 5; ++round) {
        // On this CPU: placement would send it away from the busy threads.
        Result<proc::Child> c = spawn_mode(s, kExitTsc, 0, g_driver_cpu);
        Result<proc::Exited> e = proc::wait4(s.proc, c ? c->pid : 1);
        uint32_t now = uint32_t(utest::rdtsc());
        ok = c && e && proc::exited_normally(e->status);
        if (!ok) break;
        uint32_t exited = proc::exit_code(e->status);
        ok = !busy_ran_since(busy, exited, "exit");
        if (round == 0)
            printf("wait4 returned %u TSC ticks after the child's exit\n", now - exited);
    }
    stop_busy(busy);
    report(ok, "proc_parent_runs_next_after_exit_with_busy_threads");
}

// A write wakes the oldest waiting reader, and a post one waiting worker,
// which runs next, ahead of CPU-bound threads: the writer stamps the TSC
// into what it sends, and no busy thread may run before the waiter
// returns with it.
struct Waker {
    const Endpoint* end;
    bool port;  // a port wait, else a pipe read
    bool waiting = false;
    bool ok = false;
    bool done = false;
    Busy (*busy)[2];
};

void stamped_waiter(void* arg) {
    auto* w = static_cast<Waker*>(arg);
    uint32_t stamp = 0;
    bool ok = false;
    __atomic_store_n(&w->waiting, true, __ATOMIC_RELEASE);
    if (w->port) {
        port::Packet p[1];
        Result<size_t> n = port::wait(*w->end, p, 1, 1);
        ok = n && *n == 1;
        stamp = uint32_t(p[0].data[0]);
    } else {
        Result<size_t> n = pipe::read(*w->end, &stamp, sizeof stamp);
        ok = n && *n == sizeof stamp;
    }
    w->ok = ok && !busy_ran_since(*w->busy, stamp, w->port ? "post" : "write");
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

void waiter_runs_next(const services::Services& s) {
    Result<pipe::Pipe> p = pipe::create(s.pipe);
    Result<Endpoint> q = port::create(s.port);
    Busy busy[2];
    bool ok = p && q;
    for (bool use_port : {false, true}) {
        if (!ok) break;
        Waker w{use_port ? &*q : &p->read, use_port, false, false, false, &busy};
        ok = ipc::start_thread(stamped_waiter, &w).ok();
        // It waits before the busy threads start.
        while (ok && !__atomic_load_n(&w.waiting, __ATOMIC_ACQUIRE)) (void)sys::yield();
        for (int y = 0; y < 3; ++y) (void)sys::yield();
        start_busy(busy, ok);
        (void)sys::yield();  // the busy threads run; then this thread again
        uint32_t stamp = uint32_t(utest::rdtsc());
        if (use_port) {
            ok = ok && port::post(*q, port::Packet{1, 0, {stamp, 0}}).ok();
        } else {
            ok = ok && pipe::write(p->write, &stamp, sizeof stamp).ok();
        }
        // (A waiter that never started, or was never woken, is not waited for.)
        while (ok && !__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
        stop_busy(busy);
        busy[0] = Busy{};
        busy[1] = Busy{};
        report(ok && w.ok, use_port ? "port_post_runs_the_waiter_next_with_busy_threads"
                                    : "pipe_write_runs_the_reader_next_with_busy_threads");
    }
}

// The threads of a process that exits while they run, spin or wait: none
// of them may run on freed memory (a stack, a page table) after the exit,
// and the parent gets the status. A hundred rounds.
void thread_spin(void*) {
    uint64_t on_stack[64] = {};
    for (uint64_t i = 0;; ++i) {
        on_stack[i % 64] = i;
        asm volatile("" ::"r"(on_stack) : "memory");  // the stores happen
    }
}

void thread_wait(void*) {
    Result<Endpoint> ep = Endpoint::create();
    if (ep) (void)ipc::recv(*ep);  // nobody sends: it waits until the end
    for (;;) (void)sys::yield();
}

void thread_yield(void*) {
    for (;;) (void)sys::yield();
}

int exit_with_threads(uint64_t value) {
    void (*const fns[])(void*) = {thread_spin, thread_wait, thread_yield};
    for (auto fn : fns) {
        if (!ipc::start_thread(fn, nullptr)) return 250;  // not a round's status
    }
    for (int y = 0; y < 4; ++y) (void)sys::yield();
    proc::exit(uint32_t(value));
}

void proc_exit_with_threads_running(const services::Services& s) {
    bool ok = true;
    for (uint64_t round = 0; ok && round < 100; ++round) {
        Result<proc::Child> c = spawn_mode(s, kExitWithThreads, round);
        Result<proc::Exited> e = proc::wait4(s.proc, c ? c->pid : 1);
        ok = c && e && e->status == round;
        if (!ok) printf("round %lu: status %lu\n", round, e ? e->status : ~uint64_t{0});
    }
    report(ok, "proc_exit_with_threads_running_100");
}

// --- The stress run ---------------------------------------------------------

// A stress client's value: its rounds, the CPU it is spawned on, and the
// driver's CPU and APIC id (to tell whether the client runs on another
// processor).
struct StressPlan {
    uint64_t rounds;  // below 1 << 16
    uint32_t cpu;     // below 1 << 16
    uint32_t driver_cpu;
    uint32_t driver_apic;  // below 1 << 8
};

constexpr uint64_t pack(const StressPlan& p) {
    return p.rounds | uint64_t(p.cpu) << 16 | uint64_t(p.driver_cpu) << 32 |
           uint64_t(p.driver_apic) << 48;
}

constexpr StressPlan unpack_plan(uint64_t value) {
    return {value & 0xFFFF, uint32_t(value >> 16) & 0xFFFF, uint32_t(value >> 32) & 0xFFFF,
            uint32_t(value >> 48) & 0xFF};
}

// A stress client's exit statuses past its rounds (which a failed round
// gives as round + 1).
constexpr int kStressWrongCpu = 2001;   // StartInfo::cpu is not the CPU it was spawned on
constexpr int kStressWrongApic = 2002;  // its APIC id says it shares (or not) the driver's CPU
constexpr int kStressMoved = 2003;      // one of its threads ran on another processor

struct StressPipe {
    Endpoint write;
    size_t bytes;
    uint32_t apic = 0;  // where the writer ran, checked at its start and end
    bool ok = false;
    bool done = false;
};

void stress_pipe_writer(void* arg) {
    auto* w = static_cast<StressPipe*>(arg);
    uint32_t apic = utest::apic_id();
    w->ok = write_pattern(w->write, 0, w->bytes) && pipe::close(w->write).ok();
    w->apic = utest::apic_id() == apic ? apic : ~0u;
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

struct StressPoster {
    const Endpoint* port;
    uint64_t count;
    uint32_t apic = 0;  // where the poster ran, checked at its start and end
    bool ok = false;
    bool done = false;
};

void stress_poster(void* arg) {
    auto* p = static_cast<StressPoster*>(arg);
    uint32_t apic = utest::apic_id();
    bool ok = true;
    for (uint64_t i = 0; ok && i < p->count; ++i) ok = port::post(*p->port, packet(i, 7)).ok();
    p->ok = ok;
    p->apic = utest::apic_id() == apic ? apic : ~0u;
    __atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
}

void wait_done(const bool& done) {
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) (void)sys::yield();
}

// One stress client: each round, a pipe between two of its threads (bytes
// checked, EOF at the end), a port between two of its threads (every
// packet once), and a child on its CPU reaped with its status. Exits 0 if
// every check held, else the round that failed + 1, or kStressWrong*,
// kStressMoved if it (or one of its threads) is not on the CPU it was
// spawned on.
int stress_client(const abi::StartInfo& start, const services::Services& s,
                  const StressPlan& plan) {
    if (start.cpu != plan.cpu) return kStressWrongCpu;
    uint32_t apic = utest::apic_id();
    if ((apic == plan.driver_apic) != (plan.cpu == plan.driver_cpu)) return kStressWrongApic;
    // A client to be killed has the write end of a pipe after the service
    // handles: one byte on it after its first round says it is under way.
    Endpoint started;
    if (start.handle_count > services::kCount) started = Endpoint(start.handles[services::kCount]);
    for (uint64_t round = 0; round < plan.rounds; ++round) {
        if (round == 1 && started.valid()) {
            if (!pipe::write(started, "r", 1) || !pipe::close(started)) return int(round) + 1;
        }
        Result<pipe::Pipe> p = pipe::create(s.pipe);
        if (!p) return int(round) + 1;
        StressPipe w{std::move(p->write), 5000 + 700 * round};
        if (!ipc::start_thread(stress_pipe_writer, &w)) return int(round) + 1;
        size_t got = read_pattern(p->read);
        wait_done(w.done);
        if (got != w.bytes || !w.ok) return int(round) + 1;

        Result<Endpoint> port = port::create(s.port);
        if (!port) return int(round) + 1;
        StressPoster poster{&*port, 300};
        if (!ipc::start_thread(stress_poster, &poster)) return int(round) + 1;
        uint64_t taken = 0, sum = 0;
        port::Packet batch[port::kMaxBatch];
        while (taken < poster.count) {
            Result<size_t> n = port::wait(*port, batch, port::kMaxBatch, 1);
            if (!n) return int(round) + 1;
            for (size_t i = 0; i < *n; ++i) sum += batch[i].key;
            taken += *n;
        }
        wait_done(poster.done);
        if (!poster.ok || taken != poster.count || sum != poster.count * (poster.count - 1) / 2) {
            return int(round) + 1;
        }
        (void)port::close(*port);
        if (w.apic != apic || poster.apic != apic || utest::apic_id() != apic) return kStressMoved;

        Result<proc::Child> c = spawn_mode(s, kExitWith, round & 0x7F, start.cpu);
        Result<proc::Exited> e = proc::wait4(s.proc, c ? c->pid : 1);
        if (!e || e->status != (round & 0x7F)) return int(round) + 1;
    }
    return 0;
}

// A stress client on plan.cpu; with `started`, a copy of that pipe end
// after its service handles.
Result<proc::Child> spawn_stress_client(const services::Services& s, const StressPlan& plan,
                                        const Endpoint* started) {
    ipc::Handle extra;
    if (started) {
        Result<Endpoint> d = pipe::dup(*started);
        if (!d) return d.error();
        extra = std::move(d).value();
    }
    return proc::spawn(s, "servertest", "", mode_arg(kStressClient, pack(plan)),
                       started ? &extra : nullptr, started ? 1 : 0, plan.cpu);
}

struct ServerStats {
    uint64_t words[3][4];  // pipe, port, proc: three counts and heap blocks
    bool ok = false;
};

ServerStats server_stats(const services::Services& s) {
    ServerStats st;
    const Endpoint* eps[3] = {&s.pipe, &s.port, &s.proc};
    st.ok = true;
    for (int i = 0; i < 3; ++i) {
        Result<ipc::Received> r = ipc::call(*eps[i], ipc::Message(services::kStats));
        if (!r || ipc::reply_status(r->message) != abi::Err::Ok) {
            printf("stats of server %d: %s\n", i,
                   ipc::error_name(r ? ipc::reply_status(r->message) : r.error()));
            st.ok = false;
        }
        for (unsigned w = 0; st.ok && w < 4; ++w) st.words[i][w] = r->message.word(w);
    }
    return st;
}

bool same_stats(const ServerStats& a, const ServerStats& b) {
    if (!a.ok || !b.ok) return false;
    for (int i = 0; i < 3; ++i) {
        for (int w = 0; w < 4; ++w) {
            if (a.words[i][w] != b.words[i][w]) return false;
        }
    }
    return true;
}

// At least 8 client processes use all three servers at once; two more are
// killed mid-run. Then every client's bytes and packets were accounted for
// (its status), and the servers hold what they held before: no state for a
// dead client, their heaps back where they started. With several CPUs,
// client i runs on CPU i % cpu_count and the two killed ones on CPUs other
// than the driver's, so the servers (started on CPU 0) serve every CPU at once and
// each kill crosses CPUs.
void stress(const abi::StartInfo& start, const services::Services& s) {
    constexpr int kClients = 8;
    constexpr int kVictims = 2;
    constexpr uint64_t kRounds = 12;
    uint32_t cpus = start.cpu_count > 0 ? start.cpu_count : 1;
    StressPlan plan{0, 0, start.cpu, utest::apic_id()};
    ServerStats before = server_stats(s);
    proc::Child clients[kClients + kVictims];
    constexpr uint32_t kCpusCounted = 64;
    bool used[kCpusCounted] = {};  // the CPUs clients run on (the first kCpusCounted)
    int used_count = 0;
    // The clients to be killed say when their first round is done.
    Result<pipe::Pipe> started = pipe::create(s.pipe);
    bool ok = before.ok && started.ok();
    for (int i = 0; ok && i < kClients + kVictims; ++i) {
        plan.rounds = i < kClients ? kRounds : 1000;
        plan.cpu = i % cpus;
        if (i >= kClients && cpus > 1) {
            plan.cpu = (start.cpu + 1 + uint32_t(i - kClients) % (cpus - 1)) % cpus;
        }
        Result<proc::Child> c =
            spawn_stress_client(s, plan, i < kClients ? nullptr : &started->write);
        if (!c && c.error() == abi::Err::InvalidArgument && plan.cpu != start.cpu) {
            // A CPU that did not start: the driver's.
            plan.cpu = start.cpu;
            c = spawn_stress_client(s, plan, i < kClients ? nullptr : &started->write);
        }
        ok = c.ok();
        if (ok) clients[i] = std::move(c).value();
        if (ok && plan.cpu < kCpusCounted && !used[plan.cpu]) {
            used[plan.cpu] = true;
            ++used_count;
        }
    }
    printf("stress: %d clients on %d cpu%s\n", kClients + kVictims, used_count,
           used_count == 1 ? "" : "s");
    // Let the last two get going (past their first round, wherever their
    // CPUs are), then kill them wherever they are.
    if (ok) ok = pipe::close(started->write).ok();
    char byte;
    for (int i = 0; ok && i < kVictims; ++i) {
        Result<size_t> r = pipe::read(started->read, &byte, 1);
        ok = r && *r == 1;
    }
    if (started) (void)pipe::close(started->read);
    for (int i = kClients; ok && i < kClients + kVictims; ++i) {
        ok = sys::invoke(abi::Sys::ProcessKill, clients[i].process.get()).ok();
    }
    int passed = 0, killed = 0;
    for (int i = 0; ok && i < kClients + kVictims; ++i) {
        Result<proc::Exited> e = proc::wait4(s.proc, 0);
        ok = e.ok();
        if (!ok) break;
        if (e->status == 0) {
            ++passed;
        } else if (proc::killed(e->status)) {
            ++killed;
        } else {
            char what[48];
            printf("stress client %lu %s\n", e->pid, proc::describe(e->status, what, sizeof what));
        }
    }
    printf("stress: %d clients passed, %d killed\n", passed, killed);
    ok = ok && passed == kClients && killed == kVictims;
    // What the servers hold, once init has reaped the children the killed
    // clients left behind.
    ServerStats after = server_stats(s);
    for (int tries = 0; ok && !same_stats(before, after) && tries < 200; ++tries) {
        (void)sys::yield();
        after = server_stats(s);
    }
    if (!same_stats(before, after)) {
        for (int i = 0; i < 3; ++i) {
            printf("server %d: before %lu %lu %lu heap %lu, after %lu %lu %lu heap %lu\n", i,
                   before.words[i][0], before.words[i][1], before.words[i][2], before.words[i][3],
                   after.words[i][0], after.words[i][1], after.words[i][2], after.words[i][3]);
        }
    }
    report(ok && same_stats(before, after), "stress_8_clients_all_servers_nothing_left");
}

// libipc's example server (libipc/examples/mailbox_server.cpp) serves its
// two client threads and ends with status 0.
void example_mailbox_server(const services::Services& s) {
    Result<proc::Child> c = proc::spawn_raw(s.proc, "mailbox_server", "");
    Result<proc::Exited> e = proc::wait4(s.proc, c ? c->pid : 1);
    report(c && e && e->status == 0, "example_mailbox_server");
}

int child_main(const abi::StartInfo& start) {
    uint64_t value = start.arg >> 8;
    switch (Mode(start.arg & 0xFF)) {
        case kExitWith:
            return int(value);
        case kExitTsc:
            proc::exit(uint32_t(utest::rdtsc()));
        case kExitWithThreads:
            return exit_with_threads(value);
        case kStressClient: {
            services::Services s = services::take(start);
            return stress_client(start, s, unpack_plan(value));
        }
        case kFault:
            *reinterpret_cast<volatile uint64_t*>(uintptr_t(value)) = 1;
            return 94;
        case kDriver:
        case kWriteMiB:
        case kWriteForever:
        case kReadToEof:
        case kPostPackets:
            break;
    }
    if (start.handle_count < 1) return 90;
    Endpoint end(start.handles[0]);
    switch (Mode(start.arg & 0xFF)) {
        case kPostPackets: {
            if (start.handle_count < 2) return 96;
            Endpoint second(start.handles[1]);
            for (uint64_t i = 0; i < value; ++i) {
                ipc::Status a = port::post(end, packet(i, 0));
                ipc::Status b = a ? port::post(second, packet(i, 1)) : a;
                if (!b) {
                    printf("producer: post %lu failed: %s\n", i, ipc::error_name(b.error()));
                    return 97;
                }
            }
            return 0;
        }
        case kReadToEof: {
            char buf[64];
            for (;;) {
                Result<size_t> r = pipe::read(end, buf, sizeof buf);
                if (!r) return 95;
                if (*r == 0) return int(value);
            }
        }
        case kWriteMiB:
            return write_pattern(end, 0, kStreamBytes) ? 0 : 91;
        case kWriteForever:
            for (size_t at = 0;; at += 1000) {
                if (!write_pattern(end, at, at + 1000)) return 92;
            }
        case kDriver:
        case kExitWith:
        case kFault:
        case kExitTsc:
        case kStressClient:
        case kExitWithThreads:
            break;
    }
    return 93;
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = services::start_info(arg);
    if (start.arg != kDriver) return child_main(start);
    services::Services s = services::take(start);
    // The stress run and the cases with busy threads speak of the driver's
    // CPU: it stays there.
    g_driver_cpu = start.cpu;
    if (sys::set_affinity(abi::kNoHandle, uint64_t(1) << start.cpu) != abi::Err::Ok) {
        report(false, "services_present");
        return 1;
    }
    if (!s.pipe.valid()) {
        report(false, "services_present");
        return 1;
    }
    report(true, "services_present");
    printf("driver on cpu %u of %u\n", start.cpu, start.cpu_count);
    pipe_basics(s);
    pipe_mebibyte(s);
    pipe_dup(s);
    pipe_killed_writer(s);
    proc_collects_children(s);
    proc_wnohang_echild_killed(s);
    proc_exit_wait4_race(s);
    proc_parent_runs_next_after_exit(s);
    proc_exit_with_threads_running(s);
    waiter_runs_next(s);
    port_basics(s);
    port_producer_consumer(s);
    example_mailbox_server(s);
    stress(start, s);
    printf("servertest done: %d failed\n", failures);
    return failures;
}
