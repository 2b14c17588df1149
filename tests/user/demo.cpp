// The boot demo (scripts/run): init runs it (run=demo, the default) with
// the servers' handles. It shows what the kernel and the servers do, one
// line each, prefixed "[demo]" by the kernel's log:
//   - an echo server in another process, reached through an endpoint;
//   - two clients with badged handles: the kernel tells the server who
//     speaks, and no client can claim another's identity;
//   - a pipeline: a producer process writes lines into a pipe, a filter
//     process upper-cases them into a second pipe, the demo reads the end;
//   - a pool of worker threads taking jobs from a completion port: each
//     post wakes one waiting worker, which runs at once;
//   - children reaped with wait4, one of them killed by a page fault.
// With several CPUs (QEMU_SMP=4 scripts/run) its children spread over them:
// each spawn goes to the next CPU, round robin (docs/smp.md).
// The same module plays the pipeline's two stages (StartInfo::arg).
#include "common.hpp"
#include "mk/pipe.hpp"
#include "mk/port.hpp"
#include "mk/proc.hpp"
#include "mk/services.hpp"

using namespace mk;
using ipc::Endpoint;
using utest::rdtsc;
using utest::Result;

namespace {

enum Role : uint64_t { kMain = 0, kProducer = 1, kFilter = 2 };

constexpr const char* kLines[] = {"pipes are a user-space server\n",
                                  "EOF comes from the kernel's handle count\n",
                                  "and a write donates the CPU to the reader\n"};

int producer(const abi::StartInfo& start) {
    Endpoint out(start.handles[0]);
    for (const char* line : kLines) {
        size_t n = 0;
        while (line[n] != '\0') ++n;
        if (!pipe::write(out, line, n)) return 1;
    }
    return 0;  // the write end closes with the process: the filter sees EOF
}

int filter(const abi::StartInfo& start) {
    Endpoint in(start.handles[0]);
    Endpoint out(start.handles[1]);
    char buf[abi::kMaxPayload];
    for (;;) {
        Result<size_t> r = pipe::read(in, buf, sizeof buf);
        if (!r) return 1;
        if (*r == 0) return 0;
        for (size_t i = 0; i < *r; ++i) {
            if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = char(buf[i] - 'a' + 'A');
        }
        if (!pipe::write(out, buf, *r)) return 2;
    }
}

struct Worker {
    const Endpoint* port;
    int number;
    uint64_t* taken;  // jobs taken by the whole pool
    bool done;
};

void worker(void* arg) {
    auto* w = static_cast<Worker*>(arg);
    port::Packet job[1];
    for (;;) {
        Result<size_t> n = port::wait(*w->port, job, 1, 1);
        if (!n) break;  // the port closed: the pool is done
        printf("worker %d took job %lu (%lu + %lu = %lu)\n", w->number, job[0].key, job[0].data[0],
               job[0].data[1], job[0].data[0] + job[0].data[1]);
        __atomic_add_fetch(w->taken, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
}

// Where the next child goes: the CPUs after this process's, round robin.
struct Spread {
    uint32_t self = 0;
    uint32_t count = 1;
    uint32_t step = 0;
    uint32_t next() {
        if (count < 2) return abi::kAnyCpu;
        step = step % (count - 1) + 1;
        return (self + step) % count;
    }
};

// proc::spawn_raw on the next CPU; where the kernel places it if that CPU did
// not start.
Result<proc::Child> spawn_spread(const services::Services& s, Spread& where, const char* module,
                                 uint64_t arg, ipc::Handle* handles = nullptr, uint32_t count = 0) {
    uint32_t cpu = where.next();
    Result<proc::Child> c = proc::spawn_raw(s.proc, module, "", arg, handles, count, cpu);
    if (!c && c.error() == abi::Err::InvalidArgument && cpu != abi::kAnyCpu) {
        c = proc::spawn_raw(s.proc, module, "", arg, handles, count);
    }
    return c;
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = services::start_info(arg);
    if (start.arg == kProducer) return producer(start);
    if (start.arg == kFilter) return filter(start);
    services::Services s = services::take(start);
    Spread where{start.cpu, start.cpu_count};
    printf("process %lu, running in ring 3 on cpu %u of %u\n", start.process_id, start.cpu,
           start.cpu_count);

    // An echo server in its own process, reached through an endpoint.
    Result<Endpoint> echo = Endpoint::create();
    if (!echo) return 1;
    Result<Endpoint> echo_copy = echo->mint(abi::kRightsAll & ~abi::kRightManage, 0);
    if (!echo_copy) return 1;
    ipc::Handle h = std::move(echo_copy).value();
    Result<proc::Child> pong = spawn_spread(s, where, "pong", 0, &h, 1);
    if (!pong) return 2;
    constexpr uint64_t kRounds = 10000;
    uint64_t sum = 0;
    uint64_t pong_cpu = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < kRounds; ++i) {
        Result<ipc::Received> r = ipc::call(echo.value(), ipc::Message(1).set_word(0, i));
        if (!r) return 3;
        sum += r.value().message.word(0);
        pong_cpu = r.value().message.word(2);
    }
    uint64_t t1 = rdtsc();
    printf(
        "%lu calls to the echo server in another process on cpu %lu, %lu TSC ticks per "
        "round trip (checksum %s)\n",
        kRounds, pong_cpu, (t1 - t0) / kRounds,
        sum == 3 * kRounds * (kRounds - 1) / 2 + kRounds ? "ok" : "BAD");

    // Two clients with badged handles: the kernel tells the server who speaks.
    Result<Endpoint> inbox = Endpoint::create();
    if (!inbox) return 4;
    for (uint64_t badge : {uint64_t{0xA1}, uint64_t{0xB2}}) {
        Result<Endpoint> mine = inbox->mint(abi::kRightSend | abi::kRightDuplicate, badge);
        if (!mine) return 5;
        ipc::Handle v = std::move(mine).value();
        if (!spawn_spread(s, where, "client", (badge << 8) | 1, &v, 1)) return 5;
    }
    for (int i = 0; i < 2; ++i) {
        Result<ipc::Received> r = ipc::recv(inbox.value());
        while (r && r->is_notice()) r = ipc::recv(inbox.value());
        if (!r) return 6;
        printf("a message from the client holding badge %#lx (it claims %#lx)\n", r.value().badge,
               r.value().message.word(0));
    }

    // A pipeline of two programs: producer | filter | this process.
    Result<pipe::Pipe> first = pipe::create(s.pipe);
    Result<pipe::Pipe> second = pipe::create(s.pipe);
    if (!first || !second) return 7;
    ipc::Handle to_producer = std::move(first->write);
    ipc::Handle to_filter[2] = {std::move(first->read), std::move(second->write)};
    if (!spawn_spread(s, where, "demo", kProducer, &to_producer, 1)) return 8;
    if (!spawn_spread(s, where, "demo", kFilter, to_filter, 2)) return 8;
    char text[256];
    size_t got = 0;
    for (;;) {
        Result<size_t> r = pipe::read(second->read, text + got, sizeof text - 1 - got);
        if (!r) return 9;
        if (*r == 0) break;
        got += *r;
    }
    text[got] = '\0';
    for (char* line = text; *line != '\0';) {
        char* end = line;
        while (*end != '\0' && *end != '\n') ++end;
        printf("producer | filter: %.*s\n", int(end - line), line);
        line = *end == '\n' ? end + 1 : end;
    }
    printf("the pipeline's end: EOF after %zu bytes\n", got);

    // A pool of three workers waiting on a completion port; each post wakes
    // the longest-waiting one, and it runs at once.
    Result<Endpoint> jobs = port::create(s.port);
    if (!jobs) return 11;
    uint64_t taken = 0;
    Worker workers[3] = {
        {&*jobs, 1, &taken, false}, {&*jobs, 2, &taken, false}, {&*jobs, 3, &taken, false}};
    for (Worker& w : workers) {
        if (!ipc::start_thread(worker, &w)) return 12;
    }
    for (int i = 0; i < 3; ++i) (void)sys::yield();  // the workers reach their waits
    for (uint64_t j = 1; j <= 6; ++j) {
        if (!port::post(*jobs, port::Packet{j, 0, {j * 10, j}})) return 13;
    }
    // Closing drops what is still queued: first every job is taken.
    auto all_done = [&workers] {
        for (Worker& w : workers) {
            if (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) return false;
        }
        return true;
    };
    while (__atomic_load_n(&taken, __ATOMIC_ACQUIRE) < 6 && !all_done()) (void)sys::yield();
    (void)port::close(*jobs);
    for (Worker& w : workers) {
        while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) (void)sys::yield();
    }
    printf("the port closed: every worker's wait ended\n");

    // A program that faults dies alone; its parent reaps it with the rest.
    if (!spawn_spread(s, where, "faulter", 0)) return 10;
    for (;;) {
        Result<proc::Exited> e = proc::wait4(s.proc, 0, 0);
        if (!e) break;  // NoChild: every child reaped
        char what[48];
        printf("process %lu %s\n", e->pid, proc::describe(e->status, what, sizeof what));
        // The echo server is the last one running: stop it once the
        // faulter is gone, and reap it too.
        if (proc::faulted(e->status)) (void)ipc::call(echo.value(), ipc::Message(0xFFFF));
    }
    printf("demo done; the system idles now (QEMU: Ctrl-A X quits)\n");
    for (;;) (void)ipc::recv(inbox.value());
}
