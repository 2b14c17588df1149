// The start-handle convention and argument words (mk/services.hpp).
#include "mk/services.hpp"

#include "mk/sys.hpp"

namespace mk::services {

Services take(const abi::StartInfo& start) {
    Services s;
    uint32_t n = start.handle_count;
    if (n > kProc) s.proc = ipc::Endpoint(start.handles[kProc]);
    if (n > kPipe) s.pipe = ipc::Endpoint(start.handles[kPipe]);
    if (n > kPort) s.port = ipc::Endpoint(start.handles[kPort]);
    return s;
}

Result<Spawned> spawn(abi::HandleValue starter, const char* module, const char* args, uint64_t arg,
                      const Passed* handles, uint32_t count, abi::HandleValue supervisor,
                      uint32_t cpu) {
    abi::SpawnArgs a{};
    size_t n = 0;
    for (; module[n] != '\0'; ++n) {
        if (n + 1 >= abi::kModuleNameMax) return abi::Err::InvalidArgument;
        a.module[n] = module[n];
    }
    for (n = 0; args != nullptr && args[n] != '\0'; ++n) {
        if (n + 1 >= abi::kArgsMax) return abi::Err::TooLarge;
        a.args[n] = args[n];
    }
    if (count > abi::kMaxStartHandles) return abi::Err::InvalidArgument;
    a.arg = arg;
    a.handle_count = count;
    for (uint32_t i = 0; i < count; ++i) {
        a.handles[i] = handles[i].value;
        a.handle_flags[i] = handles[i].copy ? abi::kTransferCopy : abi::kTransferMove;
    }
    a.supervisor = supervisor;
    a.cpu = cpu;
    sys::Ret r = sys::invoke(abi::Sys::ProcessSpawn, starter, reinterpret_cast<uint64_t>(&a));
    if (!r.ok()) return r.status;
    return Spawned{ipc::Handle(abi::HandleValue(r.r0)), r.r1};
}

bool arg_value(const char* args, const char* key, char* out, size_t size) {
    size_t key_length = 0;
    while (key[key_length] != '\0') ++key_length;
    const char* p = args;
    while (*p != '\0') {
        while (*p == ' ') ++p;
        const char* word = p;
        while (*p != '\0' && *p != ' ') ++p;
        size_t length = size_t(p - word);
        bool match = length > key_length && word[key_length] == '=';
        for (size_t i = 0; match && i < key_length; ++i) match = word[i] == key[i];
        if (!match) continue;
        size_t value_length = length - key_length - 1;
        if (value_length + 1 > size) return false;
        for (size_t i = 0; i < value_length; ++i) out[i] = word[key_length + 1 + i];
        out[value_length] = '\0';
        return true;
    }
    return false;
}

}  // namespace mk::services
