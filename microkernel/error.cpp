#include "error.hpp"

namespace mk {

const char* error_name(Error e) {
    switch (e) {
        case Error::None:
            return "none";
        case Error::OutOfMemory:
            return "out of memory";
        case Error::InvalidArgument:
            return "invalid argument";
        case Error::BadHandle:
            return "bad handle";
        case Error::NoRights:
            return "no rights";
        case Error::WouldBlock:
            return "would block";
        case Error::TimedOut:
            return "timed out";
        case Error::Destroyed:
            return "destroyed";
        case Error::PeerDied:
            return "peer died";
        case Error::BadState:
            return "bad state";
        case Error::TooLarge:
            return "too large";
        case Error::Unsupported:
            return "unsupported";
        case Error::Interrupted:
            return "interrupted";
        case Error::LimitReached:
            return "limit reached";
    }
    return "unknown";
}

}  // namespace mk
