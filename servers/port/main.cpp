// The port server (mk/port.hpp): the state machine in ports.hpp behind
// libipc's server loop. Its first start handle is its endpoint, with every
// right; clients reach it through unbadged Send copies (the service
// handle), and each port is a copy minted with the port's badge.
#include "mk/runtime.hpp"
#include "mk/server.hpp"
#include "mk/services.hpp"
#include "ports.hpp"

namespace {

using namespace mk;
using namespace mk::ipc;

struct PortService {
    const Endpoint& ep;
    port_server::Ports<DeferredReply> ports;

    // The port's handle is minted from the server's own unbadged handle,
    // beginning the badge lineage whose last handle's notice closes it,
    // and moved to the caller in the reply: the server keeps none.
    Response create(Request& req) {
        if (req.badge() != 0) return abi::Err::NoRights;
        uint64_t id = ports.create();
        if (id == 0) return ports.create_error();
        constexpr uint32_t kPortRights = abi::kRightSend | abi::kRightDuplicate;
        Result<Endpoint> h = ep.mint(kPortRights, port::badge_of(id));
        if (!h) {
            ports.destroy(id);
            return h.error();
        }
        return Message(kStatusOk).move_handle(std::move(h).value());
    }
    Response post(Request& req) { return ports.post(req); }
    Response try_post(Request& req) { return ports.try_post(req); }
    Response wait(Request& req) { return ports.wait(req); }
    Response close(Request& req) { return ports.close(req); }
    Response stats(Request&) {
        auto st = ports.stats();
        return services::stats_reply(st.ports, st.queued, st.waiters + st.posters);
    }
    void on_notice(const Received& n) {
        if (n.message.label() == abi::kLabelLastHandle) ports.last_handle(n.badge);
    }
};

constexpr Route<PortService> kRoutes[] = {
    {port::kCreate, &PortService::create},    {port::kPost, &PortService::post},
    {port::kTryPost, &PortService::try_post}, {port::kWait, &PortService::wait},
    {port::kClose, &PortService::close},      {services::kStats, &PortService::stats},
};

}  // namespace

int main(uint64_t arg) {
    const auto& start = *reinterpret_cast<const abi::StartInfo*>(arg);
    if (start.handle_count < 1) return 1;
    Endpoint ep(start.handles[0]);
    PortService service{ep, {}};
    abi::Err e = Server(service, kRoutes).run(ep);
    printf("stopped: %s\n", error_name(e));
    return 2;
}
