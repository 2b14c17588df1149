// A mailbox server: `put` leaves a word, `take` waits until there is one
// (a coroutine: its reply is deferred while the box is empty), `echo`
// returns its payload. Two client threads talk to it; the server stops
// when both have said `done`.
#include "mk/runtime.hpp"
#include "mk/server.hpp"

namespace ipc = mk::ipc;
using ipc::Message, ipc::Request, ipc::Response, ipc::Task;

enum Label : uint32_t { kPut = 1, kTake, kEcho, kDone };

struct Mailbox {
    ipc::Server<Mailbox>* server = nullptr;
    uint64_t word = 0;
    bool full = false;
    ipc::WaitList takers;
    int done = 0;

    Response put(Request& req) {
        if (full) return mk::abi::Err::BadState;
        word = req.message().word(0);
        full = true;
        takers.wake_one();  // a waiting take runs now and replies
        return mk::abi::Err::Ok;
    }
    Task take(Request req) {
        while (!full) co_await takers.wait(req.badge());
        full = false;
        co_return Message(ipc::kStatusOk).set_word(0, word);
    }
    Response echo(Request& req) {
        return Message(ipc::kStatusOk).append(req.message().payload(), req.message().length());
    }
    Response finished(Request&) {
        if (++done == 2) server->stop();
        return mk::abi::Err::Ok;
    }
    // The kernel says a client's last handle is gone: drop what it waits for.
    void on_notice(const ipc::Received& n) {
        if (n.message.label() == mk::abi::kLabelLastHandle) takers.cancel(n.message.word(0));
    }
};

constexpr ipc::Route<Mailbox> kRoutes[] = {{kPut, &Mailbox::put},
                                           {kTake, &Mailbox::take},
                                           {kEcho, &Mailbox::echo},
                                           {kDone, &Mailbox::finished}};

namespace {

void taker(void* p) {
    auto& ep = *static_cast<ipc::Endpoint*>(p);
    auto r = ipc::call(ep, Message(kTake));
    if (r) mk::printf("taker: got %lu\n", r->message.word(0));
    (void)ipc::call(ep, Message(kDone));
}

void putter(void* p) {
    auto& ep = *static_cast<ipc::Endpoint*>(p);
    auto r = ipc::call(ep, Message(kEcho).append("hello", 5));
    if (r) mk::printf("putter: echo %.*s\n", int(r->message.length()), r->message.payload());
    (void)ipc::call(ep, Message(kPut).set_word(0, 42));
    (void)ipc::call(ep, Message(kDone));
}

}  // namespace

int main(uint64_t) {
    auto ep = ipc::Endpoint::create();
    if (!ep) return 1;
    // Each client gets a send-only copy with its own badge.
    auto a = ep->mint(mk::abi::kRightSend, 1);
    auto b = ep->mint(mk::abi::kRightSend, 2);
    if (!a || !b) return 2;
    if (!ipc::start_thread(taker, &*a) || !ipc::start_thread(putter, &*b)) return 3;

    Mailbox box;
    ipc::Server server(box, kRoutes);
    box.server = &server;
    mk::abi::Err e = server.run(*ep);
    mk::printf("mailbox: served (%s)\n", ipc::error_name(e));
    return e == mk::abi::Err::Ok ? 0 : 4;
}
