//! Per-SSL records in chunks that are never freed, named by handles with a
//! 40-bit generation, and the delivery protocol between callbacks and frees.
//!
//! An engine keeps the wait ctx's callback argument for as long as an
//! operation is in flight, possibly past `SSL_free`. Handing it a pointer to
//! freed state would make the shim itself a use-after-free; a handle into
//! memory that is never released lets the trampoline check the generation
//! and drop a stale completion instead.
//!
//! The protocol (model-checked by the loom tests below): a delivery claims
//! the slot's `busy` word, then checks the handle and reads the callback; a
//! retirement (free) or a clear changes the handle or the callback, then waits
//! until no other thread holds `busy`. Each side puts a sequentially
//! consistent fence between its write and its read (the store-buffering
//! pattern), so either the delivery sees the change and drops, or the
//! retirement sees the claim and waits: once `SSL_free` or a clear returns,
//! the callback is not running and will not start. A thread never waits for
//! its own delivery (a callback freeing or clearing its own SSL).

use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::AtomicPtr as StdAtomicPtr;

use libc::c_void;

use crate::sync::{fence, relax, AtomicPtr, AtomicU64, AtomicUsize, Ordering, SpinLock};
use crate::sys::SSL;

/// A handle is `generation << INDEX_BITS | index`; generations start at 1,
/// so no handle is 0 (an engine passing NULL names no slot).
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const GEN_ONE: u64 = 1 << INDEX_BITS;
const CHUNK_BITS: u32 = 12;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// 4096 chunks of 4096 records: 16M SSLs using the API at the same time.
const MAX_CHUNKS: usize = 1 << (INDEX_BITS - CHUNK_BITS);
/// A released record is reused only after this many others (FIFO), so one
/// hot SSL slot cycles through 4096 records: a 40-bit generation then wraps
/// after 2^52 frees, centuries at any rate OpenSSL can create SSLs.
const QUARANTINE: usize = 4096;

/// What the shim keeps for one SSL that uses the API.
#[repr(C)]
pub struct Slot {
    /// The handle naming the slot's current owner; moves on release.
    id: AtomicU64,
    /// The user's callback (`SSL_async_callback_fn` as an address; 0 = none).
    pub callback: AtomicUsize,
    pub arg: AtomicPtr<c_void>,
    pub ssl: AtomicPtr<SSL>,
    /// The SSL's wait ctx while it carries this slot's trampoline, so that
    /// clearing the callback can take it off at once and the job-start hook
    /// only has to look at the wait ctx.
    pub wired: AtomicPtr<c_void>,
    /// The thread delivering a completion for this slot, 0 when none.
    busy: AtomicUsize,
    /// Monotonic nanoseconds of the job start that may pause (stats only).
    pub started_ns: AtomicU64,
    /// The fd adapter's state of the SSL: the flags below, and above them
    /// the count of the SSL's job starts (an armed pause remembers the count
    /// it was armed under; a later job start makes that arm stale). One
    /// word, so an SSL using the API costs 64 bytes.
    mode: AtomicU64,
}

/// `mode` flags: the adapter serves the SSL;
const FD_ON: u64 = 1;
/// the adapter reports `ASYNC_STATUS_OK` for the current pause;
const REPORTED: u64 = 2;
/// the engine called the adapter's trampoline since the last job start;
const ENGINE_CALLED: u64 = 4;
/// a watch may be armed for the SSL (set and cleared by its owner only);
const ARMED: u64 = 8;
/// and the job-start count, above the flags.
const SEQ_ONE: u64 = 1 << 8;

/// What a delivery may call: read under a claim, valid while it is held.
pub struct Target {
    pub ssl: *mut SSL,
    pub callback: usize,
    pub arg: *mut c_void,
}

/// A delivery in progress; dropping it lets waiting frees and clears go on.
pub struct Claim<'a> {
    slot: &'a Slot,
    owned: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.owned {
            self.slot.busy.store(0, Ordering::Release);
        }
    }
}

impl Slot {
    fn new(index: u32) -> Slot {
        Slot {
            id: AtomicU64::new(GEN_ONE | index as u64),
            callback: AtomicUsize::new(0),
            arg: AtomicPtr::new(ptr::null_mut()),
            ssl: AtomicPtr::new(ptr::null_mut()),
            wired: AtomicPtr::new(ptr::null_mut()),
            busy: AtomicUsize::new(0),
            started_ns: AtomicU64::new(0),
            mode: AtomicU64::new(0),
        }
    }

    /// The index part of the slot's handles.
    pub fn slot_index(&self) -> u32 {
        self.index()
    }

    fn index(&self) -> u32 {
        (self.id.load(Ordering::Relaxed) & INDEX_MASK) as u32
    }

    /// The handle that names this slot's current owner (never NULL).
    pub fn handle(&self) -> *mut c_void {
        self.id.load(Ordering::Relaxed) as usize as *mut c_void
    }

    /// Gives the (unowned, quiescent) slot to a new SSL.
    fn assign(&self, ssl: *mut SSL, callback: usize, arg: *mut c_void, fd_on: bool) {
        self.ssl.store(ssl, Ordering::Release);
        // The count carries on across owners: a stale arm stays stale.
        let seq = self.mode.load(Ordering::Relaxed) & !(SEQ_ONE - 1);
        self.mode
            .store(seq | if fd_on { FD_ON } else { 0 }, Ordering::Relaxed);
        self.arg.store(arg, Ordering::Release);
        self.wired.store(ptr::null_mut(), Ordering::Release);
        self.started_ns.store(0, Ordering::Relaxed);
        self.callback.store(callback, Ordering::Release);
    }

    /// Claims the slot for delivering `handle`'s completion on thread `me`.
    /// None when the handle is stale or the callback is cleared: the
    /// completion is dropped. Another thread's delivery for the same slot
    /// is waited out (deliveries of one SSL never overlap).
    pub fn begin_delivery(&self, handle: u64, me: usize) -> Option<(Target, Claim<'_>)> {
        if self.id.load(Ordering::Relaxed) != handle {
            return None; // stale: no need to claim anything
        }
        let owned = match self
            .busy
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(holder) => self.claim_contended(holder, me),
        };
        let claim = Claim { slot: self, owned };
        // The claim, then the checks: pairs with the fence in `quiesce`.
        fence(Ordering::SeqCst);
        if self.id.load(Ordering::Acquire) != handle {
            return None;
        }
        let callback = self.callback.load(Ordering::Acquire);
        if callback == 0 {
            return None;
        }
        let target = Target {
            ssl: self.ssl.load(Ordering::Acquire),
            callback,
            arg: self.arg.load(Ordering::Acquire),
        };
        Some((target, claim))
    }

    /// [`Slot::begin_delivery`] for a pause the fd adapter armed when the
    /// SSL's job-start count was `seq`: None as well once a job start of the
    /// SSL began ([`Slot::end_pause`]).
    pub fn begin_pause_delivery(
        &self,
        handle: u64,
        seq: u64,
        me: usize,
    ) -> Option<(Target, Claim<'_>)> {
        let (target, claim) = self.begin_delivery(handle, me)?;
        // After the claim and begin_delivery's fence: pairs with end_pause.
        if self.pause_seq() != seq {
            return None;
        }
        Some((target, claim))
    }

    /// A job start of the SSL (the application resuming it, or a new job):
    /// the armed pause is over, and the engine has not called back for the
    /// new job yet. Returns once no other thread is delivering for the SSL,
    /// so no callback for that pause starts or runs afterwards.
    pub fn end_pause(&self, me: usize) {
        let mut cur = self.mode.load(Ordering::Relaxed);
        loop {
            let next = cur.wrapping_add(SEQ_ONE) & !ENGINE_CALLED;
            match self
                .mode
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.quiesce(me);
    }

    /// The SSL's job-start count (what an arm records).
    pub fn pause_seq(&self) -> u64 {
        self.mode.load(Ordering::Acquire) >> 8
    }

    fn flag(&self, f: u64) -> bool {
        self.mode.load(Ordering::Acquire) & f != 0
    }

    fn set_flag(&self, f: u64, on: bool) -> bool {
        let old = if on {
            self.mode.fetch_or(f, Ordering::AcqRel)
        } else {
            self.mode.fetch_and(!f, Ordering::AcqRel)
        };
        old & f != 0
    }

    /// Whether the fd adapter serves the SSL.
    pub fn fd_on(&self) -> bool {
        self.flag(FD_ON)
    }

    pub fn set_fd_on(&self, on: bool) {
        self.set_flag(FD_ON, on);
    }

    /// Whether the adapter reports `ASYNC_STATUS_OK` for the current pause.
    pub fn reported(&self) -> bool {
        self.flag(REPORTED)
    }

    /// Sets or clears the report; returns whether it was set.
    pub fn set_reported(&self, on: bool) -> bool {
        self.set_flag(REPORTED, on)
    }

    /// The engine called back (through the adapter's trampoline).
    pub fn note_engine_call(&self) {
        self.set_flag(ENGINE_CALLED, true);
    }

    /// Whether the engine called back since the last job start.
    pub fn engine_called(&self) -> bool {
        self.flag(ENGINE_CALLED)
    }

    /// Marks a watch as armed (by the SSL's owner).
    pub fn set_armed(&self) {
        self.set_flag(ARMED, true);
    }

    /// Clears the armed mark; whether it was set (a watch may need ending).
    pub fn take_armed(&self) -> bool {
        self.set_flag(ARMED, false)
    }

    /// The claim when `busy` was taken: by this thread (a delivery re-entered
    /// inline: not owned, the outer one releases it) or by another (wait).
    #[cold]
    #[inline(never)]
    fn claim_contended(&self, mut holder: usize, me: usize) -> bool {
        let mut spins = 0;
        loop {
            if holder == me {
                return false;
            }
            relax(&mut spins);
            match self
                .busy
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(h) => holder = h,
            }
        }
    }

    /// Waits until no thread but `me` is delivering for this slot.
    fn quiesce(&self, me: usize) {
        // The change (handle or callback), then the look at the claim: pairs
        // with the fence in `begin_delivery`.
        fence(Ordering::SeqCst);
        let mut spins = 0;
        loop {
            let holder = self.busy.load(Ordering::Acquire);
            if holder == 0 || holder == me {
                return;
            }
            relax(&mut spins);
        }
    }

    /// Sets the callback; clearing it (0) returns only once no other thread
    /// is inside a delivery that read the old one.
    pub fn set_callback(&self, callback: usize, me: usize) {
        self.callback.store(callback, Ordering::Release);
        if callback == 0 {
            self.quiesce(me);
        }
    }

    /// Ends the current owner: every handle naming it goes stale, and this
    /// returns once no other thread is delivering for it.
    fn retire(&self, me: usize) {
        let old = self.id.fetch_add(GEN_ONE, Ordering::AcqRel);
        if (old + GEN_ONE) >> INDEX_BITS == 0 {
            // Generation 0 would make index 0's handle NULL: skip it.
            self.id.fetch_add(GEN_ONE, Ordering::AcqRel);
        }
        self.quiesce(me);
        self.callback.store(0, Ordering::Relaxed);
        self.arg.store(ptr::null_mut(), Ordering::Relaxed);
        self.wired.store(ptr::null_mut(), Ordering::Relaxed);
        self.ssl.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

static CHUNKS: [StdAtomicPtr<Slot>; MAX_CHUNKS] =
    [const { StdAtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];

struct FreeList {
    queue: VecDeque<u32>,
    next: u32,
}

static FREE: SpinLock<FreeList> = SpinLock::new(FreeList {
    queue: VecDeque::new(),
    next: 0,
});

/// The slot with this index, if its chunk exists. Indices are masked into
/// range (a corrupt handle then fails its generation check).
fn slot_at(index: u64) -> Option<&'static Slot> {
    let index = (index & INDEX_MASK) as usize;
    let base = CHUNKS[index >> CHUNK_BITS].load(std::sync::atomic::Ordering::Acquire);
    if base.is_null() {
        return None;
    }
    // SAFETY: chunks are CHUNK_LEN slots allocated once and never freed, so
    // base + (index % CHUNK_LEN) is in bounds and lives for 'static.
    Some(unsafe { &*base.add(index & (CHUNK_LEN - 1)) })
}

/// A fresh index, allocating its chunk if needed (under the free-list lock).
fn fresh_index(fl: &mut FreeList) -> Option<u32> {
    let i = fl.next;
    if i as usize >= MAX_CHUNKS * CHUNK_LEN {
        return None;
    }
    let cell = &CHUNKS[i as usize >> CHUNK_BITS];
    if cell.load(std::sync::atomic::Ordering::Relaxed).is_null() {
        let fresh: Box<[Slot]> = (0..CHUNK_LEN as u32).map(|k| Slot::new(i + k)).collect();
        cell.store(
            Box::into_raw(fresh) as *mut Slot,
            std::sync::atomic::Ordering::Release,
        );
    }
    fl.next = i + 1;
    Some(i)
}

/// Takes a free slot for `ssl`, with the given initial callback and arg.
pub fn acquire(
    ssl: *mut SSL,
    callback: usize,
    arg: *mut c_void,
    fd_on: bool,
) -> Option<&'static Slot> {
    let index = {
        let mut fl = FREE.lock();
        if fl.queue.len() > QUARANTINE {
            fl.queue.pop_front()
        } else {
            fresh_index(&mut fl).or_else(|| fl.queue.pop_front())
        }
    }?;
    let slot = slot_at(index as u64)?;
    slot.assign(ssl, callback, arg, fd_on);
    Some(slot)
}

/// Returns a slot when its SSL is freed; see [`Slot::retire`].
pub fn release(slot: &'static Slot, me: usize) {
    slot.retire(me);
    let index = slot.index();
    FREE.lock().queue.push_back(index);
}

/// The slot with this index (an fd watch's key), if it exists.
pub fn at_index(index: u32) -> Option<&'static Slot> {
    slot_at(index as u64)
}

/// The slot a handle names, whatever its generation (the trampoline's view;
/// [`Slot::begin_delivery`] checks the generation).
#[inline]
pub fn named(handle: *mut c_void) -> Option<&'static Slot> {
    slot_at(handle as usize as u64)
}

/// fork(): hold the free list across it.
pub fn before_fork() {
    FREE.hold_across_fork();
}

/// fork() in the parent: release the free list.
pub fn after_fork_parent() {
    // SAFETY: before_fork took it on this thread.
    unsafe { FREE.release_after_fork() };
}

/// fork() in the child: release the free list, and forget deliveries that
/// were running on threads the child does not have (they would make a free
/// wait forever). Only the forking thread exists, so `me` may keep its own.
pub fn after_fork_child(me: usize) {
    // SAFETY: before_fork took it on this thread.
    unsafe { FREE.release_after_fork() };
    for cell in CHUNKS.iter() {
        let base = cell.load(std::sync::atomic::Ordering::Acquire);
        if base.is_null() {
            break; // chunks are allocated in order
        }
        for k in 0..CHUNK_LEN {
            // SAFETY: base points at CHUNK_LEN never-freed slots.
            let slot = unsafe { &*base.add(k) };
            if slot.busy.load(Ordering::Relaxed) != me {
                slot.busy.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fake_ssl(n: usize) -> *mut SSL {
        (0x1000 * n) as *mut SSL
    }

    fn deliver(handle: *mut c_void, me: usize) -> Option<usize> {
        let slot = named(handle)?;
        slot.begin_delivery(handle as u64, me)
            .map(|(t, _claim)| t.callback)
    }

    #[test]
    fn a_handle_resolves_to_its_slot_until_release() {
        let slot = acquire(fake_ssl(1), 0x1234, 0x55 as *mut c_void, false).expect("slot");
        let h = slot.handle();
        let (t, claim) = slot.begin_delivery(h as u64, 1).expect("live handle");
        assert_eq!(
            (t.ssl, t.callback, t.arg as usize),
            (fake_ssl(1), 0x1234, 0x55)
        );
        drop(claim);
        release(slot, 1);
        assert_eq!(deliver(h, 1), None, "a released slot must not deliver");
    }

    #[test]
    fn no_handle_is_null_and_null_names_nothing_live() {
        let held: Vec<_> = (0..64)
            .map(|i| acquire(fake_ssl(i + 1), 7, ptr::null_mut(), false).unwrap())
            .collect();
        assert!(held.iter().all(|s| !s.handle().is_null()));
        assert_eq!(deliver(ptr::null_mut(), 1), None, "NULL must name no slot");
        held.into_iter().for_each(|s| release(s, 1));
    }

    #[test]
    fn released_slots_are_reused_in_fifo_order_after_a_quarantine() {
        let first = acquire(fake_ssl(2), 1, ptr::null_mut(), false).unwrap();
        let old = first.handle();
        release(first, 1);
        // The record stays out of use until QUARANTINE others were released
        // after it (other tests run in parallel and release too).
        let mut held = Vec::new();
        let again = loop {
            let s = acquire(fake_ssl(3), 2, ptr::null_mut(), false).unwrap();
            if std::ptr::eq(s, first) {
                break s;
            }
            held.push(s);
            if held.len() % 64 == 0 {
                // Feed the queue so the record comes round.
                for s in held.drain(..) {
                    release(s, 1);
                }
            }
        };
        assert_ne!(again.handle(), old);
        assert_eq!(deliver(old, 1), None, "stale generation must be rejected");
        assert_eq!(deliver(again.handle(), 1), Some(2));
        release(again, 1);
        held.into_iter().for_each(|s| release(s, 1));
    }

    #[test]
    fn the_generation_skips_zero_when_it_wraps() {
        let slot = Slot::new(0);
        slot.id
            .store(((1u64 << 40) - 1) << INDEX_BITS, Ordering::Relaxed);
        slot.retire(1);
        assert_ne!(
            slot.handle() as usize,
            0,
            "index 0 after a wrap is not NULL"
        );
        assert_eq!(slot.index(), 0);
    }

    #[test]
    fn garbage_handles_resolve_to_nothing() {
        assert_eq!(deliver(usize::MAX as *mut c_void, 1), None);
        let past = ((u32::MAX as usize) << 32) | (MAX_CHUNKS * CHUNK_LEN + 5);
        assert_eq!(deliver(past as *mut c_void, 1), None);
    }

    #[test]
    fn clearing_the_callback_stops_deliveries() {
        let slot = acquire(fake_ssl(4), 9, ptr::null_mut(), false).unwrap();
        let h = slot.handle();
        slot.set_callback(0, 1);
        assert_eq!(deliver(h, 1), None);
        release(slot, 1);
    }

    #[test]
    fn a_thread_never_waits_for_its_own_delivery() {
        let slot = acquire(fake_ssl(5), 9, ptr::null_mut(), false).unwrap();
        let h = slot.handle() as u64;
        let (_, claim) = slot.begin_delivery(h, 42).unwrap();
        // Inside the callback on the same thread: clear and free return.
        slot.set_callback(0, 42);
        release(slot, 42);
        drop(claim);
    }

    #[test]
    fn concurrent_acquire_release_keeps_slots_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 1..2000 {
                        let s = acquire(fake_ssl(t * 10_000 + i + 10), i, ptr::null_mut(), false)
                            .unwrap();
                        assert_eq!(deliver(s.handle(), t + 1), Some(i));
                        release(s, t + 1);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn a_slot_stays_small() {
        // The per-SSL memory budget: a slot plus OpenSSL's ex_data entry
        // (eight words: seven for callbacks, one for the fd adapter).
        assert!(std::mem::size_of::<Slot>() <= 64);
    }
}

/// Model checks of the delivery protocol over every interleaving loom finds:
/// `RUSTFLAGS="--cfg loom" cargo test --release loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    const CALLBACK: usize = 0xc0;
    const DEVICE: usize = 1;
    const OWNER: usize = 2;

    fn live_slot() -> Arc<Slot> {
        let slot = Slot::new(3);
        slot.assign(0x1000 as *mut SSL, CALLBACK, 0x20 as *mut c_void, true);
        Arc::new(slot)
    }

    /// The device thread delivers while the owner frees: the callback never
    /// runs after the free returned, and never with another owner's values.
    #[test]
    fn loom_no_delivery_after_free_returns() {
        loom::model(|| {
            let slot = live_slot();
            let handle = slot.handle() as u64;
            let freed = Arc::new(AtomicBool::new(false));
            let (s, f) = (slot.clone(), freed.clone());
            let device = thread::spawn(move || {
                if let Some((t, claim)) = s.begin_delivery(handle, DEVICE) {
                    assert!(
                        !f.load(Ordering::SeqCst),
                        "callback ran after SSL_free returned"
                    );
                    assert_eq!((t.callback, t.ssl as usize), (CALLBACK, 0x1000));
                    drop(claim);
                }
            });
            slot.retire(OWNER);
            freed.store(true, Ordering::SeqCst);
            device.join().unwrap();
            assert!(slot.begin_delivery(handle, DEVICE).is_none());
            assert_ne!(slot.handle() as u64, handle);
        });
    }

    /// The fd adapter's poller delivers an armed pause while the owner
    /// resumes the job itself: no callback for that pause runs after the
    /// resume's job start returned from `end_pause`.
    #[test]
    fn loom_no_pause_delivery_after_a_job_start() {
        loom::model(|| {
            let slot = live_slot();
            let handle = slot.handle() as u64;
            let seq = slot.pause_seq();
            let resumed = Arc::new(AtomicBool::new(false));
            let (s, r) = (slot.clone(), resumed.clone());
            let poller = thread::spawn(move || {
                if let Some((_, claim)) = s.begin_pause_delivery(handle, seq, DEVICE) {
                    assert!(
                        !r.load(Ordering::SeqCst),
                        "callback ran after the resume began"
                    );
                    drop(claim);
                }
            });
            slot.end_pause(OWNER);
            resumed.store(true, Ordering::SeqCst);
            poller.join().unwrap();
            assert!(slot.begin_pause_delivery(handle, seq, DEVICE).is_none());
        });
    }

    /// Same for clearing the callback.
    #[test]
    fn loom_no_delivery_after_clear_returns() {
        loom::model(|| {
            let slot = live_slot();
            let handle = slot.handle() as u64;
            let cleared = Arc::new(AtomicBool::new(false));
            let (s, c) = (slot.clone(), cleared.clone());
            let device = thread::spawn(move || {
                if let Some((_, claim)) = s.begin_delivery(handle, DEVICE) {
                    assert!(
                        !c.load(Ordering::SeqCst),
                        "callback ran after the clear returned"
                    );
                    drop(claim);
                }
            });
            slot.set_callback(0, OWNER);
            cleared.store(true, Ordering::SeqCst);
            device.join().unwrap();
        });
    }

    /// Two completions for one slot (a stale one and a current one) never
    /// run the callback at the same time.
    #[test]
    fn loom_deliveries_of_one_slot_do_not_overlap() {
        loom::model(|| {
            let slot = live_slot();
            let handle = slot.handle() as u64;
            let inside = Arc::new(AtomicBool::new(false));
            let spawn = |me| {
                let (s, i) = (slot.clone(), inside.clone());
                thread::spawn(move || {
                    if let Some((_, claim)) = s.begin_delivery(handle, me) {
                        assert!(!i.swap(true, Ordering::SeqCst), "overlapping deliveries");
                        i.store(false, Ordering::SeqCst);
                        drop(claim);
                    }
                })
            };
            let (a, b) = (spawn(DEVICE), spawn(OWNER));
            a.join().unwrap();
            b.join().unwrap();
        });
    }

    /// A slot handed to a new owner after a free: the old handle is stale
    /// for any interleaving with a late completion.
    #[test]
    fn loom_a_reused_slot_rejects_the_old_handle() {
        loom::model(|| {
            let slot = live_slot();
            let old = slot.handle() as u64;
            let s = slot.clone();
            let device = thread::spawn(move || {
                if let Some((t, claim)) = s.begin_delivery(old, DEVICE) {
                    assert_eq!(t.ssl as usize, 0x1000, "old handle reached the new owner");
                    drop(claim);
                }
            });
            slot.retire(OWNER);
            slot.assign(0x2000 as *mut SSL, CALLBACK, ptr::null_mut(), false);
            device.join().unwrap();
            assert!(slot.begin_delivery(old, DEVICE).is_none());
        });
    }
}
