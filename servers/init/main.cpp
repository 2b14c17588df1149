// init, the first user process (docs/servers.md, "init"). The kernel
// starts it with the boot modules (every right) and the kernel command
// line as its argument string. It starts the servers from their modules,
// each with its own endpoint, then the program named by `run=NAME` on the
// command line (default: demo) with the servers' service handles in the
// slots of mk/services.hpp. It supervises all of them: a server's death is
// logged, and when the program ends init ends with its status, which powers
// the machine off (status 0: QEMU reports success).
#include "mk/format.hpp"
#include "mk/runtime.hpp"
#include "mk/services.hpp"

namespace {

using namespace mk;
using ipc::Endpoint;
using ipc::Result;

struct Server {
    const char* module;
    services::Slot slot;
    Endpoint service;  // unbadged, Send and Duplicate: what clients get
    uint64_t pid = 0;
};

const char* status_text(uint64_t status, char* buf, size_t size) {
    format(buf, size, "%s %lu",
           (status & abi::kStatusKindMask) == abi::kStatusFault    ? "fault, vector"
           : (status & abi::kStatusKindMask) == abi::kStatusKilled ? "killed,"
                                                                   : "exit status",
           status & 0xFFFFFFFFu);
    return buf;
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

    Server servers[] = {
        {"pipe", services::kPipe, {}},
    };
    for (Server& s : servers) {
        Result<Endpoint> ep = Endpoint::create();
        if (!ep) return 102;
        Result<Endpoint> service = ep->mint(abi::kRightSend | abi::kRightDuplicate, 0);
        if (!service) return 103;
        services::Passed own{ep->get(), true};
        Result<services::Spawned> child =
            services::spawn(modules, s.module, "", 0, &own, 1, deaths->get());
        if (!child) {
            printf("cannot start the %s server: %s\n", s.module, ipc::error_name(child.error()));
            return 104;
        }
        s.service = std::move(service).value();
        s.pid = child->pid;
        printf("started the %s server (process %lu)\n", s.module, s.pid);
    }

    // The program: the service handles in their slots, and init's own
    // argument string (it may read words of the command line too).
    services::Passed passed[services::kCount] = {{modules, true}};
    uint32_t count = 1;
    for (Server& s : servers) {
        passed[s.slot] = {s.service.get(), true};
        if (s.slot + 1u > count) count = s.slot + 1u;
    }
    Result<services::Spawned> program =
        services::spawn(modules, run, start.args, 0, passed, count, deaths->get());
    if (!program) {
        printf("cannot run '%s': %s\n", run, ipc::error_name(program.error()));
        return 105;
    }
    printf("running %s (process %lu)\n", run, program->pid);

    for (;;) {
        Result<ipc::Received> n = ipc::recv(deaths.value());
        if (!n) return 106;
        if (n->message.label() != abi::kLabelChildDied) continue;
        uint64_t pid = n->message.word(0);
        uint64_t status = n->message.word(1);
        char text[48];
        if (pid == program->pid) {
            printf("%s ended (%s)\n", run, status_text(status, text, sizeof text));
            return status == 0 ? 0 : 1;
        }
        for (Server& s : servers) {
            if (s.pid == pid)
                printf("the %s server died (%s)\n", s.module,
                       status_text(status, text, sizeof text));
        }
    }
}
