// init, the first user process (docs/servers.md, "init"). The kernel
// starts it with the boot modules (every right) and the kernel command
// line as its argument string. It starts the servers from their modules,
// each with its own endpoint — proc (spawn, exit, wait4) with the boot
// modules too, pipe and port — waits until each answers a ping, then,
// through proc, the program named by
// `run=NAME` on the command line (default: demo), which gets the service
// handles in the slots of mk/services.hpp and init's argument string.
//
// Then it reaps: every process whose parent died is init's child, and
// init collects them all with wait4. When the program ends, init ends with
// its status, which powers the machine off (0: QEMU reports success). A
// server's death is logged by a second thread, which watches the servers'
// death notices.
#include "mk/proc.hpp"
#include "mk/runtime.hpp"
#include "mk/services.hpp"

namespace {

using namespace mk;
using ipc::Endpoint;
using ipc::Result;

struct Server {
    const char* module;
    services::Slot slot;
    uint64_t pid = 0;
};

// How long a server may take to start receiving (ns).
constexpr uint64_t kStartupTimeout = 10'000'000'000;

Server g_servers[] = {
    {"proc", services::kProc},
    {"pipe", services::kPipe},
    {"port", services::kPort},
};

// The slot of `s` in init's own Services.
Endpoint& slot_of(services::Services& s, services::Slot slot) {
    return slot == services::kProc ? s.proc : slot == services::kPipe ? s.pipe : s.port;
}

// The second thread: the servers' deaths (init is their supervisor).
void watch_servers(void* deaths) {
    const Endpoint& ep = *static_cast<const Endpoint*>(deaths);
    for (;;) {
        Result<ipc::Received> n = ipc::recv(ep);
        if (!n || n->message.label() != abi::kLabelChildDied) continue;
        char text[48];
        for (Server& s : g_servers) {
            if (__atomic_load_n(&s.pid, __ATOMIC_ACQUIRE) == n->message.word(0)) {
                printf("the %s server %s\n", s.module,
                       proc::describe(n->message.word(1), text, sizeof text));
            }
        }
    }
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = services::start_info(arg);
    if (start.handle_count < 1) return 100;
    abi::HandleValue modules = start.handles[0];
    char run[abi::kArgsMax] = "demo";  // a name too long for a module is spawn's error
    (void)services::arg_value(start.args, "run", run, sizeof run);
    Result<Endpoint> deaths = Endpoint::create();
    if (!deaths) return 101;
    // init stays on its CPU, and its watcher and servers with it: every
    // client's calls land there, and the balancing rule cannot take init
    // away from its servers while it starts them (docs/smp.md, "Placement").
    if (sys::set_affinity(abi::kNoHandle, uint64_t(1) << start.cpu) != abi::Err::Ok) return 109;
    // The watcher first: queued ahead of the servers, it has reached its
    // receive by the time the last of them answers a ping below.
    if (!ipc::start_thread(watch_servers, &deaths.value())) return 105;
    // init's own service handles; to proc, the unbadged handle is init.
    services::Services mine;

    for (Server& s : g_servers) {
        Result<Endpoint> ep = Endpoint::create();
        if (!ep) return 102;
        // Clients may pass a copy on (Duplicate) and send handles (Grant:
        // handles to spawn with, through proc).
        Result<Endpoint> service =
            ep->mint(abi::kRightSend | abi::kRightDuplicate | abi::kRightGrant, 0);
        if (!service) return 103;
        services::Passed handles[2] = {{ep->get(), true}, {modules, true}};
        uint32_t count = s.slot == services::kProc ? 2 : 1;  // proc spawns: the modules
        // Bound to init's CPU, where every client's calls land, and where
        // the programs spawned through proc start.
        Result<services::Spawned> child =
            services::spawn(modules, s.module, "", 0, handles, count, deaths->get(), start.cpu);
        if (!child) {
            printf("cannot start the %s server: %s\n", s.module, ipc::error_name(child.error()));
            return 104;
        }
        slot_of(mine, s.slot) = std::move(service).value();
        __atomic_store_n(&s.pid, child->pid, __ATOMIC_RELEASE);  // watch_servers reads it
        printf("started the %s server (process %lu)\n", s.module, s.pid);
    }
    // Each server answers once it receives: with all of them (and the
    // watcher) waiting, nothing waits for this CPU, and the program spawned
    // next starts here, beside the servers (the least loaded CPU, its
    // spawner not counted, the spawner's among equals), not away from
    // threads still about to start (docs/smp.md, "Placement").
    for (Server& s : g_servers) {
        ipc::Status up = ipc::ping(slot_of(mine, s.slot), kStartupTimeout);
        if (!up) {
            printf("the %s server does not answer: %s\n", s.module, ipc::error_name(up.error()));
            return 108;
        }
    }

    Result<proc::Child> program = proc::spawn(mine, run, start.args);
    if (!program) {
        printf("cannot run '%s': %s\n", run, ipc::error_name(program.error()));
        return 107;
    }
    printf("running %s (process %lu)\n", run, program->pid);

    for (;;) {
        Result<proc::Exited> e = proc::wait4(mine.proc, 0);
        if (!e) {
            printf("wait4: %s\n", ipc::error_name(e.error()));
            return 106;
        }
        if (e->pid != program->pid) continue;  // an orphan, reaped
        char text[48];
        printf("%s %s\n", run, proc::describe(e->status, text, sizeof text));
        return e->status == 0 ? 0 : 1;
    }
}
