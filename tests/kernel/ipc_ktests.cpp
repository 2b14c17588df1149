// In-kernel IPC tests: endpoints between kernel threads on the real context
// switch, timer and yield vector.
#include "endpoint.hpp"
#include "ktest.hpp"
#include "log.hpp"
#include "percpu.hpp"

namespace mk::ktest {

namespace {

Scheduler& sched() {
    return this_cpu().scheduler;
}

Message make(uint64_t label, uint64_t w0 = 0, uint32_t length = 0) {
    Message m;
    m.label = label;
    m.words[0] = w0;
    m.length = length;
    return m;
}

constexpr uint64_t kStop = 0xFFFF;

// --- call / reply_recv ping-pong ---

constexpr uint64_t kRoundTrips = 100000;

struct PingPong {
    Endpoint* ep;
    uint64_t served = 0;
    Error server_error = Error::None;
    uint64_t off_home = 0;  // requests served on a CPU other than the server's home
};

// Answers every call with 3x+1 of its first word until told to stop.
void echo_server(void* arg) {
    auto* p = static_cast<PingPong*>(arg);
    Result<Received> r = p->ep->recv();
    while (r.ok() && r.value().msg.label != kStop) {
        ++p->served;
        if (Cpu::cpu_index() != sched().current()->cpu) ++p->off_home;
        const Message& in = r.value().msg;
        Message out = make(in.label, in.words[0] * 3 + 1);
        out.words[1] = in.words[1] ^ 0x5555;
        r = p->ep->reply_recv(r.value().reply, out);
    }
    if (!r.ok()) {
        p->server_error = r.error();
        return;
    }
    (void)Endpoint::reply(r.value().reply, make(kStop));
}

// `n` calls to p's echo server, each answer checked, then the call that
// stops it; *ticks is what the n calls took (TSC).
bool call_echo(PingPong& p, uint64_t n, uint64_t* ticks) {
    uint64_t checksum = 0;
    uint64_t expected = 0;
    uint64_t t0 = Cpu::timestamp();
    for (uint64_t i = 0; i < n; ++i) {
        Message m = make(1, i);
        m.words[1] = i;
        Result<Message> r = p.ep->call(m, 0x1234);
        KCHECK(r.ok());
        KCHECK(r.value().words[1] == (i ^ 0x5555));
        checksum += r.value().words[0];
        expected += i * 3 + 1;
    }
    *ticks = Cpu::timestamp() - t0;
    KCHECK(checksum == expected);
    KCHECK(p.ep->call(make(kStop), 0).ok());
    return true;
}

bool ipc_call_reply_ping_pong() {
    PingPong p{Endpoint::create().value()};
    KCHECK(p.ep != nullptr);
    Thread* server = spawn("echo", echo_server, &p);
    KCHECK(server != nullptr);
    IpcCounters before = ipc_counters();
    SchedCounters sbefore = sched().counters();
    uint64_t ticks = 0;
    KCHECK(call_echo(p, kRoundTrips, &ticks));
    Thread* t[1] = {server};
    join(t, 1);
    IpcCounters after = ipc_counters();
    SchedCounters safter = sched().counters();
    uint64_t hits = after.fastpath_hits - before.fastpath_hits;
    log("[ktest]   %lu round trips, checksum ok, %lu TSC ticks each, fast-path hits %lu, "
        "direct switches %lu, donations %lu\n",
        kRoundTrips, ticks / kRoundTrips, hits, safter.direct_switches - sbefore.direct_switches,
        safter.donations_taken - sbefore.donations_taken);
    KCHECK(p.server_error == Error::None);
    KCHECK(p.served == kRoundTrips);
    if (ipc_fast_path() && sched().donation_enabled()) {
        // Every call and every reply_recv switches directly (bar a few
        // that met a timer tick at the wrong moment).
        KCHECK(hits >= 2 * kRoundTrips - kRoundTrips / 100);
    } else {
        // fastpath=off, or donate=off: a direct switch is a donation.
        KCHECK(hits == 0);
        uint64_t misses = ipc_fast_path()
                              ? after.fastpath_miss_donation_off - before.fastpath_miss_donation_off
                              : after.fastpath_miss_disabled - before.fastpath_miss_disabled;
        KCHECK(misses >= kRoundTrips);
    }
    Endpoint::destroy(p.ep);
    return true;
}

// --- Many senders, one receiver: FIFO per sender, badges identify them ---

constexpr int kSenders = 4;
constexpr uint64_t kPerSender = 2000;

struct Fanin {
    Endpoint* ep;
    int index;
};

void fanin_sender(void* arg) {
    auto* f = static_cast<Fanin*>(arg);
    for (uint64_t seq = 0; seq < kPerSender; ++seq) {
        Message m = make(2, seq);
        m.words[1] = uint64_t(f->index);
        if (f->ep->send(m, 100 + uint64_t(f->index)) != Error::None) return;
        if (seq % 97 == 0) sched().yield_now();
    }
}

// The CPUs that run threads (an AP that started late leaves a gap), in
// order, and how many.
uint32_t online_cpus(uint32_t* out) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < cpu_count(); ++i) {
        if (cpu_online(i)) out[n++] = i;
    }
    return n;
}

// With `spread`, sender i is homed on the i-th CPU online, round robin.
bool many_senders_keep_order(bool spread) {
    uint32_t cpus[kMaxCpus];
    uint32_t online = online_cpus(cpus);
    Endpoint* ep = Endpoint::create().value();
    KCHECK(ep != nullptr);
    Fanin args[kSenders];
    Thread* t[kSenders];
    for (int i = 0; i < kSenders; ++i) {
        args[i] = {ep, i};
        uint32_t cpu = spread ? cpus[uint32_t(i) % online] : Cpu::cpu_index();
        t[i] = spawn_on("sender", fanin_sender, &args[i], cpu);
        KCHECK(t[i] != nullptr);
    }
    uint64_t next[kSenders] = {};
    for (uint64_t n = 0; n < kSenders * kPerSender; ++n) {
        Result<Received> r = ep->recv(1000);
        KCHECK(r.ok());
        uint64_t who = r.value().msg.words[1];
        KCHECK(who < kSenders);
        KCHECK(r.value().badge == 100 + who);
        KCHECK(r.value().msg.words[0] == next[who]);
        ++next[who];
    }
    for (int i = 0; i < kSenders; ++i) KCHECK(next[i] == kPerSender);
    KCHECK(ep->try_recv().error() == Error::WouldBlock);
    join(t, kSenders);
    Endpoint::destroy(ep);
    return true;
}

bool ipc_many_senders_keep_order() {
    return many_senders_keep_order(false);
}

// --- Long messages through the IPC buffer ---

void reverse_server(void* arg) {
    auto* ep = static_cast<Endpoint*>(arg);
    Thread& self = *sched().current();
    Result<Received> r = ep->recv();
    while (r.ok() && r.value().msg.label != kStop) {
        uint32_t n = r.value().msg.length;
        unsigned char tmp[kIpcBufferSize];
        for (uint32_t i = 0; i < n; ++i) tmp[i] = self.ipc->buffer[n - 1 - i];
        for (uint32_t i = 0; i < n; ++i) self.ipc->buffer[i] = tmp[i];
        r = ep->reply_recv(r.value().reply, make(3, n, n));
    }
    if (r.ok()) (void)Endpoint::reply(r.value().reply, make(kStop));
}

bool ipc_long_messages() {
    Endpoint* ep = Endpoint::create().value();
    KCHECK(ep != nullptr);
    Thread* server = spawn("reverse", reverse_server, ep);
    KCHECK(server != nullptr);
    Thread& self = *sched().current();
    IpcCounters before = ipc_counters();
    for (uint32_t round = 0; round < 2000; ++round) {
        uint32_t n = round % (kIpcBufferSize + 1);
        for (uint32_t i = 0; i < n; ++i) self.ipc->buffer[i] = uint8_t(i * 31 + round);
        Result<Message> r = ep->call(make(3, 0, n), 0);
        KCHECK(r.ok());
        KCHECK(r.value().length == n);
        for (uint32_t i = 0; i < n; ++i)
            KCHECK(self.ipc->buffer[i] == uint8_t((n - 1 - i) * 31 + round));
    }
    KCHECK(ep->call(make(3, 0, kIpcBufferSize + 1), 0).error() == Error::TooLarge);
    KCHECK(ep->call(make(kStop), 0).ok());
    IpcCounters after = ipc_counters();
    KCHECK(after.fastpath_miss_long_message - before.fastpath_miss_long_message >= 1900 ||
           !ipc_fast_path() || !sched().donation_enabled());
    Thread* t[1] = {server};
    join(t, 1);
    Endpoint::destroy(ep);
    return true;
}

// --- Timeouts ---

struct Hoarder {
    Endpoint* ep;
    ReplyToken token;
    bool got = false;
};

// Receives one call and keeps its token without answering, staying alive
// (a dying server would fail the call with PeerDied instead).
void hoarding_server(void* arg) {
    auto* h = static_cast<Hoarder*>(arg);
    Result<Received> r = h->ep->recv();
    if (r.ok()) {
        h->token = r.value().reply;
        h->got = true;
    }
    sleep_ticks(30);
}

bool ipc_timeouts() {
    Endpoint* ep = Endpoint::create().value();
    KCHECK(ep != nullptr);
    uint64_t start = sched().ticks();
    KCHECK(ep->recv(5).error() == Error::TimedOut);
    KCHECK(sched().ticks() - start >= 5);
    KCHECK(ep->send(make(1), 0, 3) == Error::TimedOut);
    KCHECK(ep->waiting_senders() == 0);
    Hoarder h{ep, {}};
    Thread* server = spawn("hoarder", hoarding_server, &h);
    KCHECK(server != nullptr);
    start = sched().ticks();
    KCHECK(ep->call(make(1), 0, 10).error() == Error::TimedOut);  // delivered, never answered
    KCHECK(sched().ticks() - start >= 10);
    KCHECK(h.got);
    KCHECK(Endpoint::reply(h.token, make(2)) == Error::BadHandle);
    Thread* t[1] = {server};
    join(t, 1);
    Endpoint::destroy(ep);
    return true;
}

// --- Destruction with waiters ---

struct Waiter {
    Endpoint* ep;
    int kind;  // 0 recv, 1 send, 2 call
    Error result = Error::None;
    uint64_t label_after = 0;
};

// Holds its own reference for the whole operation, as the endpoint's
// contract asks of anyone who may race with destroy().
void blocked_waiter(void* arg) {
    auto* w = static_cast<Waiter*>(arg);
    Thread& self = *sched().current();
    Ref<Endpoint> ep = Ref<Endpoint>::retain(w->ep);
    if (w->kind == 0) w->result = ep->recv().error();
    if (w->kind == 1) w->result = ep->send(make(42), 0);
    if (w->kind == 2) w->result = ep->call(make(43), 0).error();
    w->label_after = self.ipc->msg.label;
}

bool ipc_destroy_wakes_waiters() {
    Endpoint* ep = Endpoint::create().value();
    Endpoint* ep2 = Endpoint::create().value();
    KCHECK(ep != nullptr && ep2 != nullptr);
    Waiter w[3] = {{ep2, 0}, {ep, 1}, {ep, 2}};
    Thread* t[3];
    for (int i = 0; i < 3; ++i) {
        t[i] = spawn("waiter", blocked_waiter, &w[i]);
        KCHECK(t[i] != nullptr);
    }
    while (ep->waiting_senders() < 2 || ep2->waiting_receivers() < 1) sched().yield_now();
    KCHECK(ep->refs() == 3 && ep2->refs() == 2);  // the creator's and each waiter's
    // Each endpoint is freed by the last of its waiters to let go.
    Endpoint::destroy(ep);
    Endpoint::destroy(ep2);
    join(t, 3);
    KCHECK(w[0].result == Error::Destroyed);
    KCHECK(w[1].result == Error::Destroyed);
    KCHECK(w[2].result == Error::Destroyed);
    KCHECK(w[1].label_after == 42);  // the sender still has its message
    KCHECK(w[2].label_after == 43);
    return true;
}

// --- Deferred replies and a server that dies ---

struct Deferred {
    Endpoint* ep;
    int replies_sent = 0;
    bool die = false;
};

void deferring_server(void* arg) {
    auto* d = static_cast<Deferred*>(arg);
    ReplyToken tokens[3];
    for (int i = 0; i < 3; ++i) {
        Result<Received> r = d->ep->recv();
        if (!r.ok()) return;
        tokens[i] = r.value().reply;
    }
    sleep_ticks(3);
    if (d->die) return;  // exits holding all three tokens
    for (int i = 2; i >= 0; --i) {
        if (Endpoint::reply(tokens[i], make(100 + uint64_t(i))) == Error::None) ++d->replies_sent;
    }
}

struct Client {
    Endpoint* ep;
    uint64_t id;
    Error result = Error::WouldBlock;
    uint64_t answer = 0;
};

void calling_client(void* arg) {
    auto* c = static_cast<Client*>(arg);
    Result<Message> r = c->ep->call(make(c->id), c->id);
    c->result = r.error();
    if (r.ok()) c->answer = r.value().label;
}

bool run_deferred(bool die) {
    Endpoint* ep = Endpoint::create().value();
    KCHECK(ep != nullptr);
    Deferred d{ep, 0, die};
    Client c[3] = {{ep, 0}, {ep, 1}, {ep, 2}};
    Thread* t[4];
    t[0] = spawn("server", deferring_server, &d);
    for (int i = 0; i < 3; ++i) t[i + 1] = spawn("client", calling_client, &c[i]);
    for (Thread* x : t) KCHECK(x != nullptr);
    join(t, 4);
    for (int i = 0; i < 3; ++i) {
        if (die) {
            KCHECK(c[i].result == Error::PeerDied);
        } else {
            KCHECK(c[i].result == Error::None);
            KCHECK(c[i].answer == 100 + uint64_t(i));
        }
    }
    KCHECK(d.replies_sent == (die ? 0 : 3));
    Endpoint::destroy(ep);
    return true;
}

bool ipc_deferred_replies() {
    return run_deferred(false);
}
bool ipc_server_death_fails_callers() {
    return run_deferred(true);
}

// --- send() donates to the woken receiver ---

struct Order {
    Endpoint* ep;
    char events[8] = {};
    int n = 0;
    void record(char c) {
        LockGuard guard(sched().lock());
        if (n < 7) events[n++] = c;
    }
};

void order_receiver(void* arg) {
    auto* o = static_cast<Order*>(arg);
    if (o->ep->recv().ok()) o->record('R');
}

void order_bystander(void* arg) {
    static_cast<Order*>(arg)->record('B');
}

bool ipc_send_donates_to_receiver() {
    Order o{Endpoint::create().value()};
    KCHECK(o.ep != nullptr);
    Thread* r = spawn("receiver", order_receiver, &o);
    KCHECK(r != nullptr);
    while (o.ep->waiting_receivers() == 0) sched().yield_now();
    Thread* b = spawn("bystander", order_bystander, &o);
    KCHECK(b != nullptr);
    KCHECK(o.ep->send(make(1), 0) == Error::None);
    o.record('S');
    Thread* t[2] = {r, b};
    join(t, 2);
    log("[ktest]   event order %s (donation %s)\n", o.events,
        sched().donation_enabled() ? "on" : "off");
    if (sched().donation_enabled()) {
        // The receiver runs at once; the sender lent it the rest of its
        // quantum and goes on when it ends, ahead of the bystander.
        KCHECK(o.events[0] == 'R' && o.events[1] == 'S' && o.events[2] == 'B');
    } else {
        KCHECK(o.events[0] == 'S' && o.events[1] == 'B' && o.events[2] == 'R');
    }
    Endpoint::destroy(o.ep);
    return true;
}

// --- Between CPUs (docs/smp.md) ---
// With one CPU there is nothing to cross: each case says so and passes.

bool one_cpu() {
    uint32_t cpus[kMaxCpus];
    if (online_cpus(cpus) >= 2) return false;
    log("[ktest]   one CPU: nothing to cross\n");
    return true;
}

// The first CPU online other than this one (there is one: !one_cpu()).
uint32_t other_cpu() {
    uint32_t cpus[kMaxCpus];
    uint32_t n = online_cpus(cpus);
    uint32_t i = 0;
    while (i + 1 < n && cpus[i] == Cpu::cpu_index()) ++i;
    return cpus[i];
}

constexpr uint64_t kCrossRoundTrips = 3000;

// The client here, the server homed on another CPU: every call and every
// reply is a wake of a thread of the other CPU, never a direct switch.
bool ipc_ping_pong_across_cpus() {
    if (one_cpu()) return true;
    PingPong p{Endpoint::create().value()};
    KCHECK(p.ep != nullptr);
    uint32_t there = other_cpu();
    Thread* server = spawn_on("echo", echo_server, &p, there);
    KCHECK(server != nullptr);
    IpcCounters before = total_ipc_counters();
    uint64_t ticks = 0;
    KCHECK(call_echo(p, kCrossRoundTrips, &ticks));
    Thread* t[1] = {server};
    join(t, 1);
    IpcCounters after = total_ipc_counters();
    log("[ktest]   %lu round trips between cpu %u and cpu %u, checksum ok, %lu TSC ticks each\n",
        kCrossRoundTrips, Cpu::cpu_index(), there, ticks / kCrossRoundTrips);
    KCHECK(p.served == kCrossRoundTrips && p.off_home == 0);
    KCHECK(p.server_error == Error::None);
    // Each call found the server waiting on the other CPU (it got there
    // first, or the first call queued): no direct switch.
    KCHECK(after.fastpath_miss_other_cpu - before.fastpath_miss_other_cpu >= kCrossRoundTrips - 1 ||
           !ipc_fast_path() || !sched().donation_enabled());
    Endpoint::destroy(p.ep);
    return true;
}

// Senders on every CPU, one receiver: each sender's messages arrive in
// order, every one of them.
bool ipc_senders_on_every_cpu_keep_order() {
    if (one_cpu()) return true;
    return many_senders_keep_order(true);
}

struct TimedWait {
    Endpoint* ep;
    Error result = Error::None;
    uint64_t ticks = 0;  // on its own CPU's clock
};

void timed_receiver(void* arg) {
    auto* w = static_cast<TimedWait*>(arg);
    uint64_t start = sched().ticks();
    w->result = w->ep->recv(5).error();
    w->ticks = sched().ticks() - start;
}

// A timeout of a thread of another CPU expires on that CPU's timer.
bool ipc_timeout_on_another_cpu() {
    if (one_cpu()) return true;
    TimedWait w{Endpoint::create().value()};
    KCHECK(w.ep != nullptr);
    Thread* t[1] = {spawn_on("timed", timed_receiver, &w, other_cpu())};
    KCHECK(t[0] != nullptr);
    join(t, 1);
    KCHECK(w.result == Error::TimedOut);
    KCHECK(w.ticks >= 5);
    Endpoint::destroy(w.ep);
    return true;
}

// "Wake there, now" (docs/smp.md): a send from this CPU to a receiver of
// another CPU that a kernel thread keeps busy. With donation on, that CPU
// is interrupted and runs the receiver at once, on the busy thread's
// quantum (a donation taken there); with donate=off the receiver waits
// for the busy thread's quantum to end (none taken).
struct BusyThere {
    Endpoint* ep;
    bool spinning = false;
    bool stop = false;
    uint64_t received_tick = 0;  // on their CPU's clock
    Error result = Error::None;
};

void busy_spinner(void* arg) {
    auto* b = static_cast<BusyThere*>(arg);
    __atomic_store_n(&b->spinning, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) __builtin_ia32_pause();
}

void woken_receiver(void* arg) {
    auto* b = static_cast<BusyThere*>(arg);
    Result<Received> r = b->ep->recv();
    b->received_tick = sched().ticks();
    b->result = r.ok() ? Error::None : r.error();
    __atomic_store_n(&b->stop, true, __ATOMIC_RELEASE);
}

bool ipc_donation_across_cpus_runs_there_now() {
    if (one_cpu()) return true;
    BusyThere b{Endpoint::create().value()};
    KCHECK(b.ep != nullptr);
    uint32_t there = other_cpu();
    Scheduler& other = cpu_at(there).scheduler;
    Thread* t[2] = {spawn_on("receiver", woken_receiver, &b, there), nullptr};
    KCHECK(t[0] != nullptr);
    while (b.ep->waiting_receivers() == 0) sleep_ticks(1);
    t[1] = spawn_on("busy", busy_spinner, &b, there);
    KCHECK(t[1] != nullptr);
    while (!__atomic_load_n(&b.spinning, __ATOMIC_ACQUIRE)) sleep_ticks(1);
    uint64_t taken = other.counters().donations_taken;
    uint64_t sent = Scheduler::total_counters().remote_donations;
    uint64_t sent_tick = other.ticks();
    KCHECK(b.ep->send(make(5), 0) == Error::None);
    join(t, 2);
    KCHECK(b.result == Error::None);
    uint64_t taken_there = other.counters().donations_taken - taken;
    uint64_t sent_now = Scheduler::total_counters().remote_donations - sent;
    log("[ktest]   the receiver on cpu %u ran %lu ticks after the send; %lu donation(s) taken "
        "there\n",
        there, b.received_tick - sent_tick, taken_there);
    if (sched().donation_enabled()) {
        KCHECK(sent_now >= 1 && taken_there >= 1);
    } else {
        KCHECK(sent_now == 0 && taken_there == 0);
    }
    Endpoint::destroy(b.ep);
    return true;
}

const Case kIpcCases[] = {
    {"ipc_call_reply_ping_pong", ipc_call_reply_ping_pong},
    {"ipc_many_senders_keep_order", ipc_many_senders_keep_order},
    {"ipc_long_messages", ipc_long_messages},
    {"ipc_timeouts", ipc_timeouts},
    {"ipc_destroy_wakes_waiters", ipc_destroy_wakes_waiters},
    {"ipc_deferred_replies", ipc_deferred_replies},
    {"ipc_server_death_fails_callers", ipc_server_death_fails_callers},
    {"ipc_send_donates_to_receiver", ipc_send_donates_to_receiver},
    {"ipc_ping_pong_across_cpus", ipc_ping_pong_across_cpus},
    {"ipc_senders_on_every_cpu_keep_order", ipc_senders_on_every_cpu_keep_order},
    {"ipc_timeout_on_another_cpu", ipc_timeout_on_another_cpu},
    {"ipc_donation_across_cpus_runs_there_now", ipc_donation_across_cpus_runs_there_now},
};

}  // namespace

CaseList ipc_cases() {
    return {kIpcCases, sizeof kIpcCases / sizeof kIpcCases[0]};
}

}  // namespace mk::ktest
