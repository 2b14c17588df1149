/*
 * split_locks.pml -- Promela model of the DESIGN for splitting Scheduler::lock_ into one
 * lock per endpoint and one lock per CPU (tests/model/README.md, "split_locks.pml").
 * The kernel today still has one lock for everything (docs/locking.md); this model is
 * the protocol the code will follow.  Checked exhaustively by tests/model/run_spin.sh.
 *
 * Locks (each held by a CPU, with interrupts off on that CPU):
 *   E      Endpoint::lock_ (new, LockLevel::Endpoint): the endpoint's receivers_ and
 *          senders_ queues and the IPC delivery state of the threads queued on it
 *          (ist: Waiting / Delivered / Aborted, the message slot rmsg, the reply
 *          target rto).
 *   S[c]   Scheduler::lock_ of CPU c (new: one per CPU instead of one static lock):
 *          CPU c's ready queue, current_, timeouts, and the scheduling state
 *          (Blocked / Ready / Running, wake_reason, the armed deadline) of the threads
 *          homed on c; and a caller's reply wait (rst: Awaiting / Replied, the reply
 *          slot), guarded by the caller's home S lock.
 *   Order: E -> S[c]; never two S locks at once (asserted at every acquire).
 *
 * Threads: R (receiver, homed on CPU0) receives NMSG messages, each with a deadline
 * (timed recv), answers each, then exits.  C (homed on CPU1) makes NCALL calls.  With
 * -DDIRECT, C0 (homed on CPU0) makes one call, and may take the same-CPU direct switch
 * to R.  I0, I1: the idle threads.  Timer0: CPU0's tick, which may time R's wait out
 * (at most NTICKS ticks find R's deadline passed; protocol below).  With -DKILL,
 * Killer: one kill of C from CPU0, under S1 only (C gives its reply wait up under S1,
 * leaves senders_ under E, and ends; a reply that finds no wait is dropped; a reply
 * that came before C ran wins over the kill).  Each CPU runs one thread at a time:
 * on[c] is the thread whose code (and stack) CPU c is on; a thread's proctype moves
 * only while on[home] names it.  A switch is scheduled under S[c] and the lock is
 * HANDED OVER to the thread switched to, which releases it (as today).
 *
 * Each step of the model begins with one lock acquire and runs up to the next one (a
 * CPU's actions between two acquires are invisible to the other CPU while every access
 * follows the locks, and each access asserts that its CPU holds the lock guarding it).
 *
 * The timeout of an IPC wait (Scheduler::on_timer_tick -> expire_timeouts_locked of the
 * split code; the model's default protocol).  The tick is an interrupt: CPU0 takes it
 * only while it holds no lock, and runs nothing else until the handler returns (irq0;
 * interrupts stay off in it, also while it spins on a lock).  Under S0 alone it
 * expires the due timeouts of threads in no IPC wait (none in the model); R's due wait
 * is an IPC wait, so the tick
 *   1. releases S0;              (CPU1 may run here ...
 *   2. takes E;                   ... and here)
 *   3. takes S0 again (the order E -> S), and re-checks: R still Blocked with its
 *      deadline armed (and passed) -> off receivers_, its IPC operation ended with
 *      TimedOut (ist ABORTED: op None, result TimedOut; ipc_abort_locked, which leaves a
 *      completed result alone), disarmed, woken with TimedOut (Ready); else nothing
 *      (a call delivered to R and woke it meanwhile: REACH(14)); releases both.
 * A delivery happens under E and wakes R (cancelling its timeout) under S0 before E is
 * released, so a wait the tick ends under E was not delivered, and a delivered wait is
 * never timed out.  R's finish_recv reads its result under E: Delivered (the message),
 * or ABORTED (TimedOut; the tick unlinked it already).  The re-check cannot meet a NEW
 * wait of R's: R runs only on CPU0, which is in the handler (asserted: tickw), so
 * "Blocked and armed" is "the deadline still due" here (with migration, or a kill that
 * ends R's wait from CPU1, the code's deadline comparison is what tells them apart).
 * -DTICK_S0_ONLY: the old protocol (the design before the code changed), kept as a
 * variant: the tick wakes R with TimedOut under S0 only, in one step, and never takes
 * E; R, run again, unlinks itself from receivers_ under E (finish_recv: Delivered wins
 * over the wake_reason).
 *
 * Properties:
 *   1. no lost wake-up: spin's invalid-end-state check (a thread left Blocked, or a CPU
 *      spinning on a lock, for ever) and the end-of-run check (Check): every call got
 *      its reply, R received every message and exited, both CPUs idle and halted,
 *      nothing ready, no interrupt pending, no lock held;
 *   2. no lost or duplicated message: a delivered message is returned by R's recv as a
 *      success exactly once (got[]), even when the timeout fired too; a recv that
 *      returns no message ended for a reason (TimedOut) and was unlinked by the tick
 *      (ABORTED); a delivered wait was not woken TimedOut (default protocol: delivery
 *      and the timeout are both decided under E); each call gets its own reply;
 *   3. one CPU per stack: a CPU switches only to a thread of its own that no CPU is on
 *      (stk[]); a thread made Running is on no ready queue; whoever finds a thread
 *      Blocked under its S lock finds its CPU off its stack (the hand-over);
 *   4. lock order: no E acquire with an S lock held, no S acquire with an S lock held;
 *      no deadlock (invalid end states; Check: no lock held when nothing can move);
 *   5. mutual exclusion: one holder per lock; every access asserts its lock is held.
 *
 * Design corrections the model forced (the model checks the corrected design; the
 * first proposal is kept as a negative control):
 *   WAKE_AFTER_E      (control) call_impl releases E before waking R under S0.  Between
 *                     the two, R's timeout fires, R runs, takes the message, answers and
 *                     blocks in its NEXT recv; the late wake then wakes that new wait
 *                     with Woken and no message.  Fix (default): wake R under S0 while
 *                     still holding E (E -> S0 is the lock order): R cannot start a new
 *                     wait without E, so the wake always ends the wait it was for.
 *                     A CPU may then hold E while it waits for the other CPU's S0: so
 *                     nothing may take E with an S held (BUG_TIMER_TAKES_E deadlocks).
 *                     With the default tick, the tick can also take E between the
 *                     call's release of E and its wake, and time out the wait the call
 *                     delivered to (assert(wr[R] != TIMEDOUT) in finish_recv): either
 *                     failure counts.
 *   DIRECT_NO_STATE_CHECK (control, -DTICK_S0_ONLY) the direct switch does not look at
 *                     R's state under S0: R timed out (Ready, on CPU0's ready queue, still
 *                     on receivers_ until it runs) is switched to and left on the ready
 *                     queue too.  Fix: switch directly only if R is still Blocked; else
 *                     deliver (R finds Delivered when it runs) and block the usual way.
 *                     With the default tick (which unlinks R under E) a receiver found on
 *                     receivers_ under E is always Blocked: the check never fails there
 *                     and the control needs -DTICK_S0_ONLY (spin finds no error without).
 * Negative controls (must FAIL):
 *   BUG_UNLOCK_E_BEFORE_BLOCK  recv releases E before S0 / Blocked: the call's wake
 *                              finds R not yet Blocked and does nothing; R then blocks
 *                              with the message delivered: for ever, or until the tick
 *                              times the delivered wait out (wr[R] != TIMEDOUT fails)
 *   BUG_CLEANUP_IGNORES_DELIVERED  (-DTICK_S0_ONLY only) R's wake-up path after a
 *                              timeout looks at its wake_reason, not at Delivered: the
 *                              message is lost.  It no longer applies to the default
 *                              protocol: a TimedOut wake there always comes with the
 *                              result TimedOut (the tick ended the wait under E, where
 *                              no delivery can be half done), so there is no Delivered
 *                              for a wake_reason test to miss (asserted in finish_recv)
 *   BUG_BLOCK_NO_REPLY_CHECK   the caller blocks for its reply without looking at rst
 *                              under S1: a reply that came first is lost
 *   BUG_TIMER_TAKES_E          the tick takes E while still holding S0 (S0 -> E,
 *                              against the order; this acquire leaves the order
 *                              assertion out, to show the deadlock itself): call_impl
 *                              holds E and wants S0
 *   BUG_TICK_NO_RECHECK        the tick, E and S0 taken again, ends the wait it saw due
 *                              under S0 alone without re-checking it: a call delivered
 *                              to R and woke it in between; the tick overwrites the
 *                              Delivered result with TimedOut: the message is lost
 *                              (R finds TimedOut with wake_reason Woken)
 *   BUG_RELEASE_BEFORE_SWITCH  CPU0 releases S0 while still on the old thread's stack
 *                              (every CPU0 switch): CPU1's wake finds R Blocked while
 *                              CPU0 is still on R's stack
 *   WAKE_AFTER_E, DIRECT_NO_STATE_CHECK  (above)
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text).  4, 7 and 8 are
 * reached only with -DTICK_S0_ONLY (with the default tick a receiver is never Ready and
 * still on receivers_, and a delivered wait never times out); 14 only without it.
 */
#define R    0                  /* receiver, homed on CPU0 */
#define C    1                  /* caller, homed on CPU1 */
#define C0   2                  /* caller homed on CPU0 (-DDIRECT) */
#define I0   3                  /* CPU0's idle thread */
#define I1   4                  /* CPU1's idle thread */
#define NT   5
#define NONE 255
#ifndef NCALL
#define NCALL 2                 /* C's calls */
#endif
#ifdef DIRECT
#define NC0 1                   /* C0's calls */
#else
#define NC0 0
#endif
#define NMSG (NCALL + NC0)      /* R's successful receives */
#ifndef NTICKS
#define NTICKS 1                /* timeouts of R's waits the timer may fire */
#endif
#define H(c) ((c) + 1)          /* lock holder: 0 free, 1 CPU0, 2 CPU1 */
#define TOK(t, i) ((t) * 4 + (i) + 1)   /* message of call i of thread t; the reply = the same */

mtype = { RUNNING, READY, BLOCKED, DEAD };     /* ThreadState */
mtype = { WOKEN, TIMEDOUT, INTERRUPTED };      /* WakeReason */
mtype = { IDLE, WAITING, DELIVERED, ABORTED }; /* IpcState of R on the endpoint; ABORTED:
                                                  op None, result TimedOut (ipc_abort_locked) */
mtype = { NOWAIT, AWAITING, REPLIED };         /* a caller's reply wait */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)
#else
#define REACH(n) skip
#endif

/* locks */
byte  elk;                      /* Endpoint::lock_ holder */
byte  slk[2];                   /* Scheduler::lock_ of each CPU: holder */
byte  sheld[2];                 /* ghost: the S lock CPU c holds (0 none, x+1: S[x]) */
/* per CPU, guarded by S[c] */
byte  cur[2];                   /* Scheduler::current_ */
byte  rq[4];                    /* ready_ of CPU c: rq[2c], rq[2c+1] (FIFO) */
byte  rql[2];
bit   pend[2];                  /* the notify vector / tick pending at CPU c */
bit   halted[2];                /* CPU c in hlt */
/* per thread, guarded by S[home[t]] */
mtype state[NT];                /* Thread::state */
mtype wr[NT];                   /* Thread::wake_reason */
bit   armed;                    /* R's timeout_hook on CPU0's timeouts_ */
mtype rst[NT];                  /* the caller's reply wait (new) */
byte  rslot[NT];                /* its reply slot */
/* guarded by E */
bit   rcvq;                     /* R on receivers_ */
byte  sq[2];                    /* senders_ (FIFO): callers that found no receiver */
byte  sql;
byte  stok[NT];                 /* a queued sender's message */
mtype ist = IDLE;               /* R's IpcState on the endpoint (new: guarded by E) */
byte  rmsg;                     /* R's message slot */
byte  rto = NONE;               /* R's reply target (IpcState::reply) */
/* constant / ghosts */
byte  home[NT];
byte  on[2];                    /* ghost: the thread whose code and stack CPU c is on */
byte  stk[NT];                  /* ghost: 0 no CPU on t's stack, H(c): CPU c */
byte  ticks;                    /* ghost: timeouts fired */
bit   got[16];                  /* ghost: messages R's recv returned as a success */
byte  ngot, ntaken, nreplied;   /* ghosts: messages R returned, handed to R; replies */
bit   exitreq;                  /* C's Thread::exit_requested (-DKILL) */
bit   killed;                   /* ghost: the kill happened */
#ifdef KILL
#define KILLED(t) ((t) == C && exitreq)
#else
#define KILLED(t) false
#endif

#if defined(BUG_CLEANUP_IGNORES_DELIVERED) && !defined(TICK_S0_ONLY)
#error "BUG_CLEANUP_IGNORES_DELIVERED is a control of the old protocol: add -DTICK_S0_ONLY"
#endif
#if defined(DIRECT_NO_STATE_CHECK) && !defined(TICK_S0_ONLY)
#error "DIRECT_NO_STATE_CHECK is a control of the old protocol: add -DTICK_S0_ONLY"
#endif
bit   irq0;                     /* CPU0 in the tick's handler (interrupts off): its threads
                                   and its idle loop stand still until the handler returns */
bit   tickw;                    /* ghost: R's wait is still the one the tick found due */
#define NOIRQ(c) (c != 0 || !irq0)
#define ON(c, t) (on[c] == t && NOIRQ(c))

/* lockE / lockS: thread code on CPU c, which moves only while no interrupt handler runs
   there; the _when forms with ok_ = true: the tick's handler itself (irq0 set) */
inline lockE_when(c_, ok_) {      /* LockGuard on Endpoint::lock_ (new) */
  assert(sheld[c_] == 0);        /* 4: never S before E */
  elk == 0 && ok_ -> elk = H(c_)
}
inline lockE(c_) { lockE_when(c_, NOIRQ(c_)) }
inline unlockE(c_) { assert(elk == H(c_)); elk = 0 }
inline lockS_when(c_, x_, ok_) {  /* LockGuard on Scheduler::lock_ of CPU x (new: per CPU) */
  assert(sheld[c_] == 0);        /* 4: never two S locks */
  slk[x_] == 0 && ok_ -> slk[x_] = H(c_); sheld[c_] = x_ + 1
}
inline lockS(c_, x_) { lockS_when(c_, x_, NOIRQ(c_)) }
inline unlockS(c_, x_) { assert(slk[x_] == H(c_) && sheld[c_] == x_ + 1); slk[x_] = 0; sheld[c_] = 0 }
#define HOLDS_S(c, t) (slk[home[t]] == H(c) && sheld[c] == home[t] + 1)
#define INTS_ON(c) (elk != H(c) && sheld[c] == 0)   /* a CPU holding no lock may take interrupts */

/* Scheduler::enqueue_locked(t) from CPU c: push on t's home CPU's ready_; notify_cpu
   (an IPI) if that is another CPU and it runs its idle thread */
inline enqueue_locked(c_, t_) {
  assert(HOLDS_S(c_, t_) && state[t_] == READY);
  assert(rql[home[t_]] < 2);                                   /* room: at most 2 Ready */
  assert(rql[home[t_]] == 0 || rq[2 * home[t_]] != t_);        /* not queued twice */
  rq[2 * home[t_] + rql[home[t_]]] = t_; rql[home[t_]]++;
  if
  :: cur[home[t_]] == I0 + home[t_] ->
     pend[home[t_]] = 1;         /* Cpu::notify_cpu; the own CPU's tick ends its hlt alike */
     if :: home[t_] != c_ -> REACH(1) :: else fi
  :: else
  fi
}

/* Scheduler::wake_locked(t, reason) from CPU c (end_wait_locked + enqueue_locked):
   only a Blocked thread; cancels its timeout */
inline wake_locked(c_, t_, reason_) {
  assert(HOLDS_S(c_, t_));
  if
  :: state[t_] == BLOCKED ->
     assert(stk[t_] == 0);       /* 3: the hand-over: its CPU is off its stack */
     state[t_] = READY; wr[t_] = reason_;
     printf("CPU%d: wakes %d (%e)\n", c_, t_, reason_);
     if :: t_ == R -> armed = 0 :: else fi;
     enqueue_locked(c_, t_)
  :: else
  fi
}

/* Scheduler::schedule_locked on CPU c after prev stopped running (Blocked or Dead):
   the next ready thread, else the idle thread (switch_locked's bookkeeping) */
inline schedule_locked(c_, prev_, nxt_) {
  assert(slk[c_] == H(c_) && cur[c_] == prev_ && on[c_] == prev_);
  if :: prev_ == I0 + c_ -> state[prev_] = READY :: else -> assert(state[prev_] != RUNNING) fi;
  if
  :: rql[c_] > 0 -> nxt_ = rq[2 * c_]; rq[2 * c_] = rq[2 * c_ + 1]; rq[2 * c_ + 1] = 0; rql[c_]--;
     assert(state[nxt_] == READY)
  :: else -> nxt_ = I0 + c_
  fi;
  state[nxt_] = RUNNING; cur[c_] = nxt_
}

/* Cpu::switch_context on CPU c: off prev's stack, on cur[c]'s; S[c] stays held by CPU c
   (handed over to the thread switched to, which releases it) */
inline switch_context(c_, prev_) {
#ifdef BUG_RELEASE_BEFORE_SWITCH
  if :: c_ == 0 -> atomic { unlockS(c_, c_) } :: else fi;   /* released while on prev_'s stack */
#endif
  atomic {
    assert(on[c_] == prev_ && stk[prev_] == H(c_));
    stk[prev_] = 0;
    assert(home[cur[c_]] == c_ && stk[cur[c_]] == 0 && state[cur[c_]] == RUNNING);
    stk[cur[c_]] = H(c_); on[c_] = cur[c_]
  }
}
inline release_handed_over(c_) {   /* the thread switched to: finish_switch_in / LockGuard */
#ifdef BUG_RELEASE_BEFORE_SWITCH
  if :: c_ == 0 -> skip :: else -> unlockS(c_, c_) fi
#else
  unlockS(c_, c_)
#endif
}

/* Scheduler::exit_current on CPU c (bury_locked and the reaper are not modelled) */
inline exit_current(c_, t_, nxt_) {
  atomic { ON(c_, t_) -> lockS(c_, c_); state[t_] = DEAD; schedule_locked(c_, t_, nxt_) }
  switch_context(c_, t_)
}

/* the reply to a caller, from R on CPU0: Endpoint::reply -> (new) reply_locked under the
   caller's home S lock: the answer, and a wake if the caller is Blocked for it */
inline reply_to(t_) {
  atomic { lockS(0, home[t_]);
#ifdef KILL
           if
           :: rst[t_] != AWAITING ->    /* the caller was killed and gave up: drop */
              assert(killed && t_ == C); REACH(12); printf("R: reply to %d dropped\n", t_)
           :: else ->
#endif
           assert(rst[t_] == AWAITING); rst[t_] = REPLIED; rslot[t_] = rmsg;
           printf("R: replies %d to %d (%e)\n", rmsg, t_, state[t_]);
           if :: state[t_] != BLOCKED -> REACH(2) :: else fi;   /* the reply came first */
           wake_locked(0, t_, WOKEN);
#ifdef KILL
           fi;
#endif
           unlockS(0, home[t_]) }
}

proctype Receiver() {           /* R on CPU0: NMSG x Endpoint::recv (timed) + reply; exit */
  byte nxt, s;
  do
  :: ngot < NMSG ->
     /* Endpoint::recv: lock E; a queued sender? (Endpoint::take_from_sender_locked) */
     atomic { ON(0, R) -> lockE(0);
              assert(ist == IDLE && !rcvq);
              if
              :: sql > 0 -> s = sq[0]; sq[0] = sq[1]; sq[1] = 0; sql--;
                 rmsg = stok[s]; rto = s; ntaken++; unlockE(0); REACH(3);
                 printf("R: recv takes %d from senders_\n", rmsg);
                 goto received
              :: else -> rcvq = 1; ist = WAITING;     /* receivers_, IpcState Waiting */
                 printf("R: recv waits on receivers_\n")
              fi }
#ifdef BUG_UNLOCK_E_BEFORE_BLOCK
     atomic { unlockE(0) };
#endif
     /* block_current_locked(receivers_, deadline): lock S0, Blocked, arm, unlock E,
        schedule; S0 handed over to the next thread */
     atomic { lockS(0, 0); assert(state[R] == RUNNING && cur[0] == R);
              state[R] = BLOCKED; armed = 1; tickw = 0; printf("R: Blocked (deadline armed)\n");
#ifndef BUG_UNLOCK_E_BEFORE_BLOCK
              unlockE(0);
#endif
              schedule_locked(0, R, nxt) }
     switch_context(0, R);
     /* switched to again (wake, timeout or the direct switch): release S0 */
#ifdef KILL
end_recv:                       /* the killed caller's calls never come */
#endif
     atomic { on[0] == R -> assert(state[R] == RUNNING && cur[0] == R && !armed);
              release_handed_over(0) }
#ifdef TICK_S0_ONLY
     /* Endpoint::finish_recv (old protocol's rule): under E, Delivered wins over any wake_reason */
     atomic { lockE(0);
#ifdef BUG_CLEANUP_IGNORES_DELIVERED
              if :: wr[R] == TIMEDOUT -> rcvq = 0; ist = IDLE; rto = NONE;
                       printf("R: timed out: drops the wait, Delivered or not\n") :: else fi;
#endif
              if
              :: ist == DELIVERED -> ist = IDLE; unlockE(0);
                 printf("R: recv returns %d (Delivered; wake_reason %e)\n", rmsg, wr[R]);
                 if :: wr[R] == TIMEDOUT -> REACH(4) :: else fi
              :: else ->
                 printf("R: recv ends with no message, wake_reason %e\n", wr[R]);
                 assert(wr[R] == TIMEDOUT);  /* 2: no message, so the wait really ended */
                 if :: rcvq -> rcvq = 0 :: else fi;
                 ist = IDLE; unlockE(0); REACH(5);
                 goto next                   /* TimedOut: R's user code calls recv again */
              fi }
#else
     /* Endpoint::finish_recv: under E, read the result: the tick that timed the wait out
        ended it under E (off receivers_, TimedOut), a delivery under E too */
     atomic { lockE(0);
              assert(!rcvq);                 /* whoever ended the wait unlinked R */
              if
              :: ist == DELIVERED -> ist = IDLE; unlockE(0);
                 printf("R: recv returns %d (Delivered; wake_reason %e)\n", rmsg, wr[R]);
                 assert(wr[R] != TIMEDOUT)   /* 2: a delivered wait never times out */
              :: else ->
                 printf("R: recv ends with no message (%e), wake_reason %e\n", ist, wr[R]);
                 assert(wr[R] == TIMEDOUT);  /* 2: no message, so the wait really ended */
                 assert(ist == ABORTED);     /* ended by the tick: TimedOut */
                 ist = IDLE; unlockE(0); REACH(5);
                 goto next                   /* TimedOut: R's user code calls recv again */
              fi }
#endif
received:
     /* 2: each message returned once, as a success */
     atomic { assert(rmsg != 0 && !got[rmsg]); got[rmsg] = 1; ngot++ }
     reply_to(rto);
     rto = NONE; rmsg = 0;
next: skip
  :: else -> break
  od;
  exit_current(0, R, nxt)
}

/* the caller's reply, under its own S lock: 2. its own call's answer */
inline take_reply(t_, i_) {
  assert(rst[t_] == REPLIED && rslot[t_] == TOK(t_, i_)); rst[t_] = NOWAIT; rslot[t_] = 0
}

/* a caller: t on CPU c, n calls: Endpoint::call_impl then the wait for the reply */
proctype Caller(byte t; byte c; byte n) {
  byte i, nxt;
  bit direct;
  if
  :: t == C0 ->                 /* started Ready: mk_thread_start -> finish_switch_in */
     atomic { on[c] == t -> release_handed_over(c) }
  :: else
  fi;
  do
  :: i < n && !KILLED(t) ->     /* before_return_to_user: a killed thread ends */
     direct = 0;
     /* Endpoint::call_impl: lock E; a waiting receiver? */
     atomic { ON(c, t) -> lockE(c);
              if
              :: rcvq -> rcvq = 0; assert(ist == WAITING);
                 ist = DELIVERED; rmsg = TOK(t, i); rto = t;   /* complete_locked (deliver) */
                 ntaken++; printf("%d: call delivers %d to the waiting R\n", t, rmsg)
              :: else ->                                         /* queue on senders_ */
                 sq[sql] = t; sql++; stok[t] = TOK(t, i);
                 printf("%d: no receiver, queues %d on senders_\n", t, stok[t]);
                 goto queued
              fi }
#ifdef DIRECT
     if
     :: c == 0 ->
        /* same CPU: switch_to_locked(R) under S0 (the IPC fast path) */
        atomic { lockS(c, 0);
#ifndef DIRECT_NO_STATE_CHECK
                 if
                 :: state[R] == BLOCKED ->
#endif
                    assert(rql[0] == 0 || (rq[0] != R && rq[1] != R));  /* 3 */
                    rst[t] = AWAITING; state[t] = BLOCKED;
                    armed = 0; wr[R] = WOKEN; state[R] = RUNNING; cur[0] = R;
                    unlockE(c); direct = 1; REACH(6);
                    printf("%d: direct switch to R\n", t)
#ifndef DIRECT_NO_STATE_CHECK
                 :: else ->     /* R timed out: it finds Delivered when it runs */
                    rst[t] = AWAITING; unlockS(c, 0); unlockE(c); REACH(7)
                 fi
#endif
        }
        if :: direct -> switch_context(c, t); goto resumed :: else -> goto wait fi
     :: else
     fi;
#endif
     /* cross-CPU: the reply wait first (under the caller's S lock, E still held) */
     atomic { lockS(c, c); rst[t] = AWAITING; unlockS(c, c)
#ifdef WAKE_AFTER_E
              ; unlockE(c)
#endif
     }
     /* wake R under S0: wake_locked (Ready, CPU0's ready_, notify_cpu(0) if idle) */
     atomic { lockS(c, 0);
              if :: state[R] != BLOCKED -> REACH(8) :: else fi;   /* R timed out first */
              printf("%d: wakes R (%e)\n", t, state[R]);
              wake_locked(c, R, WOKEN); unlockS(c, 0)
#ifndef WAKE_AFTER_E
              ; unlockE(c)
#endif
     }
wait:
     /* wait for the reply: lock own S; Replied? else block_current_locked */
     atomic { lockS(c, c);
#ifndef BUG_BLOCK_NO_REPLY_CHECK
              if
              :: rst[t] == REPLIED -> take_reply(t, i); unlockS(c, c); REACH(9); goto answered
              :: KILLED(t) ->           /* block_current_locked: exit_requested, no block */
                 rst[t] = NOWAIT; unlockS(c, c); goto interrupted
              :: else
              fi;
#endif
              state[t] = BLOCKED; printf("%d: Blocked for the reply\n", t);
              schedule_locked(c, t, nxt) }
     switch_context(c, t);
     goto resumed;
queued:
     /* no receiver: block on senders_ awaiting the reply (lock S, Blocked, unlock E) */
     atomic { lockS(c, c);
              if
              :: KILLED(t) -> sql--; sq[sql] = 0; unlockS(c, c); unlockE(c); goto interrupted
              :: else
              fi;
              rst[t] = AWAITING; state[t] = BLOCKED; unlockE(c);
              schedule_locked(c, t, nxt) }
     switch_context(c, t);
resumed:
     /* woken by the reply: read it under the own S lock (handed over), release */
     atomic { on[c] == t -> assert(state[t] == RUNNING && cur[c] == t);
#ifdef KILL
              if
              :: rst[t] != REPLIED ->   /* woken by the kill: give the reply wait up */
                 assert(KILLED(t) && wr[t] == INTERRUPTED); REACH(11);
                 rst[t] = NOWAIT; release_handed_over(c); goto withdraw
              :: else
              fi;
#endif
              if :: KILLED(t) -> REACH(13) :: else fi;   /* the reply came before C ran */
              take_reply(t, i); release_handed_over(c) }
answered:
     nreplied++; i++
  :: else -> break
  od;
  goto done;
withdraw:                       /* Interrupted: off senders_ if still there (under E) */
  atomic { lockE(c);
           if
           :: sql > 0 && sq[0] == t -> sq[0] = sq[1]; sq[1] = 0; sql--
           :: sql > 1 && sq[1] == t -> sq[1] = 0; sql--
           :: else
           fi;
           unlockE(c) }
interrupted:                    /* the call returns Interrupted: only a killed thread */
  assert(KILLED(t)); printf("%d: call Interrupted\n", t);
done:
  exit_current(c, t, nxt)
}

/* Scheduler::idle_loop -> idle_once on CPU c: interrupts off, lock S[c]; work ready ->
   schedule; else unlock and `sti; hlt` as one step.  The notify (or the tick) ends the
   hlt; preempt_if_needed at the end of the interrupt is the next idle_once pass. */
proctype Idle(byte c) {
  byte me, nxt;
  me = I0 + c;
end_idle:                       /* switched to: release the lock handed over */
  atomic { on[c] == me -> release_handed_over(c) }
  do
  :: atomic { ON(c, me) -> lockS(c, c);
              if
              :: rql[c] > 0 -> schedule_locked(c, me, nxt)
              :: else -> unlockS(c, c); halted[c] = 1       /* sti; hlt */
              fi }
     if
     :: halted[c] ->
end_hlt: atomic { pend[c] && NOIRQ(c) -> pend[c] = 0; halted[c] = 0 }  /* the interrupt ends it */
     :: else -> switch_context(c, me); goto end_idle
     fi
  od
}

/* the tick's timeout of R's IPC wait, under E and S0 (default protocol): re-check that R's
   wait is still the one found due (Blocked, deadline armed and passed); if so end it the
   way end_wait_locked does: off receivers_, ipc_abort_locked (a result still pending
   becomes TimedOut; a completed one stays), disarm, wake with TimedOut */
inline tick_times_out_locked() {
  assert(elk == H(0) && HOLDS_S(0, R));
#ifndef BUG_TICK_NO_RECHECK
  if
  :: state[R] == BLOCKED && armed ->   /* the deadline still armed: still due */
     assert(tickw);                    /* the same wait: R cannot run while CPU0 is here */
#endif
     if :: rcvq -> rcvq = 0 :: else fi;                     /* off receivers_ */
#ifdef BUG_TICK_NO_RECHECK
     ist = ABORTED;                    /* ends the wait it saw under S0 alone, ended or not */
#else
     if :: ist == WAITING -> ist = ABORTED :: else fi;      /* ipc_abort_locked */
#endif
     printf("CPU0: tick: R's wait times out (%e)\n", state[R]);
     wake_locked(0, R, TIMEDOUT)       /* disarms; Ready, CPU0's ready_ */
#ifndef BUG_TICK_NO_RECHECK
  :: else ->                           /* a call delivered and woke R meanwhile */
     REACH(14); printf("CPU0: tick: R's wait ended meanwhile (%e)\n", state[R])
  fi
#endif
}

/* Scheduler::on_timer_tick of CPU0, an interrupt: taken only where CPU0 holds no lock;
   interrupts stay off in the handler (irq0: CPU0 runs nothing else until it returns).
   R's deadline passed.  Under S0 alone the tick expires the due timeouts of threads in
   no IPC wait (none here); R's is an IPC wait, so: release S0; lock E; lock S0 (the order
   E -> S); re-check and time R's wait out (tick_times_out_locked); release both.
   -DTICK_S0_ONLY (the old protocol): wake_locked(R, TimedOut) under S0 only; R unlinks
   itself from receivers_ when it runs (finish_recv: Delivered wins). */
active proctype Timer0() {
end_timer:
  do
  :: atomic { ticks < NTICKS && INTS_ON(0) && NOIRQ(0) && slk[0] == 0 && state[R] == BLOCKED && armed ->
              lockS(0, 0); ticks++;
#ifdef TICK_S0_ONLY
              printf("CPU0: tick: R's deadline passed\n");
              wake_locked(0, R, TIMEDOUT); unlockS(0, 0) }
#else
              irq0 = 1; tickw = 1;
              printf("CPU0: tick: R's deadline passed; an IPC wait\n");
#ifndef BUG_TIMER_TAKES_E
              unlockS(0, 0) }
     atomic { lockE_when(0, true) }    /* CPU1 may run between the steps, CPU0 may not */
     atomic { lockS_when(0, 0, true);
              tick_times_out_locked();
              unlockS(0, 0); unlockE(0); irq0 = 0 }
#else
     }                                 /* S0 kept */
     atomic { elk == 0 -> elk = H(0);  /* S0 -> E: against the order (assertion left out) */
              tick_times_out_locked();
              unlockE(0); unlockS(0, 0); irq0 = 0 }
#endif
#endif
  od
}

#ifdef KILL
/* Scheduler::kill -> kill_locked(C), from CPU0 (interrupts on there), once: under C's
   home lock S1 only: exit_requested, and a Blocked C woken with Interrupted */
proctype Killer() {
end_kill:
  atomic { INTS_ON(0) && NOIRQ(0) && slk[1] == 0 && state[C] != DEAD ->
           lockS(0, 1); exitreq = 1; killed = 1;
           printf("CPU0: kill C (%e)\n", state[C]);
           wake_locked(0, C, INTERRUPTED); unlockS(0, 1) }
}
#endif

active proctype Check() {       /* ghost: when nothing can move any more */
end_check:
  timeout ->
  assert(elk == 0 && slk[0] == 0 && slk[1] == 0);       /* 4: no CPU spins for ever */
  assert(!(state[R] == BLOCKED && ist == DELIVERED));    /* 1: R slept through its message */
  assert(!(state[C] == BLOCKED && rst[C] == REPLIED) &&
         !(state[C0] == BLOCKED && rst[C0] == REPLIED)); /* 1: a caller slept through its reply */
  assert(ngot == ntaken);                                /* 2: a message handed to R was lost */
  assert(state[C] == DEAD && state[C0] == DEAD && sql == 0);
  if
  :: killed ->                  /* R may wait for ever for the calls C never made */
     assert(state[R] == DEAD || (state[R] == BLOCKED && rcvq && ist == WAITING))
  :: else -> assert(ngot == NMSG && nreplied == NMSG && state[R] == DEAD)
  fi;
  assert(cur[0] == I0 && cur[1] == I1 && halted[0] && halted[1]);
  assert(rql[0] == 0 && rql[1] == 0 && !pend[0] && !pend[1]);
  REACH(10)
}

init {
  atomic {
    home[R] = 0; home[C] = 1; home[C0] = 0; home[I0] = 0; home[I1] = 1;
    state[R] = RUNNING; state[C] = RUNNING; state[I0] = READY; state[I1] = READY;
    cur[0] = R; on[0] = R; stk[R] = H(0);
    cur[1] = C; on[1] = C; stk[C] = H(1);
#ifdef DIRECT
    state[C0] = READY; rq[0] = C0; rql[0] = 1;
#else
    state[C0] = DEAD;
#endif
    run Receiver(); run Caller(C, 1, NCALL);
#ifdef DIRECT
    run Caller(C0, 0, NC0);
#endif
    run Idle(0); run Idle(1)
#ifdef KILL
    ; run Killer()
#endif
  }
}
