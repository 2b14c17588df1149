// Randomized, model-based test of the IPC core (microkernel/endpoint.cpp)
// through the CPU fake.
//
// The boot thread, several workers and a few endpoints run many seeded random
// steps: send, try_send, call, recv, try_recv, reply (at once or deferred:
// tokens kept and answered in random order), reply_drop, reply_recv,
// blocking operations with small timeouts, timer ticks (bursts long enough to
// preempt), yields, stray wakes of blocked threads, oversized messages,
// stale, forged and copied reply tokens, endpoint destruction and
// re-creation (sometimes with the running thread holding a reference across
// it, then trying an operation on the dead endpoint), and thread kill and
// re-spawn. As in endpoint_test.cpp the test
// acts as whichever thread the scheduler says is current: a blocking
// operation returns WouldBlock at the fake switch, and the thread collects
// its result with Endpoint::finish_*() when it runs again.
//
// A reference model written from the documented semantics (endpoint.hpp,
// docs/ipc.md), not from the implementation, predicts every result: per
// endpoint a FIFO of blocked senders (with their messages) and one of blocked
// receivers; per thread its state, operation, deadline, outgoing message and
// the reply tokens it holds. After every step it also checks the kernel's
// view of every thread (state, IPC operation, deadline, the queue it waits
// on), the queue lengths and fronts, the ready queue's length, who runs
// (donation and the fast path switch to the partner; with donation off there
// is no fast path either, and as otherwise any thread the model says is
// ready may run, idle only when none is), and that interrupts are
// on and no lock is held between operations. Every message carries a unique
// id, its sender and a per-(sender, endpoint) sequence number in its words
// and a payload derived from its id, so a lost, duplicated, reordered or
// corrupted message is caught.
//
// The seed is printed at the start of every run; the default is fixed, so
// every run of the suite is the same. Replay with MK_IPC_SEED=<seed>, explore
// with MK_IPC_SEED=random; MK_IPC_OPS=<n> sets the total number of steps over the
// three variants (default 1,000,000: 60% default, 20% fast path off, 20%
// donation off). A mismatch reports the seed, the step, the last operations
// and the state of every thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "endpoint.hpp"
#include "sched_fixture.hpp"

namespace mk {
namespace {

constexpr int kMaxEndpoints = 4;
constexpr size_t kHistory = 24;
constexpr size_t kPoolSize = 32;
constexpr int kIdle = -1;  // model index of the idle thread
constexpr int kAny = -2;   // settle(): any thread the model says is ready (idle if none)
constexpr uint64_t kDefaultOps = 1'000'000;

enum class St : uint8_t { Running, Ready, Blocked };
enum class Op : uint8_t { None, Send, Call, Recv, ReplyWait };
enum class Fin : uint8_t { None, Send, Recv, Call };  // which finish_*() collects the result
enum class Role : uint8_t { Client, Server, Mixed };

enum Act : int {
    kSend,
    kTrySend,
    kCall,
    kRecv,
    kTryRecv,
    kReply,
    kReplyDrop,
    kReplyRecv,
    kYield,
    kTick,
    kDestroy,
    kKill,
    kTooLarge,
    kStaleReply,
    kStrayWake,
    kActCount,
};

// Relative weights of the actions, by role.
constexpr std::array<std::array<int, kActCount>, 3> kWeights = {{
    // Snd TrySnd Call Recv TryRcv Reply Drop RplRcv Yield Tick Destroy Kill TooBig Stale Wake
    {140, 40, 200, 40, 20, 60, 10, 40, 50, 60, 4, 3, 5, 10, 6},   // Client
    {30, 20, 40, 150, 40, 150, 15, 200, 40, 60, 4, 3, 5, 10, 6},  // Server
    {80, 30, 110, 90, 30, 110, 12, 110, 45, 60, 4, 3, 5, 10, 6},  // Mixed
}};

const char* st_name(St s) {
    switch (s) {
        case St::Running:
            return "running";
        case St::Ready:
            return "ready";
        case St::Blocked:
            return "blocked";
    }
    return "?";
}

const char* op_name(Op o) {
    switch (o) {
        case Op::None:
            return "none";
        case Op::Send:
            return "send";
        case Op::Call:
            return "call";
        case Op::Recv:
            return "recv";
        case Op::ReplyWait:
            return "replywait";
    }
    return "?";
}

IpcState::Op kernel_op(Op o) {
    switch (o) {
        case Op::None:
            return IpcState::Op::None;
        case Op::Send:
            return IpcState::Op::Send;
        case Op::Call:
            return IpcState::Op::Call;
        case Op::Recv:
            return IpcState::Op::Recv;
        case Op::ReplyWait:
            return IpcState::Op::ReplyWait;
    }
    return IpcState::Op::None;
}

uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Byte i of message `id`'s payload.
uint8_t pattern(uint64_t id, size_t i) {
    return uint8_t(mix(id * 1024 + i) >> 24);
}

const char* err(Error e) {
    return error_name(e);
}

// A message as the model knows it.
struct Msg {
    uint64_t id = 0;  // unique; 0: none
    Message m;
    uint64_t badge = 0;
    int sender = -1;  // model index (requests)
    int ep = -1;
    uint64_t seq = 0;  // per (sender incarnation, endpoint), from 1
};

// A reply token as the model knows it.
struct Tok {
    ReplyToken token;  // what the kernel handed out (or a forgery)
    int caller = -1;   // model index of the caller it names; -1: nobody
    uint64_t caller_uid = 0;
    uint64_t request = 0;  // the call's message id
};

// The result a thread will collect with finish_*() when it runs again.
struct Expect {
    Fin fin = Fin::None;
    Error err = Error::None;
    Msg msg;  // Recv: the request delivered; Call: the reply
    bool has_token = false;
    Tok token;          // Recv of a call: the token it carries
    bool kept = false;  // Send, Call: failed before delivery, the sender keeps its message
    uint64_t step = 0;
};

struct MThread {
    Thread* kt = nullptr;
    uint64_t uid = 0;  // incarnation: a re-spawned thread gets a new one
    uint64_t badge = 0;
    Role role = Role::Mixed;
    St st = St::Ready;
    Op op = Op::None;
    int ep = -1;      // Send, Call, Recv: the endpoint it waits on
    int server = -1;  // ReplyWait: whose reply it waits for
    uint64_t deadline = 0;
    Msg out;                // Send, Call: the message it sends (and keeps if that fails)
    uint64_t call_seq = 0;  // the kernel numbers calls; the model predicts the number
    Expect pending;
    std::vector<Tok> tokens;  // reply tokens it holds (deferred replies)
    std::array<uint64_t, kMaxEndpoints> next_seq{};
};

struct MEndpoint {
    Endpoint* ep = nullptr;
    std::deque<int> senders;        // model indexes, FIFO
    std::deque<int> receivers;      // model indexes, FIFO
    WaitQueue* ksenders = nullptr;  // the kernel's queues, learned from waiting_on
    WaitQueue* kreceivers = nullptr;
};

struct Config {
    const char* name;
    int workers;
    int endpoints;
    bool fast_path;
    bool donation;
    bool kills;
};

// What happened, for the end-of-run summary and the coverage checks.
struct Stats {
    uint64_t steps = 0;
    uint64_t acts[kActCount] = {};
    uint64_t delivered = 0;
    uint64_t delivered_payload = 0;
    uint64_t replies_ok = 0;
    uint64_t replies_bad = 0;
    uint64_t deferred_out_of_order = 0;
    uint64_t drops_ok = 0;
    uint64_t timeouts = 0;
    uint64_t destroyed = 0;
    uint64_t peer_died = 0;
    uint64_t interrupted = 0;
    uint64_t kills = 0;
    uint64_t idle_ticks = 0;
    uint64_t rescues = 0;
    uint64_t donated = 0;
    uint64_t max_blocked = 0;
    uint64_t dead_ops = 0;  // operations refused on a dead endpoint held by a reference
};

uint64_t env_u64(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    return std::strtoull(v, nullptr, 0);
}

uint64_t base_seed() {
    // A fixed default keeps every run of the suite the same; MK_IPC_SEED=n
    // replays a seed, MK_IPC_SEED=random explores a new one.
    static const uint64_t seed = [] {
        const char* env = std::getenv("MK_IPC_SEED");
        if (env != nullptr && std::string(env) == "random") {
            std::random_device rd;
            return (uint64_t(rd()) << 32) ^ rd();
        }
        if (env != nullptr) return env_u64("MK_IPC_SEED", 0);
        return uint64_t{20261121};
    }();
    return seed;
}

// Steps for a variant: `share` percent of MK_IPC_OPS.
uint64_t ops_share(unsigned share) {
    return env_u64("MK_IPC_OPS", kDefaultOps) * share / 100;
}

class IpcModel : public testing::SchedFixture {
  protected:
    void SetUp() override {
        SchedFixture::SetUp();
        this_cpu().ipc = IpcCounters{};
    }

    void TearDown() override {
        for (MEndpoint& e : eps_) {
            if (e.ep != nullptr) Endpoint::destroy(e.ep);
            e.ep = nullptr;
        }
        for (Thread* t : all_threads()) {
            IpcGuard guard(nullptr);
            ipc_release_thread_locked(*t);
        }
        SchedFixture::TearDown();
        ipc_set_fast_path(true);
    }

    void run(const Config& cfg, uint64_t seed, uint64_t ops);

  private:
    // --- Reporting ---
    void vfail(const char* fmt, va_list ap) __attribute__((format(printf, 2, 0)));
    void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    bool check(bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
    void note(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    std::string dump_state();

    // --- Randomness ---
    uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
    bool coin(unsigned percent) { return below(100) < percent; }
    uint64_t pick_timeout() { return coin(45) ? 0 : 1 + below(8); }
    uint32_t pick_length();

    // --- Threads and endpoints ---
    int index_of(const Thread* t) const { return t->context.id - 1; }
    void init_model_thread(int i, Thread* kt, St st);
    void spawn_worker(int i);
    int pick_ep();
    void create_ep(int e);

    // --- The model ---
    Msg make_request(int i, int e, bool is_call);
    Msg make_reply(int i, uint64_t request);
    void wake(int i, Fin fin, Error e);
    void block(int i, Op op, int e, uint64_t timeout);
    void deliver_to_receiver(int r, const Msg& m, bool is_call, int caller);
    Expect take_sender(int r, int e);
    bool token_valid(const Tok& k, int replier) const;
    uint64_t request_of(const Tok& k, int replier) const;
    void reply_model(const Tok& k, const Msg& reply);
    void abort_model(int i, Error reason);
    void destroy_model(int e);
    void kill_model(int v);
    Tok take_token(int i, bool* out_of_order);
    Tok stale_or_forged_token(int replier);
    void pool_token(const Tok& k);

    // --- Checks ---
    void collect(int i);
    bool check_received(int i, const Received& got, const Expect& x, const char* what);
    bool check_message(const char* what, const Message& got, const Msg& want);
    bool check_payload(const char* what, const unsigned char* buf, const Msg& want);
    bool check_kept(int i);
    void observe(const Message& got, const char* what);
    void settle(int expect);
    void check_all();

    // --- Steps ---
    void step_once();
    void idle_step();
    void tick_once();
    void act(int i, Act a);
    void act_send(int i, Act a);
    void act_recv(int i, Act a);
    void act_reply(int i, Act a);
    void act_reply_recv(int i);
    void act_destroy(int i);
    void act_on_dead_endpoint(int i, Endpoint* dead);
    void act_kill(int i);
    void act_too_large(int i);
    void act_stale_reply(int i);
    void act_stray_wake(int i);

    Config cfg_{};
    uint64_t seed_ = 0;
    uint64_t step_ = 0;
    std::mt19937_64 rng_;
    std::vector<std::discrete_distribution<int>> dists_;
    std::vector<MThread> th_;
    std::array<MEndpoint, kMaxEndpoints> eps_{};
    std::vector<Tok> pool_;  // used or released tokens, for BadHandle checks
    size_t pool_next_ = 0;
    int mcur_ = 0;  // the model's running thread (kIdle: idle)
    uint64_t ticks_ = 0;
    uint64_t next_id_ = 0;
    uint64_t next_uid_ = 0;
    std::vector<uint8_t> delivered_;                   // by message id: delivered once
    std::unordered_map<uint64_t, uint64_t> last_seq_;  // by sender uid << 8 | endpoint
    std::array<std::array<char, 200>, kHistory> history_{};
    uint64_t history_count_ = 0;
    bool failed_ = false;
    Stats stats_;
};

// --- Reporting ---

void IpcModel::vfail(const char* fmt, va_list ap) {
    if (failed_) return;
    failed_ = true;
    char what[512];
    std::vsnprintf(what, sizeof what, fmt, ap);
    std::string s;
    char line[320];
    std::snprintf(line, sizeof line,
                  "IPC model mismatch: variant %s, seed %" PRIu64 ", step %" PRIu64
                  ", tick %" PRIu64 "\n  ",
                  cfg_.name, seed_, step_, ticks_);
    s += line;
    s += what;
    std::snprintf(line, sizeof line,
                  "\n  replay: MK_IPC_SEED=%" PRIu64 " MK_IPC_OPS=%" PRIu64
                  " unit_tests --gtest_filter='IpcModel.%s'"
                  "\nlast operations (oldest first):\n",
                  seed_, env_u64("MK_IPC_OPS", kDefaultOps),
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    s += line;
    uint64_t n = std::min<uint64_t>(history_count_, kHistory);
    for (uint64_t k = history_count_ - n; k < history_count_; ++k) {
        s += "  ";
        s += history_[k % kHistory].data();
        s += '\n';
    }
    s += dump_state();
    ADD_FAILURE() << s;
}

void IpcModel::fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
}

bool IpcModel::check(bool ok, const char* fmt, ...) {
    if (ok) return true;
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
    return false;
}

void IpcModel::note(const char* fmt, ...) {
    std::array<char, 200>& h = history_[history_count_++ % kHistory];
    int n = std::snprintf(h.data(), h.size(), "#%" PRIu64 " ", step_);
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(h.data() + n, h.size() - size_t(n), fmt, ap);
    va_end(ap);
}

std::string IpcModel::dump_state() {
    std::string s = "model state (kernel view in brackets):\n";
    char line[320];
    for (size_t i = 0; i < th_.size(); ++i) {
        const MThread& t = th_[i];
        std::snprintf(
            line, sizeof line,
            "  t%zu uid=%" PRIu64 " %s op=%s ep=%d server=%d deadline=%" PRIu64
            " pending=%d/%s tokens=%zu [state=%s op=%d deadline=%" PRIu64 " callers=%zu]\n",
            i, t.uid, st_name(t.st), op_name(t.op), t.ep, t.server, t.deadline, int(t.pending.fin),
            err(t.pending.err), t.tokens.size(), thread_state_name(t.kt->state), int(t.kt->ipc->op),
            t.kt->deadline, t.kt->ipc->callers.size());
        s += line;
    }
    for (int e = 0; e < cfg_.endpoints; ++e) {
        const MEndpoint& me = eps_[size_t(e)];
        std::string q =
            "  ep" + std::to_string(e) + (me.ep == nullptr ? " (none)" : "") + " senders:";
        for (int x : me.senders) q += " t" + std::to_string(x);
        q += " receivers:";
        for (int x : me.receivers) q += " t" + std::to_string(x);
        s += q + "\n";
    }
    std::snprintf(line, sizeof line, "  running: model t%d, kernel t%d\n", mcur_,
                  index_of(sched().current()));
    s += line;
    return s;
}

uint32_t IpcModel::pick_length() {
    uint64_t r = below(100);
    if (r < 72) return 0;
    if (r < 95) return uint32_t(1 + below(64));
    if (coin(25)) return uint32_t(kIpcBufferSize);
    return uint32_t(65 + below(kIpcBufferSize - 64));
}

// --- Threads and endpoints ---

void IpcModel::init_model_thread(int i, Thread* kt, St st) {
    MThread& t = th_[size_t(i)];
    t = MThread{};
    t.kt = kt;
    t.uid = ++next_uid_;
    t.badge = 0xBADE0000'00000000ull | (t.uid << 8) | uint64_t(i);
    t.role = Role(below(3));
    t.st = st;
    kt->context.id = i + 1;
}

void IpcModel::spawn_worker(int i) {
    char name[Thread::kNameLength];
    std::snprintf(name, sizeof name, "w%d", i);
    Thread* kt = Thread::create(name, nullptr, nullptr).value();
    threads_.push_back(kt);
    init_model_thread(i, kt, St::Ready);
    if (sched().start(*kt) != Error::None) fail("start(w%d) refused", i);
}

void IpcModel::create_ep(int e) {
    MEndpoint& me = eps_[size_t(e)];
    me = MEndpoint{};
    me.ep = Endpoint::create().value();
    note("create ep%d", e);
}

int IpcModel::pick_ep() {
    int e = int(below(uint64_t(cfg_.endpoints)));
    if (eps_[size_t(e)].ep == nullptr) create_ep(e);
    return e;
}

// --- The model ---

Msg IpcModel::make_request(int i, int e, bool is_call) {
    MThread& t = th_[size_t(i)];
    Msg m;
    m.id = ++next_id_;
    m.sender = i;
    m.ep = e;
    m.seq = ++t.next_seq[size_t(e)];
    m.badge = t.badge;
    m.m.label = (uint64_t(is_call ? 3 : 1) << 56) | m.id;
    m.m.words[0] = m.id;
    m.m.words[1] = (t.uid << 8) | uint64_t(e);
    m.m.words[2] = m.seq;
    m.m.words[3] = mix(m.id);
    m.m.length = pick_length();
    for (uint32_t b = 0; b < m.m.length; ++b) t.kt->ipc->buffer[b] = pattern(m.id, b);
    return m;
}

Msg IpcModel::make_reply(int i, uint64_t request) {
    MThread& t = th_[size_t(i)];
    Msg m;
    m.id = ++next_id_;
    m.sender = i;
    m.m.label = (uint64_t(2) << 56) | m.id;
    m.m.words[0] = m.id;
    m.m.words[1] = request;
    m.m.words[2] = t.uid;
    m.m.words[3] = mix(m.id);
    m.m.length = pick_length();
    for (uint32_t b = 0; b < m.m.length; ++b) t.kt->ipc->buffer[b] = pattern(m.id, b);
    return m;
}

// Thread i's operation ends with `e`; it becomes ready and collects the
// result (with finish_*) when it next runs.
void IpcModel::wake(int i, Fin fin, Error e) {
    MThread& t = th_[size_t(i)];
    bool undelivered = t.op == Op::Send || t.op == Op::Call;
    t.st = St::Ready;
    t.op = Op::None;
    t.ep = -1;
    t.server = -1;
    t.deadline = 0;
    t.pending = Expect{};
    t.pending.fin = fin;
    t.pending.err = e;
    t.pending.kept = undelivered && e != Error::None;
    t.pending.step = step_;
}

void IpcModel::block(int i, Op op, int e, uint64_t timeout) {
    MThread& t = th_[size_t(i)];
    t.st = St::Blocked;
    t.op = op;
    t.deadline = timeout == 0 ? 0 : ticks_ + timeout;
    if (op == Op::ReplyWait) {
        t.server = e;
        t.ep = -1;
    } else {
        t.ep = e;
        t.server = -1;
        (op == Op::Recv ? eps_[size_t(e)].receivers : eps_[size_t(e)].senders).push_back(i);
    }
}

// Blocked receiver r gets message m from the running thread.
void IpcModel::deliver_to_receiver(int r, const Msg& m, bool is_call, int caller) {
    wake(r, Fin::Recv, Error::None);
    Expect& x = th_[size_t(r)].pending;
    x.msg = m;
    if (is_call) {
        const MThread& c = th_[size_t(caller)];
        x.has_token = true;
        x.token = Tok{ReplyToken{c.kt->id(), c.call_seq}, caller, c.uid, m.id};
    }
}

// Running thread r receives from endpoint e's first sender.
Expect IpcModel::take_sender(int r, int e) {
    MEndpoint& me = eps_[size_t(e)];
    int s = me.senders.front();
    me.senders.pop_front();
    MThread& sender = th_[size_t(s)];
    Expect x;
    x.fin = Fin::Recv;
    x.msg = sender.out;
    x.step = step_;
    if (sender.op == Op::Call) {
        // Delivered: it now waits for the reply, its timeout still running.
        x.has_token = true;
        x.token = Tok{ReplyToken{sender.kt->id(), sender.call_seq}, s, sender.uid, sender.out.id};
        sender.op = Op::ReplyWait;
        sender.ep = -1;
        sender.server = r;
    } else {
        wake(s, Fin::Send, Error::None);
    }
    return x;
}

// The documented rule: a token is good while its caller waits for the reply to
// that very call from `replier`, the thread that received it; used, dropped,
// timed out, interrupted, dead, or in another thread's hands, it is BadHandle.
bool IpcModel::token_valid(const Tok& k, int replier) const {
    if (k.caller < 0) return false;
    const MThread& c = th_[size_t(k.caller)];
    return c.uid == k.caller_uid && c.kt->id() == k.token.caller && c.op == Op::ReplyWait &&
           c.call_seq == k.token.call && c.server == replier;
}

// The call a reply answers: the one the token's caller waits in now (a
// forged or recycled token may name a later call than it was made for).
uint64_t IpcModel::request_of(const Tok& k, int replier) const {
    return token_valid(k, replier) ? th_[size_t(k.caller)].out.id : k.request;
}

void IpcModel::reply_model(const Tok& k, const Msg& reply) {
    wake(k.caller, Fin::Call, Error::None);
    th_[size_t(k.caller)].pending.msg = reply;
}

// Thread i's wait ends without its partner: a timeout or a stray wake.
void IpcModel::abort_model(int i, Error reason) {
    MThread& t = th_[size_t(i)];
    Fin fin = Fin::Call;
    if (t.op == Op::Send || t.op == Op::Call || t.op == Op::Recv) {
        MEndpoint& me = eps_[size_t(t.ep)];
        std::deque<int>& q = t.op == Op::Recv ? me.receivers : me.senders;
        q.erase(std::find(q.begin(), q.end(), i));
        fin = t.op == Op::Send ? Fin::Send : t.op == Op::Recv ? Fin::Recv : Fin::Call;
    }
    wake(i, fin, reason);
}

void IpcModel::destroy_model(int e) {
    MEndpoint& me = eps_[size_t(e)];
    for (int s : me.senders) {
        wake(s, th_[size_t(s)].op == Op::Send ? Fin::Send : Fin::Call, Error::Destroyed);
        ++stats_.destroyed;
    }
    for (int r : me.receivers) {
        wake(r, Fin::Recv, Error::Destroyed);
        ++stats_.destroyed;
    }
    me.senders.clear();
    me.receivers.clear();
}

void IpcModel::kill_model(int v) {
    MThread& t = th_[size_t(v)];
    if (t.st == St::Blocked && t.op != Op::ReplyWait) {
        MEndpoint& me = eps_[size_t(t.ep)];
        std::deque<int>& q = t.op == Op::Recv ? me.receivers : me.senders;
        q.erase(std::find(q.begin(), q.end(), v));
    }
    // Its callers wake with PeerDied.
    for (size_t c = 0; c < th_.size(); ++c) {
        MThread& caller = th_[c];
        if (caller.op == Op::ReplyWait && caller.server == v) {
            wake(int(c), Fin::Call, Error::PeerDied);
            ++stats_.peer_died;
        }
    }
    for (const Tok& k : t.tokens) pool_token(k);
}

Tok IpcModel::take_token(int i, bool* out_of_order) {
    std::vector<Tok>& v = th_[size_t(i)].tokens;
    size_t j = size_t(below(v.size()));
    *out_of_order = j != 0;
    Tok k = v[j];
    v.erase(v.begin() + std::ptrdiff_t(j));
    return k;
}

void IpcModel::pool_token(const Tok& k) {
    if (pool_.size() < kPoolSize) {
        pool_.push_back(k);
    } else {
        pool_[pool_next_++ % kPoolSize] = k;
    }
}

// A used or released token (perhaps another thread's), a forgery naming
// some thread's current or next call (perhaps one waiting on `replier`: then
// it is as good as the genuine one), or garbage.
Tok IpcModel::stale_or_forged_token(int replier) {
    uint64_t r = below(100);
    if (r < 50 && !pool_.empty()) return pool_[size_t(below(pool_.size()))];
    if (r < 90) {
        int c = int(below(th_.size()));
        if (r < 65) {  // prefer a caller waiting on the replier
            for (size_t n = 0; n < th_.size(); ++n) {
                size_t x = (size_t(c) + n) % th_.size();
                if (th_[x].op == Op::ReplyWait && th_[x].server == replier) {
                    c = int(x);
                    break;
                }
            }
        }
        const MThread& t = th_[size_t(c)];
        return Tok{ReplyToken{t.kt->id(), t.call_seq + below(2)}, c, t.uid, t.out.id};
    }
    Tok k;
    k.token = ReplyToken{rng_() | 1, rng_()};
    for (size_t c = 0; c < th_.size(); ++c) {
        if (th_[c].kt->id() == k.token.caller) k = Tok{k.token, int(c), th_[c].uid, th_[c].out.id};
    }
    return k;
}

// --- Checks ---

bool IpcModel::check_payload(const char* what, const unsigned char* buf, const Msg& want) {
    for (uint32_t b = 0; b < want.m.length; ++b) {
        if (buf[b] != pattern(want.id, b)) {
            fail("%s: payload of msg#%" PRIu64
                 " (length %u) differs at byte %u: 0x%02x, want 0x%02x",
                 what, want.id, want.m.length, b, buf[b], pattern(want.id, b));
            return false;
        }
    }
    return true;
}

bool IpcModel::check_message(const char* what, const Message& got, const Msg& want) {
    bool same = got.label == want.m.label && got.length == want.m.length;
    for (size_t w = 0; w < kMessageWords; ++w) same = same && got.words[w] == want.m.words[w];
    return check(same,
                 "%s: got msg#%" PRIu64 " (label %#" PRIx64 " seq %" PRIu64
                 " length %u), want msg#%" PRIu64 " (label %#" PRIx64 " from t%d seq %" PRIu64
                 " length %u)",
                 what, got.words[0], got.label, got.words[2], got.length, want.id, want.m.label,
                 want.sender, want.seq, want.m.length);
}

// Independent of the model's prediction, from what the kernel handed over
// (at the handover, whenever the receiver collects it): every message arrives
// at most once, and per sender and endpoint in sending order.
void IpcModel::observe(const Message& got, const char* what) {
    uint64_t id = got.words[0];
    if (!check(id != 0 && id <= next_id_ && got.label == ((got.label & 0xFF00000000000000ull) | id),
               "%s: handed over an unknown message (label %#" PRIx64 ", id %" PRIu64 ")", what,
               got.label, id)) {
        return;
    }
    if (delivered_.size() <= id) delivered_.resize(id + 1 + (id >> 1), 0);
    if (!check(delivered_[id] == 0, "%s: msg#%" PRIu64 " delivered twice", what, id)) return;
    delivered_[id] = 1;
    uint64_t kind = got.label >> 56;
    if (kind == 1 || kind == 3) {  // a request: words[1] = sender uid << 8 | endpoint
        uint64_t& last = last_seq_[got.words[1]];
        if (!check(got.words[2] > last,
                   "%s: msg#%" PRIu64 " from uid %" PRIu64 " on ep%" PRIu64 " has seq %" PRIu64
                   " after seq %" PRIu64 " was delivered: reordered",
                   what, id, got.words[1] >> 8, got.words[1] & 0xFF, got.words[2], last)) {
            return;
        }
        last = got.words[2];
    }
    ++stats_.delivered;
    if (got.length != 0) ++stats_.delivered_payload;
}

bool IpcModel::check_received(int i, const Received& got, const Expect& x, const char* what) {
    if (!check_message(what, got.msg, x.msg)) return false;
    if (!check(got.badge == x.msg.badge, "%s: msg#%" PRIu64 " badge %#" PRIx64 ", want %#" PRIx64,
               what, x.msg.id, got.badge, x.msg.badge)) {
        return false;
    }
    if (!check_payload(what, th_[size_t(i)].kt->ipc->buffer, x.msg)) return false;
    if (x.has_token) {
        if (!check(got.reply.valid() && got.reply.caller == x.token.token.caller &&
                       got.reply.call == x.token.token.call,
                   "%s: msg#%" PRIu64 " reply token {%#" PRIx64 ", %" PRIu64 "}, want {%#" PRIx64
                   ", %" PRIu64 "} (caller t%d)",
                   what, x.msg.id, got.reply.caller, got.reply.call, x.token.token.caller,
                   x.token.token.call, x.token.caller)) {
            return false;
        }
        th_[size_t(i)].tokens.push_back(x.token);
        return true;
    }
    return check(!got.reply.valid(), "%s: msg#%" PRIu64 " (a send) came with a reply token", what,
                 x.msg.id);
}

// A sender whose message was not delivered keeps it: its words and payload.
bool IpcModel::check_kept(int i) {
    const MThread& t = th_[size_t(i)];
    return check_message("message kept by its sender", t.kt->ipc->msg, t.out) &&
           check_payload("payload kept by its sender", t.kt->ipc->buffer, t.out);
}

// Thread i (running, or just timed out) collects the result of the operation
// it blocked in.
void IpcModel::collect(int i) {
    MThread& t = th_[size_t(i)];
    Expect x = t.pending;
    t.pending = Expect{};
    char what[96];
    switch (x.fin) {
        case Fin::None:
            return;
        case Fin::Send: {
            Status st = Endpoint::finish_send(*t.kt);
            note("t%d finish_send -> %s (model %s)", i, err(st), err(x.err));
            std::snprintf(what, sizeof what, "t%d finish_send (decided at step %" PRIu64 ")", i,
                          x.step);
            if (!check(st == x.err, "%s returned %s, model says %s", what, err(st), err(x.err))) {
                return;
            }
            if (x.kept) check_kept(i);
            return;
        }
        case Fin::Recv: {
            Result<Received> got = Endpoint::finish_recv(*t.kt);
            note("t%d finish_recv -> %s msg#%" PRIu64 " (model %s msg#%" PRIu64 ")", i,
                 err(got.error()), got.ok() ? got.value().msg.words[0] : 0, err(x.err), x.msg.id);
            std::snprintf(what, sizeof what, "t%d finish_recv (decided at step %" PRIu64 ")", i,
                          x.step);
            if (!check(got.error() == x.err, "%s returned %s, model says %s", what,
                       err(got.error()), err(x.err))) {
                return;
            }
            if (x.err == Error::None) check_received(i, got.value(), x, what);
            return;
        }
        case Fin::Call: {
            Result<Message> got = Endpoint::finish_call(*t.kt);
            note("t%d finish_call -> %s reply#%" PRIu64 " (model %s reply#%" PRIu64 ")", i,
                 err(got.error()), got.ok() ? got.value().words[0] : 0, err(x.err), x.msg.id);
            std::snprintf(what, sizeof what, "t%d finish_call (decided at step %" PRIu64 ")", i,
                          x.step);
            if (!check(got.error() == x.err, "%s returned %s, model says %s", what,
                       err(got.error()), err(x.err))) {
                return;
            }
            if (x.err == Error::None) {
                if (!check_message(what, got.value(), x.msg)) return;
                if (!check(got.value().words[1] == t.out.id,
                           "%s: reply#%" PRIu64 " answers msg#%" PRIu64
                           ", the call was msg#%" PRIu64,
                           what, x.msg.id, got.value().words[1], t.out.id)) {
                    return;
                }
                check_payload(what, t.kt->ipc->buffer, x.msg);
            } else if (x.kept) {
                check_kept(i);
            }
            return;
        }
    }
}

// After an operation: the kernel's running thread must be `expect` (a model
// index, kIdle) or, with kAny, a thread the model says is ready (idle only if
// none is). The previously running thread, if the model still has it
// running, was preempted and is ready.
void IpcModel::settle(int expect) {
    int ci = index_of(sched().current());
    if (expect != kAny && !check(ci == expect, "t%d runs, the model expects t%d", ci, expect)) {
        return;
    }
    if (ci == mcur_ && ci != kIdle && th_[size_t(ci)].st == St::Running) return;
    if (mcur_ != kIdle && th_[size_t(mcur_)].st == St::Running) th_[size_t(mcur_)].st = St::Ready;
    if (ci == kIdle) {
        for (size_t i = 0; i < th_.size(); ++i) {
            if (!check(th_[i].st != St::Ready, "idle runs while t%zu is ready", i)) return;
        }
    } else {
        if (!check(th_[size_t(ci)].st == St::Ready, "t%d runs, the model says it is %s", ci,
                   st_name(th_[size_t(ci)].st))) {
            return;
        }
        th_[size_t(ci)].st = St::Running;
    }
    mcur_ = ci;
}

void IpcModel::check_all() {
    if (!check(Cpu::interrupts_enabled() && this_cpu().held_locks.count() == 0 && !in_irq(),
               "between operations: interrupts %s, %u lock(s) held, irq depth %u",
               Cpu::interrupts_enabled() ? "on" : "off", this_cpu().held_locks.count(),
               this_cpu().irq_depth)) {
        return;
    }
    std::array<size_t, 32> callers{};
    uint64_t blocked = 0;
    for (size_t i = 0; i < th_.size() && !failed_; ++i) {
        MThread& t = th_[i];
        const Thread& k = *t.kt;
        ThreadState want = t.st == St::Running ? ThreadState::Running
                           : t.st == St::Ready ? ThreadState::Ready
                                               : ThreadState::Blocked;
        if (!check(k.state == want, "t%zu is %s, the model says %s (op %s)", i,
                   thread_state_name(k.state), st_name(t.st), op_name(t.op))) {
            return;
        }
        if (t.st != St::Blocked) {
            check(k.waiting_on == nullptr, "t%zu is %s but waits on a queue", i, st_name(t.st));
            check(k.ipc->op == IpcState::Op::None, "t%zu is %s but in IPC operation %d", i,
                  st_name(t.st), int(k.ipc->op));
            continue;
        }
        ++blocked;
        if (!check(k.ipc->op == kernel_op(t.op),
                   "t%zu is blocked in IPC operation %d, the model says %s", i, int(k.ipc->op),
                   op_name(t.op)) ||
            !check(k.deadline == t.deadline, "t%zu deadline %" PRIu64 ", the model says %" PRIu64,
                   i, k.deadline, t.deadline)) {
            return;
        }
        if (t.op == Op::ReplyWait) {
            ++callers[size_t(t.server)];
            check(k.waiting_on == &th_[size_t(t.server)].kt->ipc->callers,
                  "t%zu waits for t%d's reply but is not on its callers queue", i, t.server);
        } else {
            MEndpoint& me = eps_[size_t(t.ep)];
            WaitQueue*& q = t.op == Op::Recv ? me.kreceivers : me.ksenders;
            if (q == nullptr) q = k.waiting_on;
            check(q != nullptr && k.waiting_on == q && me.ksenders != me.kreceivers,
                  "t%zu (%s on ep%d) waits on the wrong queue", i, op_name(t.op), t.ep);
        }
    }
    stats_.max_blocked = std::max(stats_.max_blocked, blocked);
    size_t ready = 0;
    for (const MThread& t : th_) ready += t.st == St::Ready ? 1 : 0;
    if (!check(sched().ready_count() == ready,
               "%zu threads on the ready queue, the model has %zu ready", sched().ready_count(),
               ready)) {
        return;
    }
    for (size_t i = 0; i < th_.size() && !failed_; ++i) {
        check(th_[i].kt->ipc->callers.size() == callers[i],
              "t%zu has %zu callers waiting for its reply, the model says %zu", i,
              th_[i].kt->ipc->callers.size(), callers[i]);
    }
    for (int e = 0; e < cfg_.endpoints && !failed_; ++e) {
        MEndpoint& me = eps_[size_t(e)];
        if (me.ep == nullptr) continue;
        if (!check(me.ep->waiting_senders() == me.senders.size(),
                   "ep%d has %zu waiting senders, the model says %zu", e, me.ep->waiting_senders(),
                   me.senders.size()) ||
            !check(me.ep->waiting_receivers() == me.receivers.size(),
                   "ep%d has %zu waiting receivers, the model says %zu", e,
                   me.ep->waiting_receivers(), me.receivers.size())) {
            return;
        }
        if (!me.senders.empty() && me.ksenders != nullptr) {
            check(me.ksenders->front() == th_[size_t(me.senders.front())].kt,
                  "ep%d: first waiting sender is not t%d", e, me.senders.front());
        }
        if (!me.receivers.empty() && me.kreceivers != nullptr) {
            check(me.kreceivers->front() == th_[size_t(me.receivers.front())].kt,
                  "ep%d: first waiting receiver is not t%d", e, me.receivers.front());
        }
    }
    if ((step_ & 255) == 0) {
        check(sched().ticks() == ticks_, "kernel tick count %" PRIu64 ", model %" PRIu64,
              sched().ticks(), ticks_);
    }
}

// --- Steps ---

void IpcModel::tick_once() {
    ++ticks_;
    size_t nwoke = 0;
    for (size_t i = 0; i < th_.size(); ++i) {
        MThread& t = th_[i];
        if (t.st == St::Blocked && t.deadline != 0 && t.deadline <= ticks_) {
            abort_model(int(i), Error::TimedOut);
            ++stats_.timeouts;
            ++nwoke;
        }
    }
    note("tick -> %" PRIu64 " (%zu timeouts)", ticks_, nwoke);
    // A timed-out thread collects its result when it runs again; whatever
    // happens in between (a late reply, its server's death) must not change it.
    irq_enter();
    sched().on_timer_tick();
    irq_exit();
    sched().preempt_if_needed();
    settle(kAny);
}

void IpcModel::idle_step() {
    bool deadline = false;
    for (const MThread& t : th_) deadline = deadline || (t.st == St::Blocked && t.deadline != 0);
    if (deadline) {
        ++stats_.idle_ticks;
        tick_once();
        return;
    }
    // Everyone waits with no timeout: destroy an endpoint with waiters (every
    // wait chain ends on an endpoint queue, a reply wait cannot form a cycle).
    std::array<int, kMaxEndpoints> busy{};
    size_t n = 0;
    for (int e = 0; e < cfg_.endpoints; ++e) {
        const MEndpoint& me = eps_[size_t(e)];
        if (me.ep != nullptr && (!me.senders.empty() || !me.receivers.empty())) busy[n++] = e;
    }
    if (!check(n != 0, "every thread is blocked with no timeout and none on an endpoint queue")) {
        return;
    }
    int e = busy[size_t(below(n))];
    ++stats_.rescues;
    note("idle: destroy ep%d (%zu senders, %zu receivers) to end a standstill", e,
         eps_[size_t(e)].senders.size(), eps_[size_t(e)].receivers.size());
    destroy_model(e);
    Endpoint::destroy(eps_[size_t(e)].ep);
    eps_[size_t(e)] = MEndpoint{};
    sched().preempt_if_needed();
    settle(kAny);
}

void IpcModel::step_once() {
    int ci = index_of(sched().current());
    if (!check(ci == mcur_, "t%d runs, the model says t%d", ci, mcur_)) return;
    if (ci == kIdle) {
        idle_step();
        return;
    }
    MThread& t = th_[size_t(ci)];
    if (t.pending.fin != Fin::None) {
        collect(ci);
        if (failed_) return;
    }
    Act a;
    if (t.tokens.size() >= 4 && coin(60)) {
        uint64_t r = below(100);
        a = r < 45 ? kReply : r < 90 ? kReplyRecv : kReplyDrop;
    } else {
        a = Act(dists_[size_t(t.role)](rng_));
    }
    if ((a == kReply || a == kReplyDrop) && t.tokens.empty()) a = coin(30) ? kStaleReply : kRecv;
    if (a == kKill && !cfg_.kills) a = kYield;
    ++stats_.acts[a];
    act(ci, a);
}

void IpcModel::act(int i, Act a) {
    switch (a) {
        case kSend:
        case kTrySend:
        case kCall:
            act_send(i, a);
            return;
        case kRecv:
        case kTryRecv:
            act_recv(i, a);
            return;
        case kReply:
        case kReplyDrop:
            act_reply(i, a);
            return;
        case kReplyRecv:
            act_reply_recv(i);
            return;
        case kYield:
            note("t%d yield", i);
            th_[size_t(i)].st = St::Ready;
            sched().yield_now();
            settle(kAny);
            return;
        case kTick: {
            // Now and then a run of ticks long enough to expire the quantum.
            uint64_t n = coin(20) ? 1 + below(Scheduler::kQuantumTicks + 2) : 1;
            for (uint64_t k = 0; k < n && !failed_; ++k) tick_once();
            return;
        }
        case kDestroy:
            act_destroy(i);
            return;
        case kKill:
            act_kill(i);
            return;
        case kTooLarge:
            act_too_large(i);
            return;
        case kStaleReply:
            act_stale_reply(i);
            return;
        case kStrayWake:
            act_stray_wake(i);
            return;
        case kActCount:
            break;
    }
    fail("bad action %d", int(a));
}

void IpcModel::act_send(int i, Act a) {
    MThread& t = th_[size_t(i)];
    int e = pick_ep();
    MEndpoint& me = eps_[size_t(e)];
    bool is_call = a == kCall;
    bool is_try = a == kTrySend;
    uint64_t timeout = is_try ? 0 : pick_timeout();
    Msg m = make_request(i, e, is_call);
    const char* name = is_call ? "call" : is_try ? "try_send" : "send";
    note("t%d %s ep%d msg#%" PRIu64 " len=%u timeout=%" PRIu64 " (%zu receivers waiting)", i, name,
         e, m.id, m.m.length, timeout, me.receivers.size());
    t.out = m;
    if (is_call) ++t.call_seq;

    // The model decides first; then the kernel acts.
    int expect = i;
    int r = -1;  // the receiver it is handed to
    Error want = Error::None;
    if (!me.receivers.empty()) {
        r = me.receivers.front();
        me.receivers.pop_front();
        deliver_to_receiver(r, m, is_call, i);
        if (is_call) {
            block(i, Op::ReplyWait, r, timeout);
            want = Error::WouldBlock;
            // The fast path (a direct switch) and the general path's
            // donation both run the receiver next; with donation off there
            // is neither (a direct switch is a donation) and the receiver
            // waits its turn on the ready queue.
            expect = cfg_.donation ? r : kAny;
        } else if (cfg_.donation) {
            t.st = St::Ready;  // it donates the CPU to the receiver
            expect = r;
            ++stats_.donated;
        }
    } else if (is_try) {
        want = Error::WouldBlock;
    } else {
        block(i, is_call ? Op::Call : Op::Send, e, timeout);
        want = Error::WouldBlock;
        expect = kAny;
    }

    Error got;
    if (is_call) {
        got = me.ep->call(m.m, t.badge, timeout).error();
    } else if (is_try) {
        got = me.ep->try_send(m.m, t.badge);
    } else {
        got = me.ep->send(m.m, t.badge, timeout);
    }
    if (!check(got == want, "t%d %s ep%d msg#%" PRIu64 " returned %s, model says %s", i, name, e,
               m.id, err(got), err(want))) {
        return;
    }
    if (r >= 0) observe(th_[size_t(r)].kt->ipc->msg, "handover to a waiting receiver");
    settle(expect);
}

void IpcModel::act_recv(int i, Act a) {
    int e = pick_ep();
    MEndpoint& me = eps_[size_t(e)];
    bool is_try = a == kTryRecv;
    uint64_t timeout = is_try ? 0 : pick_timeout();
    const char* name = is_try ? "try_recv" : "recv";
    note("t%d %s ep%d timeout=%" PRIu64 " (%zu senders waiting)", i, name, e, timeout,
         me.senders.size());
    if (!me.senders.empty()) {
        Expect x = take_sender(i, e);
        Result<Received> got = is_try ? me.ep->try_recv() : me.ep->recv(timeout);
        char what[64];
        std::snprintf(what, sizeof what, "t%d %s ep%d", i, name, e);
        if (!check(got.ok(), "%s returned %s, the model delivers msg#%" PRIu64, what,
                   err(got.error()), x.msg.id)) {
            return;
        }
        observe(got.value().msg, what);
        if (!check_received(i, got.value(), x, what)) return;
        settle(i);
        return;
    }
    int expect = i;
    if (!is_try) {
        block(i, Op::Recv, e, timeout);
        expect = kAny;
    }
    Result<Received> got = is_try ? me.ep->try_recv() : me.ep->recv(timeout);
    if (!check(got.error() == Error::WouldBlock,
               "t%d %s ep%d returned %s (msg#%" PRIu64 "), model says WouldBlock", i, name, e,
               err(got.error()), got.ok() ? got.value().msg.words[0] : 0)) {
        return;
    }
    settle(expect);
}

void IpcModel::act_reply(int i, Act a) {
    bool out_of_order = false;
    Tok k = take_token(i, &out_of_order);
    bool valid = token_valid(k, i);
    bool drop = a == kReplyDrop;
    Msg rep;
    if (!drop) rep = make_reply(i, request_of(k, i));
    note("t%d %s to t%d call %" PRIu64 " (request msg#%" PRIu64 ") reply#%" PRIu64
         " len=%u, model: %s",
         i, drop ? "reply_drop" : "reply", k.caller, k.token.call, k.request, rep.id, rep.m.length,
         valid ? "good" : "stale");
    Error want = valid ? Error::None : Error::BadHandle;
    if (valid) {
        if (drop) {
            wake(k.caller, Fin::Call, Error::PeerDied);
            ++stats_.peer_died;
            ++stats_.drops_ok;
        } else {
            reply_model(k, rep);
            ++stats_.replies_ok;
            if (out_of_order) ++stats_.deferred_out_of_order;
        }
    } else {
        ++stats_.replies_bad;
    }
    Status got = drop ? Endpoint::reply_drop(k.token) : Endpoint::reply(k.token, rep.m);
    pool_token(k);
    if (!check(got == want, "t%d %s to t%d returned %s, model says %s", i,
               drop ? "reply_drop" : "reply", k.caller, err(got), err(want))) {
        return;
    }
    if (valid && !drop) observe(th_[size_t(k.caller)].kt->ipc->msg, "reply handed to its caller");
    settle(i);
}

void IpcModel::act_reply_recv(int i) {
    MThread& t = th_[size_t(i)];
    Tok k;
    bool out_of_order = false;
    uint64_t r = below(100);
    if (!t.tokens.empty() && r < 85) {
        k = take_token(i, &out_of_order);
    } else if (r < 95) {
        k = Tok{};  // no reply: only receive
    } else {
        k = stale_or_forged_token(i);
    }
    int e = pick_ep();
    MEndpoint& me = eps_[size_t(e)];
    uint64_t timeout = pick_timeout();
    Msg rep = make_reply(i, request_of(k, i));
    bool valid = token_valid(k, i);
    bool fast =
        valid && cfg_.fast_path && cfg_.donation && rep.m.register_only() && me.senders.empty();
    note("t%d reply_recv to t%d call %" PRIu64 " reply#%" PRIu64 " len=%u, ep%d timeout=%" PRIu64
         " (%zu senders), model: %s%s",
         i, k.caller, k.token.call, rep.id, rep.m.length, e, timeout, me.senders.size(),
         valid             ? "good"
         : k.token.valid() ? "stale"
                           : "no token",
         fast ? ", fast path" : "");
    if (valid) {
        reply_model(k, rep);
        ++stats_.replies_ok;
        if (out_of_order) ++stats_.deferred_out_of_order;
    } else if (k.token.valid()) {
        ++stats_.replies_bad;
    }
    if (k.token.valid()) pool_token(k);

    if (!me.senders.empty()) {
        // Replied (the caller is ready, handed the CPU for when this thread
        // stops, not donated to), then takes a message at once.
        Expect x = take_sender(i, e);
        Result<Received> got = me.ep->reply_recv(k.token, rep.m, timeout);
        char what[64];
        std::snprintf(what, sizeof what, "t%d reply_recv ep%d", i, e);
        if (!check(got.ok(), "%s returned %s, the model delivers msg#%" PRIu64, what,
                   err(got.error()), x.msg.id)) {
            return;
        }
        if (valid)
            observe(th_[size_t(k.caller)].kt->ipc->msg, "reply_recv: reply handed to its caller");
        observe(got.value().msg, what);
        if (!check_received(i, got.value(), x, what)) return;
        settle(i);
        return;
    }
    block(i, Op::Recv, e, timeout);
    int expect = fast || (valid && cfg_.donation) ? k.caller : kAny;
    Result<Received> got = me.ep->reply_recv(k.token, rep.m, timeout);
    if (!check(got.error() == Error::WouldBlock,
               "t%d reply_recv ep%d returned %s, model says WouldBlock", i, e, err(got.error()))) {
        return;
    }
    if (valid)
        observe(th_[size_t(k.caller)].kt->ipc->msg, "reply_recv: reply handed to its caller");
    settle(expect);
}

void IpcModel::act_destroy(int i) {
    int e = int(below(uint64_t(cfg_.endpoints)));
    MEndpoint& me = eps_[size_t(e)];
    if (me.ep == nullptr) {
        create_ep(e);
        settle(i);
        return;
    }
    // Sometimes the running thread holds the endpoint, as a handle would,
    // across the destroy: the endpoint stays (dead) until it lets go.
    Ref<Endpoint> held;
    if (coin(40)) held = Ref<Endpoint>::retain(me.ep);
    note("t%d destroy ep%d (%zu senders, %zu receivers)%s", i, e, me.senders.size(),
         me.receivers.size(), held ? ", holding a reference" : "");
    destroy_model(e);
    Endpoint::destroy(me.ep);
    me = MEndpoint{};
    if (held) {
        if (!check(held->refs() == 1, "dead ep%d: %u references left, want 1 (ours)", e,
                   held->refs())) {
            return;
        }
        act_on_dead_endpoint(i, held.get());
    }
    held.reset();
    if (coin(50)) create_ep(e);
    settle(i);
}

// Any operation on a dead endpoint returns Destroyed and does nothing: no
// message delivered or queued, no call numbered, no block, and reply_recv
// does not even reply (its token stays good).
void IpcModel::act_on_dead_endpoint(int i, Endpoint* dead) {
    MThread& t = th_[size_t(i)];
    Message m;
    m.label = 0xDEAD;
    Tok k = t.tokens.empty() ? Tok{} : t.tokens[size_t(below(t.tokens.size()))];  // kept
    uint64_t which = below(6);
    uint64_t call_seq = t.kt->ipc->call_seq;
    note("t%d op %" PRIu64 " on the dead endpoint it holds", i, which);
    Error got = Error::None;
    switch (which) {
        case 0:
            got = dead->send(m, t.badge, pick_timeout());
            break;
        case 1:
            got = dead->try_send(m, t.badge);
            break;
        case 2:
            got = dead->recv(pick_timeout()).error();
            break;
        case 3:
            got = dead->try_recv().error();
            break;
        case 4:
            got = dead->call(m, t.badge, pick_timeout()).error();
            break;
        default:
            got = dead->reply_recv(k.token, m, pick_timeout()).error();
            break;
    }
    ++stats_.dead_ops;
    check(got == Error::Destroyed && t.kt->ipc->call_seq == call_seq,
          "t%d op %" PRIu64 " on a dead endpoint returned %s (call number %" PRIu64 " -> %" PRIu64
          "), want Destroyed and nothing done",
          i, which, err(got), call_seq, t.kt->ipc->call_seq);
}

void IpcModel::act_kill(int i) {
    // Any worker but the running one (the boot thread stays).
    int v = 1 + int(below(th_.size() - 1));
    if (v == i) {
        settle(i);
        return;
    }
    MThread& victim = th_[size_t(v)];
    note("t%d kill t%d (%s, op %s, %zu tokens) and re-spawn it", i, v, st_name(victim.st),
         op_name(victim.op), victim.tokens.size());
    kill_model(v);
    ++stats_.kills;
    Thread* kt = victim.kt;
    sched().kill(*kt);
    Thread::destroy(kt);
    threads_.erase(std::find(threads_.begin(), threads_.end(), kt));
    spawn_worker(v);
    settle(i);
}

void IpcModel::act_too_large(int i) {
    MThread& t = th_[size_t(i)];
    int e = pick_ep();
    MEndpoint& me = eps_[size_t(e)];
    Message big;
    big.label = 0xB16;
    big.length = uint32_t(kIpcBufferSize + 1 + below(1000));
    Tok k = t.tokens.empty() ? Tok{} : t.tokens[size_t(below(t.tokens.size()))];  // not used up
    uint64_t which = below(5);
    note("t%d oversized (%u bytes) op %" PRIu64 " on ep%d", i, big.length, which, e);
    Error got = Error::None;
    switch (which) {
        case 0:
            got = me.ep->send(big, t.badge, pick_timeout());
            break;
        case 1:
            got = me.ep->try_send(big, t.badge);
            break;
        case 2:
            got = me.ep->call(big, t.badge, pick_timeout()).error();
            break;
        case 3:
            got = Endpoint::reply(k.token, big);
            break;
        default:
            got = me.ep->reply_recv(k.token, big, pick_timeout()).error();
            break;
    }
    if (!check(got == Error::TooLarge, "t%d oversized op %" PRIu64 " returned %s, want TooLarge", i,
               which, err(got))) {
        return;
    }
    settle(i);
}

void IpcModel::act_stale_reply(int i) {
    Tok k = stale_or_forged_token(i);
    bool valid = token_valid(k, i);
    bool drop = coin(35);
    Msg rep;
    if (!drop) rep = make_reply(i, request_of(k, i));
    note("t%d %s with old/forged token {%#" PRIx64 ", %" PRIu64 "} (t%d), model: %s", i,
         drop ? "reply_drop" : "reply", k.token.caller, k.token.call, k.caller,
         valid ? "good" : "stale");
    if (valid) {
        if (drop) {
            wake(k.caller, Fin::Call, Error::PeerDied);
            ++stats_.peer_died;
        } else {
            reply_model(k, rep);
        }
    } else {
        ++stats_.replies_bad;
    }
    Status got = drop ? Endpoint::reply_drop(k.token) : Endpoint::reply(k.token, rep.m);
    Error want = valid ? Error::None : Error::BadHandle;
    if (!check(got == want, "t%d %s with old/forged token returned %s, model says %s", i,
               drop ? "reply_drop" : "reply", err(got), err(want))) {
        return;
    }
    if (valid && !drop) observe(th_[size_t(k.caller)].kt->ipc->msg, "reply handed to its caller");
    settle(i);
}

// Some other kernel code wakes a thread: a blocked one leaves its IPC wait
// with Interrupted; any other is left alone.
void IpcModel::act_stray_wake(int i) {
    int v = int(below(th_.size()));
    if (v == i) v = (v + 1) % int(th_.size());
    MThread& t = th_[size_t(v)];
    bool blocked = t.st == St::Blocked;
    note("t%d wakes t%d (%s, op %s)", i, v, st_name(t.st), op_name(t.op));
    if (blocked) {
        abort_model(v, Error::Interrupted);
        ++stats_.interrupted;
    }
    bool woke = sched().wake(*t.kt);
    if (!check(woke == blocked, "t%d: wake(t%d) returned %d, the model says it was %s", i, v,
               int(woke), st_name(blocked ? St::Blocked : t.st))) {
        return;
    }
    settle(i);
}

void IpcModel::run(const Config& cfg, uint64_t seed, uint64_t ops) {
    cfg_ = cfg;
    seed_ = seed;
    rng_.seed(seed);
    std::printf("[ IpcModel ] %s: seed=%" PRIu64 " ops=%" PRIu64 " (replay: MK_IPC_SEED=%" PRIu64
                ")\n",
                cfg.name, seed, ops, seed);
    std::fflush(stdout);
    RecordProperty("seed", std::to_string(seed));
    RecordProperty("ops", std::to_string(ops));
    ASSERT_LE(cfg.endpoints, kMaxEndpoints);
    ASSERT_LT(cfg.workers + 1, 32);

    ipc_set_fast_path(cfg.fast_path);
    sched().set_donation_enabled(cfg.donation);
    for (const std::array<int, kActCount>& w : kWeights) dists_.emplace_back(w.begin(), w.end());

    th_.resize(size_t(cfg.workers) + 1);
    idle_->context.id = 0;  // model index kIdle
    init_model_thread(0, boot_, St::Running);
    mcur_ = 0;
    for (int i = 1; i <= cfg.workers; ++i) spawn_worker(i);
    for (int e = 0; e < cfg.endpoints; ++e) create_ep(e);

    for (step_ = 0; step_ < ops && !failed_; ++step_) {
        step_once();
        if (!failed_) check_all();
        if ((step_ & 4095) == 0) FakeCpu::switches.clear();
    }
    stats_.steps = step_;

    IpcCounters c = ipc_counters();
    SchedCounters sc = sched().counters();
    std::printf(
        "[ IpcModel ] %s: %" PRIu64 " steps, %" PRIu64 " ticks; delivered %" PRIu64 " (%" PRIu64
        " with payload), replies %" PRIu64 " (%" PRIu64 " deferred out of order), stale %" PRIu64
        ", drops %" PRIu64 ", timeouts %" PRIu64 ", destroyed %" PRIu64 ", peer died %" PRIu64
        ", interrupted %" PRIu64 ", kills %" PRIu64 ", rescues %" PRIu64 ", idle ticks %" PRIu64
        ", max blocked %" PRIu64 "; kernel: fast path %" PRIu64 ", donations %" PRIu64
        ", direct switches %" PRIu64 ", preemptions %" PRIu64 "\n",
        cfg.name, stats_.steps, ticks_, stats_.delivered, stats_.delivered_payload,
        stats_.replies_ok, stats_.deferred_out_of_order, stats_.replies_bad, stats_.drops_ok,
        stats_.timeouts, stats_.destroyed, stats_.peer_died, stats_.interrupted, stats_.kills,
        stats_.rescues, stats_.idle_ticks, stats_.max_blocked, c.fastpath_hits, sc.donations_taken,
        sc.direct_switches, sc.preemptions);

    // The random walk must have covered what it is meant to.
    if (!failed_ && ops >= 100'000) {
        EXPECT_GT(stats_.delivered_payload, 0u);
        EXPECT_GT(stats_.deferred_out_of_order, 0u);
        EXPECT_GT(stats_.replies_bad, 0u);
        EXPECT_GT(stats_.drops_ok, 0u);
        EXPECT_GT(stats_.timeouts, 0u);
        EXPECT_GT(stats_.destroyed, 0u);
        EXPECT_GT(stats_.dead_ops, 0u);
        EXPECT_GT(stats_.peer_died, 0u);
        EXPECT_GT(stats_.interrupted, 0u);
        if (cfg.kills) {
            EXPECT_GT(stats_.kills, 0u);
        }
        if (cfg.fast_path && cfg.donation) {
            EXPECT_GT(c.fastpath_hits, 0u);
        }
        if (!cfg.fast_path || !cfg.donation) {
            EXPECT_EQ(c.fastpath_hits, 0u);  // donate=off turns the direct switch off too
        }
        if (cfg.fast_path && !cfg.donation) {
            EXPECT_GT(c.fastpath_miss_donation_off, 0u);
        }
        EXPECT_GT(sc.preemptions, 0u);
        if (cfg.donation) {
            EXPECT_GT(sc.donations_taken, 0u);
        }
        if (!cfg.donation) {
            EXPECT_EQ(sc.donations_taken, 0u);
        }
    }
}

TEST_F(IpcModel, RandomOperationsMatchReferenceModel) {
    run({"default", 8, 3, true, true, true}, base_seed(), ops_share(60));
}

TEST_F(IpcModel, RandomOperationsFastPathOff) {
    run({"fastpath-off", 6, 2, false, true, true}, base_seed(), ops_share(20));
}

TEST_F(IpcModel, RandomOperationsDonationOff) {
    run({"donation-off", 10, 3, true, false, true}, base_seed(), ops_share(20));
}

}  // namespace
}  // namespace mk
