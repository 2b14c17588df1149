// The pipe client API (mk/pipe.hpp): calls to the pipe server.
#include "mk/pipe.hpp"

#include <cstring>

#include "ops.hpp"

namespace mk::pipe {

using ipc::Endpoint;
using ipc::Message;
using ipc::Received;

Result<Pipe> create(const Endpoint& service) {
    Result<Received> r = ipc::call(service, Message(kCreate));
    if (!r) return r.error();
    if (abi::Err e = ipc::reply_status(r->message); e != abi::Err::Ok) return e;
    Pipe p{Endpoint(r->message.take_handle(0)), Endpoint(r->message.take_handle(1))};
    if (!p.read.valid() || !p.write.valid()) return abi::Err::BadState;  // not what a server sends
    return p;
}

// read() and write() keep the request and the reply on the stack, and
// inline call_into() (detail::call): they are every pipe byte's way in and
// out.

Result<size_t> read(const Endpoint& end, void* buf, size_t n) {
    if (n == 0) return size_t{0};
    if (n > abi::kMaxPayload) n = abi::kMaxPayload;
    Message m(kRead);
    m.set_word(0, n);
    Received r;
    if (Status s = ipc::detail::call(end, m, r, abi::kForever); !s) return s.error();
    if (abi::Err e = ipc::reply_status(r.message); e != abi::Err::Ok) return e;
    long got = take_bytes(r.message, buf, n);
    if (got < 0) return abi::Err::BadState;  // not what a server sends
    return size_t(got);
}

Result<size_t> write(const Endpoint& end, const void* buf, size_t n) {
    const auto* bytes = static_cast<const uint8_t*>(buf);
    size_t done = 0;
    while (done < n) {
        size_t piece = n - done < abi::kMaxPayload ? n - done : abi::kMaxPayload;
        Message m(kWrite);
        if (piece <= kInlineBytes) {
            set_inline(m, bytes + done, piece);  // in registers, no payload to copy
        } else {
            m.append(bytes + done, piece);
        }
        Received r;
        if (Status s = ipc::detail::call(end, m, r, abi::kForever); !s) return s.error();
        if (abi::Err e = ipc::reply_status(r.message); e != abi::Err::Ok) return e;
        if (r.message.word(0) != piece) return abi::Err::BadState;
        done += piece;
    }
    return n;
}

Status close(Endpoint& end) {
    return end.close();
}

Result<Endpoint> dup(const Endpoint& end) {
    // Badge 0 keeps the end's badge; the rights stay the end's.
    return end.mint(abi::kRightSend | abi::kRightDuplicate, 0);
}

}  // namespace mk::pipe
