// The process client API (mk/proc.hpp): calls to the process server.
#include "mk/proc.hpp"

#include "mk/format.hpp"
#include "mk/sys.hpp"

namespace mk::proc {

using ipc::Endpoint;
using ipc::Handle;
using ipc::Message;
using ipc::Received;

namespace {

Result<Child> request_spawn(const Endpoint& proc, const char* module, const char* args,
                            uint64_t arg, uint64_t flags, uint32_t cpu, Message& m) {
    size_t n = 0;
    while (module[n] != '\0') ++n;
    if (n == 0 || n >= abi::kModuleNameMax) return abi::Err::InvalidArgument;
    m.append(module, n + 1);
    n = 0;
    while (args != nullptr && args[n] != '\0') ++n;
    if (n >= abi::kArgsMax) return abi::Err::TooLarge;
    m.append(args != nullptr ? args : "", n + 1);
    if (cpu != abi::kAnyCpu) {
        flags |= kSpawnOnCpu;
        m.set_word(2, cpu);
    }
    m.set_word(0, arg).set_word(1, flags);
    Result<Received> r = ipc::call(proc, m);
    if (!r) return r.error();
    if (abi::Err e = ipc::reply_status(r->message); e != abi::Err::Ok) return e;
    Child c{r->message.take_handle(0), r->message.word(0)};
    if (!c.process.valid()) return abi::Err::BadState;  // not what the server sends
    return c;
}

// Moves `count` handles out of `handles` into `m` (they go back on failure).
void move_in(Message& m, Handle* handles, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) m.move_handle(std::move(handles[i]));
}

// A failed call left the moved handles in the message, from index
// `first`: give them back.
void give_back(Message& m, uint32_t first, Handle* handles, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) handles[i] = m.take_handle(first + i);
}

}  // namespace

Result<Child> spawn(const services::Services& s, const char* module, const char* args, uint64_t arg,
                    Handle* extra, uint32_t extra_count, uint32_t cpu) {
    if (!s.proc.valid() || !s.pipe.valid() || !s.port.valid()) return abi::Err::BadState;
    if (extra_count > abi::kMaxHandles - 2) return abi::Err::TooLarge;
    Message m(kSpawn);
    m.copy_handle(s.pipe).copy_handle(s.port);
    move_in(m, extra, extra_count);
    Result<Child> c = request_spawn(s.proc, module, args, arg, 0, cpu, m);
    if (!c) give_back(m, 2, extra, extra_count);
    return c;
}

Result<Child> spawn_raw(const Endpoint& proc, const char* module, const char* args, uint64_t arg,
                        Handle* handles, uint32_t count, uint32_t cpu) {
    if (count > abi::kMaxHandles) return abi::Err::TooLarge;
    Message m(kSpawn);
    move_in(m, handles, count);
    Result<Child> c = request_spawn(proc, module, args, arg, kSpawnRaw, cpu, m);
    if (!c) give_back(m, 0, handles, count);
    return c;
}

Result<Exited> wait4(const Endpoint& proc, uint64_t pid, uint64_t options) {
    Result<Received> r = ipc::call(proc, Message(kWait).set_word(0, pid).set_word(1, options));
    // Pushed out by newer waits of this process (kMaxWaiters): ask again.
    while (r && ipc::reply_status(r->message) == abi::Err(kWaitEvicted)) {
        r = ipc::call(proc, Message(kWait).set_word(0, pid).set_word(1, options));
    }
    if (!r) return r.error();
    if (abi::Err e = ipc::reply_status(r->message); e != abi::Err::Ok) return e;
    return Exited{r->message.word(0), r->message.word(1)};
}

const char* describe(uint64_t status, char* buf, size_t size) {
    if (faulted(status)) {
        format(buf, size, "died of exception %u", fault_vector(status));
    } else if (killed(status)) {
        format(buf, size, "was killed");
    } else {
        format(buf, size, "exited with status %u", exit_code(status));
    }
    return buf;
}

void exit(uint32_t status) {
    sys::process_exit(status);
}

}  // namespace mk::proc
