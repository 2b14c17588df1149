#include "user_kernel.hpp"

#include <algorithm>
#include <cstring>

namespace mk {

namespace testing {

Delivery Delivery::message(uint32_t label, bool call, uint64_t badge, std::vector<uint64_t> words,
                           std::vector<uint8_t> payload, std::vector<abi::HandleValue> handles) {
    Delivery d;
    d.info = abi::MsgInfo{label, uint32_t(payload.size()), uint32_t(handles.size()), call}.encode();
    for (size_t i = 0; i < words.size() && i < abi::kMessageWords; ++i) d.words[i] = words[i];
    d.badge = badge;
    d.payload = std::move(payload);
    d.handles = std::move(handles);
    return d;
}

Delivery Delivery::error(abi::Err e) {
    Delivery d;
    d.status = e;
    return d;
}

void FakeUserKernel::reset() {
    calls.clear();
    deliveries.clear();
    fail_next.clear();
    buffer = nullptr;
    next_handle = 0x100;
    closes_.clear();
}

size_t FakeUserKernel::count(abi::Sys number) const {
    size_t n = 0;
    for (const Syscall& c : calls) n += c.number == number ? 1 : 0;
    return n;
}

const Syscall* FakeUserKernel::last(abi::Sys number) const {
    for (auto it = calls.rbegin(); it != calls.rend(); ++it) {
        if (it->number == number) return &*it;
    }
    return nullptr;
}

int FakeUserKernel::closes(abi::HandleValue h) const {
    auto it = closes_.find(h);
    return it == closes_.end() ? 0 : it->second;
}

size_t FakeUserKernel::total_closes() const {
    size_t n = 0;
    for (const auto& [h, c] : closes_) n += size_t(c);
    return n;
}

sys::Ret FakeUserKernel::invoke(abi::Sys number, const uint64_t (&a)[7]) {
    Syscall rec{number, {a[0], a[1], a[2], a[3], a[4], a[5], a[6]}, {}, {}, {}};
    bool sends = number == abi::Sys::Call || number == abi::Sys::Send ||
                 number == abi::Sys::Reply || number == abi::Sys::ReplyRecv;
    if (sends && buffer != nullptr) {
        abi::MsgInfo info = abi::MsgInfo::decode(a[1]);
        for (uint32_t i = 0; i < info.length && i < abi::kMaxPayload; ++i) {
            rec.payload.push_back(buffer->payload[i]);
        }
        for (uint32_t i = 0; i < info.handles && i < abi::kMaxHandles; ++i) {
            rec.handles.push_back(buffer->handles[i]);
            rec.flags.push_back(buffer->handle_flags[i]);
        }
    }
    calls.push_back(rec);

    sys::Ret r{abi::Err::Ok, 0, 0, {0, 0, 0, 0}};
    if (auto it = fail_next.find(number); it != fail_next.end()) {
        r.status = it->second;
        fail_next.erase(it);
        return r;
    }
    switch (number) {
        case abi::Sys::HandleClose:
            r.status = ++closes_[abi::HandleValue(a[0])] == 1 ? abi::Err::Ok : abi::Err::BadHandle;
            break;
        case abi::Sys::EndpointCreate:
        case abi::Sys::HandleMint:
        case abi::Sys::ReplySave:
        case abi::Sys::ThreadCreate:
            r.r0 = next_handle++;
            break;
        case abi::Sys::IpcBufferSet:
            buffer = reinterpret_cast<abi::IpcBuffer*>(a[1]);
            break;
        case abi::Sys::Call:
        case abi::Sys::Recv:
        case abi::Sys::ReplyRecv: {
            if (deliveries.empty()) {  // nobody left to talk to
                r.status = abi::Err::Destroyed;
                break;
            }
            Delivery d = std::move(deliveries.front());
            deliveries.pop_front();
            r.status = d.status;
            if (d.status != abi::Err::Ok) break;
            r.r0 = d.badge;
            r.r1 = d.info;
            for (unsigned i = 0; i < abi::kMessageWords; ++i) r.words[i] = d.words[i];
            if (buffer != nullptr && !d.payload.empty()) {
                std::memcpy(buffer->payload, d.payload.data(),
                            std::min<size_t>(d.payload.size(), abi::kMaxPayload));
            }
            if (buffer != nullptr) {
                for (size_t i = 0; i < d.handles.size() && i < abi::kMaxHandles; ++i) {
                    buffer->handles[i] = d.handles[i];
                }
            }
            break;
        }
        default:
            break;
    }
    return r;
}

FakeUserKernel& fake_user_kernel() {
    static FakeUserKernel k;
    return k;
}

}  // namespace testing

namespace sys {

Ret invoke(abi::Sys number, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
           uint64_t a5, uint64_t a6) {
    const uint64_t a[7] = {a0, a1, a2, a3, a4, a5, a6};
    return testing::fake_user_kernel().invoke(number, a);
}

}  // namespace sys

}  // namespace mk
