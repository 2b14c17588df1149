// The pipe server (docs/servers.md, "pipe"): the state machine in
// pipes.hpp behind libipc's server loop. Its first start handle is its
// endpoint, with every right; clients reach it through unbadged Send
// copies (the service handle), and each pipe end is a copy minted with the
// end's badge.
#include "mk/runtime.hpp"
#include "mk/server.hpp"
#include "mk/services.hpp"
#include "pipes.hpp"

namespace {

using namespace mk;
using namespace mk::ipc;

struct PipeService {
    const Endpoint& ep;
    pipe_server::Pipes<DeferredReply> pipes;

    // The ends are minted from the server's own unbadged handle, each
    // beginning the badge lineage whose last handle's notice closes it,
    // and moved to the caller in the reply: the server keeps none.
    Response create(Request& req) {
        if (req.badge() != 0) return abi::Err::NoRights;
        uint64_t id = pipes.create();
        if (id == 0) return pipes.create_error();
        constexpr uint32_t kEndRights = abi::kRightSend | abi::kRightDuplicate;
        Result<Endpoint> r = ep.mint(kEndRights, pipe::badge_of(id, false));
        if (!r) {
            pipes.destroy(id);
            return r.error();
        }
        Result<Endpoint> w = ep.mint(kEndRights, pipe::badge_of(id, true));
        if (!w) {
            // The read end closes with r; its notice then finds no pipe.
            pipes.destroy(id);
            return w.error();
        }
        return Message(kStatusOk)
            .move_handle(std::move(r).value())
            .move_handle(std::move(w).value());
    }
    // The register lane (mk/server.hpp): a small read or write straight
    // from the registers, the rest through the routes.
    Lane on_register_call(RegisterCall& call, RegisterReply& out) {
        if (call.label() == pipe::kRead) return pipes.small_read(call, call.words(), out);
        if (call.label() == pipe::kWrite) return pipes.small_write(call, call.words(), out);
        return Lane::General;
    }
    Response read(Request& req) { return pipes.read(req); }
    Response write(Request& req) { return pipes.write(req); }
    Response stats(Request&) {
        auto st = pipes.stats();
        return services::stats_reply(st.pipes, st.buffered,
                                     st.readers_waiting + st.writers_waiting);
    }
    void on_notice(const Received& n) {
        if (n.message.label() == abi::kLabelLastHandle) pipes.last_handle(n.badge);
    }
};

constexpr Route<PipeService> kRoutes[] = {
    {pipe::kCreate, &PipeService::create},
    {pipe::kRead, &PipeService::read},
    {pipe::kWrite, &PipeService::write},
    {services::kStats, &PipeService::stats},
};

}  // namespace

int main(uint64_t arg) {
    const auto& start = *reinterpret_cast<const abi::StartInfo*>(arg);
    if (start.handle_count < 1) return 1;
    Endpoint ep(start.handles[0]);
    PipeService service{ep, {}};
    abi::Err e = Server(service, kRoutes).run(ep);
    printf("stopped: %s\n", error_name(e));
    return 2;
}
