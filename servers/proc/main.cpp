// The process server (docs/servers.md, "proc"): the state machine in
// procs.hpp behind libipc's server loop. Start handles: [0] its endpoint,
// with every right; [1] the boot modules (Manage), for ProcessSpawn. init
// talks to it through the unbadged handle; every child gets a handle
// minted with its own badge, and is spawned with this endpoint as its
// supervisor, under another badge, so its death notice comes here.
#include "mk/proc.hpp"
#include "mk/runtime.hpp"
#include "mk/server.hpp"
#include "procs.hpp"

namespace {

using namespace mk;
using namespace mk::ipc;

struct ProcService {
    const Endpoint& ep;
    abi::HandleValue modules;
    proc_server::Procs<DeferredReply> procs;

    Response spawn(Request& req) {
        // A spawn sent without waiting for the answer could not be given
        // the child's process handle: refused, nothing started.
        if (!req.expects_reply()) return abi::Err::InvalidArgument;
        Message& m = req.message();
        const char* module = nullptr;
        const char* args = nullptr;
        uint64_t flags = 0;
        uint32_t cpu = abi::kAnyCpu;
        if (!proc_server::parse_spawn(m, &module, &args) ||
            !proc_server::parse_spawn_flags(m, &flags, &cpu)) {
            return abi::Err::InvalidArgument;
        }
        abi::Err e = abi::Err::Ok;
        uint64_t id = procs.reserve(req.badge(), &e);
        if (id == 0) return e;
        // The child's own handle (unless raw), then what the parent sent.
        Handle own;
        if ((flags & proc::kSpawnRaw) == 0) {
            Result<Endpoint> h =
                ep.mint(abi::kRightSend | abi::kRightGrant, proc::client_badge(id));
            if (!h) {
                procs.cancel(id);
                return h.error();
            }
            own = std::move(h).value();
        }
        Result<Endpoint> sup = ep.mint(abi::kRightSend, proc::supervisor_badge(id));
        if (!sup) {
            procs.cancel(id);
            return sup.error();
        }
        Handle sent[abi::kMaxHandles];
        services::Passed passed[1 + abi::kMaxHandles];
        uint32_t count = 0;
        if (own.valid()) passed[count++] = {own.get(), false};
        for (unsigned i = 0; i < m.handle_count(); ++i) {
            sent[i] = m.take_handle(i);
            if (sent[i].valid()) passed[count++] = {sent[i].get(), false};
        }
        Result<services::Spawned> child =
            services::spawn(modules, module, args, m.word(0), passed, count, sup->get(), cpu);
        // The kernel holds the supervisor endpoint for the child now; this
        // handle's lineage ends here (its last-handle notice is ignored).
        (void)sup->close();
        if (!child) {
            procs.cancel(id);
            return child.error();  // the handles close with `own` and `sent`
        }
        (void)own.release();  // moved to the child
        for (Handle& h : sent) (void)h.release();
        procs.spawned(id, child->pid);
        return Message(kStatusOk).set_word(0, child->pid).move_handle(std::move(child->process));
    }

    Response wait(Request& req) { return procs.wait(req); }

    Response stats(Request&) {
        auto st = procs.stats();
        return services::stats_reply(st.processes, st.zombies, st.waiters);
    }

    void on_notice(const Received& n) {
        if (n.message.label() == abi::kLabelChildDied) procs.died(n.badge, n.message.word(1));
        // Last-handle notices (a child closing its handle, a supervisor
        // handle closed above) say nothing the death notice does not.
    }
};

constexpr Route<ProcService> kRoutes[] = {
    {proc::kSpawn, &ProcService::spawn},
    {proc::kWait, &ProcService::wait},
    {services::kStats, &ProcService::stats},
};

}  // namespace

int main(uint64_t arg) {
    const auto& start = *reinterpret_cast<const abi::StartInfo*>(arg);
    if (start.handle_count < 2) return 1;
    Endpoint ep(start.handles[0]);
    ProcService service{ep, start.handles[1], {}};
    abi::Err e = Server(service, kRoutes).run(ep);
    printf("stopped: %s\n", error_name(e));
    return 2;
}
