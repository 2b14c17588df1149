/*
 * endpoint_locks.pml -- Promela model of per-endpoint IPC locks on two CPUs, the
 * successor of split_locks.pml (tests/model/README.md, "endpoint_locks.pml";
 * docs/locking.md, "What is left").  A design checked here, not yet the code's.
 * Checked exhaustively by tests/model/run_spin.sh.
 *
 * Locks (each held by a CPU, interrupts off on that CPU while it holds any), in order:
 *   EP[e]  (LockLevel::Endpoint, one per endpoint; e = 0, 1): the endpoint's senders_
 *          (sq[e]) and receivers_ (rcv[e]) queues, and the IPC state of every thread
 *          waiting on them (R's message slot rmsg/rfrom while R waits on receivers_; a
 *          queued caller's result res[t]).  Two EP locks are never held together.
 *   RL[R]  (a new level just above Endpoint, below Scheduler; one per thread, only the
 *          server R's is used): R's callers queue (cq[t]: calls R received and has not
 *          answered, the callers waiting for the reply) and the IPC state of each caller
 *          waiting on it (reply slot rslot[t], result res[t]).
 *   S[c]   (Scheduler::lock_ of CPU c): the scheduling state of the threads homed on c
 *          (state, armed timeout, the wait generation wseq, exit_requested), the wait
 *          lock wl[t] (written with S[home] held, and with the lock it names held), and
 *          Thread::cpu (home[t]: written with BOTH the old and the new home's S held).
 *   Order: EP[e] -> RL[t] -> S[0] -> S[1]: two S locks only in CPU index order (lower
 *   first), never RL then EP, never two EP or two RL locks.  Asserted at every acquire
 *   (LOCK); every access to guarded state asserts that its CPU holds the guarding lock.
 *
 * Contexts: own[c] is the context running on CPU c with interrupts off (holding a lock,
 * or in an interrupt handler); another context of CPU c takes no lock meanwhile.
 *   R      server thread, homed on CPU0: recv on EP[0] (-DTWO_EP: alternately EP[0] and
 *          EP[1]); a recv takes a queued caller (EP[e] -> RL[R] -> S[home caller]: the
 *          caller moves from senders_ onto R's callers queue, its wait lock becomes
 *          RL[R]) or blocks on receivers_ (EP[e] -> S0: linked, marked Blocked, both
 *          released together).  Then reply (RL[R] alone, then the caller's home S with
 *          the re-read of rule 4: unlink, write the reply, wake) -- the reply half of
 *          reply_recv -- and recv again.  -DDIE: after a receive R may die instead of
 *          replying (rule 6): RL[R], every caller on its callers queue fails with
 *          PeerDied (woken under its home S), then its reference is dropped; the last
 *          reference frees R (and RL[R] with it).
 *   C1     client homed on CPU1 (-DMOVE: moved to CPU0 while Blocked or Ready), NCALL
 *          timed calls on EP[0].  A waiting receiver: EP[0] -> RL[R] -> S0 -> S1
 *          (index order; both after EP/RL), deliver, wake R, block itself on R's callers
 *          queue (wait lock RL[R]); no receiver: EP[0] -> S[own], queue on senders_
 *          (wait lock EP[0]) and block.  Woken: S[home] (re-read), read the one result.
 *   C0     (-DC0CALL or -DTWO_EP) client homed on CPU0, one timed call on EP[1]: two
 *          endpoints locked at once by two CPUs.
 *   Tick(c)  the timer tick of CPU c, an interrupt (only where CPU c holds no lock), for
 *          a due timeout of a thread homed on c (rule 5): under S[c] alone read the wait
 *          lock, the wait generation, and pin the object owning the wait lock (endpoint
 *          or server thread: a reference); release S[c]; take the wait lock, then the
 *          thread's home S (re-read: it may have moved); end the wait (unlink, TimedOut,
 *          disarm, wake) only if the thread still waits there, in the same wait, still
 *          due; release both; unpin outside every lock (the last reference frees).  A wait
 *          that moved meanwhile (senders_ -> R's callers queue) is left alone: still
 *          armed and due, the next tick finds it (the timeout stays in the set until
 *          the wait ends).  The re-read of the home never finds a change here: a move
 *          runs on the thread's home CPU, where the tick holds the CPU between its
 *          steps (kept for a design where another CPU may move a thread).
 *   Killer (-DKILL) a kill of C1 from a thread of CPU0 (a syscall: preemptible between
 *          its critical sections): S[home C1] (re-read): exit_requested, and if C1 is
 *          Blocked, the wait lock read and pinned as the tick does; then the wait lock,
 *          S[home]: ended with Interrupted if still the same wait there.  If the wait
 *          moved meanwhile (senders_ of EP[0] -> R's callers queue: the same wait, a
 *          new wait lock) the kill starts over with the new wait lock: unlike the
 *          tick's timeout, which stays due, a kill happens once, and without the
 *          restart the killed thread waits on (BUG_KILL_NO_RESTART; an addition to the
 *          design as first stated).  A call checks exit_requested under its own S
 *          before it blocks (no new wait once killed).
 *   Mover  (-DMOVE) one move of C1 (Blocked or Ready) from CPU1 to CPU0, run on CPU1;
 *          (-DMOVE_C0) one move of C0 from CPU0 to CPU1, run on CPU0: S0 then S1 (index
 *          order), the home changed (its armed timeout moves with it).
 *
 * Rule 4 (Thread::cpu): a waker (reply, death, recv taking a queued caller, tick, kill,
 * the caller's own resume) reads home[t], takes that S lock, reads home[t] again and
 * retries if it changed (lock_home).  Rule 3: the only CPU that holds two S locks takes
 * them in index order after its EP/RL locks (the call delivering to R, the move); none
 * takes an S while holding a higher one.
 *
 * Properties:
 *   1. no deadlock: invalid end states; Check: no lock held when nothing can move;
 *   2. no lost wake-up: whoever ends a wait finds its result still Pending and the thread
 *      Blocked; Check (when nothing can move): every call finished, R not asleep with
 *      a message, no queue still holding a caller, no pin left; a kill, once done,
 *      leaves C1 waiting in no operation;
 *   3. every call ends exactly once, with exactly one of Reply / TimedOut / PeerDied /
 *      Interrupted (res[t] written only while Pending; read and cleared by the caller);
 *      a Reply carries the caller's own message (no crossed replies);
 *   4. no lost or duplicated message: R receives each message at most once (got[]),
 *      and a message taken from senders_ or delivered is R's recv result;
 *   5. lock order asserted at every acquire; one holder per lock; every access asserts
 *      its guard;
 *   6. pinning: a freed object's lock is never taken (assert at RL[R]'s acquire), and an
 *      object is never freed while pinned (refs counts the pins).
 *
 * Negative controls (must FAIL):
 *   BUG_RL_BEFORE_EP      R's recv takes RL[R], then EP[e]: the order assertion fires.
 *                         Only it: with the assertion left out the model passes (others
 *                         take RL[R] while R runs only as a wait lock, then only an S;
 *                         a call takes EP[e] then RL[R] only while R waits)
 *   BUG_S_AGAINST_ORDER   C1's call takes S1 then S0 (own lock first; the order
 *                         assertion left out): with -DMOVE the move holds S0 and wants
 *                         S1 -> deadlock
 *   BUG_TICK_NO_RECHECK   the tick ends the wait it saw under S[c] without checking that
 *                         it is still there: a reply (or a delivery) won meanwhile
 *   BUG_WAKER_NO_REREAD   a waker takes the S lock of the home it read and does not read
 *                         it again: with -DMOVE the home changed in between
 *   BUG_TICK_NO_PIN       the tick does not pin the wait lock's owner: R dies and is
 *                         freed between the tick's two steps, the tick takes a freed lock
 *   BUG_KILL_NO_RESTART   the kill, re-locked, finds C1's wait moved from senders_ to R's
 *                         callers queue (R took it) and gives up: the killed C1 still
 *                         waits when the kill is done (with an untimed call: for ever)
 *   BUG_UNLOCK_EP_BEFORE_BLOCK  R's recv links itself on receivers_, drops EP[e], and
 *                         marks itself Blocked later under S0 alone: a call's wake finds
 *                         R not yet Blocked and is lost (as in split_locks.pml)
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text):
 *   1 a timeout while on R's callers queue      2 a timeout while on senders_
 *   3 a reply racing a timeout: the tick, re-locked, finds the reply won
 *   4 the retry of rule 4 (a waker's re-read finds the home changed)
 *   5 a kill interrupts C1 on R's callers queue 6 a kill starts over (wait moved)
 *   7 PeerDied delivered by R's death           8 EP[0] and EP[1] held at once by two CPUs
 *   9 the unpin frees R (the pin outlived R)    10 the tick finds the wait moved
 *   11 Check reached (the end)                  12 R takes a queued caller
 *   13 the kill, re-locked, finds the wait ended meanwhile (a reply, timeout or death won)
 *   14 a delivery to R while C1 was queued earlier (C1 called twice)
 *   15 a reply dropped: the caller's wait ended before it
 *
 * Not modelled: the context switch, stacks, the lock hand-over, ready queues and idle
 * (split_locks.pml, smp_wake.pml); the fast path; endpoint destruction (the dead flag:
 * endpoints are pinned like R but never freed here); a timed recv or a kill of R;
 * more than one server, two callers on one endpoint, more than two CPUs; a move of a
 * running thread; handle tables and the address-space lock.
 */
#define R      0                /* server, homed on CPU0 */
#define C1     1                /* client, homed on CPU1, calls EP[0] */
#define C0     2                /* client, homed on CPU0, calls EP[1] */
#define NT     3
#define KILLER 3                /* contexts beyond the threads */
#define TICK0  4
#define TICK1  5
#define MOVER  6
#define NONE   255

#define EP0 0                   /* lock ids */
#define EP1 1
#define RLR 2
#define S0  3
#define S1  4
#define NOLOCK 7
#define SL(c) (S0 + (c))
#define B(x) (1 << (x))
#define H(c) ((c) + 1)          /* lock holder: 0 free, 1 CPU0, 2 CPU1 */

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
#define TOK(t, i) ((t) * 4 + (i) + 1)

#if defined(MOVE_C0) && !defined(C0CALL)
#error "MOVE_C0 needs -DC0CALL or -DTWO_EP"
#endif
#if defined(BUG_S_AGAINST_ORDER) && !defined(MOVE_C0)
#error "BUG_S_AGAINST_ORDER needs -DMOVE_C0 (the move of C0 takes S0 then S1)"
#endif
#if defined(BUG_WAKER_NO_REREAD) && !defined(MOVE)
#error "BUG_WAKER_NO_REREAD needs -DMOVE"
#endif
#if defined(BUG_TICK_NO_PIN) && !defined(DIE)
#error "BUG_TICK_NO_PIN needs -DDIE"
#endif

mtype = { RUN, READY, BLOCKED, DEAD };                          /* Thread::state */
mtype = { NORES, PENDING, REPLY, TIMEDOUT, PEERDIED, INTERRUPTED }; /* a caller's result */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)
#else
#define REACH(n) skip
#endif

/* locks */
byte lk[5];                     /* holder of each lock */
byte held[2];                   /* ghost: the locks CPU c holds (bit per lock id) */
byte own[2];                    /* ghost: context (+1) on CPU c with interrupts off */
bit  stay[2];                   /* that context keeps interrupts off between its locks */
/* guarded by S[home[t]] */
mtype state[NT];
bit   armed[NT];                /* a timeout armed, in home[t]'s timeout set */
byte  wseq[NT];                 /* wait generation: a new wait, a new deadline */
byte  wl[NT];                   /* wait lock (also written with the lock it names held) */
byte  home[NT];                 /* Thread::cpu: with both the old and new home's S */
bit   exitreq;                  /* C1's exit_requested */
/* guarded by EP[e] */
byte  sq[2];                    /* senders_ of EP[e]: one caller at most (NONE) */
bit   rcv[2];                   /* R on receivers_ of EP[e] */
byte  rmsg, rfrom;              /* R's message slot, while R waits on receivers_ */
/* guarded by RL[R] */
bit   cq[NT];                   /* t on R's callers queue */
byte  rslot[NT];                /* t's reply */
bit   deadR;                    /* R died: its callers queue is closed */
/* guarded by the wait lock while t waits, by t itself otherwise */
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

#define HOLDS(c, L) (lk[L] == H(c) && (held[c] & B(L)) != 0)
#define HOLDS_HOME(c, t) HOLDS(c, SL(home[t]))

/* the lock order, asserted at an acquire of L by CPU c */
#define ORDER_OK(c, L) \
  (((L) <= EP1 && held[c] == 0) || \
   ((L) == RLR && (held[c] & (B(RLR) | B(S0) | B(S1))) == 0) || \
   ((L) == S0 && (held[c] & (B(S0) | B(S1))) == 0) || \
   ((L) == S1 && (held[c] & B(S1)) == 0))

/* MINE: this context runs on CPU c (no other context there has interrupts off); the
   acquire's assertions are about this context's locks */
#define MINE(c, me) (own[c] == 0 || own[c] == (me) + 1)
inline LOCK_RAW(c_, L_, me_) {
  assert(!MINE(c_, me_) || (held[c_] & B(L_)) == 0);
  lk[L_] == 0 && MINE(c_, me_) ->
  lk[L_] = H(c_); held[c_] = held[c_] | B(L_); own[c_] = me_ + 1;
  assert(!(L_ == RLR && freedR))          /* 6: a freed object's lock is never taken */
}
inline LOCK(c_, L_, me_) {
  assert(!MINE(c_, me_) || ORDER_OK(c_, L_));   /* 5: the lock order */
  LOCK_RAW(c_, L_, me_)
}
inline UNLOCK(c_, L_) {
  assert(lk[L_] == H(c_) && (held[c_] & B(L_)) != 0);
  lk[L_] = 0; held[c_] = held[c_] ^ B(L_);
  if :: held[c_] == 0 && !stay[c_] -> own[c_] = 0 :: else fi
}

/* rule 4: take t's home S lock: read home, lock it, read again, retry if it changed.
   On return S[h_] is held and h_ == home[t] (asserted where it is used). */
inline lock_home(c_, t_, me_, h_) {
  do
  ::
#if defined(MOVE) || defined(MOVE_C0)
     h_ = home[t_];             /* read without the lock: it may change until S is held */
     atomic {
#else
     atomic { h_ = home[t_];    /* (without -DMOVE it never changes: no separate step) */
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

/* end t's wait with result r: its wait lock and its home S held */
inline end_wait(c_, t_, r_) {
  assert(HOLDS(c_, wl[t_]) && HOLDS_HOME(c_, t_));
  assert(state[t_] == BLOCKED && res[t_] == PENDING);   /* 2, 3: not ended before */
  res[t_] = r_; wl[t_] = NOLOCK; armed[t_] = 0; state[t_] = READY;
  printf("CPU%d: %d's wait ends: %e\n", c_, t_, r_)
}

inline pin(w_) {
  if :: w_ == RLR -> assert(!freedR); refsR++ :: else -> refsE[w_]++ fi
}
inline unpin(w_) {              /* outside every lock */
  if
  :: w_ == RLR -> refsR--; if :: refsR == 0 -> freedR = 1; REACH(9) :: else fi
  :: else -> refsE[w_]--
  fi
}

/* R's recv returns the message (R's own state, no lock): once (4) */
inline received() {
  assert(!got[rmsg]); got[rmsg] = 1;
  m = rmsg; rmsg = 0; rfrom = NONE; n++;
#ifdef TWO_EP
  e = 1 - e;
#endif
  h = 0
}

/* ---------------- the server ---------------- */
proctype Server() {
  byte e, x, h, n, m;
  bit inq;
  do
  :: n < NMSG ->
     /* recv on EP[e] */
#ifndef BUG_RL_BEFORE_EP
     atomic { LOCK(0, e, R); x = sq[e] }
     if
     :: x != NONE ->          /* a queued caller: EP[e] -> RL[R] -> S[home x] */
        atomic { LOCK(0, RLR, R) }
#else
     atomic { LOCK(0, RLR, R) }
     atomic { LOCK(0, e, R); x = sq[e] }
     if
     :: x != NONE ->
#endif
        lock_home(0, x, R, h);
        atomic {
          assert(HOLDS(0, e) && HOLDS(0, RLR) && HOLDS_HOME(0, x));
          assert(sq[e] == x && wl[x] == e && state[x] == BLOCKED && res[x] == PENDING);
          sq[e] = NONE; cq[x] = 1; wl[x] = RLR;     /* same wait, new wait lock */
          rmsg = msg[x]; rfrom = x; REACH(12);
          printf("R: takes queued %d (msg %d) from EP%d\n", x, rmsg, e);
          UNLOCK(0, SL(h)); UNLOCK(0, RLR); UNLOCK(0, e); received() }
     :: else ->               /* block on receivers_: EP[e] -> S0 */
#ifdef BUG_RL_BEFORE_EP
        atomic { UNLOCK(0, RLR) }
#endif
#ifndef BUG_UNLOCK_EP_BEFORE_BLOCK
        atomic { LOCK(0, S0, R);
                 assert(HOLDS(0, e)); rcv[e] = 1; rmsg = 0; wl[R] = e;
                 state[R] = BLOCKED; printf("R: waits on EP%d\n", e);
                 UNLOCK(0, S0); UNLOCK(0, e) }
#else
        atomic { rcv[e] = 1; rmsg = 0; UNLOCK(0, e) }
        atomic { LOCK(0, S0, R); wl[R] = e; state[R] = BLOCKED; UNLOCK(0, S0) }
#endif
end_recv:
        atomic { state[R] == READY -> LOCK(0, S0, R);
                 state[R] = RUN; x = rfrom; assert(rmsg != 0 && x != NONE);
                 UNLOCK(0, S0); received() }
     fi;
     /* reply: RL[R] alone, then the caller's home S (rule 4); -DDIE: or die (RL[R]) */
     atomic { LOCK(0, RLR, R); inq = cq[x];
#ifdef DIE
              if :: goto die_locked :: skip fi
#endif
     }
     if
     :: inq ->
        lock_home(0, x, R, h);
        atomic { assert(HOLDS(0, RLR) && HOLDS_HOME(0, x));
                 assert(cq[x] && wl[x] == RLR);
                 cq[x] = 0; rslot[x] = m; end_wait(0, x, REPLY);
                 UNLOCK(0, SL(h)); UNLOCK(0, RLR); x = 0; h = 0; m = 0; inq = 0 }
     :: else ->              /* the wait ended (timeout, kill): the reply is dropped */
        atomic { REACH(15); UNLOCK(0, RLR); x = 0; m = 0 }
     fi
  :: else -> break
  od;
  rdone = 1;
  goto out;
#ifdef DIE
die_locked:                     /* rule 6: RL[R] held, every caller fails with PeerDied */
  printf("R: dies\n");
  x = C1;
  do
  :: x < NT ->
     if
     :: cq[x] ->
        lock_home(0, x, R, h);
        atomic { assert(HOLDS(0, RLR) && HOLDS_HOME(0, x) && wl[x] == RLR);
                 cq[x] = 0; end_wait(0, x, PEERDIED); REACH(7); UNLOCK(0, SL(h)) }
     :: else
     fi;
     x++
  :: else -> break
  od;
  atomic { deadR = 1; UNLOCK(0, RLR) }
  atomic { refsR--; if :: refsR == 0 -> freedR = 1 :: else fi; rdone = 1 }
#endif
out: skip
}

/* ---------------- the clients ---------------- */
proctype Client(byte t; byte e; byte n) {
  byte i, c, h, r;
  bit deliv;
  do
  :: i < n ->
     /* c: stable while t runs (only a Blocked or Ready t is moved) */
     atomic { c = home[t]; msg[t] = TOK(t, i); LOCK(c, e, t); deliv = rcv[e];
              if :: lk[1 - e] != 0 && lk[1 - e] != H(c) -> REACH(8) :: else fi }
     if
     :: deliv ->                /* R waits: EP[e] -> RL[R] -> S0 (-> S1), index order */
        atomic { LOCK(c, RLR, t) }
#ifndef BUG_S_AGAINST_ORDER
        atomic { LOCK(c, S0, t) }
        if :: c == 1 -> atomic { LOCK(c, S1, t) } :: else fi;
#else
        if :: c == 1 -> atomic { LOCK(c, S1, t) } :: else fi;
        atomic { LOCK_RAW(c, S0, t) }      /* S0 under S1: against the order */
#endif
        atomic {
          assert(HOLDS(c, e) && HOLDS(c, RLR) && HOLDS(c, S0) && HOLDS_HOME(c, t));
          if
          :: t == C1 && exitreq ->          /* killed: no new wait */
             if :: c == 1 -> UNLOCK(c, S1) :: else fi;
             UNLOCK(c, S0); UNLOCK(c, RLR); UNLOCK(c, e); goto interrupted
          :: else
          fi;
          assert(rcv[e]);
          rcv[e] = 0; rmsg = msg[t]; rfrom = t;
          if                            /* wake_locked: only a Blocked R */
          :: state[R] == BLOCKED -> assert(wl[R] == e); wl[R] = NOLOCK; state[R] = READY
          :: else
          fi;
          if :: t == C1 && i > 0 -> REACH(14) :: else fi;
          cq[t] = 1; wl[t] = RLR; res[t] = PENDING; wseq[t]++; armed[t] = 1;
          state[t] = BLOCKED;
          printf("%d: delivers %d to R on EP%d, waits for the reply\n", t, msg[t], e);
          if :: c == 1 -> UNLOCK(c, S1) :: else fi;
          UNLOCK(c, S0); UNLOCK(c, RLR); UNLOCK(c, e) }
     :: else ->                 /* no receiver: EP[e] -> S[own], queue on senders_ */
        atomic { LOCK(c, SL(c), t);
          assert(HOLDS(c, e) && HOLDS_HOME(c, t));
          if
          :: t == C1 && exitreq -> UNLOCK(c, SL(c)); UNLOCK(c, e); goto interrupted
          :: else
          fi;
          assert(sq[e] == NONE);
          sq[e] = t; wl[t] = e; res[t] = PENDING; wseq[t]++; armed[t] = 1;
          state[t] = BLOCKED;
          printf("%d: queues %d on EP%d\n", t, msg[t], e);
          UNLOCK(c, SL(c)); UNLOCK(c, e) }
     fi;
     /* woken: S[home] (it may have moved), read the one result */
     atomic { state[t] == READY -> c = home[t] }
     lock_home(c, t, t, h);         /* runs on its (new) home */
     atomic { assert(HOLDS(c, SL(h)) && HOLDS_HOME(c, t) && state[t] == READY);
              assert(res[t] != PENDING && res[t] != NORES && wl[t] == NOLOCK && !armed[t]);
              r = res[t]; res[t] = NORES; state[t] = RUN;
              if :: r == REPLY -> assert(rslot[t] == msg[t]); rslot[t] = 0 :: else fi;
              printf("%d: call %d ends: %e\n", t, i, r);
              UNLOCK(c, SL(h)); c = 0; h = 0; deliv = 0; i++;
              if :: r == INTERRUPTED -> goto interrupted :: else -> r = 0 fi }
  :: else -> break
  od;
  goto finish;
interrupted:
  assert(t == C1 && exitreq);
finish:
  cdone[t] = 1
}

/* ---------------- the tick of CPU c (rule 5) ---------------- */
proctype Tick(byte c) {
  byte t, w, s, h;
end_tick:
  do
  :: atomic { own[c] == 0 && lk[SL(c)] == 0 &&
              ((home[C1] == c && armed[C1] && state[C1] == BLOCKED) ||
               (home[C0] == c && armed[C0] && state[C0] == BLOCKED)) ->
              LOCK(c, SL(c), TICK0 + c); stay[c] = 1;
              if
              :: home[C1] == c && armed[C1] && state[C1] == BLOCKED -> t = C1
              :: home[C0] == c && armed[C0] && state[C0] == BLOCKED -> t = C0
              fi;
              w = wl[t]; s = wseq[t]; assert(w != NOLOCK);
#ifndef BUG_TICK_NO_PIN
              pin(w);
#endif
              printf("CPU%d tick: %d due, wait lock %d\n", c, t, w);
              UNLOCK(c, SL(c)) }
     atomic { LOCK(c, w, TICK0 + c) }
     lock_home(c, t, TICK0 + c, h);
     atomic {
       assert(HOLDS(c, w) && HOLDS_HOME(c, t));
#ifndef BUG_TICK_NO_RECHECK
       if
       :: state[t] == BLOCKED && wl[t] == w && wseq[t] == s && armed[t] ->
#endif
          if
          :: w == RLR -> assert(HOLDS(c, RLR)); cq[t] = 0; REACH(1)
          :: else -> assert(HOLDS(c, w) && sq[w] == t); sq[w] = NONE; REACH(2)
          fi;
          end_wait(c, t, TIMEDOUT)
#ifndef BUG_TICK_NO_RECHECK
       :: else ->
          if
          :: wseq[t] == s && res[t] == REPLY -> REACH(3)
          :: state[t] == BLOCKED && wseq[t] == s && wl[t] != w -> REACH(10)
          :: else
          fi
       fi;
#endif
       UNLOCK(c, SL(h)); UNLOCK(c, w) }
     atomic {
#ifndef BUG_TICK_NO_PIN
       unpin(w);
#endif
       stay[c] = 0; own[c] = 0; t = 0; w = 0; s = 0; h = 0 }
  od
}

#ifdef KILL
/* ---------------- a kill of C1 from CPU0 ---------------- */
proctype Killer() {
  byte w, s, h;
  bit go;
end_kill:
  (!cdone[C1]);                 /* a syscall: preemptible between its critical sections */
again:
  lock_home(0, C1, KILLER, h);
  atomic { assert(HOLDS_HOME(0, C1));
           exitreq = 1; go = 0;
           if
           :: state[C1] == BLOCKED -> w = wl[C1]; s = wseq[C1]; pin(w); go = 1
           :: else
           fi;
           UNLOCK(0, SL(h)) }
  if
  :: go ->
     atomic { LOCK(0, w, KILLER) }
     lock_home(0, C1, KILLER, h);
     atomic { assert(HOLDS(0, w) && HOLDS_HOME(0, C1));
              go = 0;
              if
              :: state[C1] == BLOCKED && wl[C1] == w && wseq[C1] == s ->
                 if
                 :: w == RLR -> cq[C1] = 0; REACH(5)
                 :: else -> assert(sq[w] == C1); sq[w] = NONE
                 fi;
                 end_wait(0, C1, INTERRUPTED)
              :: state[C1] == BLOCKED && wseq[C1] == s && wl[C1] != w ->
#ifndef BUG_KILL_NO_RESTART
                 go = 1;                /* the wait moved: start over */
#endif
                 REACH(6)
              :: else ->                /* it ended meanwhile (a reply, timeout, death) */
                 REACH(13)
              fi;
              UNLOCK(0, SL(h)); UNLOCK(0, w) }
     atomic { unpin(w); w = 0; s = 0; h = 0;
              if :: go -> go = 0; goto again :: else fi }
  :: else
  fi;
  /* the kill is done: C1 waits no more (exit_requested stops new waits: 2) */
  assert(state[C1] != BLOCKED)
}
#endif

#if defined(MOVE) || defined(MOVE_C0)
/* ------- one move of t (Blocked or Ready) from CPU f to the other, on CPU f (rule 4) ------- */
proctype Mover(byte t; byte f) {
end_move:
  atomic { own[f] == 0 && lk[S0] == 0 && home[t] == f && state[t] != RUN && !cdone[t] ->
           LOCK(f, S0, MOVER); stay[f] = 1 }
  atomic { LOCK(f, S1, MOVER);
           if
           :: home[t] == f && state[t] != RUN ->
              home[t] = 1 - f; printf("CPU%d: moves %d (%e) away\n", f, t, state[t])
           :: else
           fi;
           UNLOCK(f, S1); UNLOCK(f, S0); stay[f] = 0; own[f] = 0 }
}
#endif

active proctype Check() {
end_check:
  timeout ->
  assert(lk[0] == 0 && lk[1] == 0 && lk[2] == 0 && lk[3] == 0 && lk[4] == 0);
  assert(cdone[C1] && (NC0 == 0 || cdone[C0]));
  assert(!(state[R] == BLOCKED && rmsg != 0));
  assert(rdone || (state[R] == BLOCKED && (rcv[0] || rcv[1])));
  assert(!cq[C1] && !cq[C0] && sq[0] == NONE && sq[1] == NONE);
  assert(refsE[0] == 0 && refsE[1] == 0 && (freedR || refsR == 1));
  REACH(11)
}

init {
  atomic {
    home[R] = 0; home[C1] = 1; home[C0] = 0;
    state[R] = RUN; state[C1] = RUN; state[C0] = RUN;
    wl[R] = NOLOCK; wl[C1] = NOLOCK; wl[C0] = NOLOCK;
    sq[0] = NONE; sq[1] = NONE; rfrom = NONE; res[C1] = NORES; res[C0] = NORES;
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
    ; run Mover(C1, 1)
#endif
#ifdef MOVE_C0
    ; run Mover(C0, 0)
#endif
  }
}
