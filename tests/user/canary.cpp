// The canary of the syscall fuzzer: serves its start endpoint for as long
// as the system runs, answering every call with a checksum of its words
// (fuzz::canary_checksum), so the driver can tell that it still works while
// and after the fuzzer hammers the kernel. The fuzzer holds a send handle to
// it too, so it also takes the fuzzer's random messages: plain sends, long
// payloads, handles (closed at once, so they cannot fill its table).
//
// Raw syscalls only: nothing here may depend on what a message looks like.
#include "common.hpp"
#include "fuzz.hpp"

using namespace mk;

namespace {

void close_received(const abi::IpcBuffer* buffer, uint64_t info) {
    abi::MsgInfo in = abi::MsgInfo::decode(info);
    if (buffer == nullptr) return;  // no buffer: the kernel closed them already
    for (uint32_t i = 0; i < in.handles && i < abi::kMaxHandles; ++i) {
        if (buffer->handles[i] != abi::kNoHandle) {
            (void)sys::invoke(abi::Sys::HandleClose, buffer->handles[i]);
        }
    }
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    if (start.handle_count < 1) {
        printf("canary: no endpoint to serve\n");
        return 1;
    }
    const abi::HandleValue ep = start.handles[0];
    const abi::IpcBuffer* buffer = ipc::ipc_buffer();
    uint64_t served = 0;
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
    for (;;) {
        if (!r.ok()) {
            printf("canary: receive failed: %s\n", ipc::error_name(r.status));
            return 2;
        }
        close_received(buffer, r.r1);
        ++served;
        if (!abi::MsgInfo::decode(r.r1).call) {
            r = sys::invoke(abi::Sys::Recv, ep, 0, 0, 0, 0, 0, abi::kForever);
            continue;
        }
        uint64_t sum = fuzz::canary_checksum(r.words[0], r.words[1], r.words[2], r.words[3]);
        // A caller that gave up meanwhile (its timeout) only loses the answer.
        r = sys::invoke(abi::Sys::ReplyRecv, ep, abi::MsgInfo{fuzz::kLabelCanary}.encode(), sum,
                        served, 0, 0, abi::kForever);
    }
}
