// The pipe server's state machine (servers/pipe/pipes.hpp): reads and
// writes, waiting readers and writers in arrival order, backpressure, EOF
// only after the last write end's notice, broken pipes, callers that die
// while they wait, and every bad request getting a clear error.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "pipe/pipes.hpp"
#include "server_fakes.hpp"

namespace mk::servers_test {
namespace {

using Pipes = pipe_server::Pipes<FakeReply>;
using pipe::badge_of;

// Every test runs twice: with reads and small writes through the
// handlers (read(), write(): Requests and Messages, what the routes get),
// and through the register lane the server's loop tries first
// (small_read(), small_write(): the words alone, mk/server.hpp), which must
// answer every request the same way.
class PipeServerTest : public ::testing::TestWithParam<bool> {
  protected:
    bool lane() const { return GetParam(); }

    // A register-only call (no payload) as the server's loop takes it with
    // lane(): small(req, words, out) first; what it leaves General goes to
    // the handler, as through the routes. Otherwise, the handler.
    template <typename Small, typename Handler>
    CallRef issue_call(Small small, Handler handler, Message&& m, uint64_t badge, bool call) {
        if (!lane() || !call || m.length() != 0) return issue(handler, std::move(m), badge, call);
        CallRef state = std::make_shared<CallState>();
        uint64_t words[abi::kMessageWords];
        for (unsigned i = 0; i < abi::kMessageWords; ++i) words[i] = m.word(i);
        FakeRequest req(std::move(m), badge, true, state);
        ipc::RegisterReply out;
        ipc::Lane taken = small(req, words, out);
        if (taken == ipc::Lane::General) {
            EXPECT_FALSE(state->deferred);  // it did nothing
            Response r = handler(req);
            EXPECT_EQ(r.is_deferred(), state->deferred);
            if (!r.is_deferred()) state->take(r.message());
            return state;
        }
        EXPECT_EQ(taken == ipc::Lane::Deferred, state->deferred);
        if (taken == ipc::Lane::Answered) {
            Message a(out.label);
            for (unsigned i = 0; i < abi::kMessageWords; ++i) a.set_word(i, out.words[i]);
            state->take(a);
        }
        return state;
    }
    CallRef issue_read(Message&& m, uint64_t badge, bool call = true) {
        return issue_call([this](FakeRequest& r, const uint64_t(&w)[abi::kMessageWords],
                                 ipc::RegisterReply& o) { return pipes_.small_read(r, w, o); },
                          [this](FakeRequest& r) { return pipes_.read(r); }, std::move(m), badge,
                          call);
    }
    CallRef issue_write(Message&& m, uint64_t badge, bool call = true) {
        return issue_call([this](FakeRequest& r, const uint64_t(&w)[abi::kMessageWords],
                                 ipc::RegisterReply& o) { return pipes_.small_write(r, w, o); },
                          [this](FakeRequest& r) { return pipes_.write(r); }, std::move(m), badge,
                          call);
    }

    void SetUp() override {
        id_ = pipes_.create();
        ASSERT_NE(id_, 0u);
        rd_ = badge_of(id_, false);
        wr_ = badge_of(id_, true);
    }

    CallRef read(uint64_t want, uint64_t badge = 0, bool call = true) {
        return issue_read(Message(pipe::kRead).set_word(0, want), badge != 0 ? badge : rd_, call);
    }
    CallRef write(const std::string& bytes, uint64_t badge = 0, bool call = true) {
        return issue_write(Message(pipe::kWrite).append(bytes.data(), bytes.size()),
                           badge != 0 ? badge : wr_, call);
    }
    // A small write, its bytes in the message's words.
    CallRef write_inline(const std::string& bytes, uint64_t badge = 0) {
        Message m(pipe::kWrite);
        pipe::set_inline(m, bytes.data(), bytes.size());
        return issue_write(std::move(m), badge != 0 ? badge : wr_);
    }
    // The bytes a read's reply carries, in its words or as its payload
    // (pipe::take_bytes, as the client reads them).
    static std::string data(const CallRef& r) {
        if (r->payload.empty()) {
            EXPECT_LE(r->words[0], pipe::kInlineBytes);
            std::string out(r->words[0], '\0');
            for (size_t i = 0; i < out.size(); ++i)
                out[i] = char(r->words[1 + i / 8] >> (8 * (i % 8)));
            return out;
        }
        EXPECT_EQ(r->words[0], r->payload.size());
        return r->payload;
    }
    // A read that must be answered at once with `bytes`.
    void expect_read(uint64_t want, const std::string& bytes) {
        CallRef r = read(want);
        ASSERT_TRUE(r->ok());
        EXPECT_EQ(data(r), bytes);
        EXPECT_EQ(r->words[0], bytes.size());
    }
    static bool is_eof(const CallRef& r) {
        return r->ok() && r->payload.empty() && r->words[0] == 0;
    }
    static bool wrote(const CallRef& r, size_t n) { return r->ok() && r->words[0] == n; }

    Pipes pipes_;
    uint64_t id_ = 0;
    uint64_t rd_ = 0;
    uint64_t wr_ = 0;
};

// Small writes carry their bytes in the message's words, small reads get
// them back there (the pipe ping-pong's byte rides in registers both ways);
// a larger read gets them as its payload. Either way word 0 is the count.
TEST_P(PipeServerTest, SmallReadsAndWritesCarryTheirBytesInTheWords) {
    EXPECT_TRUE(wrote(write_inline("x"), 1));
    EXPECT_TRUE(wrote(write_inline(std::string(pipe::kInlineBytes, 'y')), pipe::kInlineBytes));
    CallRef small = read(1);
    ASSERT_TRUE(small->ok());
    EXPECT_TRUE(small->payload.empty());  // in the words
    EXPECT_EQ(data(small), "x");
    CallRef large = read(pipe::kInlineBytes + 1);
    ASSERT_TRUE(large->ok());
    EXPECT_EQ(large->payload, std::string(pipe::kInlineBytes, 'y'));  // as the payload
    // A waiting small read is answered in the words too.
    CallRef waiting = read(8);
    EXPECT_TRUE(waiting->waiting());
    EXPECT_TRUE(wrote(write("abc"), 3));
    ASSERT_TRUE(waiting->ok());
    EXPECT_TRUE(waiting->payload.empty());
    EXPECT_EQ(data(waiting), "abc");
    // And what take_bytes() makes of each, as the client reads them.
    uint8_t buf[abi::kMaxPayload];
    Message m(ipc::kStatusOk);
    pipe::set_inline(m, "hi", 2);
    EXPECT_EQ(pipe::take_bytes(m, buf, sizeof buf), 2);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 2), "hi");
    EXPECT_EQ(pipe::take_bytes(m, buf, 1), -1);  // more than asked for
}

// A small write that says zero bytes, or more than the words hold, is
// refused with nothing written.
TEST_P(PipeServerTest, ABadSmallWriteIsRefused) {
    for (uint64_t n : {uint64_t(0), uint64_t(pipe::kInlineBytes + 1), ~uint64_t(0)}) {
        Message m(pipe::kWrite);
        m.set_word(0, n);
        CallRef r = issue_write(std::move(m), wr_);
        EXPECT_EQ(r->status(), abi::Err::InvalidArgument) << n;
    }
    EXPECT_EQ(pipes_.buffered(id_), 0u);
}

TEST_P(PipeServerTest, BytesComeOutInTheOrderTheyWentIn) {
    EXPECT_TRUE(wrote(write("hello, "), 7));
    EXPECT_TRUE(wrote(write("world"), 5));
    EXPECT_EQ(pipes_.buffered(id_), 12u);
    expect_read(3, "hel");
    expect_read(100, "lo, world");  // min(requested, available)
    EXPECT_EQ(pipes_.buffered(id_), 0u);
}

TEST_P(PipeServerTest, AReadOnAnEmptyPipeWaitsAndTheNextWriteAnswersIt) {
    CallRef r = read(16);
    EXPECT_TRUE(r->waiting());
    EXPECT_EQ(pipes_.stats().readers_waiting, 1u);
    CallRef w = write("abc");
    EXPECT_TRUE(wrote(w, 3));
    ASSERT_TRUE(r->ok());
    EXPECT_EQ(data(r), "abc");
    EXPECT_EQ(pipes_.buffered(id_), 0u);
    EXPECT_EQ(pipes_.stats().readers_waiting, 0u);
}

// A second blocked reader must not overwrite the first (a one-slot waiter):
// both wait, and they are served in arrival order.
TEST_P(PipeServerTest, WaitingReadersAreServedInArrivalOrder) {
    CallRef r1 = read(2);
    CallRef r2 = read(2);
    CallRef r3 = read(2);
    EXPECT_EQ(pipes_.stats().readers_waiting, 3u);
    EXPECT_TRUE(wrote(write("aabbc"), 5));
    EXPECT_EQ(data(r1), "aa");
    EXPECT_EQ(data(r2), "bb");
    EXPECT_EQ(data(r3), "c");
    EXPECT_EQ(pipes_.stats().readers_waiting, 0u);
}

TEST_P(PipeServerTest, AReaderTakesWhatThereIsAndLeavesTheRestForTheNext) {
    CallRef r1 = read(3);
    CallRef r2 = read(10);
    EXPECT_TRUE(wrote(write("abcdef"), 6));
    EXPECT_EQ(data(r1), "abc");
    EXPECT_EQ(data(r2), "def");
}

TEST_P(PipeServerTest, AWriteLargerThanTheFreeSpaceWaitsUntilDrainedAndDropsNothing) {
    std::string big(pipe::kCapacity - 100, 'x');
    std::string chunk;
    for (size_t i = 0; i < abi::kMaxPayload; ++i) chunk += char('a' + i % 26);
    // Fill most of the buffer in 480-byte writes (all answered at once).
    std::string sent;
    while (sent.size() + chunk.size() <= pipe::kCapacity - 100) {
        ASSERT_TRUE(wrote(write(chunk), chunk.size()));
        sent += chunk;
    }
    size_t free = pipe::kCapacity - sent.size();
    ASSERT_LT(free, chunk.size());
    CallRef w = write(chunk);  // does not fit: waits, its first bytes go in
    EXPECT_TRUE(w->waiting());
    EXPECT_EQ(pipes_.buffered(id_), pipe::kCapacity);
    EXPECT_EQ(pipes_.stats().writers_waiting, 1u);
    sent += chunk;
    // Reading drains it: the rest of the waiting write goes in, and it is
    // answered with its whole count.
    std::string got;
    while (got.size() < sent.size()) {
        CallRef r = read(abi::kMaxPayload);
        ASSERT_TRUE(r->ok());
        got += data(r);
    }
    EXPECT_TRUE(wrote(w, chunk.size()));
    EXPECT_EQ(got, sent);
    EXPECT_EQ(pipes_.stats().writers_waiting, 0u);
}

// Writers that wait go in in arrival order, whole: no interleaving, and a
// later small write does not overtake an earlier big one.
TEST_P(PipeServerTest, WaitingWritersGoInInArrivalOrderWithoutInterleaving) {
    std::string fill(abi::kMaxPayload, 'f');
    while (pipes_.buffered(id_) + fill.size() <= pipe::kCapacity) {
        ASSERT_TRUE(write(fill)->ok());
    }
    std::string a(300, 'A'), b(10, 'B');
    CallRef wa = write(a);
    CallRef wb = write(b);  // fits by itself, but A came first
    EXPECT_TRUE(wa->waiting());
    EXPECT_TRUE(wb->waiting());
    std::string got;
    while (!(wa->ok() && wb->ok()) || pipes_.buffered(id_) > 0) {
        CallRef r = read(abi::kMaxPayload);
        ASSERT_TRUE(r->ok());
        ASSERT_FALSE(data(r).empty());
        got += data(r);
    }
    std::string tail = got.substr(got.size() - a.size() - b.size());
    EXPECT_EQ(tail, a + b);
}

TEST_P(PipeServerTest, EofComesOnlyAfterTheLastWriteEndIsGone) {
    CallRef r = read(8);
    EXPECT_TRUE(r->waiting());  // a write end is open
    pipes_.last_handle(wr_);
    EXPECT_TRUE(is_eof(r));
    EXPECT_TRUE(is_eof(read(8)));  // and every read after it
}

// A reference that is not an open end (here: nothing but the server's own
// knowledge of the pipe) never keeps a pipe open, and buffered bytes are
// read before the EOF.
TEST_P(PipeServerTest, BufferedBytesAreReadBeforeTheEof) {
    EXPECT_TRUE(wrote(write("tail"), 4));
    pipes_.last_handle(wr_);
    expect_read(2, "ta");
    expect_read(8, "il");
    EXPECT_TRUE(is_eof(read(8)));
}

// The notice comes once per end; the server counts nothing itself, so no
// number of reads, writes or copies can make EOF come early or never.
TEST_P(PipeServerTest, NoEofWithoutTheNotice) {
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(wrote(write("x"), 1));
    std::string got;
    while (got.size() < 100) got += data(read(64));
    CallRef r = read(1);
    EXPECT_TRUE(r->waiting());
    pipes_.last_handle(wr_);
    EXPECT_TRUE(is_eof(r));
}

TEST_P(PipeServerTest, ClosingTheWriteEndWakesEveryWaitingReaderWithEof) {
    CallRef r1 = read(1), r2 = read(1), r3 = read(1);
    pipes_.last_handle(wr_);
    EXPECT_TRUE(is_eof(r1));
    EXPECT_TRUE(is_eof(r2));
    EXPECT_TRUE(is_eof(r3));
}

TEST_P(PipeServerTest, AWaitingWritersBytesAreReadBeforeTheEof) {
    std::string fill(pipe::kCapacity, 'z');
    for (size_t i = 0; i < fill.size(); i += 400) ASSERT_TRUE(write(fill.substr(i, 400))->ok());
    ASSERT_EQ(pipes_.buffered(id_), pipe::kCapacity);
    CallRef w = write("late");
    EXPECT_TRUE(w->waiting());
    pipes_.last_handle(wr_);  // say another thread closed the last handle
    std::string got;
    for (;;) {
        CallRef r = read(abi::kMaxPayload);
        ASSERT_TRUE(r->ok());
        if (data(r).empty()) break;
        got += data(r);
    }
    EXPECT_EQ(got, fill + "late");
    EXPECT_TRUE(wrote(w, 4));
}

TEST_P(PipeServerTest, WritingWithNoReaderLeftIsBrokenPipe) {
    pipes_.last_handle(rd_);
    CallRef w = write("x");
    EXPECT_EQ(w->label, pipe::kBrokenPipe);
}

TEST_P(PipeServerTest, AWriterWaitingWhenTheLastReaderGoesGetsBrokenPipe) {
    std::string fill(400, 'q');
    while (pipes_.buffered(id_) + fill.size() <= pipe::kCapacity) ASSERT_TRUE(write(fill)->ok());
    CallRef w1 = write(fill), w2 = write("y");
    EXPECT_TRUE(w1->waiting());
    pipes_.last_handle(rd_);
    EXPECT_EQ(w1->label, pipe::kBrokenPipe);
    EXPECT_EQ(w2->label, pipe::kBrokenPipe);
    EXPECT_EQ(pipes_.buffered(id_), 0u);
}

TEST_P(PipeServerTest, BothEndsGoneFreesThePipeAndItsBadgesGoStale) {
    EXPECT_TRUE(write("abc")->ok());
    pipes_.last_handle(wr_);
    pipes_.last_handle(rd_);
    EXPECT_EQ(pipes_.stats().pipes, 0u);
    EXPECT_EQ(read(1)->status(), abi::Err::BadHandle);
    EXPECT_EQ(write("a")->status(), abi::Err::BadHandle);
    // A new pipe in the same slot does not answer to the old badges.
    uint64_t id = pipes_.create();
    ASSERT_NE(id, 0u);
    EXPECT_NE(id, id_);
    EXPECT_EQ(read(1)->status(), abi::Err::BadHandle);
    // Notices for ends long gone, or given twice, change nothing.
    pipes_.last_handle(wr_);
    pipes_.last_handle(rd_);
    EXPECT_EQ(pipes_.stats().pipes, 1u);
}

// A reader that died while it waited takes nothing: its bytes go to the
// next reader.
TEST_P(PipeServerTest, AReaderThatDiedWhileWaitingLosesNoBytes) {
    CallRef dead = read(8);
    CallRef live = read(8);
    dead->kill();
    EXPECT_TRUE(wrote(write("data"), 4));
    EXPECT_EQ(dead->answers, 0);
    EXPECT_EQ(data(live), "data");
    // With no live reader left the bytes stay buffered.
    CallRef dead2 = read(8);
    dead2->kill();
    EXPECT_TRUE(wrote(write("more"), 4));
    EXPECT_EQ(pipes_.buffered(id_), 4u);
    expect_read(8, "more");
}

TEST_P(PipeServerTest, BadRequestsGetClearErrorsAndChangeNothing) {
    EXPECT_TRUE(write("keep")->ok());
    // The read end used to write, the write end used to read.
    EXPECT_EQ(write("x", rd_)->status(), abi::Err::NoRights);
    EXPECT_EQ(read(1, wr_)->status(), abi::Err::NoRights);
    // An unknown pipe, and the service badge, name no end.
    EXPECT_EQ(read(1, badge_of(id_ + 12345, false))->status(), abi::Err::BadHandle);
    EXPECT_EQ(issue_read(Message(pipe::kRead).set_word(0, 1), 0)->status(), abi::Err::BadHandle);
    // Empty reads and writes.
    EXPECT_EQ(read(0)->status(), abi::Err::InvalidArgument);
    EXPECT_EQ(write("")->status(), abi::Err::InvalidArgument);
    // A read or write sent without waiting for an answer takes nothing.
    CallRef s = read(4, rd_, false);
    EXPECT_EQ(s->answers, 0);
    EXPECT_FALSE(s->deferred);
    CallRef sw = write("zz", wr_, false);
    EXPECT_EQ(sw->answers, 0);
    EXPECT_EQ(pipes_.buffered(id_), 4u);
    expect_read(100, "keep");
}

TEST_P(PipeServerTest, AHugeReadIsCutToOneMessage) {
    std::string fill(pipe::kCapacity, 'h');
    for (size_t i = 0; i < fill.size(); i += 400) ASSERT_TRUE(write(fill.substr(i, 400))->ok());
    CallRef r = read(UINT64_MAX);
    ASSERT_TRUE(r->ok());
    EXPECT_EQ(data(r).size(), abi::kMaxPayload);
}

TEST_P(PipeServerTest, ThePipeTableHasABoundAndFreedSlotsAreReused) {
    std::vector<uint64_t> ids;
    while (uint64_t id = pipes_.create()) ids.push_back(id);
    EXPECT_EQ(ids.size() + 1, pipe::kMaxPipes);
    EXPECT_EQ(pipes_.create(), 0u);
    pipes_.last_handle(badge_of(ids[7], false));
    pipes_.last_handle(badge_of(ids[7], true));
    EXPECT_NE(pipes_.create(), 0u);
}

// Stale entries (reads that timed out) cannot pile up: past kMaxReaders
// the oldest read is pushed out, and the reader's library asks again.
TEST_P(PipeServerTest, WaitingReadersAreBoundedByEvictingTheOldest) {
    std::vector<CallRef> reads;
    for (size_t i = 0; i < pipe::kMaxReaders; ++i) reads.push_back(read(1));
    EXPECT_EQ(pipes_.stats().readers_waiting, pipe::kMaxReaders);
    CallRef newest = read(1);
    EXPECT_EQ(reads[0]->label, pipe::kWaitEvicted);
    EXPECT_TRUE(reads[1]->waiting());
    EXPECT_EQ(pipes_.stats().readers_waiting, pipe::kMaxReaders);
    EXPECT_TRUE(wrote(write("x"), 1));
    EXPECT_EQ(data(reads[1]), "x");  // still in arrival order
}

TEST_P(PipeServerTest, WaitingWritersAreBoundedAndARefusedWriteWritesNothing) {
    while (pipes_.buffered(id_) < pipe::kCapacity) {
        size_t n = std::min<size_t>(abi::kMaxPayload, pipe::kCapacity - pipes_.buffered(id_));
        ASSERT_TRUE(write(std::string(n, 'f'))->ok());
    }
    size_t before = pipes_.buffered(id_);
    for (size_t i = 0; i < pipe::kMaxWriters; ++i) EXPECT_TRUE(write("w")->waiting());
    CallRef refused = write("zzz");
    EXPECT_EQ(refused->status(), abi::Err::LimitReached);
    EXPECT_EQ(pipes_.stats().writers_waiting, pipe::kMaxWriters);
    EXPECT_EQ(pipes_.buffered(id_), before);
}

// Over all pipes, the server keeps at most services::kMaxDeferred replies
// (each a handle in its table): a wait past it is refused, not queued.
TEST_P(PipeServerTest, DeferredRepliesAreBoundedOverAllPipes) {
    std::vector<CallRef> reads;
    size_t held = 0;
    uint64_t id = id_;
    while (held < services::kMaxDeferred) {
        for (size_t j = 0; j < pipe::kMaxReaders - 1 && held < services::kMaxDeferred;
             ++j, ++held) {
            reads.push_back(issue_read(Message(pipe::kRead).set_word(0, 1), badge_of(id, false)));
        }
        id = pipes_.create();
        ASSERT_NE(id, 0u);
    }
    EXPECT_EQ(pipes_.stats().readers_waiting, services::kMaxDeferred);
    CallRef refused = issue_read(Message(pipe::kRead).set_word(0, 1), badge_of(id, false));
    EXPECT_EQ(refused->status(), abi::Err::LimitReached);
    EXPECT_FALSE(refused->deferred);
    for (const CallRef& r : reads) EXPECT_TRUE(r->waiting());
    // The count over all pipes follows the answers: once the first pipe's
    // readers have had EOF, there is room again.
    pipes_.last_handle(badge_of(id_, true));
    EXPECT_EQ(pipes_.stats().readers_waiting, services::kMaxDeferred - (pipe::kMaxReaders - 1));
    CallRef again = issue_read(Message(pipe::kRead).set_word(0, 1), badge_of(id, false));
    EXPECT_TRUE(again->waiting());
}

TEST_P(PipeServerTest, DestroyAnswersWhoeverWaits) {
    CallRef r = read(1);
    pipes_.destroy(id_);
    EXPECT_EQ(r->status(), abi::Err::Destroyed);
    EXPECT_EQ(pipes_.stats().pipes, 0u);
}

// Many clients come and go: when their ends are gone, nothing is left.
TEST_P(PipeServerTest, NothingIsLeftAfterManyPipesComeAndGo) {
    for (int round = 0; round < 1000; ++round) {
        uint64_t id = pipes_.create();
        ASSERT_NE(id, 0u);
        uint64_t rd = badge_of(id, false), wr = badge_of(id, true);
        CallRef r = issue_read(Message(pipe::kRead).set_word(0, 4), rd);
        if (round % 3 == 0) r->kill();
        CallRef w = issue_write(Message(pipe::kWrite).append("abcd", 4), wr);
        EXPECT_TRUE(w->ok());
        pipes_.last_handle(round % 2 ? rd : wr);
        pipes_.last_handle(round % 2 ? wr : rd);
    }
    Pipes::Stats s = pipes_.stats();
    EXPECT_EQ(s.pipes, 1u);  // the fixture's
    EXPECT_EQ(s.buffered, 0u);
    EXPECT_EQ(s.readers_waiting, 0u);
    EXPECT_EQ(s.writers_waiting, 0u);
}

INSTANTIATE_TEST_SUITE_P(HandlersAndRegisterLane, PipeServerTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                             return p.param ? "RegisterLane" : "Handlers";
                         });

}  // namespace
}  // namespace mk::servers_test
