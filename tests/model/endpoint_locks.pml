/*
 * endpoint_locks.pml -- Promela model of per-endpoint IPC locks on two CPUs, the
 * successor of split_locks.pml (tests/model/README.md, "endpoint_locks.pml";
 * docs/locking.md, "What is left").  The code follows it (Endpoint::lock_ is EP[e];
 * -DFREE: Endpoint::free_object's take and release of EP[e], which waits for a syscall
 * fast path that let go of the handle table lock before EP[e]).
 * Checked exhaustively by tests/model/run_spin.sh.
 *
 * Design v2.  v1 had a reply lock RL[t] per thread for t's callers queue; the same-CPU
 * fast path (Call to a waiting receiver, ReplyRecv answering a caller) would have taken
 * it as a fourth lock.  v2 drops RL: t's callers queue and the reply wait of each caller
 * on it are guarded by t's home scheduler lock S[home(t)], which that path holds anyway.
 * The fast path takes the handle table (modelled with -DFREE: TL), EP[e] and this CPU's
 * S: no more locks than with the one IPC lock it replaced (table, g_ipc_lock, S).
 *
 * Locks (each held by a CPU, interrupts off on that CPU while it holds any), in order:
 *   EP[e]  (LockLevel::Endpoint, one per endpoint; e = 0, 1; lk[0], lk[1]): the
 *          endpoint's senders_ (sq[e]) and receivers_ (rcv[e]) queues, and the IPC state
 *          of every thread waiting on them (R's message slot rmsg/rfrom while R waits on
 *          receivers_; a queued caller's result).  Two EP locks are never held together.
 *   S[c]   (Scheduler::lock_ of CPU c; lk[2], lk[3]): the scheduling state of the
 *          threads homed on c (state, armed timeout, wait generation wseq,
 *          exit_requested), Thread::cpu (home[t]: written with BOTH the old and the new
 *          home's S), a thread's wait lock wl[t] (written with its home S and with the
 *          lock it names), and -- new in v2 -- the callers queue of every thread homed on
 *          c (cq[]: the calls t received and has not answered) and the reply wait of each
 *          caller on it (reply slot rslot, result res); -DSAVE: the reply wait of a thread
 *          homed on c held by a saved Reply (its own home S).  A move of the server (both
 *          S held) carries that guard along, a move of a saved caller its own: nothing to
 *          rewrite.
 *   TL     (-DFREE: HandleTable::lock_ of C1's process; lk[4]): C1's handle slot to EP[0]
 *          (slot); first in the order, before EP[e].
 *   Order: [TL ->] EP[e] -> S[0] -> S[1]: two S locks only in CPU index order (lower
 *   first), after any EP lock.  Asserted at every acquire (LOCK); every access to guarded
 *   state asserts that its CPU holds the guarding lock (-DFREE: and that the endpoint is
 *   not freed, ep_freed[e]: HOLDS, LOCK, UNLOCK, pin).
 *
 * Wait lock (wl[t]) of a waiting thread: EP[e] while on senders_/receivers_ of e;
 * WREPLY, i.e. S[home(R)], while waiting for R's reply on R's callers queue; -DSAVE:
 * WSAVED, i.e. t's OWN home S[home(t)], while a saved Reply holds t's call.  Pinning the
 * owner of a wait lock: a reference to the endpoint, or to the server thread R (whose
 * Thread::cpu names the lock); a saved wait needs no pin (its lock is named by t itself,
 * whose home S the tick and the kill hold).
 *
 * Contexts: own[c] is the context running on CPU c with interrupts off (holding a lock,
 * or in an interrupt handler); another context of CPU c takes no lock meanwhile.
 *   Server R (homed on CPU RH: 0, -DR_HOME=1: CPU1): Endpoint::recv on EP[0]
 *          (-DTWO_EP: EP[0], EP[1] in turn): a queued caller x: EP[e], then S[home x] and
 *          S[home R] in index order (lock_two): x moves from senders_ to R's callers
 *          queue, wait lock EP[e] -> WREPLY; none: EP[e], S[home R]: linked on receivers_,
 *          Blocked, both released together.  Then reply_recv:
 *            FastPath::reply_recv (the syscall.S hit path, x homed on R's CPU c):
 *            EP[e] then S[c]; under both: the reply (x off the callers queue, reply
 *            written, wait ended), then the receive half: block on receivers_, or take a
 *            queued caller homed on c (a busy server); a queued caller of another CPU:
 *            S[c] released, the general receive with EP[e] kept.  x no longer waiting (a
 *            miss): both released, the general path.
 *            Endpoint::reply_recv (general): the reply half: S[home R] and S[home x] in
 *            index order, no EP; release; then the receive (EP[e] first).
 *          The last call: Endpoint::reply (the reply half).  -DDIE: after a receive R may
 *          die instead (ipc_release_thread_locked): for each caller x, S[home x] and
 *          S[home R] in index order, x off the queue with PeerDied; then the queue is
 *          closed and R's reference dropped (the last reference frees R).
 *   C1     (Endpoint::call_inline; FastPath::call when R is homed on C1's CPU) client
 *          homed on CPU1 (-DMOVE: moved to CPU0 while Blocked or Ready), NCALL timed calls
 *          on EP[0].  A waiting receiver: EP[0], then S of C1 and R in index order (one if
 *          the same CPU: the fast path's EP + one S), deliver, wake R, block on R's
 *          callers queue (WREPLY).  No receiver: EP[0], S[own]: queue on senders_ (wait
 *          lock EP[0]), block.  exit_requested checked under the own S first.  Woken:
 *          S[home] (re-read), read the one result.
 *   C0     (-DC0CALL or -DTWO_EP) the same, homed on CPU0, one timed call on EP[1]
 *          (-DMOVE_C0: moved to CPU1, the move taking S0 then S1 on CPU0).
 *   Tick(c)  Scheduler::expire_timeouts: the timer tick of CPU c, an interrupt (it
 *          keeps CPU c between its steps), for a due thread t homed on c.  Under S[c]
 *          alone read t's wait lock and generation.  WREPLY with R homed on c: the same
 *          lock, end the wait at once.  WREPLY with R homed higher: take S[home R] as a
 *          second lock, end at once.  Else (EP[e], or R homed lower): pin the owner,
 *          release S[c], take the locks in order (EP[e] then S[home t]; or S[home R] and
 *          S[home t] in index order, re-read), end the wait only if t is still Blocked in
 *          the same wait (same wait lock, same generation, still armed), release, unpin
 *          outside every lock.  -DTICK_PREEMPTIBLE: CPU c runs other code between the
 *          tick's steps (a deferred expiry): t may wait anew meanwhile, and the
 *          generation check is what keeps the old timeout off the new wait.
 *   Killer (-DKILL) Scheduler::kill_locked of C1, from a thread of CPU0 (preemptible
 *          between its critical sections): S[home C1] (re-read): exit_requested, and if
 *          C1 waits, the wait lock read as the tick does: at once, as a second S, or
 *          pinned and re-locked in order; the wait ended with Interrupted if still the
 *          same.  If the wait moved (senders_ -> R's callers queue: same generation,
 *          another wait lock) the kill starts over (v1's finding).
 *   Mover  (-DMOVE: C1 from CPU1, -DMOVE_C0: C0 from CPU0, -DMOVE_R: R from its home)
 *          Scheduler::move_locked of a Blocked or Ready thread on its home CPU: S0 then
 *          S1, the home changed (its armed timeout moves with it; a moved R takes its
 *          callers queue along; a moved caller its saved wait).
 *
 * Endpoint free (-DFREE; one endpoint, EP[0]; no -DDIE, -DC0CALL, -DTWO_EP):
 *   C1's call looks EP[0] up under its table lock TL (FastPath::endpoint, syscall.S
 *          LOOKUP_ENDPOINT: no reference taken), then takes EP[0].  The fast path's call
 *          (one S) drops R's wait reference under TL (never the last: the slot's), lets
 *          go of TL once the IPC state is written ("the endpoint is used no more"), and
 *          of EP[0] in a later step (FAST_SWITCH): between the two only EP[0] keeps the
 *          endpoint alive.  The general path (Endpoint::call_inline) holds a reference
 *          from its lookup: played by keeping TL to the end of its critical section.
 *   Closer (HandleTable::remove of the endpoint's last handle, by another thread of C1's
 *          process on CPU0; then report_and_release -> KObject::release -> kobject_free
 *          -> Endpoint::free_object): once every other reference is gone (R's own,
 *          dropped after its last receive or moved to its last wait on receivers_; a
 *          caller's on senders_; a tick's or kill's pin): TL, slot emptied, TL let go;
 *          outside every lock the last reference dropped; free_object takes EP[0] and
 *          lets it go ({ LockGuard used(endpoint->lock_); }), then the endpoint is freed
 *          (ghost ep_freed[0], asserted false at every access to its lock or the state
 *          it guards).
 *
 * Saved replies (-DSAVE; docs/locking.md, "Not settled by the model"):
 *   ReplySave (Endpoint::save_reply, in Server) R, holding x's call, may save it in a
 *          Reply instead of answering: S[home R] and S[home x] in index order (lock_two):
 *          if x is still on R's callers queue (the token's call: R holds one token at a
 *          time here), x moves to the Reply: same wait, wait lock WREPLY -> WSAVED; the
 *          Reply names x and the token's call number (wseq[x]: the wait generation is
 *          the call number, one wait per call) and takes a reference to x (refsC).  Else
 *          BadHandle.  Then R receives again.  Two Reply objects (svt[], svq[]): C1's
 *          second call may be saved while the Reply of its first is still live.
 *   Replier (Reply::answer -> Endpoint::reply_saved; the last handle closed:
 *          Reply::free_object -> Endpoint::drop_saved) a thread of CPU RC (R's CPU: R or
 *          a worker answering later; -DREPLIER_CPU=1-RH: the other CPU) holding the Reply
 *          handles: the caller x pinned by the Reply's reference, rule 4 on x's home
 *          (read, lock S[home x], re-read, retry); under that S alone, if x still waits on
 *          this Reply (Blocked, WSAVED, the token's call number): answer it (Reply) or
 *          fail it (PeerDied); else BadHandle.  Outside every lock: the Reply's reference
 *          dropped (it may free x), the Reply freed.
 *   Tick, Killer: a saved wait's lock is S[home x], the one they hold: end it at once.
 *          A reply wait they saw before a gap (R homed lower) may have been saved in the
 *          gap: the tick leaves it (the next tick ends it at once), the kill starts over.
 *   -DUNTIMED: calls carry no timeout (no -DDIE): a saved wait ends only by its Reply or
 *          a kill, so a lost answer or drop leaves its caller Blocked at the end (Check).
 *
 * Rule 4 (Thread::cpu): a waker reads the home unlocked, takes that S lock, reads it
 * again and retries if it changed (lock_home; lock_two for two homes).  lock_two takes
 * both S locks in one step when both are free (if the higher one is taken the step
 * stops holding the lower, spinning): an acquire of a free lock commutes with the other
 * CPUs' steps, so only orders that change nothing are left out.
 *
 * Properties:
 *   1. no deadlock: invalid end states; Check: no lock held when nothing can move;
 *   2. no lost wake-up: whoever ends a wait finds its result still Pending and the thread
 *      Blocked; Check (when nothing can move): every call finished, R not asleep with
 *      a message, no queue still holding a caller, no pin left (-DSAVE: every Reply
 *      answered or dropped, its reference gone); a kill, once done, leaves C1 waiting
 *      in no operation;
 *   3. every call ends exactly once, with exactly one of Reply / TimedOut / PeerDied /
 *      Interrupted; a Reply carries the caller's own message (no crossed replies);
 *   4. no lost or duplicated message: R receives each message at most once (got[]),
 *      and a message taken from senders_ or delivered is R's recv result;
 *   5. lock order asserted at every acquire; one holder per lock; every access asserts
 *      its guard (the callers queue: S[home R]; a wait: its wait lock and home S);
 *   6. pinning: a freed thread's home (its callers queue's lock) is never read; -DSAVE:
 *      a Reply never reads the home of a freed caller; -DFREE: no CPU takes, holds or
 *      lets go of a freed endpoint's lock or touches the state it guards, and a closed
 *      last handle's endpoint is freed (Check);
 *   7. a tick ends only the wait it found due (the generation it read); -DSAVE: a Reply
 *      ends only the call it was saved from (its token's call number), and once
 *      answered or dropped leaves no caller waiting on it.
 *
 * Negative controls (must FAIL):
 *   BUG_S_AGAINST_ORDER   C1's call takes its own S1, then R's S0 (the order assertion
 *                         left out): with -DMOVE_C0 the move holds S0, wants S1: deadlock
 *   BUG_REPLY_NO_SERVER_S the general reply takes the caller's home S only, not the
 *                         server's: the guard assertion of the callers queue
 *   BUG_REPLY_RECV_KEEPS_S the general reply_recv keeps both S locks and takes EP[e]
 *                         for its receive (order assertion left out): deadlock with the
 *                         kill, which holds EP[0] and wants S1 (-DR_HOME=1 -DKILL -DTWO_EP)
 *   BUG_TICK_REPLY_NO_RECHECK the tick, re-locked after a drop, ends a reply wait without
 *                         re-checking it: the reply won meanwhile (double end)
 *   BUG_TICK_REPLY_NO_GEN the same re-check without the generation, -DTICK_PREEMPTIBLE:
 *                         the old timeout ends the caller's next wait
 *   BUG_TICK_NO_RECHECK   the tick ends an endpoint wait it saw without re-checking it
 *   BUG_WAKER_NO_REREAD   a waker locks the home it read and does not read it again:
 *                         with a move in between it writes state without the home lock
 *   BUG_TICK_NO_PIN       the tick does not pin R: R dies and is freed before the tick
 *                         reads R's home to take its callers queue's lock
 *   BUG_KILL_NO_RESTART   the kill gives up when the wait moved to another wait lock
 *   BUG_UNLOCK_EP_BEFORE_BLOCK  R's recv drops EP[e] before it is Blocked: lost wake-up
 *   (-DSAVE)
 *   BUG_SAVED_NO_CALLER_S the Replier answers under S[home R] (the callers queue's guard),
 *                         not the caller's home S: the guard assertion of the saved wait
 *   BUG_SAVE_AGAINST_ORDER ReplySave takes R's own S, then the caller's: with R on CPU1
 *                         and C0 on CPU0, deadlock with CPU0's tick (S0 held, S1 wanted)
 *   BUG_SAVED_NO_REREAD   the Replier locks the caller's home it read without reading it
 *                         again: with -DMOVE it ends the wait without the caller's home S
 *   BUG_SAVED_NO_SEQ      the Replier's check leaves out the token's call number: C1's
 *                         first call's Reply ends its second call, saved too
 *   BUG_SAVED_NO_PIN      the Reply takes no reference to its caller: the caller ends
 *                         (timeout), exits and is freed; the Replier reads its home
 *   BUG_DROP_NO_FAIL      the drop frees the Reply without failing its caller (with
 *                         -DUNTIMED, without the assertion, a caller Blocked for ever)
 *   (-DFREE)
 *   BUG_FREE_WITHOUT_LOCK Endpoint::free_object frees without taking EP[0]: C1's fast
 *                         path, TL let go, still holds EP[0] and lets go of a freed lock
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text):
 *   1 a timeout of a reply wait after the tick dropped and re-took its locks (R homed
 *     lower)                                   2 the same for a wait on senders_
 *   3 a reply racing a timeout: the tick, re-locked, finds the reply won
 *   4 the retry of rule 4 (a waker's re-read finds the home changed)
 *   5 a kill interrupts C1 on R's callers queue 6 a kill starts over (wait moved)
 *   7 PeerDied delivered by R's death           8 EP[0] and EP[1] held at once by two CPUs
 *   9 the unpin frees R (the pin outlived R)    10 the tick finds the wait moved
 *   11 Check reached (the end)                  12 R takes a queued caller
 *   13 the kill, re-locked, finds the wait ended meanwhile
 *   14 a delivery to R on C1's second call      15 a reply dropped: the wait ended first
 *   16 the fast path's call: EP[e] and one S    17 the fast path's reply_recv: reply and
 *                                                  block under EP[e] and one S, at once
 *   18 a cross-CPU reply: two S in index order, the lower one not the replier's own
 *   19 a tick ends a reply wait at once (R homed on the tick's CPU)
 *   20 a tick ends a reply wait with S[home R] as a second, higher lock
 *   21 the fast reply_recv takes a queued caller (a busy server)
 *   22 the fast reply_recv misses (its caller no longer waits): the general path
 *   23 a move of R while a caller waits on its callers queue
 *   24 a kill ends a reply wait at once (R homed with C1)
 *   25 a kill ends a reply wait with S[home R] as a second, higher lock
 *   (-DSAVE)
 *   26 ReplySave moves a caller to a Reply      27 an answer through a saved Reply to a
 *                                                  caller homed on another CPU
 *   28 a tick ends a saved wait (at once)       29 a kill ends a saved wait (at once)
 *   30 a drop fails the caller (PeerDied)       31 an answer or drop finds the wait ended
 *                                                  first (BadHandle)
 *   32 the Replier's re-read finds the caller moved: it retries
 *   33 ReplySave finds the wait ended first (BadHandle)
 *   34 the tick, re-locked, finds the reply wait saved meanwhile (left to the next tick)
 *   35 the kill, re-locked, finds the reply wait saved meanwhile: it starts over
 *   36 C1 calls again while the Reply of its earlier call is still live
 *   37 the Reply's reference is the caller's last: its drop frees the caller
 *   (-DFREE)
 *   38 free_object wants EP[0] while C1's fast path, TL let go, still holds it: it waits
 *   39 free_object done: the endpoint freed
 *
 * Not modelled: the context switch, stacks, the lock hand-over, ready queues and idle
 * (split_locks.pml, smp_wake.pml); the handle table lock (taken before EP[e], alone);
 * for saved replies: donation and the fast path's direct switch to the answered caller,
 * a server holding several tokens (ReplySave's own call-number check), two threads
 * answering one Reply at once, R's process death closing its Reply handles (the
 * Replier's drop stands for it); endpoint destruction and the dead flag; -DFREE: a close
 * that is not the last, a free by another holder of the last reference, a call that
 * finds the handle closed (BadHandle), R's table lock; without -DFREE endpoints are
 * pinned but never freed;
 * notices and Send; a timed recv or a kill of R; more than one server, two callers on
 * one endpoint, more than two CPUs; a move of a running thread.
 */
#define R      0                /* server, homed on CPU RH (-DR_HOME=1: CPU1) */
#define C1     1                /* client, homed on CPU1, calls EP[0] */
#define C0     2                /* client, homed on CPU0, calls EP[1] */
#define NT     3
#define KILLER 3                /* contexts beyond the threads */
#define TICK0  4
#define TICK1  5
#define MOVER  6                /* MOVER + 0: the move of C1 or C0; MOVER + 1: of R */
#define NONE   255

#define EP0 0                   /* lock ids */
#define EP1 1
#define S0  2
#define S1  3
#define WREPLY 6                /* wait lock "R's callers queue": S[home[R]] */
#define NOLOCK 7
#define WSAVED 8                /* -DSAVE: wait lock "a saved reply": the waiter's own S[home[t]] */
#define REPLIER 9               /* -DSAVE: the holder of the Reply handles */
#define CLOSER 10               /* -DFREE: the close of the endpoint's last handle */
#define TL     4                /* -DFREE: lock id of C1's handle table lock (HandleTable::lock_) */
#define FE     EP0              /* -DFREE: the endpoint that may be freed (C1's, EP[0]) */
#define NSV 2                   /* -DSAVE: Reply objects (two: a caller's second call saved
                                   while the Reply of its first is still live) */
#define SL(c) (S0 + (c))
#define B(x) (1 << (x))
#define H(c) ((c) + 1)          /* lock holder: 0 free, 1 CPU0, 2 CPU1 */

#ifdef R_HOME
#define RH R_HOME
#else
#define RH 0
#endif
#ifndef NCALL
#define NCALL 2                 /* C1's calls */
#endif
#if defined(TWO_EP) && !defined(C0CALL)
#define C0CALL
#endif
#ifdef C0CALL
#define NC0 1
#else
#define NC0 0
#endif
#define NMSG (NCALL + NC0)
#ifdef UNTIMED
#define TIMED 0                 /* calls without a timeout: the ticks have nothing to do */
#else
#define TIMED 1
#endif
#if defined(UNTIMED) && defined(DIE)
#error "UNTIMED: a caller left on senders_ by R's death would wait for ever (no endpoint destroy)"
#endif
#define TOK(t, i) ((t) * 4 + (i) + 1)
#if defined(MOVE) || defined(MOVE_C0) || defined(MOVE_R)
#define MOVES
#endif

#if defined(MOVE_C0) && !defined(C0CALL)
#error "MOVE_C0 needs -DC0CALL or -DTWO_EP"
#endif
#if defined(BUG_S_AGAINST_ORDER) && !(defined(MOVE_C0) && RH == 0)
#error "BUG_S_AGAINST_ORDER needs -DMOVE_C0 and R on CPU0"
#endif
#if defined(BUG_WAKER_NO_REREAD) && !defined(MOVES)
#error "BUG_WAKER_NO_REREAD needs a move"
#endif
#if defined(BUG_TICK_NO_PIN) && !defined(DIE)
#error "BUG_TICK_NO_PIN needs -DDIE"
#endif
#ifdef REPLIER_CPU
#define RC REPLIER_CPU
#else
#define RC RH                   /* the Replier runs on R's CPU (R answering later) */
#endif
#if (defined(BUG_SAVED_NO_CALLER_S) || defined(BUG_SAVE_AGAINST_ORDER) || \
     defined(BUG_SAVED_NO_REREAD) || defined(BUG_SAVED_NO_SEQ) || \
     defined(BUG_SAVED_NO_PIN) || defined(BUG_DROP_NO_FAIL)) && !defined(SAVE)
#error "the saved-reply controls need -DSAVE"
#endif
#if defined(BUG_SAVED_NO_REREAD) && !defined(MOVES)
#error "BUG_SAVED_NO_REREAD needs a move"
#endif
#if defined(FREE) && (defined(C0CALL) || defined(DIE))
#error "FREE: one endpoint (EP[0], C1's calls), R not dying (its references are not dropped)"
#endif
#if defined(BUG_FREE_WITHOUT_LOCK) && !defined(FREE)
#error "BUG_FREE_WITHOUT_LOCK needs -DFREE"
#endif
#ifdef FREE
#define NLK 5
#else
#define NLK 4
#endif

mtype = { RUN, READY, BLOCKED, DEAD };                          /* Thread::state */
mtype = { NORES, PENDING, REPLY, TIMEDOUT, PEERDIED, INTERRUPTED }; /* a caller's result */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)
#else
#define REACH(n) skip
#endif

/* locks */
byte lk[NLK];                   /* holder of each lock (-DFREE: lk[TL], C1's table lock) */
byte held[2];                   /* ghost: the locks CPU c holds (bit per lock id) */
byte own[2];                    /* ghost: context (+1) on CPU c with interrupts off */
bit  stay[2];                   /* that context keeps interrupts off between its locks */
/* guarded by S[home[t]] */
mtype state[NT];
bit   armed[NT];                /* a timeout armed, in home[t]'s timeout set */
byte  wseq[NT];                 /* wait generation: a new wait, a new deadline */
byte  wl[NT];                   /* wait lock: EP0, EP1, WREPLY, WSAVED (also written with it held) */
byte  home[NT];                 /* Thread::cpu: with both the old and new home's S */
bit   exitreq;                  /* C1's exit_requested */
/* guarded by EP[e] */
byte  sq[2];                    /* senders_ of EP[e]: one caller at most (NONE) */
bit   rcv[2];                   /* R on receivers_ of EP[e] */
byte  rmsg, rfrom;              /* R's message slot, while R waits on receivers_ */
/* guarded by S[home[R]] (R's callers queue: moves with R) */
bit   cq[NT];                   /* t on R's callers queue */
byte  rslot[NT];                /* t's reply */
bit   deadR;                    /* R died: its callers queue is closed */
#ifdef SAVE
/* a Reply object k (-DSAVE): the caller it names and the call number of its ReplyToken;
   written by ReplySave (under S[home R] and S[home caller]) before the handle exists,
   then immutable until the Reply is freed (NONE): the replier reads it without a lock */
byte  svt[NSV];
byte  svq[NSV];
byte  refsC[NT];                /* a client's thread object: itself + the Replies naming it */
bit   freedC[NT];
#endif
/* guarded by the wait lock (and the waiter's home S) while t waits, by t otherwise */
mtype res[NT];
byte  msg[NT];                  /* t's outgoing message (its own) */
/* pins (atomic reference counts) */
byte  refsR = 1;                /* R's thread object: itself + pins */
bit   freedR;
byte  refsE[2];                 /* endpoints' pins (never freed here) */
/* ghosts */
bit   got[16];
bit   cdone[NT];
bit   rdone;
#ifdef FREE
/* -DFREE: the references to EP[FE] (Endpoint is a KObject): the handle in C1's table
   (slot, guarded by TL), R's own (rh: its handle and its receive syscalls' references,
   until R waits on receivers_ for its last message -- then its wait reference, rcv[FE] --
   or takes it), a caller's on senders_ (sq[FE]), the pins of the tick and the kill
   (refsE[FE]).  The fast path's call holds none: TL, then EP[FE] keep it alive. */
bit   slot = 1;
bit   rh = 1;
bit   ep_freed[2];              /* ghost: Endpoint::free_object's kdelete done */
bit   fpw;                      /* ghost: C1's fast path holds EP[FE] with TL let go */
#define EPLIVE(L) ((L) > EP1 || !ep_freed[L])
#define LAST_REF (!rh && !rcv[FE] && sq[FE] == NONE && refsE[FE] == 0)
#else
#define EPLIVE(L) 1
#endif

#define HOLDS(c, L) (lk[L] == H(c) && (held[c] & B(L)) != 0 && EPLIVE(L))  /* FREE: a live EP */
#define HOLDS_HOME(c, t) HOLDS(c, SL(home[t]))
#define HOLDS_CQ(c) HOLDS(c, SL(home[R]))          /* R's callers queue's guard */
#define WLOCK(t) (wl[t] == WREPLY -> SL(home[R]) : (wl[t] == WSAVED -> SL(home[t]) : wl[t]))
#define RHOME (home[R])                             /* read only while R is not freed */

/* the lock order, asserted at an acquire of L by CPU c: [TL ->] EP[e] -> S[0] -> S[1] */
#define ORDER_OK(c, L) \
  (((L) == TL && held[c] == 0) || \
   ((L) <= EP1 && (held[c] & ~B(TL)) == 0) || \
   ((L) == S0 && (held[c] & (B(S0) | B(S1))) == 0) || \
   ((L) == S1 && (held[c] & B(S1)) == 0))

#define MINE(c, me) (own[c] == 0 || own[c] == (me) + 1)
inline LOCK_RAW(c_, L_, me_) {
  assert(!MINE(c_, me_) || (held[c_] & B(L_)) == 0);
#ifdef FREE
  assert(EPLIVE(L_));                           /* the lock word of a live EP */
#endif
  lk[L_] == 0 && MINE(c_, me_) ->
  lk[L_] = H(c_); held[c_] = held[c_] | B(L_); own[c_] = me_ + 1
}
inline LOCK(c_, L_, me_) {
  assert(!MINE(c_, me_) || ORDER_OK(c_, L_));   /* 5: the lock order */
  LOCK_RAW(c_, L_, me_)
}
inline UNLOCK(c_, L_) {
  assert(lk[L_] == H(c_) && (held[c_] & B(L_)) != 0);
#ifdef FREE
  assert(EPLIVE(L_));
#endif
  lk[L_] = 0; held[c_] = held[c_] ^ B(L_);
  if :: held[c_] == 0 && !stay[c_] -> own[c_] = 0 :: else fi
}
/* release the S locks of homes a_, b_ (one if the same) */
inline UNLOCK_S2(c_, a_, b_) {
  if
  :: a_ < b_ -> UNLOCK(c_, SL(b_)); UNLOCK(c_, SL(a_))
  :: a_ > b_ -> UNLOCK(c_, SL(a_)); UNLOCK(c_, SL(b_))
  :: a_ == b_ -> UNLOCK(c_, SL(a_))
  fi
}

/* rule 4: take t's home S lock: read home, lock it, read again, retry if it changed. */
inline lock_home(c_, t_, me_, h_) {
  do
  ::
#ifdef MOVES
     assert(!(t_ == R && freedR)); h_ = home[t_];   /* unlocked: may change until S held */
     atomic {
#else
     atomic { assert(!(t_ == R && freedR)); h_ = home[t_];
#endif
              LOCK(c_, SL(h_), me_);
#ifndef BUG_WAKER_NO_REREAD
              if
              :: home[t_] == h_ -> break
              :: else -> REACH(4); UNLOCK(c_, SL(h_))
              fi
#else
              break
#endif
     }
  od
}

/* rules 3, 4: the home S locks of a_ and b_, in CPU index order (one if the same home):
   read both homes, lock the lower, then the higher, read both again, retry if either
   changed.  On return S[ha_] and S[hb_] are held, ha_ == home[a_], hb_ == home[b_]. */
inline lock_two(c_, a_, b_, me_, ha_, hb_) {
  do
  ::
#ifdef MOVES
     assert(!((a_ == R || b_ == R) && freedR)); ha_ = home[a_]; hb_ = home[b_];
     atomic {
#else
     atomic { assert(!((a_ == R || b_ == R) && freedR)); ha_ = home[a_]; hb_ = home[b_];
#endif
              if :: ha_ <= hb_ -> LOCK(c_, SL(ha_), me_) :: else -> LOCK(c_, SL(hb_), me_) fi;
              if
              :: ha_ < hb_ -> LOCK(c_, SL(hb_), me_)
              :: ha_ > hb_ -> LOCK(c_, SL(ha_), me_)
              :: else
              fi;
#ifndef BUG_WAKER_NO_REREAD
              if
              :: home[a_] == ha_ && home[b_] == hb_ -> break
              :: else -> REACH(4); UNLOCK_S2(c_, ha_, hb_)
              fi
#else
              break
#endif
     }
  od
}

/* end t's wait with result r: its wait lock and its home S held */
inline end_wait(c_, t_, r_) {
  assert(HOLDS(c_, WLOCK(t_)) && HOLDS_HOME(c_, t_));
  assert(state[t_] == BLOCKED && res[t_] == PENDING);   /* 2, 3: not ended before */
  res[t_] = r_; wl[t_] = NOLOCK; armed[t_] = 0; state[t_] = READY;
  printf("CPU%d: %d's wait ends: %e\n", c_, t_, r_)
}
/* a caller t leaves R's callers queue (its reply wait): S[home[R]] held */
inline cq_unlink(c_, t_) {
  assert(HOLDS_CQ(c_) && cq[t_] && wl[t_] == WREPLY); cq[t_] = 0
}

inline pin(w_) {
#ifdef FREE
  if :: w_ == WREPLY -> assert(!freedR); refsR++ :: else -> assert(EPLIVE(w_)); refsE[w_]++ fi
#else
  if :: w_ == WREPLY -> assert(!freedR); refsR++ :: else -> refsE[w_]++ fi
#endif
}
inline unpin(w_) {              /* outside every lock */
  if
  :: w_ == WREPLY -> refsR--; if :: refsR == 0 -> freedR = 1; REACH(9) :: else fi
  :: else -> refsE[w_]--
  fi
}

/* R's recv returns the message (R's own state, no lock): once (4) */
inline received() {
  assert(!got[rmsg]); got[rmsg] = 1;
  m = rmsg; rmsg = 0; rfrom = NONE; n++;
#ifdef FREE
  if :: n == NMSG -> rh = 0 :: else fi;     /* R uses EP[FE] no more: its reference goes */
#endif
#ifdef TWO_EP
  e = 1 - e;
#endif
  h = 0; h2 = 0
}

/* Endpoint::reply_recv's reply half (and Endpoint::reply): S[home R] and S[home x] in
   index order, no EP lock (rule 3).  BUG_REPLY_NO_SERVER_S: the caller's home S alone. */
inline reply_general() {
#ifndef BUG_REPLY_NO_SERVER_S
  lock_two(c, R, x, R, h, h2);
#else
  lock_home(c, x, R, h2); h = h2;
#endif
  atomic {
    assert(HOLDS_CQ(c) && HOLDS_HOME(c, x));    /* the callers queue's guard, the caller's */
    if
    :: cq[x] -> cq_unlink(c, x); rslot[x] = m; end_wait(c, x, REPLY);
       if :: h2 < h -> REACH(18) :: else fi
    :: else -> REACH(15)       /* the wait ended (timeout, kill): the reply is dropped */
    fi;
#ifdef BUG_REPLY_RECV_KEEPS_S
    if :: keep -> skip :: else -> UNLOCK_S2(c, h, h2); h = 0; h2 = 0 fi; x = 0; m = 0 }
#else
    UNLOCK_S2(c, h, h2); x = 0; h = 0; h2 = 0; m = 0 }
#endif
}

/* ---------------- the server R ----------------
   Endpoint::recv, FastPath::reply_recv (the syscall.S hit path: a caller homed
   on R's CPU), Endpoint::reply_recv (the general path: reply half, then recv), and with
   -DDIE ipc_release_thread_locked (R's death with callers on its queue) */
proctype Server() {
  byte e, x, y, h, h2, n, m, c;
#ifdef BUG_REPLY_RECV_KEEPS_S
  bit keep;
#endif
#ifdef SAVE
  byte k;
#endif
  c = home[R];                  /* R's CPU: a running thread is not moved */
recv:                           /* Endpoint::recv: EP[e] first */
  atomic { LOCK(c, e, R); x = sq[e] }
have_ep:                        /* EP[e] held; x: the caller queued on senders_, or NONE */
  if
  :: x != NONE ->               /* take it: S[home x] and S[home R] in index order */
     lock_two(c, x, R, R, h, h2);
     atomic {
       assert(HOLDS(c, e) && HOLDS_HOME(c, x) && HOLDS_CQ(c));
       assert(sq[e] == x && wl[x] == e && state[x] == BLOCKED && res[x] == PENDING);
       sq[e] = NONE; cq[x] = 1; wl[x] = WREPLY;  /* same wait, new wait lock */
       rmsg = msg[x]; rfrom = x; REACH(12);
       printf("R: takes queued %d (msg %d) from EP%d\n", x, rmsg, e);
       UNLOCK_S2(c, h, h2); UNLOCK(c, e); received() }
  :: else ->                    /* block on receivers_: EP[e] -> S[own] */
#ifndef BUG_UNLOCK_EP_BEFORE_BLOCK
     atomic { LOCK(c, SL(c), R);
              assert(HOLDS(c, e) && HOLDS_HOME(c, R)); rcv[e] = 1; rmsg = 0; wl[R] = e;
              state[R] = BLOCKED; printf("R: waits on EP%d\n", e);
#ifdef FREE
              if :: n == NMSG - 1 -> rh = 0 :: else fi;  /* its last: the wait's reference */
#endif
              UNLOCK(c, SL(c)); UNLOCK(c, e) }
#else
     atomic { rcv[e] = 1; rmsg = 0; UNLOCK(c, e) }
     atomic { LOCK(c, SL(c), R); wl[R] = e; state[R] = BLOCKED; UNLOCK(c, SL(c)) }
#endif
end_recv:                       /* woken (-DMOVE_R: perhaps on the other CPU) */
     atomic { state[R] == READY -> c = home[R] }
     lock_home(c, R, R, h);
     atomic { assert(HOLDS_HOME(c, R) && state[R] == READY);
              state[R] = RUN; x = rfrom; assert(rmsg != 0 && x != NONE);
              UNLOCK(c, SL(h)); c = h; received() }
  fi;
got_call:                       /* R holds x's call, message m */
#ifdef DIE
  if :: goto die :: skip fi;
#endif
#ifdef SAVE
  if :: svt[0] == NONE || svt[1] == NONE -> goto save :: skip fi;   /* a Reply to spare */
#endif
  if
  :: n < NMSG && home[x] != c -> /* reply_recv(x, EP[e]) to another CPU: the general path */
#ifndef BUG_REPLY_RECV_KEEPS_S
     reply_general();
     goto recv
#else
     keep = 1; reply_general();    /* the S locks kept, and EP[e] taken under them */
     atomic { LOCK_RAW(c, e, R); UNLOCK_S2(c, h, h2); h = 0; h2 = 0; keep = 0; x = sq[e] };
     goto have_ep
#endif
  :: n < NMSG && home[x] == c -> /* reply_recv(x, EP[e]), x homed on R's CPU (so far) */
     /* FastPath::reply_recv: [x's table lock,] EP[e], then S[own]: the reply and the
        receive half in one critical section */
     atomic { LOCK(c, e, R); LOCK(c, SL(c), R);
              assert(HOLDS(c, e) && HOLDS_HOME(c, R));
              if
              :: cq[x] && home[x] == c ->          /* stable: a move of x needs S[c] */
                 cq_unlink(c, x); rslot[x] = m; end_wait(c, x, REPLY);
                 y = sq[e];
                 if
                 :: y == NONE ->                   /* block on receivers_ */
                    rcv[e] = 1; rmsg = 0; wl[R] = e; state[R] = BLOCKED; REACH(17);
#ifdef FREE
                    if :: n == NMSG - 1 -> rh = 0 :: else fi;   /* the wait's reference */
#endif
                    printf("R: replies to %d and waits on EP%d (one critical section)\n", x, e);
                    UNLOCK(c, SL(c)); UNLOCK(c, e); x = 0; m = 0; goto end_recv
                 :: y != NONE && home[y] == c ->   /* a busy server: take the queued caller */
                    assert(sq[e] == y && wl[y] == e && state[y] == BLOCKED && res[y] == PENDING);
                    sq[e] = NONE; cq[y] = 1; wl[y] = WREPLY; rmsg = msg[y]; rfrom = y;
                    REACH(21);
                    UNLOCK(c, SL(c)); UNLOCK(c, e); x = y; y = 0; received(); goto got_call
                 :: else ->                        /* queued caller of another CPU: */
                    UNLOCK(c, SL(c)); x = y; y = 0; m = 0; goto have_ep /* general recv */
                 fi
              :: else -> REACH(22); UNLOCK(c, SL(c)); UNLOCK(c, e)   /* a miss */
              fi }
     /* Endpoint::reply_recv: the reply half, S locks released, then recv (EP[e] first) */
     reply_general();
     goto recv
  :: else ->                    /* the last call: Endpoint::reply */
     reply_general()
  fi;
  rdone = 1;
  goto out;
#ifdef SAVE
save:                           /* Endpoint::save_reply (sys_reply_save): x moves from R's
                                   callers queue to a Reply under S[home R] and S[home x] in
                                   index order; the Reply names x and takes a reference to it */
#ifndef BUG_SAVE_AGAINST_ORDER
  lock_two(c, R, x, R, h, h2);
#else
  atomic { h = home[R]; LOCK(c, SL(h), R) }             /* R's own S first, */
  atomic { h2 = home[x];                                /* then x's: against the order */
           if :: h2 != h -> LOCK_RAW(c, SL(h2), R) :: else fi }
#endif
  atomic {
    assert(HOLDS_CQ(c) && HOLDS_HOME(c, x));
    if
    :: cq[x] ->                 /* the token's call: x on R's callers queue, this call */
       cq_unlink(c, x); wl[x] = WSAVED;  /* same wait, new wait lock: S[home x] */
       if :: svt[0] == NONE -> k = 0 :: else -> k = 1 fi;
       svt[k] = x; svq[k] = wseq[x];     /* the ReplyToken: caller and call number */
#ifndef BUG_SAVED_NO_PIN
       refsC[x]++;                       /* the Reply's reference (x waits: alive) */
#endif
       REACH(26); printf("R: saves %d's call %d in Reply %d\n", x, wseq[x], k)
    :: else -> REACH(33)        /* BadHandle: the wait ended first (timeout, kill) */
    fi;
    UNLOCK_S2(c, h, h2); x = 0; h = 0; h2 = 0; m = 0; k = 0 }
  if :: n < NMSG -> goto recv :: else fi;   /* Endpoint::recv (EP[e] first) */
  rdone = 1;
  goto out;
#endif
#ifdef DIE
die:                            /* rule 6: each caller failed under S[home R] and its home S */
  printf("R: dies\n");
  x = C1;
  do
  :: x < NT ->
     lock_two(c, x, R, R, h, h2);
     atomic { assert(HOLDS_HOME(c, x) && HOLDS_CQ(c));
              if :: cq[x] -> cq_unlink(c, x); end_wait(c, x, PEERDIED); REACH(7) :: else fi;
              if :: x == NT - 1 -> deadR = 1 :: else fi;   /* closed */
              UNLOCK_S2(c, h, h2); h = 0; h2 = 0; x++ }
  :: else -> break
  od;
  atomic { refsR--; if :: refsR == 0 -> freedR = 1 :: else fi; rdone = 1 }
#endif
out: skip
}

/* ---------------- the clients ----------------
   Endpoint::call_inline (general path); FastPath::call, the syscall.S hit path, when R
   waits and is homed on the caller's CPU: EP[e] and ONE S lock */
proctype Client(byte t; byte e; byte n) {
  byte i, c, h, h2, r;
  bit deliv;
  do
  :: i < n ->
     /* c: stable while t runs (only a Blocked or Ready t is moved) */
     atomic { c = home[t]; msg[t] = TOK(t, i);
#ifdef FREE
              /* FastPath::endpoint (syscall.S LOOKUP_ENDPOINT): C1's table lock, the slot
                 found, no reference taken: the table lock keeps EP[e] alive.  (The general
                 path's lookup takes a reference instead: played by keeping TL to its end.) */
              LOCK(c, TL, t); assert(slot);
#endif
              LOCK(c, e, t); deliv = rcv[e];
#ifdef SAVE
              if :: svt[0] == t || svt[1] == t -> REACH(36) :: else fi;  /* an old Reply live */
#endif
              if :: lk[1 - e] != 0 && lk[1 - e] != H(c) -> REACH(8) :: else fi }
     if
     :: deliv ->                /* R waits: EP[e], then S of t and R in index order */
#ifndef BUG_S_AGAINST_ORDER
        lock_two(c, t, R, t, h, h2);
#else
        atomic { h = home[t]; LOCK(c, SL(h), t) }       /* own S first, */
        atomic { h2 = home[R];                          /* then R's: against the order */
                 if :: h2 != h -> LOCK_RAW(c, SL(h2), t) :: else fi }
#endif
        atomic {
          assert(HOLDS(c, e) && HOLDS_HOME(c, t) && HOLDS_CQ(c) && HOLDS_HOME(c, R));
          if
          :: t == C1 && exitreq ->          /* killed: no new wait */
             UNLOCK_S2(c, h, h2); UNLOCK(c, e);
#ifdef FREE
             UNLOCK(c, TL);
#endif
             goto interrupted
          :: else
          fi;
          assert(rcv[e]);
          rcv[e] = 0; rmsg = msg[t]; rfrom = t;
          if                            /* wake_locked: only a Blocked R */
          :: state[R] == BLOCKED -> assert(wl[R] == e); wl[R] = NOLOCK; state[R] = READY
          :: else
          fi;
          if :: t == C1 && i > 0 -> REACH(14) :: else fi;
          if :: h == h2 -> REACH(16) :: else fi;        /* the fast path's locks */
          cq[t] = 1; wl[t] = WREPLY; res[t] = PENDING; wseq[t]++; armed[t] = TIMED;
          state[t] = BLOCKED;
          printf("%d: delivers %d to R on EP%d, waits for the reply\n", t, msg[t], e);
#ifdef FREE
          if
          :: h == h2 ->     /* FastPath::call (syscall.S): R's wait reference dropped under
                               TL (never the last: the slot's), then TABLE_LOCK let go ("the
                               endpoint is used no more"): EP[e] alone keeps it alive now */
             assert(slot); UNLOCK(c, TL); fpw = 1
          :: else -> UNLOCK_S2(c, h, h2); UNLOCK(c, e); UNLOCK(c, TL)
          fi }
        if
        :: fpw ->           /* FAST_SWITCH: ENDPOINT_LOCK let go (then S, by the stub) */
           atomic { UNLOCK(c, e); fpw = 0; UNLOCK_S2(c, h, h2) }
        :: else
        fi
#else
          UNLOCK_S2(c, h, h2); UNLOCK(c, e) }
#endif
     :: else ->                 /* no receiver: EP[e] -> S[own], queue on senders_ */
        atomic { LOCK(c, SL(c), t);
          assert(HOLDS(c, e) && HOLDS_HOME(c, t));
          if
          :: t == C1 && exitreq -> UNLOCK(c, SL(c)); UNLOCK(c, e);
#ifdef FREE
             UNLOCK(c, TL);
#endif
             goto interrupted
          :: else
          fi;
          assert(sq[e] == NONE);
          sq[e] = t; wl[t] = e; res[t] = PENDING; wseq[t]++; armed[t] = TIMED;
          state[t] = BLOCKED;
          printf("%d: queues %d on EP%d\n", t, msg[t], e);
          UNLOCK(c, SL(c)); UNLOCK(c, e)
#ifdef FREE
          ; UNLOCK(c, TL)
#endif
        }
     fi;
     /* woken: S[home] (it may have moved), read the one result */
     atomic { state[t] == READY -> c = home[t] }
     lock_home(c, t, t, h);         /* runs on its (new) home */
     atomic { assert(HOLDS(c, SL(h)) && HOLDS_HOME(c, t) && state[t] == READY);
              assert(res[t] != PENDING && res[t] != NORES && wl[t] == NOLOCK && !armed[t]);
              r = res[t]; res[t] = NORES; state[t] = RUN;
              if :: r == REPLY -> assert(rslot[t] == msg[t]); rslot[t] = 0 :: else fi;
              printf("%d: call %d ends: %e\n", t, i, r);
              UNLOCK(c, SL(h)); c = 0; h = 0; h2 = 0; deliv = 0; i++;
              if :: r == INTERRUPTED -> goto interrupted :: else -> r = 0 fi }
  :: else -> break
  od;
  goto finish;
interrupted:
  assert(t == C1 && exitreq);
finish:
#ifdef SAVE
  atomic { refsC[t]--; if :: refsC[t] == 0 -> freedC[t] = 1 :: else fi; cdone[t] = 1 }
#else
  cdone[t] = 1
#endif
}

/* ---------------- the tick of CPU c: Scheduler::expire_timeouts (rule 5) -------- */
#define DUE(t, c) (home[t] == (c) && armed[t] && state[t] == BLOCKED)
#define SAME_WAIT (state[t] == BLOCKED && wl[t] == w && armed[t] && wseq[t] == s)
#if defined(BUG_TICK_NO_RECHECK)
#define TICK_OK (w == WREPLY -> SAME_WAIT : 1)
#elif defined(BUG_TICK_REPLY_NO_RECHECK)
#define TICK_OK (w == WREPLY -> 1 : SAME_WAIT)
#elif defined(BUG_TICK_REPLY_NO_GEN)
#define TICK_OK (w == WREPLY -> (state[t] == BLOCKED && wl[t] == w && armed[t]) : SAME_WAIT)
#else
#define TICK_OK SAME_WAIT
#endif
proctype Tick(byte c) {
  byte t, w, s, h, h2, mode;
end_tick:
  do
  :: atomic { own[c] == 0 && lk[SL(c)] == 0 && (DUE(C1, c) || DUE(C0, c)) ->
              LOCK(c, SL(c), TICK0 + c); stay[c] = 1;
              if :: DUE(C1, c) -> t = C1 :: DUE(C0, c) -> t = C0 fi;
              w = wl[t]; s = wseq[t]; assert(w != NOLOCK);
              printf("CPU%d tick: %d due, wait lock %d\n", c, t, w);
              if
              :: w == WREPLY && RHOME == c ->     /* S[home R] is S[c]: end it at once */
                 cq_unlink(c, t); end_wait(c, t, TIMEDOUT); REACH(19);
                 UNLOCK(c, SL(c)); stay[c] = 0; own[c] = 0; t = 0; w = 0; s = 0; mode = 0
              :: w == WREPLY && RHOME > c ->      /* a higher S: the second lock */
                 h = RHOME; mode = 1
#ifdef SAVE
              :: w == WSAVED ->                   /* a saved reply's: its lock is S[c] */
                 end_wait(c, t, TIMEDOUT); REACH(28);
                 UNLOCK(c, SL(c)); stay[c] = 0; own[c] = 0; t = 0; w = 0; s = 0; mode = 0
#endif
              :: else ->                          /* EP[e] or a lower S: pin, let go */
#ifndef BUG_TICK_NO_PIN
                 pin(w);
#endif
                 UNLOCK(c, SL(c)); mode = 2;
#ifdef TICK_PREEMPTIBLE
                 stay[c] = 0; own[c] = 0    /* CPU c runs other code before the re-lock */
#endif
              fi }
     if
     :: mode == 1 ->
        atomic { LOCK(c, SL(h), TICK0 + c);
                 assert(home[R] == h);          /* a move of R needs S[c] as well */
                 cq_unlink(c, t); end_wait(c, t, TIMEDOUT); REACH(20);
                 UNLOCK(c, SL(h)); UNLOCK(c, SL(c));
                 stay[c] = 0; own[c] = 0; t = 0; w = 0; s = 0; h = 0; mode = 0 }
     :: mode == 2 ->                            /* take the locks in order, re-check */
        if
        :: w == WREPLY -> lock_two(c, t, R, TICK0 + c, h, h2)
        :: else -> atomic { LOCK(c, w, TICK0 + c) }; lock_home(c, t, TICK0 + c, h); h2 = h
        fi;
        atomic {
          assert(HOLDS(c, (w == WREPLY -> SL(h2) : w)) && HOLDS_HOME(c, t));
          if
          :: TICK_OK ->
             assert(wseq[t] == s);      /* 7: a tick ends only the wait it found due */
             if
             :: w == WREPLY -> cq_unlink(c, t); REACH(1)
             :: else -> assert(HOLDS(c, w) && sq[w] == t); sq[w] = NONE; REACH(2)
             fi;
             end_wait(c, t, TIMEDOUT)
          :: else ->
             if
             :: wseq[t] == s && res[t] == REPLY -> REACH(3)
             :: state[t] == BLOCKED && wseq[t] == s && wl[t] != w -> REACH(10);
#ifdef SAVE
                if :: wl[t] == WSAVED -> REACH(34) :: else fi
#else
                skip
#endif
             :: else
             fi
          fi;
          if :: w == WREPLY -> UNLOCK_S2(c, h, h2) :: else -> UNLOCK(c, SL(h)); UNLOCK(c, w) fi }
        atomic {                        /* outside every lock */
#ifndef BUG_TICK_NO_PIN
                 unpin(w);
#endif
                 if :: own[c] == TICK0 + c + 1 -> stay[c] = 0; own[c] = 0 :: else fi;
                 t = 0; w = 0; s = 0; h = 0; h2 = 0; mode = 0 }
     :: else
     fi
  od
}

#ifdef KILL
/* ---------------- a kill of C1 from a thread of CPU0: Scheduler::kill_locked ---------- */
proctype Killer() {
  byte w, s, h, h2, mode;
end_kill:
  (!cdone[C1]);                 /* a syscall: preemptible between its critical sections */
again:
  lock_home(0, C1, KILLER, h);
  atomic { assert(HOLDS_HOME(0, C1));
           exitreq = 1; mode = 0;
           if
           :: state[C1] == BLOCKED ->
              w = wl[C1]; s = wseq[C1];
              if
              :: w == WREPLY && RHOME == h ->
                 cq_unlink(0, C1); end_wait(0, C1, INTERRUPTED); REACH(5); REACH(24)
              :: w == WREPLY && RHOME > h -> h2 = RHOME; mode = 1
#ifdef SAVE
              :: w == WSAVED -> end_wait(0, C1, INTERRUPTED); REACH(29)   /* its lock: S[h] */
#endif
              :: else -> pin(w); mode = 2
              fi
           :: else
           fi;
           if :: mode != 1 -> UNLOCK(0, SL(h)) :: else fi }
  if
  :: mode == 1 ->
     atomic { LOCK(0, SL(h2), KILLER); assert(home[R] == h2);
              cq_unlink(0, C1); end_wait(0, C1, INTERRUPTED); REACH(5); REACH(25);
              UNLOCK(0, SL(h2)); UNLOCK(0, SL(h)) }
  :: mode == 2 ->
     if
     :: w == WREPLY -> lock_two(0, C1, R, KILLER, h, h2)
     :: else -> atomic { LOCK(0, w, KILLER) }; lock_home(0, C1, KILLER, h); h2 = h
     fi;
     atomic { assert(HOLDS(0, (w == WREPLY -> SL(h2) : w)) && HOLDS_HOME(0, C1));
              mode = 0;
              if
              :: state[C1] == BLOCKED && wl[C1] == w && wseq[C1] == s ->
                 if
                 :: w == WREPLY -> cq_unlink(0, C1); REACH(5)
                 :: else -> assert(sq[w] == C1); sq[w] = NONE
                 fi;
                 end_wait(0, C1, INTERRUPTED)
              :: state[C1] == BLOCKED && wseq[C1] == s && wl[C1] != w ->
#ifndef BUG_KILL_NO_RESTART
                 mode = 3;              /* the wait moved: start over */
#endif
                 REACH(6);
#ifdef SAVE
                 if :: wl[C1] == WSAVED -> REACH(35) :: else fi
#else
                 skip
#endif
              :: else -> REACH(13)      /* it ended meanwhile (a reply, timeout, death) */
              fi;
              if :: w == WREPLY -> UNLOCK_S2(0, h, h2) :: else -> UNLOCK(0, SL(h)); UNLOCK(0, w) fi }
     atomic { unpin(w); w = 0; s = 0; h = 0; h2 = 0;
              if :: mode == 3 -> mode = 0; goto again :: else fi }
  :: else
  fi;
  /* the kill is done: C1 waits no more (exit_requested stops new waits: 2) */
  assert(state[C1] != BLOCKED)
}
#endif

#ifdef MOVES
/* ---- one move of t (Blocked or Ready) from CPU f to the other, on CPU f: Scheduler::move_locked.
   S0 then S1; R's callers queue (guarded by S[home R]) goes along with R ---- */
proctype Mover(byte t; byte f; byte me) {
end_move:
  atomic { own[f] == 0 && lk[S0] == 0 && home[t] == f && state[t] != RUN ->
           LOCK(f, S0, me); stay[f] = 1 }
  atomic { LOCK(f, S1, me);
           if
           :: home[t] == f && state[t] != RUN ->
              home[t] = 1 - f; printf("CPU%d: moves %d (%e) away\n", f, t, state[t]);
              if :: t == R && (cq[C1] || cq[C0]) -> REACH(23) :: else fi
           :: else
           fi;
           UNLOCK(f, S1); UNLOCK(f, S0); stay[f] = 0; own[f] = 0 }
}
#endif

#ifdef SAVE
/* ---- the holder of the Reply handles, a thread of CPU c (RC: R's CPU by default, R or a
   worker answering later; -DREPLIER_CPU: the other CPU), preemptible between its critical
   sections: Reply::answer -> Endpoint::reply_saved, or the last handle closed:
   Reply::free_object -> Endpoint::drop_saved.  The caller t is pinned by the Reply's
   reference; rule 4 on t's home: read it, lock that S, read again, retry if it moved.
   Under S[home t] alone: if t still waits on this Reply (Blocked, wait lock WSAVED, the
   token's call number), answer it (Reply) or fail it (PeerDied); else BadHandle. Then,
   outside every lock, the Reply's reference is dropped and the Reply freed. ---- */
#ifdef BUG_SAVED_NO_SEQ
#define SAVED_SAME (state[t] == BLOCKED && wl[t] == WSAVED)
#else
#define SAVED_SAME (state[t] == BLOCKED && wl[t] == WSAVED && wseq[t] == s)
#endif
proctype Replier(byte c) {
  byte k, t, s, h;
end_rep:
  do
  :: atomic { svt[0] != NONE || svt[1] != NONE ->       /* a Reply handle in hand */
              if :: svt[0] != NONE -> k = 0 :: svt[1] != NONE -> k = 1 fi;
              t = svt[k]; s = svq[k] }
     do
     ::
#ifdef BUG_SAVED_NO_CALLER_S
        /* BUG: the callers queue's guard, S[home R], as for a reply off the queue */
        atomic { assert(!freedR); h = home[R]; LOCK(c, SL(h), REPLIER); break }
#else
#ifdef MOVES
        assert(!freedC[t]); h = home[t];                /* unlocked: may change */
        atomic {
#else
        atomic { assert(!freedC[t]); h = home[t];
#endif
                 LOCK(c, SL(h), REPLIER);
#ifndef BUG_SAVED_NO_REREAD
                 if
                 :: home[t] == h -> break
                 :: else -> REACH(32); UNLOCK(c, SL(h))
                 fi
#else
                 break
#endif
        }
#endif
     od;
     atomic {
       assert(HOLDS_HOME(c, t));                        /* the saved wait's lock */
       if
       :: SAVED_SAME ->
          assert(wseq[t] == s);         /* 7: a Reply ends only the call it was saved from */
          if                            /* answer it, or close its last handle */
          :: true ->
#ifndef BUG_DROP_NO_FAIL
             end_wait(c, t, PEERDIED);
#endif
             REACH(30)
          :: true ->
             rslot[t] = TOK(t, s - 1);  /* the answer to call s (its message) */
             end_wait(c, t, REPLY);
             if :: h != c -> REACH(27) :: else fi       /* the caller homed elsewhere */
          fi
       :: else -> REACH(31)     /* BadHandle: the wait ended first (timeout, kill) */
       fi;
       /* answered or closed, the Reply leaves no caller waiting on it (2) */
       assert(!(state[t] == BLOCKED && wl[t] == WSAVED && wseq[t] == s));
       UNLOCK(c, SL(h)) }
     atomic {                   /* outside every lock: the Reply's reference, the Reply */
#ifndef BUG_SAVED_NO_PIN
       refsC[t]--; if :: refsC[t] == 0 -> freedC[t] = 1; REACH(37) :: else fi;
#endif
       svt[k] = NONE; svq[k] = 0; k = 0; t = 0; s = 0; h = 0 }
  od
}
#endif

#ifdef FREE
/* ---- the close of EP[FE]'s last handle, by another thread of C1's process on CPU0:
   HandleTable::remove (under the table lock: vacate_locked, the slot emptied), then
   outside it report_and_release -> KObject::release, the last reference ->
   kobject_free -> Endpoint::free_object: { LockGuard used(endpoint->lock_); }, then
   kdelete.  It stands for the close that drops the LAST reference: it starts once every
   other one is gone (LAST_REF: R's, a wait's, a pin); a close that is not the last, and
   a free by another holder, are not modelled.  C1's fast path may still hold EP[FE]
   with TL let go: the free waits for it. ---- */
proctype Closer() {
end_close:
  atomic { LAST_REF && slot && own[0] == 0 && lk[TL] == 0 ->
           LOCK(0, TL, CLOSER); slot = 0; UNLOCK(0, TL) }   /* HandleTable::remove */
  /* outside every lock: the last reference dropped -> Endpoint::free_object */
  assert(LAST_REF);
#ifndef BUG_FREE_WITHOUT_LOCK
  atomic { if :: fpw && lk[FE] != 0 -> REACH(38) :: else fi;  /* waits for the fast path */
           LOCK(0, FE, CLOSER) }
  atomic { UNLOCK(0, FE); ep_freed[FE] = 1; REACH(39); printf("EP%d freed\n", FE) }
#else
  ep_freed[FE] = 1; printf("EP%d freed without its lock\n", FE)  /* BUG: no LockGuard used */
#endif
}
#endif

active proctype Check() {
end_check:
  timeout ->
  assert(lk[0] == 0 && lk[1] == 0 && lk[2] == 0 && lk[3] == 0);
#ifdef FREE
  assert(lk[TL] == 0 && (slot || ep_freed[FE]));  /* a closed last handle freed EP[FE] */
#endif
  assert(cdone[C1] && (NC0 == 0 || cdone[C0]));
  assert(!(state[R] == BLOCKED && rmsg != 0));
  assert(rdone || (state[R] == BLOCKED && (rcv[0] || rcv[1])));
  assert(!cq[C1] && !cq[C0] && sq[0] == NONE && sq[1] == NONE);
  assert(refsE[0] == 0 && refsE[1] == 0 && (freedR || refsR == 1));
#ifdef SAVE
  assert(svt[0] == NONE && svt[1] == NONE && refsC[C1] == 0 && refsC[C0] == 0);
#endif
  REACH(11)
}

init {
  atomic {
    home[R] = RH; home[C1] = 1; home[C0] = 0;
    state[R] = RUN; state[C1] = RUN; state[C0] = RUN;
    wl[R] = NOLOCK; wl[C1] = NOLOCK; wl[C0] = NOLOCK;
    sq[0] = NONE; sq[1] = NONE; rfrom = NONE; res[C1] = NORES; res[C0] = NORES;
#ifdef SAVE
    svt[0] = NONE; svt[1] = NONE; refsC[C1] = 1; refsC[C0] = NC0;
#endif
    run Server(); run Client(C1, 0, NCALL);
#ifdef C0CALL
    run Client(C0, 1, NC0);
#else
    cdone[C0] = 1;
#endif
    run Tick(0); run Tick(1)
#ifdef KILL
    ; run Killer()
#endif
#ifdef MOVE
    ; run Mover(C1, 1, MOVER)
#endif
#ifdef MOVE_C0
    ; run Mover(C0, 0, MOVER + 2)
#endif
#ifdef MOVE_R
    ; run Mover(R, RH, MOVER + 1)
#endif
#ifdef SAVE
    ; run Replier(RC)
#endif
#ifdef FREE
    ; run Closer()
#endif
  }
}
