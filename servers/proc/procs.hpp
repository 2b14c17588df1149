// The process server's state machine (docs/servers.md, "proc"): who is
// whose child, who has ended with what status, and who waits in wait4.
// It issues no syscall: main.cpp reserves a record before it spawns a
// child, reports the spawn (or its failure), hands it wait4 requests and
// the kernel's death notices, and deferred wait4 replies go out through the
// Reply objects it was handed (tests/unit/proc_server_test.cpp drives it
// with fakes).
//
// Records are named by Slots ids; a process's handle to the server carries
// proc::client_badge(id), its death notice proc::supervisor_badge(id). init
// is record 0 (the unbadged handle), never freed: it adopts the children of
// every process that dies before them, and reaps them.
//
// Invariants, after every request and notice:
//   - a zombie is kept until its parent reaps it (wait4), then freed;
//   - a waiter waits only while none of its matching children is a zombie;
//   - every record's parent is a live record (init when its own parent died).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "mk/containers.hpp"
#include "mk/proc.hpp"
#include "mk/server.hpp"
#include "mk/services.hpp"

namespace mk::proc_server {

using ipc::Message;
using ipc::Response;
using ipc::Result;

constexpr uint64_t kInit = 0;  // init's record id (badge 0)

// The module name and the argument string of a kSpawn payload: two
// NUL-terminated strings, the name not empty, each within its bound
// (abi::kModuleNameMax, abi::kArgsMax, NUL included), and nothing after
// them. Both point into the message.
inline bool parse_spawn(const Message& m, const char** module, const char** args) {
    const auto* p = reinterpret_cast<const char*>(m.payload());
    size_t n = m.length();
    size_t i = 0;
    while (i < n && i < abi::kModuleNameMax && p[i] != '\0') ++i;
    if (i == 0 || i >= n || i >= abi::kModuleNameMax) return false;
    size_t a = i + 1;
    size_t j = a;
    while (j < n && j - a < abi::kArgsMax && p[j] != '\0') ++j;
    if (j >= n || j - a >= abi::kArgsMax || j + 1 != n) return false;
    *module = p;
    *args = p + a;
    return true;
}

// kSpawn's flags (word 1) and the child's CPU (word 2 with kSpawnOnCpu,
// else abi::kAnyCpu): false for an unknown flag or a CPU word that is
// not a CPU index (the kernel refuses a CPU that is not there).
inline bool parse_spawn_flags(const Message& m, uint64_t* flags, uint32_t* cpu) {
    *flags = m.word(1);
    *cpu = abi::kAnyCpu;
    if ((*flags & ~(proc::kSpawnRaw | proc::kSpawnOnCpu)) != 0) return false;
    if ((*flags & proc::kSpawnOnCpu) != 0) {
        if (m.word(2) >= abi::kAnyCpu) return false;
        *cpu = uint32_t(m.word(2));
    }
    return true;
}

template <typename Reply>
class Procs {
  public:
    struct Stats {
        size_t processes = 0;  // records besides init's, live or zombie
        size_t zombies = 0;
        size_t waiters = 0;  // wait4 calls waiting, init's included
    };

    // A record for a child of the process that sent `badge` (its handle's
    // badge), about to be spawned: its id, or 0 when the badge names no
    // live process (BadHandle) or kMaxProcs are kept (LimitReached), with
    // the error in *error.
    uint64_t reserve(uint64_t badge, abi::Err* error) {
        uint64_t parent = 0;
        if (!client(badge, &parent)) {
            *error = abi::Err::BadHandle;
            return 0;
        }
        uint64_t id = procs_.create(parent);
        if (id == 0) *error = procs_.full() ? abi::Err::LimitReached : abi::Err::OutOfMemory;
        return id;
    }
    // The spawn of reserved record `id` succeeded: the child is `pid`.
    void spawned(uint64_t id, uint64_t pid) {
        if (Proc* p = procs_.find(id)) p->pid = pid;
    }
    // The spawn of reserved record `id` failed: the record goes.
    void cancel(uint64_t id) { procs_.destroy(id); }

    template <typename Req>
    Response wait(Req& req) {
        uint64_t self_id = 0;
        if (!client(req.badge(), &self_id)) return abi::Err::BadHandle;
        if (!req.expects_reply()) return abi::Err::InvalidArgument;
        uint64_t pid = req.message().word(0);
        uint64_t options = req.message().word(1);
        if ((options & ~proc::kWaitNoHang) != 0) return abi::Err::InvalidArgument;
        bool any_match = false;
        uint64_t zombie = 0;
        uint64_t oldest = UINT64_MAX;
        procs_.for_each([&](uint64_t id, const Proc& c) {
            if (c.parent != self_id || c.pid == 0 || (pid != 0 && c.pid != pid)) return;
            any_match = true;
            if (c.zombie && c.death < oldest) {
                oldest = c.death;
                zombie = id;
            }
        });
        if (!any_match) return abi::Err(proc::kNoChild);
        if (zombie != 0) return reap(zombie);
        if ((options & proc::kWaitNoHang) != 0) return exited(0, 0);
        Proc* self = record(self_id);
        bool evict = self->waiters.size() >= proc::kMaxWaiters;
        if (!evict && stats().waiters >= services::kMaxDeferred) return abi::Err::LimitReached;
        Result<Reply> r = req.defer();
        if (!r) return r.error();
        if (evict) (void)self->waiters.pop_front().reply.fail(abi::Err(proc::kWaitEvicted));
        Waiter w{std::move(r).value(), pid};
        if (!self->waiters.push_back(std::move(w))) {
            (void)w.reply.fail(abi::Err::OutOfMemory);
        }
        return Response::deferred();
    }

    // The kernel's kLabelChildDied notice: `badge` its supervisor badge,
    // `status` the status it carried.
    void died(uint64_t badge, uint64_t status) {
        if ((badge & proc::kSupervisorBit) == 0) return;
        uint64_t id = proc::id_of(badge);
        Proc* c = procs_.find(id);
        if (c == nullptr || c->zombie || id == kInit) return;  // not ours, or told twice
        c->zombie = true;
        c->status = status;
        c->death = ++deaths_;
        c->waiters.clear();  // its own wait4 calls: its threads are gone
        // Its children are init's now; the zombies among them init reaps.
        procs_.for_each([&](uint64_t child_id, Proc& child) {
            if (child.parent != id) return;
            child.parent = kInit;
            if (child.zombie) offer(child_id);
        });
        offer(id);
    }

    Stats stats() const {
        Stats s;
        s.waiters = init_.waiters.size();
        procs_.for_each([&s](uint64_t, const Proc& p) {
            ++s.processes;
            if (p.zombie) ++s.zombies;
            s.waiters += p.waiters.size();
        });
        return s;
    }

    // The record of the child `pid` (0 if there is none): for the tests.
    uint64_t id_of_pid(uint64_t pid) const {
        uint64_t found = 0;
        procs_.for_each([&](uint64_t id, const Proc& p) {
            if (p.pid == pid) found = id;
        });
        return found;
    }

  private:
    struct Waiter {
        Reply reply;
        uint64_t pid;  // 0: any child
    };
    struct Proc {
        explicit Proc(uint64_t parent_id = kInit) : parent(parent_id) {}
        uint64_t parent;
        uint64_t pid = 0;  // 0 until spawned
        bool zombie = false;
        uint64_t status = 0;
        uint64_t death = 0;  // the order of deaths: the oldest is reaped first
        Fifo<Waiter> waiters;
    };

    // The live record a client badge names (init's for badge 0).
    bool client(uint64_t badge, uint64_t* id) const {
        if ((badge & proc::kSupervisorBit) != 0) return false;
        uint64_t i = proc::id_of(badge);
        if (i != kInit) {
            const Proc* p = procs_.find(i);
            if (p == nullptr || p->zombie || p->pid == 0) return false;
        }
        *id = i;
        return true;
    }

    Proc* record(uint64_t id) { return id == kInit ? &init_ : procs_.find(id); }

    static Message exited(uint64_t pid, uint64_t status) {
        return Message(ipc::kStatusOk).set_word(0, pid).set_word(1, status);
    }

    Message reap(uint64_t id) {
        Proc* c = procs_.find(id);
        Message m = exited(c->pid, c->status);
        procs_.destroy(id);
        return m;
    }

    // Zombie `id` to its parent's oldest matching waiter, if any (one that
    // is gone takes nothing: the next one is tried).
    void offer(uint64_t id) {
        Proc* c = procs_.find(id);
        Proc* parent = record(c->parent);
        bool done = false;
        uint64_t pid = c->pid;
        uint64_t status = c->status;
        parent->waiters.extract_if(
            [&](const Waiter& w) { return !done && (w.pid == 0 || w.pid == pid); },
            [&](Waiter&& w) {
                Message m = exited(pid, status);
                done = w.reply.send(m).ok();
            });
        if (done) procs_.destroy(id);
    }

    Proc init_{kInit};
    Slots<Proc, proc::kMaxProcs> procs_;
    uint64_t deaths_ = 0;
};

}  // namespace mk::proc_server
