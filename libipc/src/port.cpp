// The completion-port client API (mk/port.hpp): calls to the port server.
#include "mk/port.hpp"

#include "ops.hpp"

namespace mk::port {

using ipc::Endpoint;
using ipc::Message;
using ipc::Received;

namespace {

// The calls keep the request and the reply on the stack, and inline
// call_into() (detail::call): a post and a wait are the hot path of every
// port.

Status call_post(const Endpoint& port, uint32_t label, const Packet& p) {
    Message m(label);
    m.set_word(0, p.key).set_word(1, p.status).set_word(2, p.data[0]).set_word(3, p.data[1]);
    Received r;
    if (Status s = ipc::detail::call(port, m, r, abi::kForever); !s) return s;
    if (abi::Err e = ipc::reply_status(r.message); e != abi::Err::Ok) return e;
    return Status();
}

// One kWait call; the count of packets copied to `out`.
Result<size_t> call_wait(const Endpoint& port, Packet* out, size_t max, size_t min,
                         uint64_t timeout_ns) {
    Message m(kWait);
    m.set_word(0, max).set_word(1, min);
    Received r;
    if (Status s = ipc::detail::call(port, m, r, timeout_ns); !s) return s.error();
    return take_packets(r.message, out, max, min);
}

}  // namespace

Result<Endpoint> create(const Endpoint& service) {
    Result<Received> r = ipc::call(service, Message(kCreate));
    if (!r) return r.error();
    if (abi::Err e = ipc::reply_status(r->message); e != abi::Err::Ok) return e;
    Endpoint port(r->message.take_handle(0));
    if (!port.valid()) return abi::Err::BadState;  // not what a server sends
    return port;
}

Status post(const Endpoint& port, const Packet& p) {
    return call_post(port, kPost, p);
}

Status try_post(const Endpoint& port, const Packet& p) {
    return call_post(port, kTryPost, p);
}

Result<size_t> wait(const Endpoint& port, Packet* out, size_t max, size_t min,
                    uint64_t timeout_ns) {
    if (max == 0 || min > max || min > kMaxBatch) return abi::Err::InvalidArgument;
    if (max > kMaxBatch) max = kMaxBatch;
    // The server answers a poll at once: its call needs no deadline (and a
    // kNoWait call would fail whenever the server is not in recv just then).
    if (min == 0) return call_wait(port, out, max, 0, abi::kForever);
    if (timeout_ns != abi::kNoWait) {
        Result<size_t> r = call_wait(port, out, max, min, timeout_ns);
        if (r || r.error() != abi::Err::TimedOut) return r;
    }
    // The deadline: what is there now, or TimedOut if nothing. (The server
    // learns of the timed-out wait only when it answers it and fails: what
    // it would have had stays in the port, for this poll or another waiter.)
    Result<size_t> r = call_wait(port, out, max, 0, abi::kForever);
    if (r && *r == 0) return abi::Err::TimedOut;
    return r;
}

Status close(Endpoint& port) {
    Result<Received> r = ipc::call(port, Message(kClose));
    abi::Err e = r ? ipc::reply_status(r->message) : r.error();
    Status closed = port.close();
    if (e != abi::Err::Ok) return e;
    return closed;
}

Result<Endpoint> dup(const Endpoint& port) {
    // Badge 0 keeps the port's badge; the rights stay the port's.
    return port.mint(abi::kRightSend | abi::kRightDuplicate, 0);
}

}  // namespace mk::port
