// A fake kernel under libipc on the host: sys::invoke() lands here
// (mk/sys.hpp, MK_HOST). It records every syscall with what the IPC buffer
// held, delivers scripted messages to receives, hands out handle values and
// counts how often each is closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "mk/abi.hpp"
#include "mk/sys.hpp"

namespace mk::testing {

struct Syscall {
    abi::Sys number;
    uint64_t a[7];
    // Sends (Call, Send, Reply, ReplyRecv): the payload and handles the
    // buffer held for this message, as the info word bounds them.
    std::vector<uint8_t> payload;
    std::vector<abi::HandleValue> handles;
    std::vector<uint32_t> flags;

    abi::MsgInfo info() const { return abi::MsgInfo::decode(a[1]); }
    uint32_t label() const { return info().label; }
    uint64_t word(unsigned i) const { return a[2 + i]; }
};

// What the next Call, Recv or ReplyRecv returns.
struct Delivery {
    abi::Err status = abi::Err::Ok;
    uint64_t info = 0;  // taken as is: tests may send malformed ones
    uint64_t words[abi::kMessageWords] = {};
    uint64_t badge = 0;
    std::vector<uint8_t> payload;           // written to the registered buffer
    std::vector<abi::HandleValue> handles;  // likewise

    // A well-formed message: label, words, payload and handles as given.
    static Delivery message(uint32_t label, bool call, uint64_t badge = 0,
                            std::vector<uint64_t> words = {}, std::vector<uint8_t> payload = {},
                            std::vector<abi::HandleValue> handles = {});
    static Delivery error(abi::Err e);
};

class FakeUserKernel {
  public:
    void reset();
    sys::Ret invoke(abi::Sys number, const uint64_t (&a)[7]);

    size_t count(abi::Sys number) const;
    // The last syscall with that number (null if none).
    const Syscall* last(abi::Sys number) const;
    int closes(abi::HandleValue h) const;
    size_t total_closes() const;

    std::vector<Syscall> calls;
    std::deque<Delivery> deliveries;
    // One-shot failures: the next syscall with that number fails so.
    std::map<abi::Sys, abi::Err> fail_next;
    abi::IpcBuffer* buffer = nullptr;  // as IpcBufferSet registered it
    abi::HandleValue next_handle = 0x100;

  private:
    std::map<abi::HandleValue, int> closes_;
};

FakeUserKernel& fake_user_kernel();

}  // namespace mk::testing
