// The pipe client API (mk/pipe.hpp): calls to the pipe server.
#include "mk/pipe.hpp"

#include <cstring>

#include "mk/sys.hpp"
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

// read() and write() of a few bytes (at most kInlineBytes, the pipe
// ping-pong's one) go straight through the syscall: the request in
// registers, and a reply in registers (info word: a label and nothing
// else) read from them, with no Message built on either side. Any other
// reply — one with a payload or handles, which no pipe server sends for
// these — is decoded as a whole (small_reply()) and judged as a large
// one is, its handles closed. Larger ones keep the request and the reply
// on the stack and inline call_into() (detail::call).

namespace {

// The reply to a small read or write that was not register-only, or a
// large read's or write's reply: Ok and its word 0, or the error it says.
abi::Err status_of(const Received& r) {
    return ipc::reply_status(r.message);
}

// A small request's reply that carries more than a label and words:
// decoded as any reply is (its handles closed with it), then the status.
[[gnu::noinline, gnu::cold]] abi::Err small_reply(const sys::Ret& r, Received& out) {
    if (abi::Err e = ipc::detail::received(r, nullptr, out); e != abi::Err::Ok) return e;
    return status_of(out);
}

// The bytes of words 1.. (pipe::set_inline()'s layout) to `out`.
void copy_inline(const uint64_t* words, void* out, size_t n) {
    const auto* from = reinterpret_cast<const uint8_t*>(words);
    auto* to = static_cast<uint8_t*>(out);
    for (size_t i = 0; i < n; ++i) to[i] = from[i];
}

}  // namespace

Result<size_t> read(const Endpoint& end, void* buf, size_t n) {
    if (n == 0) return size_t{0};
    if (n > abi::kMaxPayload) n = abi::kMaxPayload;
    if (n <= kInlineBytes) {
        sys::Ret r = sys::invoke(abi::Sys::Call, end.get(), kRead, n, 0, 0, 0, abi::kForever);
        if (!r.ok()) return r.status;
        if ((r.r1 >> 32) == 0) [[likely]] {  // a label and words: the server's answer
            if (uint32_t(r.r1) != ipc::kStatusOk) return abi::Err(uint32_t(r.r1));
            uint64_t got = r.words[0];
            if (got > n) return abi::Err::BadState;  // not what a server sends
            copy_inline(&r.words[1], buf, got);
            return size_t(got);
        }
        Received out;
        if (abi::Err e = small_reply(r, out); e != abi::Err::Ok) return e;
        long got = take_bytes(out.message, buf, n);
        if (got < 0) return abi::Err::BadState;
        return size_t(got);
    }
    Message m(kRead);
    m.set_word(0, n);
    Received r;
    if (Status s = ipc::detail::call(end, m, r, abi::kForever); !s) return s.error();
    if (abi::Err e = status_of(r); e != abi::Err::Ok) return e;
    long got = take_bytes(r.message, buf, n);
    if (got < 0) return abi::Err::BadState;  // not what a server sends
    return size_t(got);
}

Result<size_t> write(const Endpoint& end, const void* buf, size_t n) {
    const auto* bytes = static_cast<const uint8_t*>(buf);
    if (n != 0 && n <= kInlineBytes) {
        uint64_t w[abi::kMessageWords - 1] = {};
        auto* to = reinterpret_cast<uint8_t*>(w);
        for (size_t i = 0; i < n; ++i) to[i] = bytes[i];
        sys::Ret r =
            sys::invoke(abi::Sys::Call, end.get(), kWrite, n, w[0], w[1], w[2], abi::kForever);
        if (!r.ok()) return r.status;
        uint64_t done = r.words[0];
        if ((r.r1 >> 32) != 0) [[unlikely]] {
            Received out;
            if (abi::Err e = small_reply(r, out); e != abi::Err::Ok) return e;
            done = out.message.word(0);
        } else if (uint32_t(r.r1) != ipc::kStatusOk) {
            return abi::Err(uint32_t(r.r1));
        }
        if (done != n) return abi::Err::BadState;
        return n;
    }
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
        if (abi::Err e = status_of(r); e != abi::Err::Ok) return e;
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
