// A client for the user tests. Start handle 0: an endpoint (maybe badged).
// mode 1 (arg word 0 of StartInfo::arg): send {label 1, word 0 = the badge it
// claims (arg >> 8), word 1 = the status of minting its handle with another
// badge}. mode 2: call {label 2, word 0 = arg >> 8} and send {label 5,
// word 0 = 1 if the reply was word 0 + 1}.
#include "common.hpp"

using namespace mk;
using utest::Result;

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    ipc::Endpoint ep(start.handles[0]);
    uint64_t mode = start.arg & 0xFF;
    uint64_t value = start.arg >> 8;
    if (mode == 1) {
        sys::Ret m = sys::invoke(abi::Sys::HandleMint, ep.get(), abi::kRightSend, 0x999);
        return ipc::send(ep, ipc::Message(1).set_word(0, value).set_word(1, uint64_t(m.status)))
                       .ok()
                   ? 0
                   : 1;
    }
    Result<ipc::Received> r = ipc::call(ep, ipc::Message(2).set_word(0, value));
    bool ok = r && r.value().message.word(0) == value + 1;
    return ipc::send(ep, ipc::Message(5).set_word(0, ok ? 1 : 0)).ok() ? 0 : 1;
}
