// Completion ports: the port server's protocol and its client API
// (docs/servers.md, "port"). The server is servers/port; init hands
// programs a handle to it (its service handle).
//
//   Result<ipc::Endpoint> p = port::create(services.port);
//   port::post(*p, {.key = 7, .status = 0, .data = {42, 0}});  // blocks while full
//   port::Packet got[8];
//   Result<size_t> n = port::wait(*p, got, 8, 1, 10'000'000);  // 1..8 packets, or TimedOut
//   port::close(*p);                      // every waiter wakes with kErrPortClosed
//
// A packet is a key, a status and two words of user data (Windows'
// OVERLAPPED_ENTRY has the same four: key, overlapped pointer, status,
// bytes), returned exactly as posted. A port is an endpoint handle to the
// server whose badge names the port; any holder may post and wait (as with
// an IOCP handle: a producer-only handle would need its own badge lineage
// and buys nothing here). dup() copies it; the port lives while any handle
// to it does, or until someone close()s it.
//
// The semantics, each pinned by tests/unit/port_server_test.cpp:
//   - Packets come out in the order they went in (one FIFO per port).
//   - Waiters wake in arrival order (FIFO), not LIFO as Windows does to
//     keep a hot thread hot. Here a post donates the CPU to the waiter it
//     wakes, whichever it is, so the newest waiter would win little; FIFO
//     cannot starve a waiter, matches every other queue in the system
//     (DESIGN.md), and keeps waiters whose call timed out (which the server
//     only learns of when its answer to them fails) at the front, where the
//     next post finds and forgets them instead of burying them.
//   - A post wakes at most one waiter, and that waiter runs next (the
//     server's answer donates the CPU to it).
//   - `min`: a wait returns once at least `min` packets are there, with up
//     to `max` of them. Waiters wait only while fewer packets are queued
//     than their `min`: a waiter whose `min` is met is served at once, the
//     oldest such first. So a waiter wanting 1 is not held up behind an
//     older one wanting 5 (no head-of-line blocking: an older waiter that
//     died or timed out can never stall the rest); among waiters that want
//     the same, the older goes first. `min = 0` polls: it never waits, and
//     may return 0 packets.
//   - The deadline: the server has no clock; the kernel times the call
//     out. wait() then polls once, so a wait ends at its deadline with
//     what is there (fewer than `min`, even), or TimedOut if nothing. The
//     server answers the timed-out waiter's entry only when it tries to
//     deliver to it; the kernel refuses that answer and the packets stay
//     for the next waiter. Nothing is lost to a waiter that is gone.
//   - A full port (kCapacity packets) never drops one: post() waits (its
//     reply deferred) until there is room, posters in arrival order, and
//     try_post() says kErrPortFull at once. A post never overtakes a
//     poster already waiting.
//   - Closing a port (close(), or the last handle to it going) answers
//     every waiter and every waiting poster with kErrPortClosed and drops
//     the queued packets; every later request on it gets kErrPortClosed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mk/ipc.hpp"

namespace mk::port {

using ipc::Result;
using ipc::Status;

// One completion: what post() was given, returned unchanged by wait().
struct Packet {
    uint64_t key;
    uint64_t status;
    uint64_t data[2];
};
static_assert(sizeof(Packet) == abi::kMessageWords * sizeof(uint64_t));

// The protocol. Requests are calls (a plain send is refused: it could be
// told nothing); the reply's label is its status (ipc::kStatusOk, an
// abi::Err, or an app status below).
enum Label : uint32_t {
    // On the service handle (badge 0): a new port. Reply: Ok with one
    // handle moved to the caller, the port (Send and Duplicate).
    // LimitReached / OutOfMemory when the server has no room (kMaxPorts).
    kCreate = 1,
    // On a port: words 0..3 the packet (key, status, data[0], data[1]) —
    // register-only, so a post can take the kernel's fast path. Reply: Ok
    // once the packet is in the port; waits while the port is full.
    // LimitReached when kMaxPosters posters wait already.
    kPost = 2,
    // As kPost, but never waits: kPortFull when there is no room now (or
    // posters wait already).
    kTryPost = 3,
    // On a port: word 0 `max` (1.., more than kMaxBatch is cut to it),
    // word 1 `min` (0..max, at most kMaxBatch). Reply: Ok with n >= 1
    // packets, oldest first: the first in words 0..3, the other n - 1 as
    // the payload ((n - 1) * sizeof(Packet) bytes), so the usual answer of
    // one packet is register-only and can take the kernel's fast path; or
    // kPortEmpty, a poll (min 0) that found none. Waits while fewer than
    // `min` packets are there.
    kWait = 4,
    // On a port: closes it for every holder (see the top). Reply: Ok.
    kClose = 5,
};

// Packets one port holds; posts beyond it wait for waiters to drain it.
constexpr size_t kCapacity = 128;
// Packets one wait returns at most: what fits in one message's payload.
constexpr size_t kMaxBatch = abi::kMaxPayload / sizeof(Packet);
static_assert(kMaxBatch == 15 && kCapacity >= kMaxBatch);
// Ports one server holds at once.
constexpr size_t kMaxPorts = 256;
// Waits one port keeps pending. A wait beyond it ends the oldest pending
// wait with kPortWaitEvicted: the server cannot see which of its waiters
// timed out until it answers them, so this is what bounds the entries
// that timed-out waits leave behind (usually the oldest is one of those,
// and its eviction reaches nobody).
constexpr size_t kMaxWaiters = 64;
// Posters one port keeps waiting for room; one more gets LimitReached.
constexpr size_t kMaxPosters = 64;

// App statuses (reply labels) of the protocol.
constexpr uint32_t kPortClosed = ipc::kFirstAppStatus + 0x10;       // the port was closed
constexpr uint32_t kPortFull = ipc::kFirstAppStatus + 0x11;         // try_post: no room now
constexpr uint32_t kPortWaitEvicted = ipc::kFirstAppStatus + 0x12;  // kMaxWaiters newer waits
constexpr uint32_t kPortEmpty = ipc::kFirstAppStatus + 0x13;        // kWait: a poll found none

// The same, as the errors the API returns (out-of-range abi::Err values).
constexpr abi::Err kErrPortClosed = abi::Err(kPortClosed);
constexpr abi::Err kErrPortFull = abi::Err(kPortFull);
constexpr abi::Err kErrPortWaitEvicted = abi::Err(kPortWaitEvicted);

// A port's badge is its id in the server (never 0; badge 0 is the service
// handle).
constexpr uint64_t badge_of(uint64_t port_id) {
    return port_id;
}
constexpr uint64_t port_of(uint64_t badge) {
    return badge;
}

// The kWait reply's form, for the server (put_packets) and the client
// (packets_in, take_packets). Packets in it: 1 + the payload's, or 0 for
// anything but Ok.
inline size_t packets_in(const ipc::Message& reply) {
    if (reply.label() != ipc::kStatusOk) return 0;
    return 1 + reply.length() / sizeof(Packet);
}
// Appends `count` packets, oldest first, to a kWait reply being built
// (label Ok, no packet yet, or some put by an earlier call).
inline void put_packets(ipc::Message& reply, const Packet* packets, size_t count, bool first) {
    if (count == 0) return;
    if (first) {
        reply.set_word(0, packets->key).set_word(1, packets->status);
        reply.set_word(2, packets->data[0]).set_word(3, packets->data[1]);
        ++packets;
        --count;
    }
    if (count != 0) reply.append(packets, count * sizeof(Packet));
}

// ---------------------------------------------------------------------------
// The client API
// ---------------------------------------------------------------------------

// The packets of a kWait reply to a wait for `min`..`max` (max at most
// kMaxBatch), copied to `out`: their count, the reply's error status, or
// BadState for a reply no server sends (a count outside min..max, a
// payload that is not whole packets, kPortEmpty to a wait with min > 0).
// Inline: it is the end of every wait.
inline Result<size_t> take_packets(const ipc::Message& reply, Packet* out, size_t max, size_t min) {
    if (reply.label() == kPortEmpty) {
        if (min != 0) return abi::Err::BadState;  // only a poll is answered with none
        return size_t(0);
    }
    if (abi::Err e = ipc::reply_status(reply); e != abi::Err::Ok) return e;
    // The first packet in the words, the rest in the payload (kWait).
    size_t n = packets_in(reply);
    if (n > max || n < min || reply.length() != (n - 1) * sizeof(Packet)) {
        return abi::Err::BadState;  // not what a server sends
    }
    const uint64_t* w = reply.words();
    out[0] = Packet{w[0], w[1], {w[2], w[3]}};
    if (n > 1) __builtin_memcpy(out + 1, reply.payload(), (n - 1) * sizeof(Packet));
    return n;
}

// A new port from the server behind `service`.
Result<ipc::Endpoint> create(const ipc::Endpoint& service);

// Puts `p` in the port, waiting while it is full. kErrPortClosed if the
// port is (or gets, while this waits) closed.
Status post(const ipc::Endpoint& port, const Packet& p);

// Puts `p` in the port if there is room now, else kErrPortFull.
Status try_post(const ipc::Endpoint& port, const Packet& p);

// Takes up to `max` packets (at most kMaxBatch per call) into `out`,
// waiting until at least `min` are there or `timeout_ns` has passed
// (abi::kForever: no deadline; abi::kNoWait: poll). Returns the count: at
// least `min`, or at the deadline whatever was there (TimedOut if
// nothing). `min = 0` never waits. InvalidArgument for max = 0 or
// min > max or min > kMaxBatch (nothing asked of the server);
// kErrPortClosed once the port is closed; kErrPortWaitEvicted if
// kMaxWaiters later waits pushed this one out.
Result<size_t> wait(const ipc::Endpoint& port, Packet* out, size_t max, size_t min,
                    uint64_t timeout_ns = abi::kForever);

// Closes the port for every holder (kClose), then this handle. Other
// holders' handles stay valid but every request on them gets
// kErrPortClosed.
Status close(ipc::Endpoint& port);

// Another handle to the same port: the port stays open (unless close()d)
// until both are gone.
Result<ipc::Endpoint> dup(const ipc::Endpoint& port);

}  // namespace mk::port
