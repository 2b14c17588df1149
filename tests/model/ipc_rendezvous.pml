/*
 * ipc_rendezvous.pml -- Promela model of the kernel's IPC rendezvous on ONE preemptive
 * CPU, as microkernel/endpoint.cpp, scheduler.cpp, syscall/fastpath.cpp and
 * syscall/ipc.cpp implement it.  Checked exhaustively by tests/model/run_spin.sh;
 * README.md maps every name here to the C++.
 *
 * One lock: Scheduler::lock_ guards every endpoint queue, every thread's state and
 * IpcState.  Each `atomic` / `d_step` below is one stretch the CPU runs with interrupts
 * off (a scheduler-lock critical section, or the syscall fast path, which runs with
 * IF=0 from the `syscall` instruction to `sysret`); between two of them interrupts are
 * on and the timer, a kill or an endpoint destroy may land.
 *
 * Threads (user threads of processes):
 *   C0 .. NC-1  clients: NCALLS x Call, then exit.  C0 waits for ever (fast path or
 *               general path), C1 with a timeout (general path only: the fast path
 *               takes only kForever).
 *   S           server: Recv, then a loop of ReplyRecv (or, with SERVER_DROPS, a plain
 *               Recv that supersedes the unanswered call: PeerDied for its caller; or,
 *               with SAVED_REPLY, ReplySave + Reply on the saved reply + Recv).
 *   X           (with -DSENDER) a sender: NSENDS x Send.
 *   IDLE        the idle thread.
 * Interrupt-like events: Timer (preemption + timeouts), Killer (Scheduler::kill of a
 * client, at most once), Destroyer (with -DDESTROY: Endpoint::close_receive_side).
 *
 * PROBE=n / PROBE_ALL: reachability probes (REACH(n) fails; run_spin.sh checks that
 * each is reached).
 *
 * Negative controls (must FAIL):
 *   BUG_TIMEOUT_NO_UNLINK  end_wait_locked() on a timeout leaves the thread linked
 *   BUG_REPLY_NO_SEQ       reply_target_locked() / the fast path ignore ReplyToken::call
 *   BUG_CALL_UNLOCKED      call_impl() drops the scheduler lock (interrupts on) between
 *                          looking at receivers_ and blocking / delivering
 *   BUG_KILL_NO_WAKE       kill_locked() sets exit_requested but does not wake a Blocked thread
 *   BUG_FAST_NO_CANCEL     the fast path's switch to the partner keeps its timeout armed
 *   BUG_SWITCH_HOLDING_TABLE  FastPath::reply_recv releases the handle-table lock only
 *                          after the switch (held across it)
 *   BUG_NO_EXIT_ON_RETURN  before_return_to_user() does not end a killed thread, whose
 *                          user code retries the call that returned Interrupted: a
 *                          livelock (-DNP run)
 */
#ifndef NC
#define NC 2                    /* clients: ids 0..NC-1 */
#endif
#ifndef NCALLS
#define NCALLS 2                /* calls per client */
#endif
#ifndef NSENDS
#define NSENDS 1                /* sends of X */
#endif
#ifndef BUDGET
#define BUDGET NT               /* preemptions allowed between two thread steps */
#endif
#define S      NC               /* the server thread */
#ifdef SENDER
#define X      (NC + 1)         /* the sender thread */
#define NT     (NC + 2)
#else
#define NT     (NC + 1)
#endif
#define IDLE   NT
#define NONE   255
#define TIMED(t) ((t) == 1)     /* C1 calls with a timeout */

mtype = { RUNNING, READY, BLOCKED, DEAD };                 /* ThreadState */
mtype = { WOKEN, TIMEDOUT, INTERRUPTED };                  /* WakeReason */

/* IpcState::Op */
#define OP_NONE  0
#define OP_SEND  1
#define OP_CALL  2
#define OP_RECV  3
#define OP_RWAIT 4
/* IpcState::result (Error) */
#define R_OK        0           /* Error::None */
#define R_PEND      1           /* Error::WouldBlock: "pending", the completer overwrites it */
#define R_TIMEOUT   2
#define R_INTR      3           /* Interrupted (kill) */
#define R_DESTROYED 4
#define R_PEERDIED  5

/* queues (intrusive lists in C++, FIFO; element i of queue x is QE(x, i)) */
#define RQ  0                   /* Scheduler::ready_ */
#define HQ  1                   /* Scheduler::handoff_ */
#define SQ  2                   /* Endpoint::senders_ */
#define RVQ 3                   /* Endpoint::receivers_ */
#define CQ  4                   /* S's IpcState::callers */
#define SVQ 5                   /* Reply::caller_ of the saved reply (-DSAVED_REPLY) */
#define NQ  6
byte qa[NQ * NT];
byte qlen[NQ];
#define QE(x, i) qa[(x) * NT + (i)]

/* ---- Scheduler ---- */
byte  current;                  /* Scheduler::current_ */
byte  donate_target = NONE;     /* Scheduler::donate_target_ */
byte  sched_lock = NONE;        /* Scheduler::lock_: holder, or NONE */
byte  tbl_lock = NONE;          /* the caller's HandleTable::lock_ (fast path, lock_raw) */

/* ---- Thread (index = id) ---- */
mtype state[NT + 1];            /* Thread::state */
byte  won[NT];                  /* Thread::waiting_on: a queue id or NONE */
bit   timed[NT];                /* on Scheduler::timeouts_ (a deadline armed) */
bit   lent[NT];                 /* Thread::lent_quantum (on handoff_) */
bit   exitreq[NT];              /* Thread::exit_requested */
bit   atf[NT + 1];                /* Ready at its frame: woken from an IPC block (Thread::at_frame
                                   + Cpu::resumes_at_frame), not preempted */
/* ---- IpcState ---- */
byte  op[NT];                   /* IpcState::op */
byte  res[NT];                  /* IpcState::result */
byte  msg[NT];                  /* IpcState::msg: a call = 8*caller+seq, a send = 8*X+k,
                                   a reply = the token it answers */
byte  cseq[NT];                 /* IpcState::call_seq */
byte  tok;                      /* S's IpcState::reply (ReplyToken: 8*caller+seq; 0 invalid) */
byte  superseded;               /* S's IpcState::superseded */
/* ---- Endpoint ---- */
bit   dead;                     /* Endpoint::dead_ */

/* ---- ghosts (not in the C++) ---- */
byte  got[NT];                  /* last call number S received from each client */
byte  sgot;                     /* sends S received */
bit   unread;                   /* a message sits in S's IpcState, not yet taken by S */
byte  dropped[NT];              /* call number of the last token dropped (PeerDied) */
bit   killed_blocked[NT];       /* killed while Blocked in its current operation */
byte  ticket[NT];               /* arrival ticket while on senders_ (FIFO check) */
byte  next_ticket;
byte  budget;                   /* preemptions allowed before the next thread step */
bit   quiesced;                 /* idle found nothing left to happen */
bit   killed, destroyed;        /* the one-shot events fired */
bit   started;                  /* init has made the first thread run */
byte  ii, c1, c2, nxt, tgt, tt;   /* scratch inside one atomic step, reset after use */
byte  iv_i, iv_j, iv_c, iv_w, iv_q; /* scratch of inv() */

#define STEP budget = BUDGET

/* Reachability probes: with -DPROBE=n, reaching REACH(n) is an assertion violation, so
   run_spin.sh can check that the model really gets to each interleaving of interest. */
#if defined(PROBE)
#define REACH(n) assert(PROBE != n)
#elif defined(PROBE_ALL)
#define REACH(n) assert(n == 100)     /* each probe fails with its own text */
#else
#define REACH(n) skip
#endif
#define TOKEN(c) (8 * (c) + cseq[c])

/* ---------------- queues: WaitQueue::push_back, push_front, remove, pop_front ---------------- */
inline q_push(x, t) { assert(qlen[x] < NT); QE(x, qlen[x]) = t; qlen[x]++ }
inline q_push_front(x, t) {
  assert(qlen[x] < NT); ii = qlen[x];
  do :: ii > 0 -> QE(x, ii) = QE(x, ii - 1); ii-- :: else -> break od;
  QE(x, 0) = t; qlen[x]++
}
inline q_remove(x, t) {         /* WaitQueue::remove: O(1) in C++, through t's own hook */
  ii = 0;
  do
  :: ii >= qlen[x] -> assert(false)       /* unlinking a thread that is not on x */
  :: ii < qlen[x] && QE(x, ii) != t -> ii++
  :: ii < qlen[x] && QE(x, ii) == t -> break
  od;
  do :: ii + 1 < qlen[x] -> QE(x, ii) = QE(x, ii + 1); ii++ :: else -> break od;
  qlen[x]--; QE(x, qlen[x]) = 0; ii = 0
}
inline q_pop(x, t) { assert(qlen[x] > 0); t = QE(x, 0); q_remove(x, t) }
#define FRONT(x) (qlen[x] > 0 -> QE(x, 0) : NONE)

/* Invariants, after every step: a thread is on at most one queue; Ready <=> on the
   ready or hand-off queue (lent_quantum <=> hand-off); only `current` Runs; Blocked <=>
   linked on the queue waiting_on names, with the op that queue means (senders_: Send or
   Call, receivers_: Recv, callers: ReplyWait); an operation is pending (WouldBlock)
   exactly while Blocked; a deadline only while Blocked; a dead endpoint has no waiters. */
inline check_invariants() {
  assert(sched_lock == NONE && tbl_lock == NONE && donate_target == NONE);
  assert(state[current] == RUNNING);
  iv_j = 0;
  do
  :: iv_j < NT ->
     iv_c = 0; iv_w = NONE; iv_q = 0;
     do
     :: iv_q < NQ ->
        iv_i = 0;
        do :: iv_i < qlen[iv_q] -> if :: QE(iv_q, iv_i) == iv_j -> iv_c++; iv_w = iv_q :: else fi; iv_i++
           :: else -> break od;
        iv_q++
     :: else -> break
     od;
     assert(iv_c <= 1);
     assert((state[iv_j] == READY) == (iv_w == RQ || iv_w == HQ));
     assert(lent[iv_j] == (iv_w == HQ));
     assert((state[iv_j] == RUNNING) == (iv_j == current));
     assert((state[iv_j] == BLOCKED) == (won[iv_j] != NONE));
     assert(won[iv_j] == NONE || won[iv_j] == iv_w);
     assert(iv_w != SQ  || op[iv_j] == OP_SEND || op[iv_j] == OP_CALL);
     assert(iv_w != RVQ || op[iv_j] == OP_RECV);
     assert((iv_w == CQ || iv_w == SVQ) == (op[iv_j] == OP_RWAIT));
     assert((state[iv_j] == BLOCKED) == (res[iv_j] == R_PEND));
     assert((state[iv_j] == BLOCKED) == (op[iv_j] != OP_NONE));
     assert(!timed[iv_j] || state[iv_j] == BLOCKED);
     iv_j++
  :: else -> break
  od;
  assert(!dead || (qlen[SQ] == 0 && qlen[RVQ] == 0));
  iv_i = 0; iv_j = 0; iv_c = 0; iv_w = 0; iv_q = 0
}

/* The invariants are checked after every step by the Invariants process: a step ends with
   inv(), and no other step may run while `check` is set.  (One copy of the check instead
   of one per step keeps pan.c small enough to compile fast.) */
bit check;
#define inv() check = 1
#define MINE(t) (current == (t) && !check)
active proctype Invariants() {
end_inv:
  do
  :: d_step { check -> check_invariants(); check = 0 }
  od
}

/* ---------------- Scheduler ---------------- */

/* the operation ends exactly once: only a pending one gets its result (ghost check) */
inline set_result(t, r) { assert(res[t] == R_PEND); res[t] = r }

/* ipc_abort_locked(t, reason): a wait no partner completed ends here */
inline ipc_abort_locked(t, reason) {
  if
  :: op[t] != OP_NONE && res[t] == R_PEND ->
     op[t] = OP_NONE;
     set_result(t, (reason == TIMEDOUT -> R_TIMEOUT : R_INTR))
  :: else
  fi
}

/* Scheduler::end_wait_locked(t, reason) */
inline end_wait_locked(t, reason) {
  if
  :: won[t] != NONE ->
#ifdef BUG_TIMEOUT_NO_UNLINK
     if :: reason != TIMEDOUT -> q_remove(won[t], t) :: else fi;   /* BUG: stays linked */
#else
     q_remove(won[t], t);
#endif
     won[t] = NONE
  :: else
  fi;
  timed[t] = 0;                                 /* cancel_timeout_inline_locked */
  ipc_abort_locked(t, reason)
}

/* Scheduler::wake_locked(t, reason): Blocked -> Ready at the tail of ready_; anything
   else is a harmless, counted no-op (block_armed is not used by IPC) */
inline wake_locked(t, reason) {
  assert(sched_lock != NONE && t != IDLE);
  if
  :: state[t] == BLOCKED -> end_wait_locked(t, reason); state[t] = READY; q_push(RQ, t); atf[t] = 1
  :: else
  fi
}

/* Scheduler::remove_ready_locked */
inline remove_ready_locked(t) {
  if :: lent[t] -> q_remove(HQ, t) :: else -> q_remove(RQ, t) fi; lent[t] = 0
}

/* Scheduler::hand_off_locked(t) (donation on) */
inline hand_off_locked(t) {
  if :: state[t] == READY && !lent[t] -> q_remove(RQ, t); lent[t] = 1; q_push(HQ, t) :: else fi
}

/* Scheduler::switch_locked(prev, next): the lock is handed over to `next`, which
   releases it (its LockGuard, finish_switch_in(), or the fast path's stub).  No other
   lock may be held across it. */
inline switch_locked(t) {
  assert(sched_lock == current && tbl_lock == NONE);
  printf("    [cpu: T%d -> T%d]\n", current, t);
  state[t] = RUNNING; current = t; atf[t] = 0;
  sched_lock = NONE;                            /* released by the incoming thread */
  inv(); nxt = NONE; tgt = NONE
}

/* Scheduler::schedule_locked(honor_donation).  The current thread has left Running
   (Blocked, Dead) or is Running (a yield, a preemption).  Only a preemption
   (honor == 0, from preempt_if_needed) meets quantum_left_ == 0: on one CPU nothing runs
   between the tick that ends the quantum and that switch. */
inline schedule_locked(honor) {
  assert(sched_lock == current && tbl_lock == NONE);
  tgt = donate_target; donate_target = NONE; nxt = NONE;
  if
  :: honor && tgt != NONE && state[tgt] == READY && tgt != current && tgt != IDLE ->
     remove_ready_locked(tgt); nxt = tgt
  :: else
  fi;
  if
  :: !honor ->                                  /* quantum over: hand-off queue -> ready_ */
     do :: qlen[HQ] > 0 -> q_pop(HQ, tt); lent[tt] = 0; q_push(RQ, tt) :: else -> break od;
     tt = 0
  :: else
  fi;
  if
  :: state[current] == RUNNING ->
     state[current] = READY;
     if
     :: current == IDLE
     :: current != IDLE && nxt != NONE -> lent[current] = 1; q_push_front(HQ, current)  /* donor */
     :: current != IDLE && nxt == NONE -> q_push(RQ, current)
     fi
  :: else
  fi;
  if
  :: nxt == NONE && qlen[HQ] > 0 -> q_pop(HQ, nxt); lent[nxt] = 0
  :: nxt == NONE && qlen[HQ] == 0 && qlen[RQ] > 0 -> q_pop(RQ, nxt)
  :: nxt == NONE && qlen[HQ] == 0 && qlen[RQ] == 0 -> nxt = IDLE
  :: nxt != NONE
  fi;
  switch_locked(nxt)
}

/* Scheduler::mark_current_blocked_locked(queue, timeout) */
inline mark_current_blocked_locked(q, tmo) {
  assert(current != IDLE && state[current] == RUNNING);
  state[current] = BLOCKED; won[current] = q; q_push(q, current);
  if :: q == SQ -> next_ticket++; ticket[current] = next_ticket :: else fi;
  timed[current] = tmo
}

/* a direct switch to `t`, whose wait just ended (Blocked on no queue): the tail of
   Scheduler::switch_to_locked() and of wake_and_block_locked(), and FastPath::switch_to */
inline direct_switch(t) {
  assert(state[t] == BLOCKED && won[t] == NONE && !lent[t]);
  timed[t] = 0;                                 /* cancel_timeout_locked(next) */
  /* a direct switch leaves the donate target alone (one of another CPU waits for
     its interrupt there); on one CPU there is none here */
  assert(donate_target == NONE);
  switch_locked(t)
}

/* Scheduler::wake_and_block_locked(t, queue, timeout), donation on, quantum not over,
   t Blocked: end t's wait, block the current thread, switch straight to t */
inline wake_and_block_locked(t, q, tmo) {
  assert(state[t] == BLOCKED);
  end_wait_locked(t, WOKEN);
  mark_current_blocked_locked(q, tmo);
  assert(donate_target == NONE);                /* left alone, as direct_switch */
  switch_locked(t)
}

/* endpoint.cpp block_in_locked(self, op, queue, timeout) */
inline block_in_locked(me, o, q, tmo) {
  if
  :: exitreq[me] -> op[me] = OP_NONE; st = R_INTR       /* killed: no new wait */
  :: else -> op[me] = o; res[me] = R_PEND; blk = 1;
     mark_current_blocked_locked(q, tmo);
     schedule_locked(1)                         /* block_current_locked */
  fi
}

/* endpoint.cpp complete_locked(t, result) */
inline complete_locked(t, r) { op[t] = OP_NONE; set_result(t, r); wake_locked(t, WOKEN) }

/* S takes a message (endpoint.cpp transfer() into S): the ghost checks that nothing is
   duplicated, overwritten unread, or taken out of order */
inline transfer_to_server(m) {
  assert(!unread); unread = 1; msg[S] = (m);
#ifdef SENDER
  if
  :: (m) / 8 == X -> assert((m) % 8 == sgot + 1); sgot++
  :: else -> assert((m) % 8 > got[(m) / 8]); got[(m) / 8] = (m) % 8
  fi
#else
  assert((m) % 8 > got[(m) / 8]); got[(m) / 8] = (m) % 8
#endif
}

/* endpoint.cpp reply_target_locked(token, queue) -> tt (or NONE); queue: S.callers, or
   the saved reply's queue */
#ifdef BUG_REPLY_NO_SEQ
#define SEQ_OK(t, token) 1            /* BUG: a token of an earlier call matches too */
#else
#define SEQ_OK(t, token) (cseq[t] == (token) % 8)
#endif
inline reply_target_locked(token, q) {
  tt = token / 8;
  if
  :: token != 0 && op[tt] == OP_RWAIT && state[tt] == BLOCKED && won[tt] == q &&
     SEQ_OK(tt, token) -> skip
  :: else -> tt = NONE
  fi
}

/* S takes the first queued sender: endpoint.cpp take_from_sender_locked(S, sender) */
inline take_from_sender_locked(snd) {
  ii = 1;                                       /* FIFO: the head arrived first */
  do :: ii < qlen[SQ] -> assert(ticket[snd] < ticket[QE(SQ, ii)]); ii++ :: else -> break od;
  transfer_to_server(msg[snd]);
  ticket[snd] = 0;
  if
  :: op[snd] == OP_CALL ->
     tok = TOKEN(snd);
     q_remove(SQ, snd); op[snd] = OP_RWAIT; won[snd] = CQ; q_push(CQ, snd)
  :: else -> complete_locked(snd, R_OK); tok = 0
  fi
}

/* Scheduler::exit_current(): Dead, ipc_release_thread_locked (callers: PeerDied), away */
inline exit_current(me) {
  assert(sched_lock == NONE); sched_lock = me;
  state[me] = DEAD;
  do
  :: qlen[CQ] > 0 && me == S -> REACH(12); tt = QE(CQ, 0); complete_locked(tt, R_PEERDIED)
  :: else -> break
  od;
  op[me] = OP_NONE; tt = 0;
  schedule_locked(1)
}

/* ================= clients ================= */

/* FastPath::call(): with IF=0 from the syscall; under the table lock and the scheduler
   lock: a receiver waits, holds no unanswered call, neither side was killed.  Then the
   point of no return: S receives, the client blocks on S's callers, switch to S. */
#define FAST_CALL_OK(me) (qlen[RVQ] > 0 && tok == 0 && !exitreq[S] && !exitreq[me])
inline fastpath_call(me) {
  REACH(1); printf("C%d Call #%d: FastPath::call to S\n", me, cseq[me] + 1);
  tbl_lock = me; sched_lock = me;               /* table.lock_.lock_raw(); s.lock_.lock_raw() */
  tt = QE(RVQ, 0); assert(tt == S);
  q_remove(RVQ, S); won[S] = NONE;
  tbl_lock = NONE;                              /* table.lock_.unlock_raw() */
  op[S] = OP_NONE; set_result(S, R_OK);
  cseq[me]++; tok = TOKEN(me);
  transfer_to_server(TOKEN(me));
  op[me] = OP_RWAIT; res[me] = R_PEND; blk = 1;
  mark_current_blocked_locked(CQ, 0);           /* block_current(self, sipc.callers) */
  tt = 0;
#ifdef BUG_FAST_NO_CANCEL
  assert(state[S] == BLOCKED && won[S] == NONE); donate_target = NONE; switch_locked(S)
#else
  direct_switch(S)                              /* FastPath::switch_to */
#endif
}

/* Endpoint::call_impl(msg, badge, timeout, false), general path */
#ifdef BUG_CALL_UNLOCKED
#define NO_RECEIVER (dec == 1)
#else
#define NO_RECEIVER (qlen[RVQ] == 0)
#endif
inline call_impl(me, tmo) {
  if
  :: dead -> st = R_DESTROYED
  :: !dead && exitreq[me] -> st = R_INTR
  :: else ->
#ifdef BUG_CALL_UNLOCKED
     /* BUG: look at receivers_, then drop the lock (interrupts on) before acting on it */
     if
     :: dec == 0 -> dec = (qlen[RVQ] == 0 -> 1 : 2); sched_lock = NONE; inv(); goto retake
     :: else
     fi;
#endif
     cseq[me]++;
     printf("C%d Call #%d: call_impl, %d receiver(s) waiting\n", me, cseq[me], qlen[RVQ]);
     if
     :: NO_RECEIVER ->                            /* nobody waits: queue as a caller */
        msg[me] = TOKEN(me);
        block_in_locked(me, OP_CALL, SQ, tmo)
     :: else ->                                 /* deliver to the receiver, wait on its callers */
        tt = QE(RVQ, 0); assert(tt == S);
        q_remove(RVQ, S); won[S] = NONE;
        transfer_to_server(TOKEN(me));
        tok = TOKEN(me);
        op[S] = OP_NONE; set_result(S, R_OK);
        op[me] = OP_RWAIT; res[me] = R_PEND; blk = 1; tt = 0;
        if
        :: true -> mark_current_blocked_locked(CQ, tmo); direct_switch(S)  /* in-kernel fast path */
        :: true -> REACH(4); wake_and_block_locked(S, CQ, tmo)   /* fastpath=off or a long message */
        fi
     fi
  fi
}

/* the client's side of its result: mk_resume_at_frame() -> complete_ipc(), or the
   fast path's return; then before_return_to_user() */
inline check_outcome(me) {
  assert(st != R_PEND);
  if
  :: st == R_OK -> assert(msg[me] == TOKEN(me) && got[me] == cseq[me])  /* its own reply */
  :: st == R_TIMEOUT -> assert(TIMED(me))
  :: st == R_INTR -> assert(exitreq[me])
  :: st == R_DESTROYED -> assert(dead)
  :: st == R_PEERDIED -> assert(dropped[me] == cseq[me] || state[S] == DEAD)
  :: else -> assert(false)
  fi;
  assert(!killed_blocked[me] || st == R_INTR);  /* a kill ends a wait with Interrupted */
  killed_blocked[me] = 0
}

/* a client thread's user code: NCALLS x Call (sys_call: FastPath::call, else
   Endpoint::call_impl), then it ends (exit_current) */
proctype Client(byte me) {
  byte k;
  byte st;                                      /* Status of the syscall */
  bit blk;                                      /* it blocked: the result is in res[] */
  byte dec;                                     /* BUG_CALL_UNLOCKED: 1 no receiver, 2 receiver */
  do
  :: k < NCALLS ->
     atomic { MINE(me) -> STEP; k++; blk = 0;
       if                                       /* syscall entry: FastPath::call */
       :: !TIMED(me) && FAST_CALL_OK(me) -> fastpath_call(me)
       :: true                                  /* a miss, or fastpath=off, or a long message */
       fi }
     if
     :: blk
     :: else ->
        /* interrupts on: the general path, sys_call -> Endpoint::call_impl */
#ifdef BUG_CALL_UNLOCKED
        dec = 0;
retake:
#endif
        atomic { MINE(me) -> STEP; assert(sched_lock == NONE); sched_lock = me;
          call_impl(me, TIMED(me));
          if :: !blk -> sched_lock = NONE; inv() :: else fi }
     fi;
end_call:  /* waiting for its result: Idle checks that nobody waits for ever */
     atomic { MINE(me) -> STEP;            /* back at user mode, interrupts on */
       if :: blk -> st = res[me]; res[me] = R_OK :: else fi;
       printf("C%d Call #%d returns %d (0 ok, 2 TimedOut, 3 Interrupted, 4 Destroyed, 5 PeerDied)\n", me, cseq[me], st);
       check_outcome(me);
       st = 0; blk = 0; dec = 0;
       if
#ifndef BUG_NO_EXIT_ON_RETURN
       :: exitreq[me] -> exit_current(me); goto gone   /* before_return_to_user() */
#else
       :: exitreq[me] -> k--                   /* its user code retries the call */
#endif
       :: else
       fi }
  :: else -> break
  od;
  atomic { MINE(me) -> STEP; exit_current(me) };
gone:
  skip
}

/* ================= the server ================= */

/* Endpoint::recv(timeout 0) for S: a queued sender, else block on receivers_ */
inline recv_locked() {
  if
  :: dead -> st = R_DESTROYED
  :: !dead && qlen[SQ] > 0 -> c2 = QE(SQ, 0); take_from_sender_locked(c2); c2 = 0; st = R_OK
  :: !dead && qlen[SQ] == 0 -> block_in_locked(S, OP_RECV, RVQ, 0)
  fi
}

/* FastPath::recv() (a Recv that blocks, with no pending call): the thread next in line
   (hand-off queue, else ready queue) is Ready at its frame with its operation completed
   Ok; nothing queued on the endpoint, not dead, nobody killed: S blocks on receivers_
   and the CPU resumes that thread (a fresh quantum unless it shares this one). */
#define NEXT_RES (qlen[HQ] > 0 -> QE(HQ, 0) : (qlen[RQ] > 0 -> QE(RQ, 0) : NONE))
#define FAST_RECV_OK (tok == 0 && nxt != NONE && atf[nxt % NT] && \
                      !exitreq[nxt % NT] && res[nxt % NT] == R_OK && \
                      (nxt != S || superseded == 0) && \
                      qlen[SQ] == 0 && !dead && !exitreq[S])   /* nxt = NEXT_RES */
inline fastpath_recv() {
  REACH(18); printf("S Recv: FastPath::recv, resumes T%d\n", nxt);
  tbl_lock = S; sched_lock = S;
  tt = nxt;
  if :: lent[tt] -> q_remove(HQ, tt) :: else -> q_remove(RQ, tt) fi; lent[tt] = 0;
  op[S] = OP_RECV; res[S] = R_PEND; superseded = 0; blk = 1;
  mark_current_blocked_locked(RVQ, 0);
  tbl_lock = NONE;
  assert(donate_target == NONE);                /* next_resumable: none set */
  switch_locked(tt)                             /* FastPath::resume */
}

/* FastPath::reply_recv(): the token names the oldest caller on S's callers queue, still
   waiting for that very call; the endpoint is not dead; nobody was killed.  A queued
   caller: reply_and_take(); else answer the caller, block on receivers_, switch to it. */
#define FAST_RR_OK (tok != 0 && qlen[CQ] > 0 && QE(CQ, 0) == tok / 8 && !dead && \
                    !exitreq[QE(CQ, 0)] && !exitreq[S] && \
                    (qlen[SQ] == 0 || (op[QE(SQ, 0)] == OP_CALL && !exitreq[QE(SQ, 0)])))
#define FAST_RR_SEQ SEQ_OK(QE(CQ, 0), tok)
inline fastpath_reply_recv() {
  printf("S ReplyRecv(C%d #%d): FastPath::reply_recv\n", tok / 8, tok % 8);
  tbl_lock = S; sched_lock = S;
  c1 = QE(CQ, 0);
  if
  :: qlen[SQ] > 0 ->                            /* FastPath::reply_and_take */
     REACH(3);
     tbl_lock = NONE;
     msg[c1] = tok;                             /* the reply, into the caller's IpcState */
     op[c1] = OP_NONE; set_result(c1, R_OK);
     wake_locked(c1, WOKEN); hand_off_locked(c1);
     c2 = QE(SQ, 0);
     ii = 1;
     do :: ii < qlen[SQ] -> assert(ticket[c2] < ticket[QE(SQ, ii)]); ii++ :: else -> break od;
     q_remove(SQ, c2); ticket[c2] = 0; won[c2] = CQ; q_push(CQ, c2); op[c2] = OP_RWAIT;
     tok = TOKEN(c2); superseded = 0;
     transfer_to_server(msg[c2]);
     st = R_OK; c1 = 0; c2 = 0;
     sched_lock = NONE; inv()                   /* returns to user mode from its own frame */
  :: else ->                                    /* answer(): unlink the caller, reply */
     REACH(2);
     q_remove(CQ, c1); won[c1] = NONE;
     op[c1] = OP_NONE; set_result(c1, R_OK); msg[c1] = tok;
     op[S] = OP_RECV; res[S] = R_PEND; tok = 0; superseded = 0; blk = 1;
     mark_current_blocked_locked(RVQ, 0);
#ifndef BUG_SWITCH_HOLDING_TABLE
     tbl_lock = NONE;
#endif
     tt = c1; c1 = 0;
#ifdef BUG_FAST_NO_CANCEL
     assert(state[tt] == BLOCKED && won[tt] == NONE); donate_target = NONE; switch_locked(tt)
#else
     direct_switch(tt)
#endif
  fi
}

/* Endpoint::reply_recv(token, reply, 0), general path */
inline reply_recv_locked(token) {
  printf("S ReplyRecv(C%d #%d): Endpoint::reply_recv\n", token / 8, token % 8);
  if
  :: dead -> st = R_DESTROYED                   /* nothing done, not even the reply */
  :: else ->
     reply_target_locked(token, CQ); c1 = tt; tt = 0;
     if
     :: c1 != NONE && qlen[SQ] == 0 ->          /* no sender: answer and wait */
        if
        :: true ->                              /* in-kernel fast path: direct switch */
           q_remove(CQ, c1); won[c1] = NONE;
           msg[c1] = token; op[c1] = OP_NONE; set_result(c1, R_OK);
           op[S] = OP_RECV; res[S] = R_PEND; blk = 1;
           mark_current_blocked_locked(RVQ, 0);
           tt = c1; c1 = 0; direct_switch(tt)
        :: true ->                              /* fastpath=off / long message */
           msg[c1] = token; op[c1] = OP_NONE; set_result(c1, R_OK);
           op[S] = OP_RECV; res[S] = R_PEND; blk = 1;
           tt = c1; c1 = 0; wake_and_block_locked(tt, RVQ, 0)
        fi
     :: c1 != NONE && qlen[SQ] > 0 ->           /* the next message is here: go on */
        REACH(11);
        msg[c1] = token; op[c1] = OP_NONE; set_result(c1, R_OK);
        wake_locked(c1, WOKEN); hand_off_locked(c1); c1 = 0;
        c2 = QE(SQ, 0); take_from_sender_locked(c2); c2 = 0; st = R_OK
     :: c1 == NONE ->                           /* no token, or a stale one: just receive */
        if :: token != 0 -> REACH(7) :: else fi;
        c1 = 0; recv_locked()
     fi
  fi
}

/* Endpoint::reply(token) / reply_drop(token) (own critical section) */
inline reply_locked(token, r) {
  printf("S reply (result %d: 0 reply, 5 drop) to C%d #%d\n", r, token / 8, token % 8);
  reply_target_locked(token, CQ);
  if
  :: tt != NONE && r == R_OK -> msg[tt] = token; complete_locked(tt, R_OK)
  :: tt != NONE && r == R_PEERDIED -> REACH(9); dropped[tt] = token % 8; complete_locked(tt, R_PEERDIED)
  :: else
  fi;
  tt = 0
}

#ifdef SAVED_REPLY
byte stok;                      /* the saved reply's token (Reply::token_), 0: none */

/* Endpoint::save_reply(token, saved) (sys_reply_save): the caller moves from S's callers
   to the Reply's queue; a stale token is BadHandle and changes nothing */
inline save_reply_locked() {
  reply_target_locked(tok, CQ);
  if
  :: tt != NONE -> REACH(14); q_remove(CQ, tt); q_push(SVQ, tt); won[tt] = SVQ; stok = tok; tok = 0
  :: else
  fi;
  tt = 0
}

/* FastPath::reply() (syscall Reply on a saved reply): the caller the Reply was saved
   from waits on it, nobody was killed; answer it, the replier waits Ready at the front
   of the hand-off queue (lent_quantum), switch to the caller. */
#define FAST_REPLY_OK (stok != 0 && qlen[SVQ] > 0 && QE(SVQ, 0) == stok / 8 && \
                       SEQ_OK(QE(SVQ, 0), stok) && !exitreq[QE(SVQ, 0)] && !exitreq[S])
inline fastpath_reply() {
  REACH(15);
  tbl_lock = S; sched_lock = S;
  c1 = QE(SVQ, 0);
  q_remove(SVQ, c1); won[c1] = NONE;                          /* answer() */
  op[c1] = OP_NONE; set_result(c1, R_OK); msg[c1] = stok;
  tbl_lock = NONE;                                            /* vacate_locked, unlock */
  stok = 0;
  state[S] = READY; lent[S] = 1; q_push_front(HQ, S); atf[S] = 1;
  tt = c1; c1 = 0;
  direct_switch(tt)                                           /* FastPath::switch_to */
}

/* sys_reply -> Reply::answer -> Endpoint::reply_saved(token, saved, msg, Donate::Yes),
   then yield_to_donate_target(): interrupts off throughout */
inline reply_saved_and_yield() {
  reply_target_locked(stok, SVQ);
  if
  :: tt != NONE -> REACH(16); msg[tt] = stok; complete_locked(tt, R_OK);
     donate_target = tt; tt = 0; stok = 0;
     schedule_locked(1)                                       /* on_yield_vector() */
  :: else -> tt = 0; stok = 0; sched_lock = NONE; inv()       /* BadHandle: timed out, killed */
  fi
}
#endif

/* the server thread's user code: sys_recv, then sys_reply_recv in a loop (FastPath::
   reply_recv, else Endpoint::reply_recv); with SERVER_DROPS also sys_recv holding a call,
   with SAVED_REPLY sys_reply_save + sys_reply on the saved reply + sys_recv */
proctype Server() {
  byte st;
  bit blk;
  byte token;
  bit hit;                                      /* the fast path completed the ReplyRecv */
  /* sys_recv: superseded = reply (none yet); Endpoint::recv */
  atomic { MINE(S) -> STEP; superseded = tok; nxt = NEXT_RES;
           if
           :: FAST_RECV_OK -> fastpath_recv()
           :: true -> nxt = NONE; assert(sched_lock == NONE); sched_lock = S;
              recv_locked(); if :: !blk -> sched_lock = NONE; inv() :: else fi
           fi }
end_wait:
  do
  :: atomic { MINE(S) -> STEP;             /* complete_ipc() for the receive */
       if :: blk -> st = res[S]; res[S] = R_OK :: else fi; blk = 0;
       assert(st == R_OK || st == R_DESTROYED);
       if :: st == R_OK -> assert(unread); unread = 0 :: else fi;
       printf("S receive returns %d, message %d (8*sender+number)\n", st, msg[S]) }
     if
     :: st == R_OK && superseded != 0 ->        /* the unanswered call it replaced: PeerDied */
        atomic { MINE(S) -> STEP; assert(sched_lock == NONE); sched_lock = S;
                 reply_locked(superseded, R_PEERDIED); superseded = 0; sched_lock = NONE; inv() }
     :: else -> superseded = 0
     fi;
     if
     :: st == R_DESTROYED -> atomic { MINE(S) -> STEP; exit_current(S) }; break
     :: else
     fi;
     /* user mode: handle the message, then the next syscall */
     if
     :: atomic { MINE(S) -> STEP; st = 0; hit = 0;  /* ReplyRecv: FastPath::reply_recv first */
          if
          :: FAST_RR_OK && FAST_RR_SEQ -> hit = 1; fastpath_reply_recv()
          :: true -> token = tok; tok = 0      /* a miss: sys_reply_recv takes the token */
          fi }
        if
        :: hit -> hit = 0                      /* the fast path did it (blocked, or took a call) */
        :: else ->
           atomic { MINE(S) -> STEP; assert(sched_lock == NONE); sched_lock = S;
             reply_recv_locked(token); if :: !blk -> sched_lock = NONE; inv() :: else fi }
           if
           :: !blk && st == R_DESTROYED && token != 0 ->   /* sys_reply_recv: reply anyway */
              atomic { MINE(S) -> STEP; assert(sched_lock == NONE); sched_lock = S;
                       reply_locked(token, R_OK); sched_lock = NONE; inv() }
           :: else
           fi
        fi;
        token = 0
#ifdef SAVED_REPLY
     :: tok != 0 ->                             /* ReplySave, Reply(saved), then Recv */
        atomic { MINE(S) -> STEP; printf("S ReplySave(C%d #%d)\n", tok / 8, tok % 8);
                 assert(sched_lock == NONE); sched_lock = S;
                 save_reply_locked(); sched_lock = NONE; inv() }
        atomic { MINE(S) -> STEP; printf("S Reply(saved C%d #%d)\n", stok / 8, stok % 8);
          if
          :: stok != 0 && FAST_REPLY_OK -> fastpath_reply()
          :: stok != 0 ->                       /* a miss (or not the fast path's case) */
             assert(sched_lock == NONE); sched_lock = S; reply_saved_and_yield()
          :: else                               /* the save failed: nothing to answer */
          fi }
        atomic { MINE(S) -> STEP; superseded = tok; st = 0; nxt = NEXT_RES;
          if
          :: FAST_RECV_OK -> fastpath_recv()
          :: true -> nxt = NONE; assert(sched_lock == NONE); sched_lock = S;
             recv_locked(); if :: !blk -> sched_lock = NONE; inv() :: else fi
          fi }
#endif
#ifdef SERVER_DROPS
     :: tok != 0 ->                             /* Recv without answering: sys_recv */
        atomic { MINE(S) -> STEP; superseded = tok; st = 0;
                 printf("S Recv, holding C%d #%d unanswered\n", tok / 8, tok % 8);
                 assert(sched_lock == NONE); sched_lock = S;
                 recv_locked(); if :: !blk -> sched_lock = NONE; inv() :: else fi }
#endif
     fi
  od
}

/* ================= a sender (Endpoint::send) ================= */
#ifdef SENDER
/* the sender thread's user code: NSENDS x sys_send -> Endpoint::send, then it ends */
proctype Sender() {
  byte k, st;
  bit blk;
  do
  :: k < NSENDS ->
     /* sys_send -> Endpoint::send: interrupts off from the lock to the donation's yield */
     atomic { MINE(X) -> STEP; k++; assert(sched_lock == NONE); sched_lock = X;
       if
       :: dead -> st = R_DESTROYED; sched_lock = NONE; inv()
       :: !dead && qlen[RVQ] > 0 ->             /* deliver_locked, then yield_to_donate_target */
          tt = QE(RVQ, 0); transfer_to_server(8 * X + k); tok = 0;
          complete_locked(tt, R_OK); donate_target = tt; tt = 0; REACH(13);
          st = R_OK;
          schedule_locked(1)                    /* on_yield_vector(): int 0x50 */
       :: !dead && qlen[RVQ] == 0 ->
          msg[X] = 8 * X + k;
          block_in_locked(X, OP_SEND, SQ, 0)
       fi }
     atomic { MINE(X) -> STEP;
       if :: blk -> st = res[X]; res[X] = R_OK :: else fi;
       assert(st == R_OK && sgot >= k || st == R_DESTROYED && dead);
       st = 0; blk = 0 }
  :: else -> break
  od;
  atomic { MINE(X) -> STEP; exit_current(X) }
}
#endif

/* ================= interrupts and other CPUs' work ================= */

/* Scheduler::on_timer_tick() + preempt_if_needed(): a tick whose quantum ran out with
   another thread ready preempts (round robin); a tick past a deadline wakes that thread
   with TimedOut (ipc_abort_locked: the operation ends, unlinked wherever it waits). */
active proctype Timer() {
end_timer:
  do
  ::  atomic { !check && sched_lock == NONE && budget > 0 && current != IDLE && qlen[RQ] + qlen[HQ] > 0 ->
       budget--; assert(donate_target == NONE); printf("timer: preempts T%d\n", current);
       sched_lock = current; schedule_locked(0) }
  :: atomic { !check && sched_lock == NONE && timed[1] ->  /* the deadline of C1 passed */
       if :: won[1] == CQ -> REACH(5) :: won[1] == SQ -> REACH(6) :: won[1] == SVQ -> REACH(17)
          :: else fi;
       printf("timer: C1's deadline passes\n");
       sched_lock = current; wake_locked(1, TIMEDOUT); sched_lock = NONE; inv() }
  od
}

/* Scheduler::kill(client), from another thread: exit_requested; a Blocked one is woken
   (Interrupted); it ends itself on its way back to user mode. */
active proctype Killer() {
end_killer:
  atomic { started && !check && sched_lock == NONE && !quiesced ->
    if :: current != 0 -> tgt = 0 :: current != 1 -> tgt = 1 fi;
    sched_lock = current; killed = 1; printf("kill(C%d)\n", tgt);
    if
    :: state[tgt] == DEAD
    :: else ->
       exitreq[tgt] = 1;
       if
       :: state[tgt] == BLOCKED -> killed_blocked[tgt] = 1;
          if :: won[tgt] == CQ -> REACH(8) :: else fi;
#ifndef BUG_KILL_NO_WAKE
          wake_locked(tgt, INTERRUPTED)
#endif
       :: else
       fi
    fi;
    sched_lock = NONE; tgt = NONE; inv() }
}

#ifdef DESTROY
/* Endpoint::close_receive_side() -> mark_dead_locked(): every waiter wakes with Destroyed */
active proctype Destroyer() {
end_destroyer:
  atomic { started && !check && sched_lock == NONE && !quiesced ->
    sched_lock = current; destroyed = 1; printf("Endpoint::close_receive_side()\n");
    if
    :: !dead -> dead = 1;
       do :: qlen[SQ] > 0 -> tt = QE(SQ, 0); ticket[tt] = 0; complete_locked(tt, R_DESTROYED)
          :: else -> break od;
       do :: qlen[RVQ] > 0 -> REACH(10); tt = QE(RVQ, 0); complete_locked(tt, R_DESTROYED)
          :: else -> break od;
       tt = 0
    :: else
    fi;
    sched_lock = NONE; inv() }
}
#endif

/* Scheduler::idle_once(): switch away if work is ready, else wait for an interrupt.
   When nothing is ready and no deadline is armed, nothing can ever wake a thread again:
   then no client may be left Blocked (lost wake-up / deadlock), every client and the
   sender have ended, S waits in Recv (or ended, the endpoint destroyed), no queued
   caller or sender is left. */
proctype Idle() {
end_idle:
  do
  :: atomic { MINE(IDLE) && qlen[RQ] + qlen[HQ] > 0 -> sched_lock = IDLE; schedule_locked(0) }
  :: atomic { MINE(IDLE) && qlen[RQ] + qlen[HQ] == 0 && !timed[1] && !quiesced ->
       ii = 0;
       do
       :: ii < NT && ii != S ->                 /* ended, or (SERVER_DROPS) its call is the */
          assert(state[ii] == DEAD ||           /* one S holds unanswered while it receives */
                 won[ii] == CQ && tok == TOKEN(ii) && state[S] == BLOCKED);
          ii++
       :: ii == S -> ii++
       :: else -> break
       od;
       ii = 0;
       assert(state[S] == DEAD || state[S] == BLOCKED && won[S] == RVQ);
       assert(qlen[SQ] == 0 && qlen[CQ] <= 1 && !unread);
       quiesced = 1 }
  od
}

init {
  atomic {
    ii = 0;
    do :: ii < NT -> state[ii] = READY; won[ii] = NONE; q_push(RQ, ii); ii++ :: else -> break od;
    state[IDLE] = READY;
    ii = 0;
    do :: ii < NC -> run Client(ii); ii++ :: else -> break od;
    ii = 0;
    run Server();
#ifdef SENDER
    run Sender();
#endif
    run Idle();
    /* the first thread to run: any of them */
    if
    :: nxt = 0
    :: nxt = 1
    :: nxt = S
#ifdef SENDER
    :: nxt = X
#endif
    fi;
    q_remove(RQ, nxt); state[nxt] = RUNNING; current = nxt; budget = BUDGET; nxt = NONE; started = 1;
    inv()
  }
}
