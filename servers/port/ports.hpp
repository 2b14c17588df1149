// The port server's state machine (mk/port.hpp has the protocol and its
// semantics): every completion port, its packets, its waiters and its
// waiting posters, and what each request and each kernel notice does to
// them. It issues no syscall: main.cpp gives it requests and the kernel's
// last-handle notices, and it answers deferred requests through the Reply
// objects it was handed, so the host tests
// (tests/unit/port_server_test.cpp) drive it with fakes.
//
// `Req` is what a handler gets (ipc::Request in the server): message(),
// badge(), expects_reply() and defer() -> Result<Reply>. `Reply` is a
// deferred answer (ipc::DeferredReply): send(Message&) -> Status, fail(Err).
// A send that fails means the caller is gone (it died, or its call timed
// out): a waiter's packets stay in the port for the next waiter, and a
// poster's packet never goes in (a packet is in the port exactly when its
// poster was told Ok).
//
// Invariants, after every request and notice, for every open port:
//   - every waiter wants more than is queued (min > queued): a waiter whose
//     min is met is answered the moment it is;
//   - posters wait only while the port is full (they are let in, oldest
//     first, the moment there is room);
//   - a closed port has no packets, no waiters and no posters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "mk/containers.hpp"
#include "mk/port.hpp"
#include "mk/server.hpp"
#include "mk/services.hpp"

namespace mk::port_server {

using ipc::Message;
using ipc::Response;
using ipc::Result;
using port::Packet;

template <typename Reply>
class Ports {
  public:
    struct Stats {
        size_t ports = 0;
        size_t queued = 0;  // packets in all ports
        size_t waiters = 0;
        size_t posters = 0;
    };
    // One port, for the tests' invariant checks.
    struct Info {
        bool exists = false;
        bool closed = false;
        size_t queued = 0;
        size_t waiters = 0;
        size_t posters = 0;
        size_t least_min = 0;  // the smallest min of its waiters (0: none)
    };

    // A new port: its id (its handle's badge is port::badge_of(id)), or 0
    // when kMaxPorts are open or there is no memory.
    uint64_t create() {
        uint64_t id = ports_.create();
        if (Port* p = ports_.find(id)) {
            p->waiters.count_in(&waiting_);
            p->posters.count_in(&waiting_);
        }
        return id;
    }
    // Why create() returned 0.
    abi::Err create_error() const {
        return ports_.full() ? abi::Err::LimitReached : abi::Err::OutOfMemory;
    }

    // Forgets a port at once (main.cpp, when its handle could not be
    // made); a stale id does nothing.
    void destroy(uint64_t id) {
        if (Port* p = ports_.find(id)) fail_all(*p, abi::Err::Destroyed);
        ports_.destroy(id);
    }

    // kPost: waits while the port is full.
    template <typename Req>
    Response post(Req& req) {
        return put_packet(req, true);
    }
    // kTryPost: kPortFull instead of waiting.
    template <typename Req>
    Response try_post(Req& req) {
        return put_packet(req, false);
    }

    template <typename Req>
    Response wait(Req& req) {
        Port* p = nullptr;
        abi::Err e = lookup(req, &p);
        if (e != abi::Err::Ok) return e;
        uint64_t max = req.message().word(0);
        uint64_t min = req.message().word(1);
        if (max == 0 || min > max) return abi::Err::InvalidArgument;
        if (max > port::kMaxBatch) max = port::kMaxBatch;
        if (min > max) return abi::Err::InvalidArgument;  // one reply cannot hold min
        if (p->ring.size() >= min) return take_and_pump(*p, size_t(max));
        // Registered before anything else can happen to the port: the next
        // post that meets `min` finds it (no lost wake-up).
        bool evict = p->waiters.size() >= port::kMaxWaiters;
        if (!evict && waiting() >= services::kMaxDeferred) return abi::Err::LimitReached;
        Result<Reply> r = req.defer();
        if (!r) return r.error();
        if (evict) {
            // Usually the entry of a wait that timed out long ago: then the
            // answer reaches nobody.
            (void)p->waiters.pop_front().reply.fail(abi::Err(port::kPortWaitEvicted));
        }
        Waiter w{std::move(r).value(), uint32_t(max), uint32_t(min)};
        if (!p->waiters.push_back(std::move(w))) (void)w.reply.fail(abi::Err::OutOfMemory);
        return Response::deferred();
    }

    // kClose: the port is closed for every holder; its slot stays (every
    // request on it gets kPortClosed) until the last handle's notice.
    template <typename Req>
    Response close(Req& req) {
        Port* p = nullptr;
        abi::Err e = lookup(req, &p);
        if (e != abi::Err::Ok) return e;
        close_port(*p);
        return abi::Err::Ok;
    }

    // The kernel's kLabelLastHandle notice: every handle to the port
    // `badge` names is gone (closed, or their processes died). Waiters still
    // there used a handle another thread closed: they learn kPortClosed.
    void last_handle(uint64_t badge) {
        if (badge == 0) return;
        uint64_t id = port::port_of(badge);
        Port* p = ports_.find(id);
        if (p == nullptr) return;
        close_port(*p);
        ports_.destroy(id);
    }

    Stats stats() const {
        Stats s;
        s.ports = ports_.size();
        ports_.for_each([&s](uint64_t, const Port& p) {
            s.queued += p.ring.size();
            s.waiters += p.waiters.size();
            s.posters += p.posters.size();
        });
        return s;
    }

    Info info(uint64_t id) const {
        Info i;
        const Port* p = ports_.find(id);
        if (p == nullptr) return i;
        i.exists = true;
        i.closed = p->closed;
        i.queued = p->ring.size();
        i.waiters = p->waiters.size();
        i.posters = p->posters.size();
        p->waiters.for_each([&i](const Waiter& w) {
            if (i.least_min == 0 || w.min < i.least_min) i.least_min = w.min;
        });
        return i;
    }

  private:
    // Deferred replies held, over all ports: every port's queues count
    // into it, so the bound checked on each wait costs no scan.
    size_t waiting() const { return waiting_; }
    static constexpr size_t kCapacity = port::kCapacity;

    struct Waiter {
        Reply reply;
        uint32_t max = 0;
        uint32_t min = 0;  // >= 1: a poll never waits
    };
    struct Poster {
        Reply reply;
        Packet packet;
    };
    struct Port {
        Ring<Packet, kCapacity> ring;
        bool closed = false;
        Fifo<Waiter> waiters;
        Fifo<Poster> posters;
    };

    // The port a request's badge names, if it is a call on an open port.
    template <typename Req>
    abi::Err lookup(Req& req, Port** out) {
        uint64_t badge = req.badge();
        Port* p = badge != 0 ? ports_.find(port::port_of(badge)) : nullptr;
        if (p == nullptr) return abi::Err::BadHandle;
        // A request sent without waiting for the answer could not be told
        // how it went, nor wait: refused, nothing taken or put.
        if (!req.expects_reply()) return abi::Err::InvalidArgument;
        if (p->closed) return abi::Err(port::kPortClosed);
        *out = p;
        return abi::Err::Ok;
    }

    template <typename Req>
    Response put_packet(Req& req, bool may_wait) {
        Port* p = nullptr;
        abi::Err e = lookup(req, &p);
        if (e != abi::Err::Ok) return e;
        const Message& m = req.message();
        Packet packet{m.word(0), m.word(1), {m.word(2), m.word(3)}};
        // Posters that wait came first: a post never overtakes them.
        if (p->posters.empty() && !p->ring.full()) {
            if (p->ring.empty() && hand_over(*p, packet)) return abi::Err::Ok;
            put(*p, packet);
            pump(*p);  // the waiter it satisfies answered, and runs first
            return abi::Err::Ok;
        }
        if (!may_wait) return abi::Err(port::kPortFull);
        if (p->posters.size() >= port::kMaxPosters || waiting() >= services::kMaxDeferred) {
            return abi::Err::LimitReached;
        }
        Result<Reply> r = req.defer();
        if (!r) return r.error();
        Poster ps{std::move(r).value(), packet};
        if (!p->posters.push_back(std::move(ps))) (void)ps.reply.fail(abi::Err::OutOfMemory);
        return Response::deferred();
    }

    static void put(Port& p, const Packet& packet) { p.ring.push(&packet, 1); }

    // The kWait reply carrying the oldest min(max, queued) packets (the
    // form port::put_packets gives it), which stay in the port until
    // consume(); kPortEmpty when there are none.
    // (Built where it is returned, a Response returned by name, never
    // moved: a Message is some 560 bytes.)
    static Response peek(const Port& p, size_t max) {
        static_assert(ipc::kStatusOk == uint32_t(abi::Err::Ok));
        Response r(p.ring.empty() ? abi::Err(port::kPortEmpty) : abi::Err::Ok);
        Message& m = r.message();
        bool first = true;
        p.ring.peek(max, [&m, &first](const Packet* packets, size_t count) {
            port::put_packets(m, packets, count, first);
            first = false;
        });
        return r;
    }
    static void consume(Port& p, size_t n) { p.ring.drop(n); }
    // The reply with the oldest min(max, queued) packets, taken out; then
    // waiting posters into the room it made.
    static Response take_and_pump(Port& p, size_t max) {
        Response r = peek(p, max);
        consume(p, port::packets_in(r.message()));
        pump(p);
        return r;
    }

    // Takes out the oldest waiter whose min `queued` packets meet; false if
    // none is.
    static bool take_ready_waiter(Port& p, size_t queued, Waiter* out) {
        bool found = false;
        size_t used = queued;
        (void)p.waiters.extract_if(
            [&found, used](const Waiter& w) {
                if (found || w.min > used) return false;
                found = true;
                return true;
            },
            [out](Waiter&& w) { *out = std::move(w); });
        return found;
    }

    // A packet posted to an empty port, straight to the oldest waiter it
    // meets (one whose min is 1: every waiter wants more than the none
    // queued), the answer pump() would give it, but never put in the ring.
    // False, nothing taken, when no waiter takes it (none wants just one,
    // or every one that did is gone): it goes in, as for any post.
    static bool hand_over(Port& p, const Packet& packet) {
        Waiter w;
        while (take_ready_waiter(p, 1, &w)) {
            Response r(abi::Err::Ok);
            port::put_packets(r.message(), &packet, 1, true);
            if (w.reply.send(r.message())) return true;
        }
        return false;
    }

    // Moves packets along until nothing more can move: queued packets to
    // the waiters whose min they meet (oldest such first; one whose caller
    // is gone takes nothing), and waiting posters' packets into the room
    // that makes (oldest first; one whose caller is gone puts nothing in).
    static void pump(Port& p) {
        if (!idle(p)) move_along(p);
    }
    // Whether pump() would find nothing to move (no waiter, and no poster
    // that room would let in), inline, so a request that leaves nothing to
    // move costs no call.
    static bool idle(const Port& p) {
        return p.waiters.empty() && (p.posters.empty() || p.ring.full());
    }
    static void move_along(Port& p) {
        bool moved = true;
        while (moved) {
            moved = false;
            Waiter w;
            while (take_ready_waiter(p, p.ring.size(), &w)) {
                Response m = peek(p, w.max);
                size_t n = port::packets_in(m.message());
                if (w.reply.send(m.message())) consume(p, n);
            }
            while (!p.posters.empty() && !p.ring.full()) {
                Poster ps = p.posters.pop_front();
                Message ok(ipc::kStatusOk);
                if (ps.reply.send(ok)) {
                    put(p, ps.packet);
                    moved = true;
                }
            }
        }
    }

    static void fail_all(Port& p, abi::Err e) {
        while (!p.waiters.empty()) (void)p.waiters.pop_front().reply.fail(e);
        while (!p.posters.empty()) (void)p.posters.pop_front().reply.fail(e);
    }

    static void close_port(Port& p) {
        if (p.closed) return;
        p.closed = true;
        p.ring.clear();
        fail_all(p, abi::Err(port::kPortClosed));
    }

    size_t waiting_ = 0;  // declared before ports_: the queues count into it until they go
    Slots<Port, port::kMaxPorts> ports_;
};

}  // namespace mk::port_server
