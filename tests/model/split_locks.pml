/*
 * split_locks.pml -- Promela model of the kernel's locking for IPC between two CPUs, with
 * one scheduler lock per CPU (tests/model/README.md, "split_locks.pml"): the endpoint's
 * lock E (LockLevel::Endpoint; one endpoint here, so the one IPC lock g_ipc_lock the code
 * had and the endpoint's own, Endpoint::lock_, are the same to it) and Scheduler::lock_
 * made per CPU (S[c]), the protocol the code follows as it moves from one scheduler lock
 * to one per CPU (docs/locking.md).  Checked exhaustively by tests/model/run_spin.sh.
 *
 * Locks (each held by a CPU, with interrupts off on that CPU):
 *   E      g_ipc_lock: the endpoint's receivers_ and senders_ queues and every thread's
 *          IpcState: R's (ist: Waiting / Delivered / Aborted, the message slot rmsg, the
 *          reply target rto) and a caller's reply wait (rst: Awaiting (op ReplyWait) /
 *          Replied, the reply slot rslot).
 *   S[c]   Scheduler::lock_ of CPU c: CPU c's ready queue, current_, timeouts, and the
 *          scheduling state (Blocked / Ready / Running, wake_reason, the armed deadline,
 *          exit_requested) of the threads homed on c.
 *   Order: E -> S[own] -> S[other].  Every IPC operation (Endpoint::recv, call_impl,
 *   reply, Scheduler::kill, exit_current, the tick's second pass) takes E, then its own
 *   CPU's S lock (IpcGuard), and holds both for the whole operation.  A wake or a kill of
 *   a thread homed on the other CPU (wake_locked, kill_locked) takes that thread's home
 *   lock as a SECOND scheduler lock, E and S[own] held, for the short section that
 *   changes its scheduling state, and releases it; a move of a thread to another CPU
 *   (move_locked) likewise runs on its home CPU under E and S[home] and takes the
 *   destination's S lock as the second one.  What makes two S locks safe, each rule
 *   alone: (1) a second S lock is taken only with E held, so E serializes every CPU that
 *   holds two, and at most one CPU at a time waits for an S lock while holding another;
 *   (2) the two are held in CPU index order, the lower taken first: a HomeLock of the
 *   lower CPU lets go of the own S lock, takes the other, then the own again (lockS2;
 *   with E held nobody else can take the own one in between).  A CPU that holds one S
 *   lock never waits for E (E comes first).  Code that holds an S lock without E (the
 *   tick's first pass, the idle loop, a switch) never takes a second.  Asserted at every
 *   acquire: no E acquire with an S lock held; the first S lock is the own CPU's (or,
 *   with E held, the lower one of a HomeLock); a second S lock only with E held and in
 *   index order; never a third.
 *
 * Threads: R (receiver, homed on CPU0) receives NMSG messages, each with a deadline
 * (timed recv), answers each, then exits.  C (homed on CPU1) makes NCALL calls: under
 * E and S1 it delivers to R and wakes it under S0 (second lock), then blocks for the
 * reply.  R's replies to C take E and S0, then S1 as the second lock to wake C.  With
 * -DDIRECT, C0 (homed on CPU0) makes one call, and may take the same-CPU direct switch to
 * R (S0 is its own lock: no second one).  I0, I1: the idle threads.  Timer0: CPU0's tick,
 * which may time R's wait out (at most NTICKS ticks find R's deadline passed; protocol
 * below).  With -DKILL, Killer: one kill of C from CPU0 (E, S0, then S1 as the second
 * lock): exit_requested, and a Blocked C woken with Interrupted, its wait ended there
 * (off senders_, its reply wait aborted: a later reply to it is stale and dropped); a
 * reply that woke C before the kill wins (the call succeeded; C ends at its next return
 * to user mode).  With -DMOVE (without -DDIRECT): one move of C from CPU1 to CPU0
 * (Scheduler::move_locked), on CPU1 under E and S1 (IpcGuard), S0 taken as the second
 * scheduler lock for a short section, either
 *   - by Mover, an interrupt of CPU1 (balance_locked from its tick, set_affinity_locked,
 *     the moves asked of CPU1 in preempt_if_needed): C Ready -> off CPU1's ready queue,
 *     home (Thread::cpu) CPU0, on CPU0's ready queue, CPU0 notified if it idles; C
 *     Blocked -> its home changes (an armed timeout would move to CPU0's timeout set:
 *     none is armed for C); or
 *   - by C itself, running on CPU1, at its user boundary (move_self,
 *     Scheduler::at_user_boundary): Ready, switching_out set (swo), home CPU0, queued on
 *     CPU0's ready queue at once; S0 released; then CPU1 schedules (reading C's state: a
 *     thread found Running would be requeued on CPU1) and switches away (E released,
 *     S1 handed over), and the first code of CPU1's next thread, after the stack switch,
 *     clears switching_out (an atomic store, no lock).  CPU0's switch to C first spins,
 *     S0 held, until switching_out is clear, before it writes anything of C: so CPU0
 *     never runs C while CPU1 is on its stack, and CPU1's schedule never sees CPU0's
 *     writes (C Running).
 * C then runs, calls and exits on CPU0 (its calls there take the same-CPU path).
 * Thread::cpu is written only with E and the old home's S held, so a waker of C (R's
 * reply, the kill) reads C's home under E, takes that lock as its second one, and needs
 * no re-read and no retry (asserted).
 * -DMOVE_WITHOUT_E (with -DMOVE): the code as it changes: a move takes NO E.  Mover and
 * move_self hold S1 alone (at_user_boundary: no IpcGuard) and take S0 through HomeLock
 * (lock_others_in_order), in CPU index order: S1 let go, S0 taken, S1 taken again, a real
 * gap now (interrupts off; no E keeps CPU0 out of S1: R's reply or the kill may wake or
 * kill C there).  After the gap move_locked re-checks (to.gapped()): a C that died is left
 * alone, one no longer movable goes back on the move list, else it moves as its state is
 * NOW (a C woken in the gap is Ready, on CPU1's ready queue: REACH(21)).  Thread::cpu is
 * now written under the old and the new home's S locks, no E: the wakers of C (R's reply,
 * the kill) read the home under S0 (HomeLock: the own lock held), take that home's lock
 * and read it again, following C if it moved (HomeLock::follow: release, take the new
 * home's; back on CPU0, the own lock, held already).  With two CPUs that re-read never
 * finds a move (REACH(22) is out of reach): the move is towards CPU0, needs S0, and both
 * wakers hold S0 from their read on; BUG_NO_HOME_REREAD must therefore PASS here (a
 * missing re-read needs a third CPU, a move 1 -> 2 between a CPU0 waker's read of home 1
 * and its taking S1: it would act under S1 on a C homed on CPU2; with two CPUs, only a
 * waker on CPU1 whose gap lets a thread move 0 -> 1, which then holds both S locks and
 * would act on the wrong CPU's scheduler: none here, R never moves).  The lock
 * order assertions become: the first S lock is the own CPU's, or in HomeLock's gap the
 * lower one; a second S lock only in index order (the lower first), never a third; no E
 * taken with an S lock held.  The wakers (IPC operations) still take E first.
 * Each CPU runs one thread at a time: on[c] is
 * the thread whose code (and stack) CPU c is on; a thread's proctype moves only while
 * on[home] names it.  A switch is scheduled under S[c] alone (the switch releases E
 * first, interrupts staying off) and the lock is HANDED OVER to the thread switched to,
 * which releases it.
 *
 * Each step of the model begins with one lock acquire and runs up to the next one (a
 * CPU's actions between two acquires are invisible to the other CPU while every access
 * follows the locks, and each access asserts that its CPU holds the lock guarding it).
 * A woken thread reads the outcome of its IPC wait (its IpcState) under its S lock alone,
 * handed over (block_in_locked -> finish_locked): whoever ended the wait did so under E
 * before the wake, and nobody writes it while the thread waits in no operation.
 *
 * The timeout of an IPC wait (Scheduler::on_timer_tick -> expire_timeouts; the
 * model's default protocol).  The tick is an interrupt: CPU0 takes it only while it
 * holds no lock, and runs nothing else until the handler returns (irq0; interrupts stay
 * off in it, also while it spins on a lock).  Under S0 alone it expires the due timeouts
 * of threads in no IPC wait (none in the model); R's due wait is an IPC wait, so the tick
 *   1. releases S0;              (CPU1 may run here ...
 *   2. takes E;                   ... and here)
 *   3. takes S0 again (the order E -> S), and re-checks: R still Blocked with its
 *      deadline armed (and passed) -> off receivers_, its IPC operation ended with
 *      TimedOut (ist ABORTED: op None, result TimedOut; ipc_abort_locked, which leaves a
 *      completed result alone), disarmed, woken with TimedOut (Ready); else nothing
 *      (a call delivered to R and woke it meanwhile: REACH(14)); releases both.
 * A delivery happens under E and wakes R (cancelling its timeout) under S0 before E is
 * released, so a wait the tick ends under E was not delivered, and a delivered wait is
 * never timed out.  R's result: Delivered (the message), or ABORTED (TimedOut; the tick
 * unlinked it already).  The re-check cannot meet a NEW wait of R's: R runs only on
 * CPU0, which is in the handler (asserted: tickw), so "Blocked and armed" is "the
 * deadline still due" here (with moves, or a kill that ends R's wait from CPU1, the
 * code's deadline comparison is what tells them apart).
 * -DTICK_S0_ONLY: an older protocol, kept as a variant: the tick wakes R with TimedOut
 * under S0 only, in one step, and never takes E; R, run again, unlinks itself from
 * receivers_ under E and S0 (Endpoint::finish_recv: Delivered wins over the
 * wake_reason).
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
 *      and the timeout are both decided under E); each call gets its own reply, and a
 *      reply finds its caller Blocked (a call holds E from its delivery to its block);
 *   3. one CPU per stack: a CPU switches only to a thread of its own that no CPU is on
 *      (stk[]; after the switching_out wait), holding its own S lock alone; a thread made
 *      Running is on no ready queue; a thread found Running by a schedule is homed on
 *      that CPU (so it is requeued on one ready queue, its home's);
 *      whoever finds a thread Blocked under its S lock finds its CPU off its stack (the
 *      hand-over);
 *   4. lock order (-DMOVE_WITHOUT_E: as stated there, no E needed for two S locks):
 *      no E acquire with an S lock held; the first S lock is the own CPU's;
 *      a second S lock only with E held, and never a third; no deadlock (invalid end
 *      states; Check: no lock held when nothing can move);
 *   5. mutual exclusion: one holder per lock; every access asserts its lock is held.
 *
 * Design corrections the model forced (the model checks the corrected design; the
 * first proposal is kept as a negative control):
 *   WAKE_AFTER_E      (control) call_impl releases E (and S1) after the delivery and
 *                     wakes R under S0 alone, then blocks for the reply under S1 alone
 *                     (looking for a reply that came first).  Between the delivery and
 *                     the wake, R's tick takes E and times out the wait the call
 *                     delivered to (assert(wr[R] != TIMEDOUT) after R's wake); or R's
 *                     timeout fires, R runs, takes the message, answers and blocks in its
 *                     NEXT recv, and the late wake ends that new wait with Woken and no
 *                     message (assert(wr[R] == TIMEDOUT)): either failure counts.  Fix
 *                     (default): wake R under S0 while still holding E: R cannot start a
 *                     new wait without E, so the wake always ends the wait it was for.
 *                     A CPU may then hold E while it waits for the other CPU's S0: so
 *                     nothing may take E with an S held (BUG_TIMER_TAKES_E deadlocks),
 *                     nor a second S lock without E and against the index order
 *                     (SECOND_S_WITHOUT_E + BUG_S_AGAINST_ORDER deadlocks).
 *   DIRECT_NO_STATE_CHECK (control, -DTICK_S0_ONLY) the direct switch does not look at
 *                     R's state under S0: R timed out (Ready, on CPU0's ready queue, still
 *                     on receivers_ until it runs) is switched to and left on the ready
 *                     queue too.  Fix: switch directly only if R is still Blocked; else
 *                     deliver (R finds Delivered when it runs) and block the usual way.
 *                     With the default tick (which unlinks R under E) a receiver found on
 *                     receivers_ under E is always Blocked: the check never fails there
 *                     and the control needs -DTICK_S0_ONLY (spin finds no error without).
 * Negative controls (must FAIL):
 *   BUG_UNLOCK_E_BEFORE_BLOCK  recv, linked on receivers_ under E and S0, releases both
 *                              and marks itself Blocked under S0 alone later: the call's
 *                              wake finds R not yet Blocked and does nothing; R then
 *                              blocks with the message delivered: for ever, or until the
 *                              tick times the delivered wait out (wr[R] != TIMEDOUT fails)
 *   BUG_CLEANUP_IGNORES_DELIVERED  (-DTICK_S0_ONLY only) R's wake-up path after a
 *                              timeout looks at its wake_reason, not at Delivered: the
 *                              message is lost.  It does not apply to the default
 *                              protocol: a TimedOut wake there always comes with the
 *                              result TimedOut (the tick ended the wait under E, where
 *                              no delivery can be half done), so there is no Delivered
 *                              for a wake_reason test to miss (asserted after the wake)
 *   BUG_BLOCK_NO_REPLY_CHECK   the caller lets go of E and S1 after its wake of R, and
 *                              blocks for the reply later under S1 alone without looking
 *                              at it: a reply that came in between is lost (the caller
 *                              sleeps for ever with its reply Replied).  The protocol
 *                              holds E from the delivery to the block, so no reply can
 *                              come first (asserted where the reply wakes the caller)
 *   BUG_TIMER_TAKES_E          the tick takes E while still holding S0 (S0 -> E,
 *                              against the order; this acquire leaves the order
 *                              assertion out, to show the deadlock itself): call_impl
 *                              holds E and S1 and wants S0
 *   BUG_S_AGAINST_ORDER        (with SECOND_S_WITHOUT_E) call_impl on CPU1, E and S1
 *                              held, takes S0 for its wake of R without letting go of
 *                              S1 first, while the tick's first pass holds S0 and no E
 *                              and takes S1 (a balance that moves a thread to CPU1
 *                              before the tick has taken E; the order assertions left
 *                              out): deadlock.  SECOND_S_WITHOUT_E alone must PASS: the
 *                              index order keeps the two CPUs apart without E
 *   BUG_MOVE_TAKES_DEST_S      (-DMOVE) Mover, holding S1 and no E, takes S0 to move C
 *                              (the order assertion left out): a waker of C (R's reply
 *                              or the kill) holds E and S0 and wants S1: deadlock
 *   BUG_NO_SWITCHING_OUT       (-DMOVE) CPU0's switch to C does not wait for
 *                              switching_out: CPU0 picks C, which moved itself, while
 *                              CPU1 is still on C's stack (assert(stk[nxt] == 0))
 *   BUG_SWITCHING_OUT_AFTER_WRITE  (-DMOVE) CPU0's switch to C writes C Running (and
 *                              current_) before it waits for switching_out: CPU1's
 *                              schedule, still to come, finds C Running and requeues it
 *                              on CPU1 while it is homed and queued on CPU0 (the
 *                              assertion "homed where requeued" fails)
 *   BUG_TICK_NO_RECHECK        the tick, E and S0 taken again, ends the wait it saw due
 *                              under S0 alone without re-checking it: a call delivered
 *                              to R and woke it in between; the tick overwrites the
 *                              Delivered result with TimedOut: the message is lost
 *                              (R finds TimedOut with wake_reason Woken)
 *   BUG_RELEASE_BEFORE_SWITCH  CPU0 releases S0 while still on the old thread's stack
 *                              (every CPU0 switch): CPU1's wake finds R Blocked while
 *                              CPU0 is still on R's stack
 *   BUG_MOVE_STATE_BEFORE_GAP  (-DMOVE -DMOVE_WITHOUT_E) the move acts on C's state as
 *                              it saw it under S1 before its gap, not as it is after:
 *                              Mover decides to move a Blocked C; in its gap the kill (or
 *                              R's reply) wakes C onto CPU1's ready queue; the move only
 *                              changes C's home: C, homed on CPU0, is run by CPU1
 *                              (assert(home[cur[c]] == c) at the switch)
 *   BUG_NO_HOME_REREAD         (-DMOVE -DMOVE_WITHOUT_E) the wakers of C act on the home
 *                              they read without reading it again: must PASS with two
 *                              CPUs (see MOVE_WITHOUT_E above: not a control here)
 *   WAKE_AFTER_E, DIRECT_NO_STATE_CHECK  (above)
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text).  4, 7 and 8 are
 * reached only with -DTICK_S0_ONLY (with the default tick a receiver is never Ready and
 * still on receivers_, and a delivered wait never times out); 14 only without it; 2 and
 * 9 only with WAKE_AFTER_E or BUG_BLOCK_NO_REPLY_CHECK (the protocol makes a reply before
 * the caller's block impossible).  15: a second S acquire finds the lock held and waits.
 * With -DMOVE: 16 C moved while Ready (onto CPU0's ready queue, S0 the second lock);
 * 17 C moved while Blocked; 18 C moved itself while running, at its user boundary
 * (switching_out); 19 CPU0's switch to C waits for switching_out (CPU1 still on C's
 * stack); 20 a waker of C (reply or kill) finds C moved to CPU0 (no second lock).
 * With -DMOVE_WITHOUT_E: 21 C's state changed in Mover's gap (woken by R's reply or the
 * kill: Ready on CPU1's ready queue, moved as Ready); 23 C killed in its own move's gap
 * (move_self: exit_requested only; it moves and ends on CPU0).  Out of the model's reach
 * (checked: not reported by pan -c0): 22 a waker's re-read finds C moved; 24 the move's
 * re-check finds C Dead or Running (CPU1 is in the handler: C neither runs nor ends).
 *
 * Functions (proctype / inline -> the kernel's):
 *   Receiver         Endpoint::recv (-> block_in_locked -> block_current_locked,
 *                    finish_locked; -DTICK_S0_ONLY: Endpoint::finish_recv), then
 *   reply_to         Endpoint::reply (-> reply_saved -> complete_locked -> wake_locked)
 *   Caller           Endpoint::call_impl (-> wake_and_block_locked -> wake_locked +
 *                    block_current_locked; -DDIRECT: mark_current_blocked_locked +
 *                    switch_to_locked, the same-CPU fast path)
 *   Timer0           Scheduler::on_timer_tick -> expire_timeouts;
 *   tick_times_out_locked  its second pass: end_wait_locked + ipc_abort_locked
 *   Killer           Scheduler::kill -> kill_locked (-> wake_locked, end_wait_locked,
 *                    ipc_abort_locked)
 *   Idle             Scheduler::idle_loop -> idle_once
 *   Mover            Scheduler::move_locked of a Ready or Blocked thread (from
 *                    balance_locked, set_affinity_locked, do_moves_locked; -DMOVE_WITHOUT_E:
 *                    its HomeLock of the destination, the gap and the to.gapped() re-check)
 *   move_self        Scheduler::at_user_boundary -> move_locked of the running thread
 *                    + schedule_locked; switching_out: switch_locked's wait, cleared by
 *                    after_switch_locked on the old CPU (-DMOVE_WITHOUT_E: S1 alone, the
 *                    HomeLock gap, the re-check)
 *   Killer / reply_to's wake (-DMOVE_WITHOUT_E): HomeLock(self, thread) -> follow (the
 *                    home read again once its lock is held)
 *   wake_locked, enqueue_locked, schedule_locked, exit_current: Scheduler's, same names;
 *   switch_context, release_handed_over: Cpu::switch_context, finish_switch_in / the
 *   resumed code's guard; lockE / lockS / lockS2: IpcGuard's two locks, and the home
 *   lock a cross-CPU wake, kill or move takes as the second.
 *
 * Not modelled: a move of a thread with an armed deadline (its timeout moved to the
 * destination's timeout set under the destination's S lock), of R, towards CPU1, or
 * more than one move (so, with -DMOVE_WITHOUT_E, neither a move asked again in the gap,
 * left to that move, nor a waker that finds a moved home: a third CPU); a thread
 * preempted while Running (the requeue in schedule_locked
 * is reached only by the control BUG_SWITCHING_OUT_AFTER_WRITE); the tick's balance and
 * its load reads; Scheduler::start of a thread of another CPU (the same second-lock
 * rule as a wake); the zombie list and the reaper (the zombie list is one list under E;
 * the reaper pops a zombie and Thread::destroy takes the zombie's CPU's S lock as its
 * second lock, to know that CPU is off the zombie's stack: smp_wake.pml); more than two CPUs or one endpoint.
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
#define B(x) (1 << (x))         /* S[x]'s bit in sheld[] */
#define TOK(t, i) ((t) * 4 + (i) + 1)   /* message of call i of thread t; the reply = the same */

/* the first proposal's call (the caller lets go of E before it blocks for the reply) */
#if defined(WAKE_AFTER_E) || defined(BUG_BLOCK_NO_REPLY_CHECK)
#define SPLIT_CALL
#endif
#if defined(SPLIT_CALL) && defined(KILL)
#error "WAKE_AFTER_E and BUG_BLOCK_NO_REPLY_CHECK are controls without -DKILL"
#endif
#if defined(BUG_CLEANUP_IGNORES_DELIVERED) && !defined(TICK_S0_ONLY)
#error "BUG_CLEANUP_IGNORES_DELIVERED is a control of the old protocol: add -DTICK_S0_ONLY"
#endif
#if defined(DIRECT_NO_STATE_CHECK) && !defined(TICK_S0_ONLY)
#error "DIRECT_NO_STATE_CHECK is a control of the old protocol: add -DTICK_S0_ONLY"
#endif
#if defined(BUG_MOVE_TAKES_DEST_S) && !defined(MOVE)
#error "BUG_MOVE_TAKES_DEST_S is a control of the move: add -DMOVE"
#endif
#if defined(MOVE_WITHOUT_E) && !defined(MOVE)
#error "MOVE_WITHOUT_E is a variant of the move: add -DMOVE"
#endif
#if (defined(BUG_NO_HOME_REREAD) || defined(BUG_MOVE_STATE_BEFORE_GAP)) && !defined(MOVE_WITHOUT_E)
#error "BUG_NO_HOME_REREAD and BUG_MOVE_STATE_BEFORE_GAP are controls of MOVE_WITHOUT_E"
#endif
#if defined(MOVE) && defined(DIRECT)
#error "MOVE runs without DIRECT (CPU0's ready queue holds two threads at most)"
#endif
#if (defined(SECOND_S_WITHOUT_E) || defined(BUG_TIMER_TAKES_E)) && defined(TICK_S0_ONLY)
#error "SECOND_S_WITHOUT_E and BUG_TIMER_TAKES_E are controls of the default tick"
#endif

mtype = { RUNNING, READY, BLOCKED, DEAD };     /* ThreadState */
mtype = { WOKEN, TIMEDOUT, INTERRUPTED };      /* WakeReason */
mtype = { IDLE, WAITING, DELIVERED, ABORTED }; /* IpcState of R; ABORTED: op None,
                                                  result TimedOut (ipc_abort_locked) */
mtype = { NOWAIT, AWAITING, REPLIED };         /* a caller's reply wait (IpcState of a caller) */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)
#else
#define REACH(n) skip
#endif

/* locks */
byte  elk;                      /* g_ipc_lock holder */
byte  slk[2];                   /* Scheduler::lock_ of each CPU: holder */
byte  sheld[2];                 /* ghost: the S locks CPU c holds (bit x: S[x]) */
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
bit   exitreq;                  /* C's Thread::exit_requested (-DKILL; set under E and S1) */
/* guarded by E */
bit   rcvq;                     /* R on receivers_ */
byte  sq[2];                    /* senders_ (FIFO): callers that found no receiver */
byte  sql;
byte  stok[NT];                 /* a queued sender's message */
mtype ist = IDLE;               /* R's IpcState (op / result) */
byte  rmsg;                     /* R's message slot */
byte  rto = NONE;               /* R's reply target (IpcState::reply) */
mtype rst[NT];                  /* a caller's IpcState: op ReplyWait (AWAITING) / its result */
byte  rslot[NT];                /* its reply (IpcState::msg) */
/* constant / ghosts */
byte  home[NT];                 /* Thread::cpu: changes only under E and the old home's S
                                   lock (-DMOVE: C's, from CPU1 to CPU0, once) */
bit   swo;                      /* C's Thread::switching_out (-DMOVE): set by the move of
                                   the running C, cleared by CPU1's next thread (no lock) */
byte  on[2];                    /* ghost: the thread whose code and stack CPU c is on */
byte  stk[NT];                  /* ghost: 0 no CPU on t's stack, H(c): CPU c */
byte  ticks;                    /* ghost: timeouts fired */
bit   got[16];                  /* ghost: messages R's recv returned as a success */
byte  ngot, ntaken, nreplied;   /* ghosts: messages R returned, handed to R; replies */
bit   killed;                   /* ghost: the kill happened */
#ifdef KILL
#define KILLED(t) ((t) == C && exitreq)
#else
#define KILLED(t) false
#endif

bit   irq0;                     /* CPU0 in the tick's handler (interrupts off): its threads
                                   and its idle loop stand still until the handler returns */
bit   kill0;                    /* CPU0 in Scheduler::kill (-DKILL): likewise */
bit   irq1;                     /* CPU1 in the move's interrupt handler (Mover, -DMOVE) */
bit   tickw;                    /* ghost: R's wait is still the one the tick found due */
#define NOIRQ(c) ((c != 0 || (!irq0 && !kill0)) && (c != 1 || !irq1))
#ifdef MOVE_WITHOUT_E
bit   gapc[2];                  /* ghost: CPU c let go of its own S lock in HomeLock's gap
                                   (lock_others_in_order: interrupts stay off) */
#define GAP_ON(c)  gapc[c] = 1
#define GAP_OFF(c) gapc[c] = 0
#define IN_GAP(c)  gapc[c]
#else
#define IN_GAP(c)  false
#endif
#define ON(c, t) (on[c] == t && NOIRQ(c))

#ifdef WAKE_AFTER_E
#define FIRST_S_OK(c, x) true   /* its wake takes S0 alone from CPU1 */
#else
#define FIRST_S_OK(c, x) ((c) == (x))
#endif

/* lockE / lockS: thread code on CPU c, which moves only while no interrupt handler (nor
   the kill) runs there; the _when forms with ok_ = true: the handler itself */
inline lockE_when(c_, ok_) {      /* g_ipc_lock (IpcGuard's first lock) */
  assert(sheld[c_] == 0);        /* 4: no E acquire with an S lock held */
  elk == 0 && ok_ -> elk = H(c_)
}
inline lockE(c_) { lockE_when(c_, NOIRQ(c_)) }
inline unlockE(c_) { assert(elk == H(c_)); elk = 0 }
inline lockS_when(c_, x_, ok_) {  /* Scheduler::lock_ of CPU x (one per CPU) */
  assert((sheld[c_] & B(x_)) == 0);
  /* 4: the first S lock is the own CPU's, or (HomeLock of a lower CPU, which lets go of
     the own one and takes the two in index order) another with E held */
#ifndef MOVE_WITHOUT_E
  assert(sheld[c_] != 0 || FIRST_S_OK(c_, x_) || elk == H(c_));
  assert(sheld[c_] == 0 || elk == H(c_));         /* 4: a second S lock only with E held */
#else
  /* MOVE_WITHOUT_E: a move holds no E, so E no longer serializes the CPUs that hold two
     S locks: the index order alone must.  The first S lock is the own CPU's, or, in
     HomeLock's gap (the own one let go), the lower one; the second only in index order
     (below); never a third; no E with an S held (lockE_when) */
  assert(sheld[c_] != 0 || FIRST_S_OK(c_, x_) || (IN_GAP(c_) && x_ < c_));
#endif
  assert(sheld[c_] != B(0) + B(1));               /* 4: never a third */
  assert(sheld[c_] != B(1) || x_ > 1);            /* 4: two in CPU index order */
  slk[x_] == 0 && ok_ -> slk[x_] = H(c_); sheld[c_] = sheld[c_] | B(x_)
}
inline lockS(c_, x_) { lockS_when(c_, x_, NOIRQ(c_)) }
/* the second scheduler lock: the home lock of a thread of the other CPU (a wake, a kill),
   or the destination's lock of a move; E and S[c] held (interrupts off since E was
   taken: no NOIRQ condition) */
inline lockS2(c_, x_) {
  assert(x_ != c_ && sheld[c_] == B(c_) && elk == H(c_));
#ifdef PROBE_ALL
  if :: slk[x_] != 0 -> REACH(15) :: else fi;     /* it waits: S[x] is held */
#endif
  if
#ifdef BUG_S_AGAINST_ORDER
  :: x_ < c_ ->                 /* the lower one taken while the own one is held */
     slk[x_] == 0 -> slk[x_] = H(c_); sheld[c_] = sheld[c_] | B(x_)
#else
  /* two S locks in CPU index order, the lower first: the own one let go (with E held,
     nobody else takes it meanwhile in this model; with MOVE_WITHOUT_E too: E held keeps
     this CPU's move interrupt out, and the model's CPU0 takes S1 only under E, where the
     code's replies, moves, starts and placement take it without E), the other taken,
     the own one again */
  :: x_ < c_ ->
     unlockS(c_, c_);
#ifdef MOVE_WITHOUT_E
     GAP_ON(c_);
#endif
     lockS_when(c_, x_, true);
     lockS_when(c_, c_, true)
#ifdef MOVE_WITHOUT_E
     ; GAP_OFF(c_)
#endif
#endif
  :: else -> lockS_when(c_, x_, true)
  fi
}
inline unlockS(c_, x_) {
  assert(slk[x_] == H(c_) && (sheld[c_] & B(x_)) != 0); slk[x_] = 0; sheld[c_] = sheld[c_] ^ B(x_)
}
#define HOLDS_S(c, t) (slk[home[t]] == H(c) && (sheld[c] & B(home[t])) != 0)
#define HOLDS_E(c) (elk == H(c))
#define INTS_ON(c) (elk != H(c) && sheld[c] == 0 && !IN_GAP(c))   /* a CPU holding no lock
                                   may take interrupts (not in HomeLock's gap: they stay off) */

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

/* Scheduler::wake_locked(t, reason) from CPU c (end_wait_locked + enqueue_locked): only a
   Blocked thread; cancels its timeout.  Under t's home lock: the own CPU's, or the second
   scheduler lock (E held) for a thread of the other CPU */
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

/* Scheduler::schedule_locked on CPU c after prev stopped running (Blocked, Dead, or
   Ready after its move to the other CPU): the next ready thread, else the idle thread;
   then switch_locked's bookkeeping.  A prev found Running would be requeued here (a
   preemption, which the model has none of): it must be homed here, so that it is on one
   ready queue only.  schedule_locked reads prev's state under S[c] alone: after a move of
   the running prev (-DMOVE) its home is the other CPU, whose switch to it writes nothing
   of it until this CPU is off its stack (switching_out) */
inline schedule_locked(c_, prev_, nxt_) {
  assert(slk[c_] == H(c_) && cur[c_] == prev_ && on[c_] == prev_);
  if
  :: prev_ == I0 + c_ -> state[prev_] = READY
  :: prev_ != I0 + c_ && state[prev_] == RUNNING ->
     assert(home[prev_] == c_);   /* 3: requeued where it is homed: on one ready queue */
     state[prev_] = READY; enqueue_locked(c_, prev_)
  :: else
  fi;
  if
  :: rql[c_] > 0 -> nxt_ = rq[2 * c_]; rq[2 * c_] = rq[2 * c_ + 1]; rq[2 * c_ + 1] = 0; rql[c_]--;
     assert(state[nxt_] == READY)
  :: else -> nxt_ = I0 + c_
  fi;
#ifdef MOVE
  /* switch_locked: a thread whose old CPU is still on its stack (switching_out) is waited
     for, spinning with S[c] held, before anything of it is written */
#ifdef BUG_SWITCHING_OUT_AFTER_WRITE
  state[nxt_] = RUNNING; cur[c_] = nxt_;        /* written before the wait */
#endif
  if :: nxt_ == C && swo -> REACH(19) :: else fi;
#ifndef BUG_NO_SWITCHING_OUT
  (nxt_ != C || !swo);
#endif
  assert(stk[nxt_] == 0);         /* 3: no CPU on its stack once it is picked and waited for */
#endif
  state[nxt_] = RUNNING; cur[c_] = nxt_
}

/* Cpu::switch_context on CPU c: off prev's stack, on cur[c]'s; S[c] stays held by CPU c
   (handed over to the thread switched to, which releases it).  E was released first
   (enter_switch_locked) and no second S lock is held: the switch holds S[c] alone */
inline switch_context(c_, prev_) {
#ifdef BUG_RELEASE_BEFORE_SWITCH
  if :: c_ == 0 -> atomic { unlockS(c_, c_) } :: else fi;   /* released while on prev_'s stack */
#endif
  atomic {
    assert(!HOLDS_E(c_) && (sheld[c_] | B(c_)) == B(c_));
    assert(on[c_] == prev_ && stk[prev_] == H(c_));
    stk[prev_] = 0;
#ifdef MOVE
    /* the first code of the next thread on this CPU (after_switch_locked), in the same
       step: this CPU is off the moved thread's stack */
    if :: prev_ == C && swo -> assert(home[C] != c_); swo = 0 :: else fi;
#endif
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

/* Scheduler::exit_current on CPU c: IpcGuard (E, then S[c]); Dead, E released, switch
   (ipc_release_thread_locked, bury_locked and the reaper are not modelled) */
inline exit_current(c_, t_, nxt_) {
  atomic { ON(c_, t_) -> lockE(c_) }
  atomic { lockS(c_, c_); state[t_] = DEAD; unlockE(c_); schedule_locked(c_, t_, nxt_) }
  switch_context(c_, t_)
}

/* the caller's wake by its reply, under its home lock (checked by the caller) */
inline reply_wake(c_, t_) {
#ifndef SPLIT_CALL
  assert(state[t_] == BLOCKED);   /* the call held E from its delivery to its block */
#else
  if :: state[t_] != BLOCKED -> REACH(2) :: else fi;   /* the reply came first */
#endif
  wake_locked(c_, t_, WOKEN)
}

/* Endpoint::reply from R on CPU0 (reply_saved -> complete_locked): IpcGuard (E, then S0);
   the answer in the caller's IpcState (E); then its wake under its home lock: S0 for C0
   (and for C once moved to CPU0), S1 as the second scheduler lock for C (E and S0 held
   all along).  The home (Thread::cpu) is read under E, before its lock is held: it
   changes only under E (a move), so it is still the home once its lock is held.
   -DMOVE_WITHOUT_E: a move holds no E; the home is read again once its lock is held and
   followed if it moved (HomeLock::follow) */
inline reply_to(t_, h_) {
  atomic { ON(0, R) -> lockE(0) }
  atomic { lockS(0, 0);
#ifdef KILL
           if
           :: rst[t_] != AWAITING ->    /* the kill ended the caller's wait: a stale reply */
              assert(killed && t_ == C); REACH(12); printf("R: reply to %d dropped\n", t_);
              unlockS(0, 0); unlockE(0); goto replied
           :: else
           fi;
#endif
           assert(rst[t_] == AWAITING); rst[t_] = REPLIED; rslot[t_] = rmsg;
           printf("R: replies %d to %d\n", rmsg, t_);
           h_ = home[t_];               /* Thread::cpu, read under E and S0 */
           if
           :: h_ == 0 -> if :: t_ == C -> REACH(20) :: else fi;   /* C moved here */
              reply_wake(0, t_); unlockS(0, 0); unlockE(0); goto replied
           :: else
           fi }
#ifdef MOVE_WITHOUT_E
reply_follow:
#endif
  atomic { lockS2(0, h_);
#ifndef MOVE_WITHOUT_E
           assert(home[t_] == h_);      /* stable under E: no re-read, no retry */
#else
#ifndef BUG_NO_HOME_REREAD
           /* a move takes no E: HomeLock::follow reads the home again once its lock is
              held, and follows the caller if it moved (its home changes only under its
              home's lock); back on CPU0, the own lock, held already */
           if
           :: home[t_] != h_ ->
              REACH(22); printf("R: C moved before its home lock was taken: follows it\n");
              unlockS(0, h_); h_ = home[t_];
              if
              :: h_ == 0 -> reply_wake(0, t_); unlockS(0, 0); unlockE(0); goto replied
              :: else -> goto reply_follow
              fi
           :: else
           fi;
#else
           /* control: no re-read; the wake acts on the home it read (the code's home->) */
           assert(home[t_] == h_);
#endif
#endif
           reply_wake(0, t_); unlockS(0, h_); unlockS(0, 0); unlockE(0) }
replied: skip
}

proctype Receiver() {           /* R on CPU0: NMSG x Endpoint::recv (timed) + reply; exit */
  byte nxt, s, h;
  do
  :: ngot < NMSG ->
     /* Endpoint::recv: IpcGuard (E, then S0); a queued sender? (take_from_sender_locked) */
     atomic { ON(0, R) -> lockE(0) }
     atomic { lockS(0, 0);
              assert(ist == IDLE && !rcvq);
              if
              :: sql > 0 -> s = sq[0]; sq[0] = sq[1]; sq[1] = 0; sql--;
                 rmsg = stok[s]; rto = s; ntaken++; unlockS(0, 0); unlockE(0); REACH(3);
                 printf("R: recv takes %d from senders_\n", rmsg);
                 goto received
              :: else -> rcvq = 1; ist = WAITING;     /* receivers_, IpcState Waiting */
                 printf("R: recv waits on receivers_\n")
              fi;
#ifdef BUG_UNLOCK_E_BEFORE_BLOCK
              unlockS(0, 0); unlockE(0) }
     atomic { lockS(0, 0);
#endif
     /* block_in_locked -> block_current_locked(receivers_, deadline): Blocked, armed;
        the switch releases E first and hands S0 over to the next thread */
              assert(state[R] == RUNNING && cur[0] == R);
              state[R] = BLOCKED; armed = 1; tickw = 0; printf("R: Blocked (deadline armed)\n");
#ifndef BUG_UNLOCK_E_BEFORE_BLOCK
              unlockE(0);
#endif
              schedule_locked(0, R, nxt) }
     switch_context(0, R);
     /* switched to again (wake, timeout or the direct switch) */
#ifdef KILL
end_recv:                       /* the killed caller's calls never come */
#endif
#ifdef TICK_S0_ONLY
     atomic { on[0] == R -> assert(state[R] == RUNNING && cur[0] == R && !armed);
              release_handed_over(0) }
     /* Endpoint::finish_recv (old protocol's rule): IpcGuard; Delivered wins over any
        wake_reason; a receiver still on receivers_ unlinks itself */
     atomic { ON(0, R) -> lockE(0) }
     atomic { lockS(0, 0);
#ifdef BUG_CLEANUP_IGNORES_DELIVERED
              if :: wr[R] == TIMEDOUT -> rcvq = 0; ist = IDLE; rto = NONE;
                       printf("R: timed out: drops the wait, Delivered or not\n") :: else fi;
#endif
              if
              :: ist == DELIVERED -> ist = IDLE; unlockS(0, 0); unlockE(0);
                 printf("R: recv returns %d (Delivered; wake_reason %e)\n", rmsg, wr[R]);
                 if :: wr[R] == TIMEDOUT -> REACH(4) :: else fi
              :: else ->
                 printf("R: recv ends with no message, wake_reason %e\n", wr[R]);
                 assert(wr[R] == TIMEDOUT);  /* 2: no message, so the wait really ended */
                 if :: rcvq -> rcvq = 0 :: else fi;
                 ist = IDLE; unlockS(0, 0); unlockE(0); REACH(5);
                 goto next                   /* TimedOut: R's user code calls recv again */
              fi }
#else
     /* block_in_locked returns; finish_locked reads the result under S0 alone (handed
        over): whoever ended the wait (a delivery, or the tick: off receivers_, TimedOut)
        did it under E, and nobody writes R's IpcState while it waits in no operation */
     atomic { on[0] == R -> assert(state[R] == RUNNING && cur[0] == R && !armed);
              assert(!rcvq);                 /* whoever ended the wait unlinked R */
              release_handed_over(0);
              if
              :: ist == DELIVERED -> ist = IDLE;
                 printf("R: recv returns %d (Delivered; wake_reason %e)\n", rmsg, wr[R]);
                 assert(wr[R] != TIMEDOUT)   /* 2: a delivered wait never times out */
              :: else ->
                 printf("R: recv ends with no message (%e), wake_reason %e\n", ist, wr[R]);
                 assert(wr[R] == TIMEDOUT);  /* 2: no message, so the wait really ended */
                 assert(ist == ABORTED);     /* ended by the tick: TimedOut */
                 ist = IDLE; REACH(5);
                 goto next                   /* TimedOut: R's user code calls recv again */
              fi }
#endif
received:
     /* 2: each message returned once, as a success */
     atomic { assert(rmsg != 0 && !got[rmsg]); got[rmsg] = 1; ngot++ }
     reply_to(rto, h);
     atomic { rto = NONE; rmsg = 0; h = 0 }   /* R's own: no operation under way */
next: skip
  :: else -> break
  od;
  exit_current(0, R, nxt)
}

#ifdef MOVE
/* C moves itself at its user boundary on CPU1 (Scheduler::at_user_boundary: a move
   asked of it): IpcGuard (E, then S1), S0 as the second lock: Ready, switching_out,
   home CPU0, on CPU0's ready_ at once (notify_cpu(0) if it idles), S0 released.  Then
   CPU1 switches away from it (schedule_locked; E released, S1 handed over to CPU1's next
   thread, whose first code clears switching_out).  CPU0's switch to C waits for that
   (schedule_locked).  C goes on on CPU0, where S0 was handed over to it */
inline move_self(nxt_) {
#ifndef MOVE_WITHOUT_E
  atomic { ON(1, C) -> lockE(1) }
  atomic { lockS(1, 1) }
  atomic { lockS2(1, 0);
#else
  /* MOVE_WITHOUT_E: at_user_boundary takes S1 alone (no IpcGuard); move_locked's HomeLock
     of CPU0 (lock_others_in_order) lets go of S1, takes S0, then S1 again: a real gap,
     interrupts off (no E keeps CPU0 out of S1 meanwhile: a kill may land there) */
  atomic { ON(1, C) -> lockS(1, 1);
           assert(state[C] == RUNNING && cur[1] == C && home[C] == 1);   /* movable: at its boundary */
           unlockS(1, 1); GAP_ON(1) }
  atomic { lockS_when(1, 0, true) }
  atomic { lockS_when(1, 1, true); GAP_OFF(1);
           /* to.gapped(): re-check.  C is this CPU's running thread, at its boundary: it
              neither died nor stopped being movable in the gap (only this CPU runs it);
              a kill in the gap set exit_requested only (C ends on CPU0) */
           if :: KILLED(C) -> REACH(23) :: else fi;
#endif
           assert(state[C] == RUNNING && cur[1] == C && stk[C] == H(1) && home[C] == 1);
           state[C] = READY; swo = 1; home[C] = 0; enqueue_locked(1, C);
           unlockS(1, 0); REACH(18);
           printf("CPU1: C moves itself to CPU0 (switching_out)\n") }
  /* schedule_locked reads C's state (Ready: left alone) while CPU0 may pick C already */
#ifndef MOVE_WITHOUT_E
  atomic { unlockE(1); schedule_locked(1, C, nxt_) }
#else
  atomic { schedule_locked(1, C, nxt_) }
#endif
  switch_context(1, C);
  atomic { on[home[C]] == C -> assert(home[C] == 0 && state[C] == RUNNING && cur[0] == C);
           release_handed_over(0) }
}
#endif

/* the caller's reply, after its wake: 2. its own call's answer */
inline take_reply(t_, i_) {
  assert(rst[t_] == REPLIED && rslot[t_] == TOK(t_, i_)); rst[t_] = NOWAIT; rslot[t_] = 0
}

/* a caller: t on CPU c, n calls: Endpoint::call_impl, which blocks for the reply */
proctype Caller(byte t; byte c; byte n) {   /* c: its home CPU, updated when it runs */
  byte i, nxt;
  if
  :: t == C0 ->                 /* started Ready: mk_thread_start -> finish_switch_in */
     atomic { on[c] == t -> release_handed_over(c) }
  :: else
  fi;
  do
  :: i < n && !KILLED(t) ->     /* before_return_to_user: a killed thread ends */
#ifdef MOVE
     if
     :: c == 1 -> move_self(nxt); c = 0   /* at_user_boundary: a move of C asked */
     :: true
     fi;
#endif
     /* Endpoint::call_impl: IpcGuard (E, then S[c]) for the whole call */
     atomic { ON(c, t) -> lockE(c) }
     atomic { lockS(c, c);
              if
              :: KILLED(t) ->           /* exit_requested: no new waits */
                 unlockS(c, c); unlockE(c); goto interrupted
              :: else
              fi;
              if
              :: rcvq -> rcvq = 0; assert(ist == WAITING);
                 ist = DELIVERED; rmsg = TOK(t, i); rto = t;   /* deliver: R's op ends */
                 rst[t] = AWAITING;                            /* op ReplyWait */
                 ntaken++; printf("%d: call delivers %d to the waiting R\n", t, rmsg)
              :: else ->                /* block_in_locked(senders_): Blocked, E released */
                 sq[sql] = t; sql++; stok[t] = TOK(t, i); rst[t] = AWAITING;
                 printf("%d: no receiver, queues %d on senders_\n", t, stok[t]);
                 state[t] = BLOCKED; unlockE(c); schedule_locked(c, t, nxt);
                 goto blocked
              fi;
#if defined(DIRECT) || defined(MOVE)
              if
              :: c == 0 ->              /* R is homed here: S0 is held already */
#ifndef DIRECT_NO_STATE_CHECK
                 if
                 :: state[R] == BLOCKED ->
#endif
                    /* mark_current_blocked_locked + switch_to_locked(R) (the fast path) */
                    assert(rql[0] == 0 || (rq[0] != R && rq[1] != R));  /* 3 */
                    state[t] = BLOCKED;
                    armed = 0; wr[R] = WOKEN; state[R] = RUNNING; cur[0] = R;
                    unlockE(c); REACH(6);
                    printf("%d: direct switch to R\n", t);
                    goto blocked
#ifndef DIRECT_NO_STATE_CHECK
                 :: else ->     /* R timed out: it finds Delivered when it runs */
                    REACH(7); state[t] = BLOCKED; unlockE(c); schedule_locked(c, t, nxt);
                    goto blocked
                 fi
#endif
              :: else
              fi;
#endif
#ifdef WAKE_AFTER_E
              unlockS(c, c); unlockE(c)  /* the first proposal: E released before the wake */
#endif
     }
     /* R is homed on CPU0: wake_and_block_locked -> wake_locked(R) under S0, the second
        scheduler lock (E and S[c] held); then block for the reply (E released at the
        switch, S[c] handed over) */
#ifdef WAKE_AFTER_E
     atomic { lockS(c, 0);              /* S0 alone */
#else
     atomic { lockS2(c, 0);   /* R's home, CPU0 (R never moves: no re-read) */
#endif
              if :: state[R] != BLOCKED -> REACH(8) :: else fi;   /* R timed out first */
              printf("%d: wakes R (%e)\n", t, state[R]);
              wake_locked(c, R, WOKEN); unlockS(c, 0);
#ifdef SPLIT_CALL
#ifndef WAKE_AFTER_E
              unlockS(c, c); unlockE(c)
#endif
     }
     /* the first proposal: block for the reply later, under S[c] alone */
     atomic { lockS(c, c);
#ifndef BUG_BLOCK_NO_REPLY_CHECK
              if
              :: rst[t] == REPLIED -> take_reply(t, i); unlockS(c, c); REACH(9); goto answered
              :: else
              fi;
#endif
#else
              unlockE(c);
#endif
              state[t] = BLOCKED; printf("%d: Blocked for the reply\n", t);
              schedule_locked(c, t, nxt) }
blocked:
     switch_context(c, t);
     /* woken (the reply, the kill): read the result under S[c] (handed over), release */
     atomic { on[home[t]] == t -> c = home[t];   /* moved while it waited: runs there now */
              assert(state[t] == RUNNING && cur[c] == t);
#ifdef KILL
              if
              :: rst[t] != REPLIED ->   /* the kill ended the wait: Interrupted */
                 assert(KILLED(t) && wr[t] == INTERRUPTED && rst[t] == NOWAIT); REACH(11);
                 release_handed_over(c); goto interrupted
              :: else
              fi;
#endif
              if :: KILLED(t) -> REACH(13) :: else fi;   /* the reply came before the kill */
              take_reply(t, i); release_handed_over(c) }
answered:
     nreplied++; i++
  :: else -> break
  od;
  goto done;
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
  assert(HOLDS_E(0) && HOLDS_S(0, R));
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
   no IPC wait (none here); R's is an IPC wait, so (expire_timeouts): release S0;
   lock E; lock S0 (the order E -> S); re-check and time R's wait out
   (tick_times_out_locked); release both.  The tick never holds two S locks.
   -DTICK_S0_ONLY (the old protocol): wake_locked(R, TimedOut) under S0 only; R unlinks
   itself when it runs (finish_recv: Delivered wins). */
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
#ifdef SECOND_S_WITHOUT_E
     }
     /* the tick's first pass, S0 held and no E, takes S1 too: a balance that moves a
        thread to CPU1 before the tick has taken E (the order assertion left out, to show
        the deadlock itself) */
     atomic { slk[1] == 0 -> slk[1] = H(0); sheld[0] = sheld[0] | B(1);
              printf("CPU0: tick: S1 taken under S0 without E\n");
              unlockS(0, 1);
#endif
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
/* kill_locked's work, under E and C's home lock */
inline kill_body() {
  assert(HOLDS_E(0) && HOLDS_S(0, C));
  if
  :: state[C] != DEAD ->
     exitreq = 1; killed = 1;
     printf("CPU0: kill C (%e)\n", state[C]);
     if
     :: state[C] == BLOCKED ->
        if                              /* off senders_ if still there */
        :: sql > 0 && sq[0] == C -> sq[0] = sq[1]; sq[1] = 0; sql--
        :: sql > 1 && sq[1] == C -> sq[1] = 0; sql--
        :: else
        fi;
        assert(rst[C] == AWAITING); rst[C] = NOWAIT;   /* ipc_abort_locked */
        wake_locked(0, C, INTERRUPTED)
     :: else                            /* Ready (also moved, switching_out) or Running */
     fi
  :: else
  fi
}

/* Scheduler::kill -> kill_locked(C), from a thread of CPU0 other than C (where
   interrupts are on and no lock is held), once: IpcGuard (E, then S0), then C's home
   lock as the second scheduler lock (S1; none if C was moved to CPU0; the home is read
   under E, which every move holds; -DMOVE_WITHOUT_E: no move holds E, the home is read
   again once its lock is held, HomeLock::follow): exit_requested, and a Blocked C woken
   with Interrupted:
   end_wait_locked takes it off senders_ and ipc_abort_locked ends its reply wait (a
   later reply is stale).  kill0: CPU0 runs nothing else meanwhile */
proctype Killer() {
  byte h;
end_kill:
  atomic { INTS_ON(0) && NOIRQ(0) && state[C] != DEAD && on[0] != C -> kill0 = 1; lockE_when(0, true) }
  atomic { lockS_when(0, 0, true);
           h = home[C];                 /* Thread::cpu, read under E and S0 */
           if
           :: h == 0 -> REACH(20); kill_body(); unlockS(0, 0); unlockE(0); kill0 = 0; goto kill_done
           :: else
           fi }
#ifdef MOVE_WITHOUT_E
kill_follow:
#endif
  atomic { lockS2(0, h);
#ifndef MOVE_WITHOUT_E
           assert(home[C] == h);        /* stable under E: no re-read, no retry */
#else
#ifndef BUG_NO_HOME_REREAD
           /* a move takes no E: HomeLock::follow reads the home again once its lock is
              held, and follows C if it moved; back on CPU0, the own lock, held already */
           if
           :: home[C] != h ->
              REACH(22); printf("CPU0: kill: C moved before its home lock was taken\n");
              unlockS(0, h); h = home[C];
              if
              :: h == 0 -> kill_body(); unlockS(0, 0); unlockE(0); kill0 = 0; goto kill_done
              :: else -> goto kill_follow
              fi
           :: else
           fi;
#else
           /* control: no re-read; the kill acts on the home it read (the code's home->) */
           assert(home[C] == h);
#endif
#endif
           kill_body(); unlockS(0, h); unlockS(0, 0); unlockE(0); kill0 = 0 }
kill_done: skip
}
#endif

#ifdef MOVE
/* Scheduler::move_locked of C from CPU1 to CPU0, on CPU1 with E and S1 held (IpcGuard),
   S0 taken as the second scheduler lock for the short section that queues C there */
inline move_off_ready1() {        /* C off CPU1's ready_ (remove_ready_locked) */
  if
  :: rq[2] == C -> rq[2] = rq[3]; rq[3] = 0
  :: else -> assert(rq[3] == C && rql[1] == 2); rq[3] = 0
  fi;
  rql[1]--
}

/* a move of a Ready or Blocked C (balance_locked from CPU1's tick, set_affinity_locked or
   the moves asked of CPU1 in its preempt_if_needed), once: an interrupt of CPU1, taken
   where CPU1 holds no lock (irq1: CPU1 runs nothing else until it returns).  IpcGuard (E,
   then S1), then S0 as the second lock: C Ready -> off CPU1's ready_, home CPU0, on
   CPU0's ready_ (notify_cpu(0) if it idles); C Blocked -> home CPU0 (its timeout would
   move to CPU0's set: none is armed).  C's stack holds no CPU: it is not running */
#if defined(MOVE_WITHOUT_E) && !defined(BUG_MOVE_TAKES_DEST_S)
/* MOVE_WITHOUT_E: the same move taking no E.  The interrupt (balance_locked,
   set_affinity_locked, do_moves_locked) holds S1 alone: C movable (Ready or Blocked,
   homed here); move_locked's HomeLock of CPU0 (lock_others_in_order) lets go of S1,
   takes S0, then S1 again: a real gap (interrupts off), in which CPU0 may take S1 and
   wake C (R's reply) or kill it.  After the gap (to.gapped()) move_locked re-checks: a C
   that died is left alone; one no longer movable goes back on the move list (no move
   here); else the move follows C's state as it is NOW (Ready: off CPU1's ready_).  Both
   re-check outcomes are out of the model's reach (CPU1 is in the handler: C neither runs
   nor ends meanwhile); a move asked again in the gap is not modelled (one move) */
proctype Mover() {
  mtype seen;                   /* C's state when the move was decided, under S1 */
end_move:
  atomic { INTS_ON(1) && NOIRQ(1) && home[C] == 1 && (state[C] == BLOCKED || state[C] == READY) ->
           irq1 = 1; lockS_when(1, 1, true);
           assert(home[C] == 1 && (state[C] == BLOCKED || state[C] == READY));  /* movable */
           seen = state[C];
           unlockS(1, 1); GAP_ON(1) }
  atomic { lockS_when(1, 0, true) }
  atomic { lockS_when(1, 1, true); GAP_OFF(1);
           assert(home[C] == 1 && stk[C] == 0);   /* 3: no CPU on its stack; one move */
           if :: state[C] != seen -> REACH(21) :: else fi;   /* woken in the gap */
#ifdef BUG_MOVE_STATE_BEFORE_GAP
           /* the move acts on the state it saw before its gap */
           if
           :: seen == READY ->
              move_off_ready1(); home[C] = 0; enqueue_locked(1, C);
              printf("CPU1: moves C (Ready) onto CPU0's ready queue\n")
           :: seen == BLOCKED ->
              home[C] = 0; printf("CPU1: moves C (Blocked, as seen before the gap) to CPU0\n")
           fi;
#else
           if
           :: state[C] == DEAD ->       /* died meanwhile: left alone */
              REACH(24); printf("CPU1: C died in the move's gap\n")
           :: state[C] == RUNNING ->    /* no longer movable: back on the move list */
              REACH(24); printf("CPU1: C runs: not moved\n")
           :: state[C] == READY ->
              move_off_ready1(); home[C] = 0; enqueue_locked(1, C);
              printf("CPU1: moves C (Ready) onto CPU0's ready queue\n"); REACH(16)
           :: state[C] == BLOCKED ->
              home[C] = 0; printf("CPU1: moves C (Blocked) to CPU0\n"); REACH(17)
           fi;
#endif
           unlockS(1, 0); unlockS(1, 1); irq1 = 0 }
}
#else
proctype Mover() {
end_move:
  atomic { INTS_ON(1) && NOIRQ(1) && home[C] == 1 && (state[C] == BLOCKED || state[C] == READY) ->
           irq1 = 1;
#ifndef BUG_MOVE_TAKES_DEST_S
           lockE_when(1, true) }
  atomic { lockS_when(1, 1, true) }
  atomic { lockS2(1, 0);
#else
           lockS_when(1, 1, true) }
  /* the move takes S0 as a second S lock without E (the order assertion left out, to
     show the deadlock itself) */
  atomic { slk[0] == 0 -> slk[0] = H(1); sheld[1] = sheld[1] | B(0);
           printf("CPU1: the move takes S0 under S1 without E\n");
#endif
           assert(home[C] == 1 && stk[C] == 0);   /* 3: no CPU on its stack */
           if
           :: state[C] == READY ->
              move_off_ready1(); home[C] = 0; enqueue_locked(1, C);
              printf("CPU1: moves C (Ready) onto CPU0's ready queue\n"); REACH(16)
           :: state[C] == BLOCKED ->
              home[C] = 0; printf("CPU1: moves C (Blocked) to CPU0\n"); REACH(17)
           fi;
           unlockS(1, 0); unlockS(1, 1);
#ifndef BUG_MOVE_TAKES_DEST_S
           unlockE(1);
#endif
           irq1 = 0 }
}
#endif

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
  assert(rql[0] == 0 && rql[1] == 0 && !pend[0] && !pend[1] && !swo);
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
#ifdef MOVE
    ; run Mover()
#endif
#ifdef KILL
    ; run Killer()
#endif
  }
}
