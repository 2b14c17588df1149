// An echo server on raw syscalls (no libipc message objects): the kernel's
// own cost of a call/reply_recv round trip, for the user tests' measurement.
#include "common.hpp"

using namespace mk;

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    uint64_t ep = start.handles[0];
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
    while (r.ok() && abi::MsgInfo::decode(r.r1).label != 0xFFFF) {
        r = sys::invoke(abi::Sys::ReplyRecv, ep, abi::MsgInfo{0, 0, 0, false}.encode(),
                        r.words[0] + 1, r.words[1], r.words[2], r.words[3], abi::kForever);
    }
    if (r.ok()) sys::invoke(abi::Sys::Reply, 0, 0);
    return 0;
}
