// What a program started by init finds in its StartInfo: the servers'
// handles, always in the same slots, and an argument string of words.
//
//   int main(uint64_t arg) {
//       const abi::StartInfo& start = services::start_info(arg);
//       services::Services s = services::take(start);
//       Result<pipe::Pipe> p = pipe::create(s.pipe);
//
// A program started through the process server (mk/proc.hpp) finds its
// own handle to that server in slot kProc; init's programs and theirs get
// the pipe and port servers' service handles in kPipe and kPort.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mk/abi.hpp"
#include "mk/ipc.hpp"
#include "mk/user_heap.hpp"

namespace mk::services {

using ipc::Result;

enum Slot : unsigned {
    kProc = 0,   // this process's handle to the process server (mk/proc.hpp)
    kPipe = 1,   // the pipe server's service handle (mk/pipe.hpp)
    kPort = 2,   // the completion-port server's service handle (mk/port.hpp)
    kCount = 3,  // handles a program gets after these are its own
};

// The deferred replies one server keeps at once, over all its objects and
// clients: each is a handle in its table, where the kernel allows 1,024
// (docs/syscalls.md), and it needs room for the handles it mints. A
// request that would have to wait past it gets LimitReached. (A caller
// that timed out or died leaves its entry until the server tries to answer
// it; the per-object bounds evict the oldest such entries first.)
constexpr size_t kMaxDeferred = 512;

// Every server answers kStats on any handle to it: Ok, words
// 0-2 counts of what it holds (docs/servers.md says which, per server),
// word 3 the blocks live in its heap. A leak check: after clients come and
// go, the counts are 0 and the heap is back where it was.
constexpr uint32_t kStats = 0xFFF0;

// A server's kStats answer: its three counts and its heap's live blocks
// (user programs only: the heap is libipc's malloc).
inline ipc::Message stats_reply(uint64_t a, uint64_t b, uint64_t c) {
    return ipc::Message(ipc::kStatusOk)
        .set_word(0, a)
        .set_word(1, b)
        .set_word(2, c)
        .set_word(3, heap_live_blocks());
}

struct Services {
    ipc::Endpoint proc;
    ipc::Endpoint pipe;
    ipc::Endpoint port;
};

inline const abi::StartInfo& start_info(uint64_t arg) {
    return *reinterpret_cast<const abi::StartInfo*>(arg);
}

// The service handles of `start` (those it has; the others stay empty),
// owned by the returned Services from now on.
Services take(const abi::StartInfo& start);

// A handle passed to a new program: moved (it leaves the caller) or copied
// (needs Duplicate on it).
struct Passed {
    abi::HandleValue value;
    bool copy = true;
};

struct Spawned {
    ipc::Handle process;  // Manage: ProcessKill
    uint64_t pid = 0;
};

// Starts boot module `module` (sys ProcessSpawn through `starter`, the
// boot modules with Manage: init and the process server hold them; other
// programs use proc::spawn) with argument string `args` (at most
// abi::kArgsMax - 1 characters, else TooLarge), `arg`, the handles in
// `handles` in that order, and `supervisor` (an endpoint with Send, or
// kNoHandle) to receive its kLabelChildDied notice, on CPU `cpu`
// (abi::SpawnArgs::cpu). InvalidArgument for a module name that does not
// fit, more than abi::kMaxStartHandles handles, or a CPU that is not there.
Result<Spawned> spawn(abi::HandleValue starter, const char* module, const char* args,
                      uint64_t arg = 0, const Passed* handles = nullptr, uint32_t count = 0,
                      abi::HandleValue supervisor = abi::kNoHandle, uint32_t cpu = abi::kAnyCpu);

// The value of the word `key=value` in an argument string (words separated
// by spaces), copied NUL-terminated into out[0..size); false when there is
// no such word or its value does not fit.
bool arg_value(const char* args, const char* key, char* out, size_t size);

}  // namespace mk::services
