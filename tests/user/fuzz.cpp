// The syscall fuzzer: at least fuzz::kCalls seeded random syscalls with
// random and half-valid arguments, against a kernel that must stay up.
//
// Each call picks a syscall number (mostly valid ones, some unknown, up to
// 2^64-1; also the yield vector int 0x50) and arguments drawn from:
//   - a pool of real handles: endpoints it created, minted copies with
//     random rights and badges, saved replies, threads, children's process
//     handles, copies of the canary's endpoint and of the boot modules;
//     some of them already closed or moved (stale);
//   - random 32- and 64-bit values and plausible handle values;
//   - pointers near the interesting boundaries (0, kUserBase - 1, kUserEnd,
//     the non-canonical hole, the kernel half, ~0, the edges of its own
//     mappings and their guard pages);
//   - lengths 0, 1, 4095, 4096, 4097, kMaxPayload, kMaxPayload + 1, 2^31,
//     2^63, ~0; message infos with random fields and reserved bits;
//     timeouts mostly kNoWait (so the fuzzer itself never blocks for long);
//     a random IPC buffer (handle descriptors and transfer flags);
//   - now and then random RFLAGS bits a ring-3 program may set (NT, DF and
//     the arithmetic flags).
// Every call must return (the loop going on is the proof), with a status
// the ABI lists and the registers the ABI preserves intact (and
// ThreadSetFsBase must take exactly the user-half values: the fuzzer's
// threads never use %fs, so any of them will do); anything else
// is an anomaly, printed and reported. Meanwhile a second thread maps,
// unmaps and registers IPC buffers in bursts, so that the two threads'
// memory syscalls interleave (the timer preempts them in the middle);
// MemMap must never answer BadState or hand out an address twice. At the
// end it prints a histogram of the main thread's results and reports to
// the driver (fuzz_driver.cpp) on its first start handle, which then
// checks that the canary (canary.cpp) still answers.
//
// What it never does, so that it does not simply end itself: ThreadExit or
// ProcessExit on its main thread (its helper threads and children do),
// ProcessKill on itself (it never holds its own process handle), unmapping
// its program, stack or bookkeeping pages, registering one of those as its
// IPC buffer (the kernel writes there), starting a thread anywhere but at
// one of its stubs, spawning anything but a few harmless modules (at most
// kMaxSpawns of them), or blocking without a timeout.
//
// Replay: the seed is printed first. It is StartInfo::arg when nonzero
// (the driver passes the meson option fuzz_seed); rebuild with
// `meson configure -Dfuzz_seed=SEED` to replay it. With -Dfuzz_trace_from=N
// every call from the N-th on is printed before it is made. The choices
// depend only on the seed and on what the kernel answered, so a replay is
// exact as long as the kernel answers the same way; timing (the timer,
// helper threads, the memory thread) can change that, which QEMU's -icount
// makes repeatable.
#include "fuzz.hpp"
#include "common.hpp"
#include "mk/format.hpp"

#ifndef FUZZ_TRACE_FROM
#define FUZZ_TRACE_FROM (~0ull)
#endif

using namespace mk;
using abi::Err;
using abi::HandleValue;
using abi::Sys;

// Thread entry stubs: they use no stack (a new thread's stack pointer is
// random), and end with ThreadExit when their loop fails. The set-up's
// helpers loop for good (the caller pausing 1 ms after each call, on
// fuzz_quiet_endpoint, which nobody sends to: whoever answers it, a child
// the endpoint was passed to say, never turns into a CPU-bound pair with
// it); those the fuzz loop starts stop after a few rounds.
extern "C" {
uint64_t fuzz_quiet_endpoint = 0;
void fuzz_thread_exit();
void fuzz_thread_responder();  // rdi: an endpoint; answers every call on it
void fuzz_thread_caller();     // rdi: an endpoint; calls it again and again (also after PeerDied)
void fuzz_thread_responder_brief();  // as fuzz_thread_responder, for 64 messages
void fuzz_thread_caller_brief();     // as fuzz_thread_caller, for 64 calls, without pauses
}

asm(R"(
    .text
    .globl fuzz_thread_exit
fuzz_thread_exit:
    mov $10, %eax                 /* Sys::ThreadExit */
    syscall
    ud2

    .globl fuzz_thread_responder
fuzz_thread_responder:
    mov $-1, %r13                 /* rounds left: all of them */
    jmp 0f
    .globl fuzz_thread_responder_brief
fuzz_thread_responder_brief:
    mov $64, %r13
0:  mov %rdi, %rbx
1:  mov %rbx, %rdi
    xor %esi, %esi                /* a reply with label 0 */
    mov $-1, %r12                 /* kForever */
    mov $1, %eax                  /* Sys::ReplyRecv */
    syscall
    test %rax, %rax
    jnz fuzz_thread_exit
    dec %r13
    jnz 1b
    jmp fuzz_thread_exit

    .globl fuzz_thread_caller
fuzz_thread_caller:
    mov $-1, %r13
    mov $1, %r14                  /* pause after each call */
    jmp 0f
    .globl fuzz_thread_caller_brief
fuzz_thread_caller_brief:
    mov $64, %r13
    xor %r14d, %r14d
0:  mov %rdi, %rbx
1:  mov %rbx, %rdi
    mov $7, %esi                  /* label 7 */
    mov $-1, %r12                 /* kForever */
    xor %eax, %eax                /* Sys::Call */
    syscall
    test %rax, %rax
    jz 2f
    cmp $8, %rax                  /* PeerDied: its call was dropped; call again */
    jne fuzz_thread_exit
2:  test %r14, %r14
    jz 3f
    mov fuzz_quiet_endpoint(%rip), %rdi
    mov $1000000, %r12            /* 1 ms */
    mov $3, %eax                  /* Sys::Recv: times out */
    syscall
3:  dec %r13
    jnz 1b
    jmp fuzz_thread_exit
)");

namespace {

constexpr uint64_t kDefaultSeed = 0x5EEDF022;
constexpr uint64_t kTraceFrom = FUZZ_TRACE_FROM;
constexpr uint64_t kProgressEvery = 100000;
constexpr unsigned kMaxSpawns = 24;       // children started, over the whole run
constexpr unsigned kMaxLoopHelpers = 40;  // responder/caller threads, over the whole run
constexpr uint64_t kMaxFuzzPages = 1024;  // what its random mappings may hold (4 MiB)
constexpr unsigned kSysSlots = unsigned(Sys::Count) + 2;  // + invalid numbers + int 0x50
constexpr unsigned kSlotInvalid = unsigned(Sys::Count);
constexpr unsigned kSlotYieldVector = unsigned(Sys::Count) + 1;
constexpr unsigned kErrSlots = 17;  // Err 0..15, then "not an ABI status"

const char* const kSysNames[kSysSlots] = {
    "Call",
    "ReplyRecv",
    "Send",
    "Recv",
    "Reply",
    "ReplySave",
    "EndpointCreate",
    "HandleClose",
    "HandleMint",
    "ThreadCreate",
    "ThreadExit",
    "ProcessSpawn",
    "ProcessKill",
    "MemMap",
    "MemUnmap",
    "IpcBufferSet",
    "Yield",
    "DebugLog",
    "ProcessExit",
    "ThreadSetFsBase",
    "ThreadSetAffinity",
    "(invalid number)",
    "(int 0x50)",
};

// What the calls returned, per syscall (kSysSlots) and status (kErrSlots).
uint64_t g_hist[kSysSlots][kErrSlots];
uint64_t g_calls = 0;           // random calls made
uint64_t g_ok = 0;              // ... that returned Ok
uint64_t g_calls_received = 0;  // receives that brought a call to answer
uint32_t g_cpu_count = 1;       // StartInfo::cpu_count
uint64_t g_online_cpus = 1;     // the CPUs that take a thread: ThreadSetAffinity's good masks

// --- randomness: xorshift64*, seeded through splitmix64 ---

uint64_t g_rng = 0;

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t rnd() {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

uint64_t below(uint64_t n) {
    return rnd() % n;
}

bool one_in(uint64_t n) {
    return below(n) == 0;
}

// True with probability percent/100.
bool percent(uint64_t p) {
    return below(100) < p;
}

template <typename T, size_t N>
T pick(const T (&a)[N]) {
    return a[below(N)];
}

// --- the handle pool ---

// A sub-pool per kind, so that a flood of one kind (threads, endpoints)
// never pushes out the few handles of another (the canary, the modules).
// Served: copies of the endpoints responder threads serve (a call there is
// answered); Called: copies of the one caller threads call (a receive there
// brings a call to answer); Endpoint: any other.
enum class Kind : uint8_t {
    Endpoint,
    Served,
    Called,
    Canary,
    Modules,
    Reply,
    Thread,
    Process,
    Other,
    Count
};
constexpr unsigned kKinds = unsigned(Kind::Count);
constexpr unsigned kPoolCapacity[kKinds] = {24, 8, 4, 6, 3, 8, 12, 8, 16};
constexpr unsigned kPoolMax = 24;

struct Entry {
    HandleValue value;
    Kind kind;
    bool live;  // as far as the fuzzer can tell: not closed, not moved away
};

struct SubPool {
    Entry entries[kPoolMax];
    unsigned size;
};
SubPool g_pool[kKinds];

// Handles the fuzzer keeps for itself and never lets a random call touch
// (every argument is filtered): the report endpoint, the masters the
// pool's copies are minted from (the canary's endpoint, the modules, two
// endpoints that responder threads serve and one that caller threads
// call), the memory thread's, and its children's process handles.
HandleValue g_report = abi::kNoHandle;
HandleValue g_canary = abi::kNoHandle;
HandleValue g_modules = abi::kNoHandle;
HandleValue g_served[2] = {};
HandleValue g_called = abi::kNoHandle;
HandleValue g_quiet = abi::kNoHandle;  // nobody sends to it: a sleep is a receive on it

// Its children's process handles (originals; the pool gets copies), to end
// them before it reports.
HandleValue g_children[kMaxSpawns];
unsigned g_child_count = 0;
unsigned g_spawns = 0;
unsigned g_loop_helpers = 0;

uint64_t g_maintenance_calls = 0;

sys::Ret maintenance(Sys nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                     uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0) {
    ++g_maintenance_calls;
    return sys::invoke(nr, a0, a1, a2, a3, a4, a5, a6);
}

bool is_protected(uint64_t v) {
    if ((v >> 32) != 0 || v == abi::kNoHandle) return false;
    auto h = HandleValue(v);
    if (h == g_report || h == g_canary || h == g_modules || h == g_served[0] || h == g_served[1] ||
        h == g_called || h == g_quiet) {
        return true;
    }
    for (unsigned i = 0; i < g_child_count; ++i) {
        if (h == g_children[i]) return true;
    }
    return false;
}

// Any value that would name a protected handle becomes one that names nothing.
uint64_t sanitize(uint64_t v) {
    return is_protected(v) ? (v ^ 0xA5A50000u) : v;
}

Entry* pool_find(HandleValue v) {
    for (SubPool& p : g_pool) {
        for (unsigned i = 0; i < p.size; ++i) {
            if (p.entries[i].value == v) return &p.entries[i];
        }
    }
    return nullptr;
}

void pool_add(HandleValue v, Kind kind) {
    if (v == abi::kNoHandle || is_protected(v)) return;
    if (Entry* e = pool_find(v)) {
        if (e->kind == kind || kind == Kind::Other) {
            e->live = true;
            return;
        }
        e->live = false;  // known better now: it moves to its kind's pool
        e->value = abi::kNoHandle;
    }
    SubPool& p = g_pool[unsigned(kind)];
    unsigned capacity = kPoolCapacity[unsigned(kind)];
    if (p.size < capacity) {
        p.entries[p.size++] = Entry{v, kind, true};
        return;
    }
    // Full: a stale entry goes, else a random live one, closed so that the
    // table does not fill with handles nobody remembers.
    unsigned victim = unsigned(below(capacity));
    for (unsigned i = 0; i < capacity; ++i) {
        unsigned j = (victim + i) % capacity;
        if (!p.entries[j].live) {
            victim = j;
            break;
        }
    }
    if (p.entries[victim].live) (void)maintenance(Sys::HandleClose, p.entries[victim].value);
    p.entries[victim] = Entry{v, kind, true};
}

void pool_mark_stale(uint64_t v) {
    if ((v >> 32) != 0) return;
    if (Entry* e = pool_find(HandleValue(v))) e->live = false;
}

unsigned pool_live(Kind kind) {
    const SubPool& p = g_pool[unsigned(kind)];
    unsigned n = 0;
    for (unsigned i = 0; i < p.size; ++i) n += p.entries[i].live ? 1 : 0;
    return n;
}

unsigned pool_live() {
    unsigned n = 0;
    for (unsigned k = 0; k < kKinds; ++k) n += pool_live(Kind(k));
    return n;
}

unsigned pool_size() {
    unsigned n = 0;
    for (const SubPool& p : g_pool) n += p.size;
    return n;
}

// An entry of `kind`'s pool (Kind::Count: of any), live ones first if
// `live_only`; nullptr if that pool is empty.
const Entry* pool_pick(Kind kind, bool live_only) {
    if (kind == Kind::Count) kind = Kind(below(kKinds));
    const SubPool& p = g_pool[unsigned(kind)];
    if (p.size == 0) return nullptr;
    unsigned start = unsigned(below(p.size));
    for (unsigned i = 0; i < p.size && live_only; ++i) {
        const Entry& e = p.entries[(start + i) % p.size];
        if (e.live) return &e;
    }
    return &p.entries[start];
}

// --- memory: what it may touch, and its random mappings ---

constexpr uint64_t kMapBase = 0x0000001000000000;  // where the kernel places MemMap (process.hpp)
constexpr uint64_t kStackLow = abi::kUserEnd - abi::kMainStackPages * abi::kPageSize;

abi::IpcBuffer* g_orig_buffer = nullptr;  // the IPC buffer libipc registered
abi::IpcBuffer* g_buffer = nullptr;       // the one registered now (nullptr: none)
uint64_t g_spare_buffers[2] = {};         // pages it may register instead
uint64_t g_text = 0;                      // a page of text for DebugLog
uint64_t g_scratch = 0;                   // a page for SpawnArgs
uint64_t g_protected_end = 0;             // [kMapBase, this): its own mappings

struct Region {
    uint64_t at;
    uint64_t pages;
    uint64_t prot;
};
constexpr unsigned kMaxRegions = 32;
Region g_regions[kMaxRegions];
unsigned g_region_count = 0;
uint64_t g_region_pages = 0;

bool overlaps(uint64_t a, uint64_t len, uint64_t lo, uint64_t hi) {
    uint64_t end = a + len < a ? ~0ull : a + len;
    return a < hi && end > lo;
}

// Would unmapping [a, a + len) take something the fuzzer lives on?
bool unmap_hits_self(uint64_t a, uint64_t len) {
    return overlaps(a, len, abi::kUserBase, kMapBase) ||         // the program
           overlaps(a, len, kMapBase, g_protected_end) ||        // its own mappings
           overlaps(a, len, kStackLow - abi::kPageSize, ~0ull);  // the stack
}

// Would the kernel writing a page at `a` (as the IPC buffer) hurt the fuzzer?
bool buffer_hits_self(uint64_t a) {
    if (a == reinterpret_cast<uint64_t>(g_orig_buffer) || a == g_spare_buffers[0] ||
        a == g_spare_buffers[1]) {
        return false;
    }
    return overlaps(a, abi::kPageSize, abi::kUserBase, g_protected_end) ||
           overlaps(a, abi::kPageSize, kStackLow - abi::kPageSize, abi::kUserEnd);
}

// Unmaps one of its regions for good; if its IPC buffer is in there, the
// kernel refuses, so the buffer goes back to the one libipc set up first.
void region_drop(const Region& r) {
    uint64_t bytes = r.pages * abi::kPageSize;
    uint64_t b = reinterpret_cast<uint64_t>(g_buffer);
    if (b >= r.at && b - r.at < bytes) {
        (void)maintenance(Sys::IpcBufferSet, 0, reinterpret_cast<uint64_t>(g_orig_buffer));
        g_buffer = g_orig_buffer;
    }
    (void)maintenance(Sys::MemUnmap, 0, r.at, bytes);
}

void region_add(uint64_t at, uint64_t pages, uint64_t prot) {
    if (g_region_count == kMaxRegions) {
        // Forget the oldest (unmapping it, so the fuzzer's footprint stays bounded).
        region_drop(g_regions[0]);
        g_region_pages -= g_regions[0].pages;
        for (unsigned i = 1; i < g_region_count; ++i) g_regions[i - 1] = g_regions[i];
        --g_region_count;
    }
    g_regions[g_region_count++] = Region{at, pages, prot};
    g_region_pages += pages;
}

void region_unmapped(uint64_t a, uint64_t len) {
    for (unsigned i = 0; i < g_region_count;) {
        if (overlaps(g_regions[i].at, g_regions[i].pages * abi::kPageSize, a, a + len)) {
            g_region_pages -= g_regions[i].pages;
            g_regions[i] = g_regions[--g_region_count];
        } else {
            ++i;
        }
    }
}

// --- argument generators ---

uint64_t gen_word() {
    switch (below(8)) {
        case 0:
            return 0;
        case 1:
            return below(16);
        case 2:
            return uint32_t(rnd());
        case 3:
            return ~0ull - below(4);
        case 4:
            return uint64_t(1) << below(64);
        default:
            return rnd();
    }
}

// A handle value: mostly from the pool (of kind `prefer` most of the time;
// Kind::Count: any), else stale, plausible, random or special values.
uint64_t gen_handle(Kind prefer = Kind::Count) {
    uint64_t r = below(100);
    uint64_t v;
    if (r < 70) {
        const Entry* e = pool_pick(percent(85) ? prefer : Kind::Count, true);
        v = e != nullptr ? e->value : 0;
    } else if (r < 78) {
        const Entry* e = pool_pick(Kind::Count, false);
        v = e != nullptr ? e->value : 0;
    } else if (r < 83) {
        v = ((below(4) + 1) << 16) | below(48);  // a plausible value: small generation and index
    } else if (r < 86) {
        v = 0;
    } else if (r < 90) {
        v = uint32_t(rnd());
    } else if (r < 95) {
        const Entry* e = pool_pick(prefer, true);  // a real one with junk above bit 31
        v = (e != nullptr ? e->value : 1) | (rnd() << 32);
    } else {
        const uint64_t special[] = {0xFFFFFFFF,        0x10000, 0xFFFF,     0x1FFFF,
                                    uint64_t(1) << 32, ~0ull,   0x7FFFFFFF, 0x80000000};
        v = pick(special);
    }
    return sanitize(v);
}

uint64_t region_edge() {
    if (g_region_count == 0) return kMapBase;
    const Region& r = g_regions[below(g_region_count)];
    return percent(50) ? r.at : r.at + r.pages * abi::kPageSize;
}

uint64_t gen_pointer() {
    const uint64_t base[] = {
        0,
        1,
        abi::kUserBase - 1,
        abi::kUserBase,
        kMapBase,
        g_text,
        g_text + abi::kPageSize,  // its guard page
        g_scratch,
        g_scratch + abi::kPageSize,
        region_edge(),
        reinterpret_cast<uint64_t>(g_orig_buffer),
        kStackLow,
        kStackLow - abi::kPageSize,  // the stack's guard page
        abi::kUserEnd - abi::kPageSize,
        abi::kUserEnd,
        0x00007FFFFFFFFFFF,
        0x0000800000000000,
        0xFFFF800000000000,
        0xFFFFFFFF80000000,
        ~0ull,
    };
    uint64_t p = percent(90) ? pick(base) : rnd();
    if (percent(40)) {
        const uint64_t offsets[] = {1, 8, 16, 480, 4095, 4096, 4097};
        uint64_t o = pick(offsets);
        p = percent(50) ? p + o : p - o;
    }
    return p;
}

uint64_t gen_length() {
    const uint64_t lengths[] = {
        0,
        1,
        8,
        255,
        256,
        257,
        abi::kMaxPayload,
        abi::kMaxPayload + 1,
        4095,
        4096,
        4097,
        8192,
        65536,
        uint64_t(1) << 31,
        uint64_t(1) << 32,
        uint64_t(1) << 63,
        ~0ull,
        16384 * abi::kPageSize,
        16385 * abi::kPageSize,
    };
    if (percent(85)) return pick(lengths);
    return percent(50) ? below(0x3000) : rnd();
}

// A mapping length: mostly a few pages, so the ones that succeed stay cheap.
uint64_t gen_map_length() {
    if (percent(60)) return (below(8) + 1) * abi::kPageSize;
    return gen_length();
}

uint64_t gen_info() {
    const uint32_t lengths[] = {
        0, 0, 0, 0, 1, 8, 100, 479, abi::kMaxPayload, abi::kMaxPayload + 1, 1023};
    uint64_t r = below(100);
    if (r < 8) return 0;
    if (r < 12) return rnd();
    abi::MsgInfo m;
    m.label = percent(70) ? uint32_t(below(16)) : uint32_t(rnd());
    if (r < 18) m.label = abi::kNoticeLabelBase + uint32_t(below(256));
    m.length = pick(lengths);
    m.handles = percent(65) ? 0 : uint32_t(percent(85) ? 1 + below(4) : below(8));
    uint64_t info = abi::MsgInfo{m.label, m.length, m.handles, false}.encode();
    if (r >= 18 && r < 26) {
        const unsigned reserved[] = {42, 43, 47, 48, 52, 60, 63};
        info |= uint64_t(1) << pick(reserved);
    }
    return info;
}

uint64_t gen_timeout(Sys nr, uint64_t a0) {
    uint64_t r = below(1000);
    if (r < 986) return abi::kNoWait;
    if (r < 994) return 1 + below(1000000);  // up to a tick
    if (r < 997) return 2000000;
    // A timeout so long it saturates, only where an answer surely comes:
    // a call or send to the canary, which serves forever.
    const Entry* e = (a0 >> 32) == 0 ? pool_find(HandleValue(a0)) : nullptr;
    if ((nr == Sys::Call || nr == Sys::Send) && e != nullptr && e->kind == Kind::Canary &&
        e->live) {
        const uint64_t huge[] = {abi::kForever - 1, uint64_t(1) << 63, abi::kForever - 999999};
        return pick(huge);
    }
    return abi::kNoWait;
}

// Fills the IPC buffer registered now with random handle descriptors and
// some payload; remembers what it wrote, to learn what the kernel changed.
HandleValue g_sent_handles[abi::kMaxHandles];
uint32_t g_sent_flags[abi::kMaxHandles];

void randomize_buffer() {
    if (g_buffer == nullptr) return;
    if (percent(50)) {
        for (unsigned i = 0; i < abi::kMaxHandles; ++i) {
            g_buffer->handles[i] = HandleValue(gen_handle());
            uint64_t f = below(100);
            g_buffer->handle_flags[i] = f < 45   ? abi::kTransferMove
                                        : f < 90 ? abi::kTransferCopy
                                        : f < 95 ? 2
                                                 : uint32_t(rnd());
        }
    }
    if (one_in(8)) {
        for (unsigned i = 0; i < 16; ++i)
            g_buffer->payload[below(abi::kMaxPayload)] = uint8_t(rnd());
    }
    for (unsigned i = 0; i < abi::kMaxHandles; ++i) {
        g_sent_handles[i] = g_buffer->handles[i];
        g_sent_flags[i] = g_buffer->handle_flags[i];
    }
}

// Whether a message's moved handles left the sender: everything but a
// refusal before anything was taken (a failure after that, such as the
// receive of a ReplyRecv whose reply went out, or a call that timed out
// waiting for its answer, still took them; moved handles that came back
// did so under new values).
bool message_taken(Err status) {
    switch (status) {
        case Err::InvalidArgument:
        case Err::BadHandle:
        case Err::NoRights:
        case Err::TooLarge:
        case Err::BadState:
        case Err::LimitReached:
        case Err::OutOfMemory:
            return false;
        default:
            return true;
    }
}

// After an IPC call: handles that changed in the buffer are new ones
// (received, or moved ones that came back under new values); moved ones
// that left are stale.
void harvest_buffer(uint64_t sent_info, Err status) {
    if (g_buffer == nullptr) return;
    uint32_t sent = abi::MsgInfo::decode(sent_info).handles;
    for (unsigned i = 0; i < abi::kMaxHandles; ++i) {
        HandleValue now = g_buffer->handles[i];
        bool changed = now != g_sent_handles[i];
        if (i < sent && g_sent_flags[i] == abi::kTransferMove &&
            (message_taken(status) || changed)) {
            pool_mark_stale(g_sent_handles[i]);
        }
        if (changed && now != abi::kNoHandle) pool_add(now, Kind::Other);
    }
}

// SpawnArgs in the scratch page, possibly across its end (into the guard page).
uint64_t gen_spawn_args() {
    uint64_t at = g_scratch;
    uint64_t r = below(100);
    if (r < 10) {
        at =
            g_scratch + abi::kPageSize - sizeof(abi::SpawnArgs) + 1 + below(sizeof(abi::SpawnArgs));
    } else if (r < 20) {
        at = g_scratch + 1 + below(64);
    }
    if (at + sizeof(abi::SpawnArgs) > g_scratch + abi::kPageSize)
        return at;  // the kernel refuses it
    auto* a = reinterpret_cast<abi::SpawnArgs*>(at);
    __builtin_memset(static_cast<void*>(a), 0, sizeof *a);
    // No CPU (the kernel places it), CPU 0, or one that is not there (InvalidArgument
    // when it is not).
    const uint32_t cpus[] = {abi::kAnyCpu, 0, 1, 15, 16, 0x7FFFFFFF};
    a->cpu = pick(cpus);
    const char* const harmless[] = {"hello", "faulter", "client", "pong"};
    const char* const refused[] = {"", "no-such-module", "hell", "pongg", "HELLO", "hello "};
    const char* name = nullptr;
    uint64_t n = below(100);
    if (n < 40 && g_spawns < kMaxSpawns) {
        name = pick(harmless);
    } else if (n < 70) {
        name = pick(refused);
    } else if (n < 80) {
        __builtin_memset(a->module, 'X', abi::kModuleNameMax);  // no NUL
    } else {
        for (unsigned i = 0; i < abi::kModuleNameMax; ++i) a->module[i] = char(rnd());
        a->module[0] = 'X';  // never the name of a real module
    }
    if (name != nullptr) {
        for (unsigned i = 0; name[i] != '\0'; ++i) a->module[i] = name[i];
    }
    a->arg = gen_word();
    uint64_t c = below(100);
    a->handle_count = c < 60 ? uint32_t(below(5)) : c < 85 ? uint32_t(below(9)) : uint32_t(rnd());
    for (unsigned i = 0; i < abi::kMaxStartHandles; ++i) {
        a->handles[i] = HandleValue(gen_handle());
        uint64_t f = below(10);
        a->handle_flags[i] = f < 4   ? abi::kTransferMove
                             : f < 9 ? abi::kTransferCopy
                                     : uint32_t(rnd());
    }
    a->supervisor = HandleValue(gen_handle(Kind::Endpoint));
    return at;
}

// Where a thread starts: one of the stubs, or somewhere the kernel must refuse.
uint64_t gen_entry(uint64_t& arg) {
    arg = gen_handle(Kind::Endpoint);
    if (percent(80)) {
        // Spread over the run: they may block for good and so keep thread slots.
        if (g_loop_helpers < kMaxLoopHelpers &&
            g_loop_helpers * (fuzz::kCalls / kMaxLoopHelpers) <= g_calls) {
            ++g_loop_helpers;
            return percent(50) ? reinterpret_cast<uint64_t>(&fuzz_thread_responder_brief)
                               : reinterpret_cast<uint64_t>(&fuzz_thread_caller_brief);
        }
        return reinterpret_cast<uint64_t>(&fuzz_thread_exit);
    }
    const uint64_t refused[] = {0,
                                abi::kUserBase - 1,
                                abi::kUserEnd,
                                abi::kUserEnd + 1,
                                0x00007FFFFFFFFFFF,
                                0x0000800000000000,
                                0xFFFF800000000000,
                                0xFFFFFFFF80000000,
                                ~0ull};
    return pick(refused);
}

uint64_t gen_buffer_address() {
    uint64_t r = below(100);
    uint64_t a;
    if (r < 25) {
        a = reinterpret_cast<uint64_t>(g_orig_buffer);
    } else if (r < 40) {
        a = pick(g_spare_buffers);
    } else if (r < 55 && g_region_count > 0) {
        const Region& reg = g_regions[below(g_region_count)];
        a = reg.at + below(reg.pages) * abi::kPageSize;
    } else if (r < 62) {
        a = 0;
    } else if (r < 70) {
        a = reinterpret_cast<uint64_t>(g_orig_buffer) + 1 + below(abi::kPageSize - 1);
    } else {
        a = gen_pointer();
    }
    if (a != 0 && buffer_hits_self(a & ~(abi::kPageSize - 1))) {
        a = abi::kUserBase;  // the program's text: not writable, refused
    }
    return a;
}

void gen_unmap(uint64_t& a, uint64_t& len) {
    uint64_t r = below(100);
    if (r < 60 && g_region_count > 0) {
        const Region& reg = g_regions[below(g_region_count)];
        a = reg.at;
        len = reg.pages * abi::kPageSize;
        if (percent(30)) a += below(reg.pages) * abi::kPageSize;
        if (percent(30)) len = (below(reg.pages + 2) + 1) * abi::kPageSize;
        if (percent(10)) a += 1 + below(abi::kPageSize - 1);
        if (percent(10)) len = gen_length();
    } else {
        a = gen_pointer();
        len = gen_length();
    }
    if (unmap_hits_self(a, len)) {
        a = percent(50) ? abi::kUserEnd : 0x0000800000000000;  // refused
    }
}

// DebugLog: mostly refused (too long, bad pointers, across a guard page);
// now and then a few lines of the text page, ending at a line end.
void gen_debug_log(uint64_t& p, uint64_t& len) {
    constexpr uint64_t kLine = 32;
    uint64_t r = below(100);
    if (r < 30) {
        p = gen_pointer();
        len = abi::kDebugLogMax + 1 + below(3) * 1000;
        if (percent(30)) len = gen_length() | (abi::kDebugLogMax + 1);
    } else if (r < 60) {
        const uint64_t bad[] = {1,
                                abi::kUserBase - 1,
                                abi::kUserEnd,
                                abi::kUserEnd + 1,
                                0x0000800000000000,
                                0xFFFF800000000000,
                                0xFFFFFFFF80000000,
                                ~0ull,
                                g_text + abi::kPageSize,
                                g_text - abi::kPageSize};
        p = pick(bad);
        len = 1 + below(abi::kDebugLogMax);
    } else if (r < 97) {
        uint64_t k = 1 + below(64);  // across the end of the page into its guard page
        p = percent(50) ? g_text + abi::kPageSize - k : g_text - k;
        len = k + 1 + below(abi::kDebugLogMax - k);
    } else if (r < 99) {
        uint64_t lines = 1 + below(2);
        uint64_t first = below(abi::kPageSize / kLine - lines);
        p = g_text + first * kLine + below(kLine);
        len = g_text + (first + lines) * kLine - p;
    } else {
        p = gen_pointer();
        len = 0;  // nothing to read: Ok whatever the pointer (an empty line)
    }
}

// --- the call ---

struct Call {
    uint64_t nr;
    uint64_t a[7];
    uint64_t flags;  // RFLAGS to enter with; 0: as they are
    bool vector;     // int 0x50 instead of syscall
};

struct Outcome {
    sys::Ret ret;
    bool preserved;  // registers the ABI preserves were preserved
};

uint64_t g_anomalies = 0;

// One entry into the kernel with every register the ABI names live and
// the chosen RFLAGS set just before it; `insn` is "syscall" or "int $0x50".
#define FUZZ_ENTER(insn)                                                                        \
    asm volatile(                                                                               \
        "sub $128, %%rsp\n\t"                                                                   \
        "pushfq\n\t"                                                                            \
        "test %[fl], %[fl]\n\t"                                                                 \
        "jz 1f\n\t"                                                                             \
        "push %[fl]\n\t"                                                                        \
        "popfq\n\t"                                                                             \
        "1: " insn                                                                              \
        "\n\t"                                                                                  \
        "popfq\n\t"                                                                             \
        "add $128, %%rsp"                                                                       \
        : "+r"(rax), "+r"(rdi), "+r"(rsi), "+r"(rdx), "+r"(r10), "+r"(r8), "+r"(r9), "+r"(r12), \
          "+r"(r13), "+r"(r14), "+r"(r15)                                                       \
        : [fl] "r"(flags)                                                                       \
        : "rcx", "r11", "memory", "cc")

Outcome perform(const Call& c) {
    register uint64_t rax asm("rax") = c.nr;
    register uint64_t rdi asm("rdi") = c.a[0];
    register uint64_t rsi asm("rsi") = c.a[1];
    register uint64_t rdx asm("rdx") = c.a[2];
    register uint64_t r10 asm("r10") = c.a[3];
    register uint64_t r8 asm("r8") = c.a[4];
    register uint64_t r9 asm("r9") = c.a[5];
    register uint64_t r12 asm("r12") = c.a[6];
    const uint64_t s13 = rnd(), s14 = rnd(), s15 = rnd();
    register uint64_t r13 asm("r13") = s13;
    register uint64_t r14 asm("r14") = s14;
    register uint64_t r15 asm("r15") = s15;
    uint64_t flags = c.flags;
    // The pushes stay below the red zone; the flags are restored at once.
    if (c.vector) {
        FUZZ_ENTER("int $0x50");
        bool same = rax == c.nr && rdi == c.a[0] && rsi == c.a[1] && rdx == c.a[2] &&
                    r10 == c.a[3] && r8 == c.a[4] && r9 == c.a[5] && r12 == c.a[6] && r13 == s13 &&
                    r14 == s14 && r15 == s15;
        return Outcome{sys::Ret{Err::Ok, 0, 0, {}}, same};
    }
    FUZZ_ENTER("syscall");
    bool same = r12 == c.a[6] && r13 == s13 && r14 == s14 && r15 == s15;
    return Outcome{sys::Ret{Err(rax), rdi, rsi, {rdx, r10, r8, r9}}, same};
}
#undef FUZZ_ENTER

// RFLAGS a ring-3 program can set: NT, DF and the arithmetic flags (TF
// would trap the fuzzer itself, AC could with CR0.AM; IF and IOPL do not
// change at CPL 3).
uint64_t gen_flags() {
    if (!one_in(30)) return 0;
    constexpr uint64_t kNt = 1u << 14, kDf = 1u << 10;
    constexpr uint64_t kArith = 0x8D5;      // CF PF AF ZF SF OF
    uint64_t f = 0x202 | (rnd() & kArith);  // IF and the always-one bit
    if (percent(60)) f |= kNt;
    if (percent(40)) f |= kDf;
    return f;
}

// The syscall number: mostly valid ones by weight, some unknown.
uint64_t gen_number(bool& vector) {
    vector = false;
    static constexpr uint8_t kWeights[unsigned(Sys::Count)] = {
        12,  // Call
        8,   // ReplyRecv
        10,  // Send
        10,  // Recv
        6,   // Reply
        3,   // ReplySave
        3,   // EndpointCreate
        5,   // HandleClose
        6,   // HandleMint
        3,   // ThreadCreate
        0,   // ThreadExit: never on the main thread
        2,   // ProcessSpawn
        2,   // ProcessKill
        4,   // MemMap
        4,   // MemUnmap
        3,   // IpcBufferSet
        2,   // Yield
        2,   // DebugLog
        0,   // ProcessExit: never on itself
        2,   // ThreadSetFsBase
        2,   // ThreadSetAffinity
    };
    static constexpr unsigned kTotal = [] {
        unsigned t = 0;
        for (uint8_t w : kWeights) t += w;
        return t;
    }();
    uint64_t r = below(1000);
    if (r < 25) {
        vector = true;
        return 0;
    }
    if (r < 55) {
        const uint64_t bad[] = {uint64_t(Sys::Count),
                                uint64_t(Sys::Count) + 1,
                                64,
                                255,
                                0x10000,
                                (uint64_t(1) << 32) | uint64_t(Sys::ThreadExit),
                                (uint64_t(1) << 32) | uint64_t(Sys::ProcessExit),
                                uint64_t(1) << 63,
                                ~0ull,
                                ~0ull - uint64_t(Sys::Count)};
        uint64_t v = percent(80) ? pick(bad) : rnd();
        // A random value may still be a real number; keep it off the two that end us.
        if (v < uint64_t(Sys::Count)) v += uint64_t(Sys::Count);
        return v;
    }
    uint64_t w = below(kTotal);
    for (unsigned i = 0; i < unsigned(Sys::Count); ++i) {
        if (w < kWeights[i]) return i;
        w -= kWeights[i];
    }
    return uint64_t(Sys::Yield);
}

Call gen_call() {
    Call c{};
    c.nr = gen_number(c.vector);
    for (uint64_t& a : c.a) a = gen_word();
    c.flags = gen_flags();
    if (c.vector) {
        c.a[0] = gen_handle(Kind::Thread);
        if (percent(30)) c.a[0] = 0;
    } else if (c.nr < uint64_t(Sys::Count)) {
        Sys nr = Sys(c.nr);
        switch (nr) {
            case Sys::Call:
            case Sys::Send: {
                const Kind to[] = {Kind::Served, Kind::Served,   Kind::Served, Kind::Canary,
                                   Kind::Canary, Kind::Endpoint, Kind::Called, Kind::Count};
                c.a[0] = gen_handle(pick(to));
                c.a[1] = gen_info();
                c.a[6] = gen_timeout(nr, c.a[0]);
                break;
            }
            case Sys::ReplyRecv:
            case Sys::Recv: {
                const Kind from[] = {Kind::Called, Kind::Called, Kind::Endpoint, Kind::Served,
                                     Kind::Count};
                c.a[0] = gen_handle(pick(from));
                if (nr == Sys::ReplyRecv) c.a[1] = gen_info();
                c.a[6] = gen_timeout(nr, c.a[0]);
                break;
            }
            case Sys::Reply:
                c.a[0] = percent(50) ? 0 : gen_handle(Kind::Reply);
                c.a[1] = gen_info();
                break;
            case Sys::HandleClose:
                c.a[0] = gen_handle();
                break;
            case Sys::HandleMint:
                c.a[0] = gen_handle();
                c.a[1] = percent(75) ? (rnd() & abi::kRightsAll) : gen_word();
                c.a[2] = percent(50) ? 0 : percent(60) ? below(1000) : rnd();
                break;
            case Sys::ThreadCreate:
                c.a[1] = gen_entry(c.a[3]);
                c.a[2] = percent(50) ? gen_pointer() : rnd();
                break;
            case Sys::ProcessSpawn:
                c.a[0] = gen_handle(Kind::Modules);
                c.a[1] = percent(80) ? gen_spawn_args() : gen_pointer();
                break;
            case Sys::ProcessKill:
                c.a[0] = gen_handle(Kind::Process);
                break;
            case Sys::MemMap:
                c.a[1] = gen_map_length();
                c.a[2] = percent(85) ? 1 + below(7) : gen_word();
                if (g_region_pages > kMaxFuzzPages) c.a[1] = abi::kPageSize * (1 + below(4));
                break;
            case Sys::MemUnmap:
                gen_unmap(c.a[1], c.a[2]);
                break;
            case Sys::IpcBufferSet:
                c.a[1] = gen_buffer_address();
                break;
            case Sys::Yield:
                c.a[0] = percent(30) ? 0 : gen_handle(Kind::Thread);
                break;
            case Sys::DebugLog:
                gen_debug_log(c.a[1], c.a[2]);
                break;
            case Sys::ThreadSetFsBase:
                c.a[1] = percent(70) ? gen_pointer() : gen_word();
                break;
            case Sys::ThreadSetAffinity:
                c.a[0] = percent(40) ? 0 : gen_handle(Kind::Thread);
                c.a[1] = percent(70) ? below(uint64_t(1) << g_cpu_count) : gen_word();
                break;
            case Sys::ReplySave:
            case Sys::EndpointCreate:
                break;
            case Sys::ThreadExit:
            case Sys::ProcessExit:
            case Sys::Count:
                c.nr = uint64_t(Sys::Yield);  // never chosen (weight 0)
                c.a[0] = 0;
                break;
        }
    }
    for (uint64_t& a : c.a) a = sanitize(a);
    return c;
}

bool is_ipc(uint64_t nr) {
    return nr <= uint64_t(Sys::Reply);
}

// --- a second thread: memory syscalls racing with the main thread ---
//
// Syscalls run preemptible, so two threads of one process can be inside the
// memory syscalls at the same time. This thread maps, unmaps and registers
// IPC buffers in the fuzz area while the main thread fuzzes (and maps and
// unmaps there too), and both check what the kernel promises: MemMap never
// hands out an address twice (the map area is never reused) and never
// answers BadState; a page registered as IPC buffer stays mapped.

// The last MemMap results of both threads, each packed in one word (page
// number << 15 | pages), so that the other thread never reads half of one.
constexpr unsigned kRecentMaps = 64;
uint64_t g_recent_maps[kRecentMaps];
unsigned g_recent_next = 0;

HandleValue g_memory_thread = abi::kNoHandle;
bool g_memory_stop = false;   // set by the main thread at the end
bool g_memory_done = false;   // set by the memory thread as it ends
uint64_t g_memory_calls = 0;  // calls it made
uint64_t g_memory_seed = 0;

void anomaly_count() {
    __atomic_fetch_add(&g_anomalies, 1, __ATOMIC_RELAXED);
}

// A MemMap result of either thread: it must not overlap any recent one.
// Returns false (an anomaly) if it does.
bool note_map(uint64_t at, uint64_t pages) {
    uint64_t first = at / abi::kPageSize;
    for (uint64_t& slot : g_recent_maps) {
        uint64_t v = __atomic_load_n(&slot, __ATOMIC_RELAXED);
        if (v == 0) continue;
        uint64_t p = v >> 15, n = v & 0x7FFF;
        if (first < p + n && p < first + pages) return false;
    }
    unsigned i = __atomic_fetch_add(&g_recent_next, 1, __ATOMIC_RELAXED) % kRecentMaps;
    __atomic_store_n(&g_recent_maps[i], (first << 15) | pages, __ATOMIC_RELAXED);
    return true;
}

// It never yields in a burst: the timer has to preempt it, in the middle
// of its syscalls, for the main thread's to run between its steps. A burst
// outlasts a quantum (10 ms); then it sleeps (a receive with a timeout on
// an endpoint of its own), so that the main thread keeps most of the CPU.
constexpr unsigned kMemoryBurst = 3000;          // calls, some 15 ms
constexpr uint64_t kMemorySleep = 40 * 1000000;  // ns

void memory_thread(void*) {
    uint64_t rng = splitmix64(g_memory_seed);
    auto next = [&rng] {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * 0x2545F4914F6CDD1Dull;
    };
    const uint64_t own_buffer = reinterpret_cast<uint64_t>(ipc::ipc_buffer());
    while (__atomic_load_n(&g_protected_end, __ATOMIC_ACQUIRE) == 0) {
        (void)sys::invoke(Sys::Yield);
    }
    Region mine[8] = {};
    unsigned count = 0;
    uint64_t current = own_buffer;  // its IPC buffer now
    for (unsigned n = 1; !__atomic_load_n(&g_memory_stop, __ATOMIC_RELAXED); ++n) {
        if ((n % kMemoryBurst) == 0) {
            (void)sys::invoke(Sys::Recv, g_quiet, 0, 0, 0, 0, 0, kMemorySleep);
        }
        uint64_t r = next() % 100;
        __atomic_fetch_add(&g_memory_calls, 1, __ATOMIC_RELAXED);
        if (r < 35) {
            uint64_t pages = 1 + next() % 16;
            sys::Ret m = sys::invoke(Sys::MemMap, 0, pages * abi::kPageSize,
                                     abi::kProtRead | abi::kProtWrite);
            if (m.status == Err::BadState) {
                anomaly_count();
                printf("fuzz: ANOMALY (memory thread): MemMap of %lu pages said BadState\n", pages);
            }
            if (!m.ok()) continue;
            if (!note_map(m.r0, pages)) {
                anomaly_count();
                printf("fuzz: ANOMALY (memory thread): MemMap gave %#lx (%lu pages) twice\n", m.r0,
                       pages);
            }
            if (count == 8) {
                // Its IPC buffer may be in there: back to its own first.
                if (current >= mine[0].at &&
                    current - mine[0].at < mine[0].pages * abi::kPageSize) {
                    (void)sys::invoke(Sys::IpcBufferSet, 0, own_buffer);
                    current = own_buffer;
                }
                (void)sys::invoke(Sys::MemUnmap, 0, mine[0].at, mine[0].pages * abi::kPageSize);
                for (unsigned i = 1; i < count; ++i) mine[i - 1] = mine[i];
                --count;
            }
            mine[count++] = Region{m.r0, pages, abi::kProtRead | abi::kProtWrite};
        } else if (r < 60) {
            // Its own mappings, the main thread's (read as they are), or a
            // wide stretch of the fuzz area.
            uint64_t a, len;
            uint64_t k = next() % 10;
            if (k < 5 && count > 0) {
                const Region& m = mine[next() % count];
                a = m.at + (next() % 2) * (next() % m.pages) * abi::kPageSize;
                len = (1 + next() % m.pages) * abi::kPageSize;
            } else if (k < 8 && g_region_count > 0) {
                unsigned i = unsigned(next() % 32) % (g_region_count == 0 ? 1 : g_region_count);
                a = __atomic_load_n(&g_regions[i].at, __ATOMIC_RELAXED);
                len = (1 + next() % 16) * abi::kPageSize;
            } else {
                a = g_protected_end + (next() % 4096) * abi::kPageSize;
                len = (1 + next() % 4096) * abi::kPageSize;
            }
            if (unmap_hits_self(a, len)) continue;
            (void)sys::invoke(Sys::MemUnmap, 0, a, len);
        } else {
            // A new IPC buffer: one of its pages (or its own, or none); the
            // kernel keeps a registered page mapped, so writing it is safe.
            uint64_t a = own_buffer;
            uint64_t k = next() % 10;
            if (k < 7 && count > 0) {
                const Region& m = mine[next() % count];
                a = m.at + (next() % m.pages) * abi::kPageSize;
            } else if (k < 8) {
                a = 0;
            }
            sys::Ret b = sys::invoke(Sys::IpcBufferSet, 0, a);
            if (b.ok()) current = a;
            if (b.ok() && a != 0) {
                *reinterpret_cast<volatile uint64_t*>(a) = next();
                *reinterpret_cast<volatile uint64_t*>(a + abi::kPageSize - 8) = next();
            }
        }
    }
    (void)sys::invoke(Sys::IpcBufferSet, 0, own_buffer);
    __atomic_store_n(&g_memory_done, true, __ATOMIC_RELEASE);
}

// --- bookkeeping ---

void anomaly(const Call& c, const Outcome& r, const char* what) {
    if (__atomic_add_fetch(&g_anomalies, 1, __ATOMIC_RELAXED) <= 10) {
        printf(
            "fuzz: ANOMALY at call %lu (%s): nr %#lx a0 %#lx a1 %#lx a2 %#lx a3 %#lx a6 %#lx "
            "flags %#lx -> status %lu r0 %#lx\n",
            g_calls, what, c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[6], c.flags,
            uint64_t(r.ret.status), r.ret.r0);
    }
}

void after(const Call& c, const Outcome& r) {
    unsigned slot = c.vector                      ? kSlotYieldVector
                    : c.nr < uint64_t(Sys::Count) ? unsigned(c.nr)
                                                  : kSlotInvalid;
    uint64_t status = uint64_t(r.ret.status);
    ++g_hist[slot][status < kErrSlots - 1 ? status : kErrSlots - 1];
    if (!r.preserved) anomaly(c, r, "a preserved register changed");
    if (status > uint64_t(Err::LimitReached)) anomaly(c, r, "not an ABI status");
    if (slot == kSlotInvalid && r.ret.status != Err::BadSyscall) anomaly(c, r, "unknown number");
    if (slot < kSlotInvalid && r.ret.status == Err::BadSyscall)
        anomaly(c, r, "known number refused");
    if (slot == unsigned(Sys::MemMap) && r.ret.status == Err::BadState) {
        anomaly(c, r, "MemMap said BadState");  // it picks the address: never taken
    }
    if (slot == unsigned(Sys::ThreadSetFsBase) &&
        r.ret.status != (c.a[1] < abi::kFsBaseEnd ? Err::Ok : Err::InvalidArgument)) {
        anomaly(c, r, "ThreadSetFsBase: an FS base taken outside the user half, or refused in it");
    }
    if (slot == unsigned(Sys::ThreadSetAffinity)) {
        // The mask is decoded first: a bad one is refused whatever the handle.
        bool mask_ok = c.a[1] != 0 && (c.a[1] & ~g_online_cpus) == 0;
        if (!mask_ok && r.ret.status != Err::InvalidArgument)
            anomaly(c, r, "ThreadSetAffinity: a mask of missing CPUs taken");
        if (mask_ok && c.a[0] == 0 && r.ret.status != Err::Ok)
            anomaly(c, r, "ThreadSetAffinity: a good mask refused for the caller");
    }
    bool ok = r.ret.ok();
    if (ok) ++g_ok;
    if (c.vector || slot == kSlotInvalid) return;

    Sys nr = Sys(c.nr);
    if (is_ipc(c.nr) && nr != Sys::Recv) harvest_buffer(c.a[1], r.ret.status);
    if ((nr == Sys::Recv || nr == Sys::ReplyRecv) && ok && abi::MsgInfo::decode(r.ret.r1).call) {
        ++g_calls_received;
    }
    if (is_ipc(c.nr) && nr != Sys::Send && nr != Sys::Reply && ok) {
        // Received: handles arrived in the buffer (harvested above for the
        // others; Recv sends nothing).
        if (nr == Sys::Recv && g_buffer != nullptr) {
            uint32_t n = abi::MsgInfo::decode(r.ret.r1).handles;
            for (uint32_t i = 0; i < n && i < abi::kMaxHandles; ++i) {
                pool_add(g_buffer->handles[i], Kind::Other);
            }
        }
    }
    if (!ok) return;
    switch (nr) {
        case Sys::EndpointCreate:
            if (r.ret.r0 == 0 || r.ret.r0 > UINT32_MAX) anomaly(c, r, "bad new handle");
            pool_add(HandleValue(r.ret.r0), Kind::Endpoint);
            break;
        case Sys::HandleMint: {
            const Entry* src = pool_find(HandleValue(c.a[0]));
            pool_add(HandleValue(r.ret.r0), src != nullptr ? src->kind : Kind::Other);
            break;
        }
        case Sys::ReplySave:
            pool_add(HandleValue(r.ret.r0), Kind::Reply);
            break;
        case Sys::ThreadCreate:
            pool_add(HandleValue(r.ret.r0), Kind::Thread);
            break;
        case Sys::ProcessSpawn: {
            ++g_spawns;
            HandleValue child = HandleValue(r.ret.r0);
            sys::Ret copy = maintenance(Sys::HandleMint, child, abi::kRightsAll, 0);
            if (g_child_count < kMaxSpawns) {
                g_children[g_child_count++] = child;
                if (copy.ok()) pool_add(HandleValue(copy.r0), Kind::Process);
            } else {
                pool_add(child, Kind::Process);
            }
            break;
        }
        case Sys::HandleClose:
            pool_mark_stale(c.a[0]);
            break;
        case Sys::Reply:
            if (c.a[0] != 0) pool_mark_stale(c.a[0]);  // a saved reply is used up
            break;
        case Sys::MemMap:
            if ((r.ret.r0 % abi::kPageSize) != 0 || r.ret.r0 < kMapBase ||
                r.ret.r0 >= abi::kUserEnd) {
                anomaly(c, r, "bad mapping address");
            } else if (!note_map(r.ret.r0, c.a[1] / abi::kPageSize)) {
                anomaly(c, r, "an address MemMap gave already");
            } else {
                region_add(r.ret.r0, c.a[1] / abi::kPageSize, c.a[2]);
            }
            break;
        case Sys::MemUnmap:
            region_unmapped(c.a[1], c.a[2]);
            break;
        case Sys::IpcBufferSet:
            g_buffer = reinterpret_cast<abi::IpcBuffer*>(c.a[1]);
            break;
        case Sys::DebugLog:
            // An empty write still prints the process tag: end its line.
            if (c.a[2] == 0)
                (void)maintenance(Sys::DebugLog, 0, reinterpret_cast<uint64_t>("\n"), 1);
            break;
        default:
            break;
    }
}

// --- set-up and upkeep ---

uint64_t map(uint64_t pages) {
    sys::Ret r =
        maintenance(Sys::MemMap, 0, pages * abi::kPageSize, abi::kProtRead | abi::kProtWrite);
    if (!r.ok()) {
        printf("fuzz: set-up mapping failed: %s\n", ipc::error_name(r.status));
        exit(3);
    }
    return r.r0;
}

void mint_into_pool(HandleValue source, Kind kind, unsigned copies) {
    for (unsigned i = 0; i < copies; ++i) {
        uint32_t rights = uint32_t(rnd() & abi::kRightsAll);
        uint64_t badge = percent(50) ? 0 : 1 + below(1000);
        sys::Ret r = maintenance(Sys::HandleMint, source, rights, badge);
        if (!r.ok()) r = maintenance(Sys::HandleMint, source, rights, 0);  // a badged source
        if (r.ok()) pool_add(HandleValue(r.r0), kind);
    }
}

HandleValue new_endpoint() {
    sys::Ret r = maintenance(Sys::EndpointCreate);
    if (!r.ok()) return abi::kNoHandle;
    pool_add(HandleValue(r.r0), Kind::Endpoint);
    return HandleValue(r.r0);
}

HandleValue new_thread(void (*entry)(), uint64_t arg) {
    sys::Ret r = maintenance(Sys::ThreadCreate, 0, reinterpret_cast<uint64_t>(entry), 0, arg);
    if (!r.ok()) return abi::kNoHandle;
    pool_add(HandleValue(r.r0), Kind::Thread);
    return HandleValue(r.r0);
}

// A saved reply of a call from a caller thread on `ep`: the pool's Reply handles.
void save_a_reply(HandleValue ep) {
    for (int i = 0; i < 50; ++i) {
        sys::Ret r = maintenance(Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kNoWait);
        if (r.ok() && abi::MsgInfo::decode(r.r1).call) {
            sys::Ret saved = maintenance(Sys::ReplySave);
            if (saved.ok()) pool_add(HandleValue(saved.r0), Kind::Reply);
            return;
        }
        (void)maintenance(Sys::Yield);
    }
}

// Keeps a few live handles of every kind it can make in the pool: copies
// (random rights and badges) of the canary's endpoint, the modules, the
// served and called endpoints, and fresh endpoints.
void replenish() {
    if (g_canary != abi::kNoHandle && pool_live(Kind::Canary) < 3) {
        mint_into_pool(g_canary, Kind::Canary, 3);
    }
    if (g_modules != abi::kNoHandle && pool_live(Kind::Modules) < 2) {
        mint_into_pool(g_modules, Kind::Modules, 2);
    }
    if (pool_live(Kind::Served) < 4) {
        for (HandleValue ep : g_served) mint_into_pool(ep, Kind::Served, 2);
    }
    if (pool_live(Kind::Called) < 2) mint_into_pool(g_called, Kind::Called, 2);
    if (pool_live(Kind::Endpoint) < 8) {
        HandleValue ep = new_endpoint();
        if (ep != abi::kNoHandle) mint_into_pool(ep, Kind::Endpoint, 2);
    }
}

HandleValue master_endpoint() {
    sys::Ret r = maintenance(Sys::EndpointCreate);
    if (!r.ok()) {
        printf("fuzz: set-up endpoint failed: %s\n", ipc::error_name(r.status));
        exit(3);
    }
    return HandleValue(r.r0);
}

void setup(const abi::StartInfo& start) {
    g_cpu_count = start.cpu_count;
    // Below cpu_count a CPU may be missing (one that started late): ask.
    g_online_cpus = uint64_t(1) << start.cpu;
    for (uint32_t i = 0; i < g_cpu_count; ++i) {
        uint64_t mask = g_online_cpus | (uint64_t(1) << i);
        if (sys::set_affinity(abi::kNoHandle, mask) == abi::Err::Ok) g_online_cpus = mask;
    }
    (void)sys::set_affinity(abi::kNoHandle, uint64_t(1) << start.cpu);
    if (start.handle_count > fuzz::kStartReport) g_report = start.handles[fuzz::kStartReport];
    if (start.handle_count > fuzz::kStartCanary) g_canary = start.handles[fuzz::kStartCanary];
    if (start.handle_count > fuzz::kStartModules) g_modules = start.handles[fuzz::kStartModules];
    g_orig_buffer = ipc::ipc_buffer();
    g_buffer = g_orig_buffer;

    g_text = map(1);
    for (uint64_t i = 0; i < abi::kPageSize; ++i) {
        reinterpret_cast<char*>(g_text)[i] = (i % 32) == 31 ? '\n' : char('a' + (i % 32) % 26);
    }
    g_scratch = map(1);
    g_spare_buffers[0] = map(1);
    g_spare_buffers[1] = map(1);

    // Two endpoints with a responder thread each (they answer every call
    // for good: the fuzzer never closes the masters they serve), one that
    // caller threads call (pending calls and saved replies for the
    // fuzzer), threads that end at once, the pool, and a child.
    g_quiet = master_endpoint();
    fuzz_quiet_endpoint = g_quiet;
    for (HandleValue& ep : g_served) {
        ep = master_endpoint();
        (void)new_thread(&fuzz_thread_responder, ep);
    }
    g_called = master_endpoint();
    for (int i = 0; i < 3; ++i) (void)new_thread(&fuzz_thread_caller, g_called);
    for (int i = 0; i < 2; ++i) save_a_reply(g_called);
    for (int i = 0; i < 2; ++i) (void)new_thread(&fuzz_thread_exit, 0);
    replenish();
    if (g_modules != abi::kNoHandle) {
        abi::SpawnArgs* a = reinterpret_cast<abi::SpawnArgs*>(g_scratch);
        __builtin_memset(static_cast<void*>(a), 0, sizeof *a);
        a->cpu = abi::kAnyCpu;
        __builtin_memcpy(a->module, "pong", 5);
        a->handle_count = 1;
        a->handles[0] = g_served[0];
        a->handle_flags[0] = abi::kTransferCopy;
        Call c{uint64_t(Sys::ProcessSpawn), {g_modules, g_scratch, 0, 0, 0, 0, 0}, 0, false};
        Outcome r = perform(c);
        ++g_maintenance_calls;
        if (r.ret.ok()) after(c, r);  // counted as a child, not as a random call
    }
    // The memory thread (it waits for g_protected_end), with its stack and
    // IPC buffer below the marker.
    g_memory_seed = rnd();
    ipc::Result<ipc::Handle> memory = ipc::start_thread(&memory_thread, nullptr, 8);
    if (!memory) printf("fuzz: no memory thread: %s\n", ipc::error_name(memory.error()));
    g_memory_thread = memory ? memory.value().release() : abi::kNoHandle;
    // Everything mapped so far is the fuzzer's own: a marker page ends it.
    __atomic_store_n(&g_protected_end, map(1) + abi::kPageSize, __ATOMIC_RELEASE);
    for (auto& row : g_hist) {
        for (uint64_t& n : row) n = 0;
    }
    g_ok = 0;
    g_calls_received = 0;
}

void print_histogram() {
    uint64_t total[kErrSlots] = {};
    printf("fuzz: results per syscall (calls: status count...)\n");
    for (unsigned s = 0; s < kSysSlots; ++s) {
        uint64_t n = 0;
        for (unsigned e = 0; e < kErrSlots; ++e) {
            n += g_hist[s][e];
            total[e] += g_hist[s][e];
        }
        if (n == 0) continue;
        char line[512];
        size_t len = format(line, sizeof line, "  %-16s %7lu:", kSysNames[s], n);
        for (unsigned e = 0; e < kErrSlots && len < sizeof line; ++e) {
            if (g_hist[s][e] == 0) continue;
            const char* name = e < kErrSlots - 1 ? ipc::error_name(Err(e)) : "(other)";
            len += format(line + len, sizeof line - len, " %s %lu", name, g_hist[s][e]);
        }
        printf("%s\n", line);
    }
    printf("fuzz: results of all calls:\n");
    for (unsigned e = 0; e < kErrSlots; ++e) {
        if (total[e] == 0) continue;
        printf("  %-16s %8lu\n", e < kErrSlots - 1 ? ipc::error_name(Err(e)) : "(other)", total[e]);
    }
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    uint64_t seed = start.arg != 0 ? start.arg : kDefaultSeed;
    printf("fuzz: seed %#lx (replay: meson configure -Dfuzz_seed=%#lx)\n", seed, seed);
    g_rng = splitmix64(seed);
    if (g_rng == 0) g_rng = 1;
    setup(start);
    printf("fuzz: set up: %u handles in the pool, %u children, memory of its own up to %#lx\n",
           pool_size(), g_child_count, g_protected_end);

    uint64_t t0 = utest::rdtsc();
    uint64_t last = t0;
    while (g_calls < fuzz::kCalls) {
        Call c = gen_call();
        if (g_calls >= kTraceFrom) {
            printf(
                "fuzz: call %lu: nr %#lx%s a0 %#lx a1 %#lx a2 %#lx a3 %#lx a4 %#lx a5 %#lx "
                "a6 %#lx flags %#lx\n",
                g_calls, c.nr, c.vector ? " (int 0x50)" : "", c.a[0], c.a[1], c.a[2], c.a[3],
                c.a[4], c.a[5], c.a[6], c.flags);
        }
        if (is_ipc(c.nr) && !c.vector) randomize_buffer();
        Outcome r = perform(c);
        ++g_calls;
        after(c, r);
        if ((g_calls % 128) == 0) {
            replenish();
            if (g_region_pages > kMaxFuzzPages && g_region_count > 0) {
                region_drop(g_regions[0]);
                region_unmapped(g_regions[0].at, g_regions[0].pages * abi::kPageSize);
            }
        }
        if ((g_calls % kProgressEvery) == 0) {
            uint64_t now = utest::rdtsc();
            printf(
                "fuzz: %lu calls, %lu Ok, %lu anomalies, pool %u/%u live, %lu TSC ticks per "
                "call\n",
                g_calls, g_ok, g_anomalies, pool_live(), pool_size(),
                (now - last) / kProgressEvery);
            last = now;
        }
    }
    uint64_t elapsed = utest::rdtsc() - t0;
    __atomic_store_n(&g_memory_stop, true, __ATOMIC_RELAXED);
    for (int i = 0; i < 100000 && g_memory_thread != abi::kNoHandle &&
                    !__atomic_load_n(&g_memory_done, __ATOMIC_ACQUIRE);
         ++i) {
        (void)maintenance(Sys::Yield, g_memory_thread);
    }

    // Back to a known state: libipc's IPC buffer, the children ended.
    (void)maintenance(Sys::IpcBufferSet, 0, reinterpret_cast<uint64_t>(g_orig_buffer));
    for (unsigned i = 0; i < g_child_count; ++i) {
        (void)maintenance(Sys::ProcessKill, g_children[i]);
    }
    print_histogram();
    printf(
        "fuzz: %lu maintenance calls besides; %u children spawned; %lu calls received from "
        "its caller threads and children; %lu TSC ticks in all; the memory thread made %lu "
        "calls besides\n",
        g_maintenance_calls, g_spawns, g_calls_received, elapsed, g_memory_calls);
    printf("fuzz: %lu syscalls, seed %#lx, %lu anomalies, kernel still up\n", g_calls, seed,
           g_anomalies);
    if (g_report != abi::kNoHandle) {
        sys::Ret r = sys::invoke(Sys::Send, g_report, abi::MsgInfo{fuzz::kLabelReport}.encode(),
                                 g_calls, seed, g_anomalies, g_ok, 10000000000ull);
        if (!r.ok()) printf("fuzz: report: %s\n", ipc::error_name(r.status));
    }
    return g_anomalies == 0 ? 0 : 1;
}
