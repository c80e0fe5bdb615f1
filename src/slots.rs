//! Per-SSL records in chunks that are never freed, named by handles with a
//! 40-bit generation, and the wait-free protocol between deliveries and frees.
//!
//! An engine keeps the wait ctx's callback argument for as long as an
//! operation is in flight, possibly past `SSL_free`. Handing it a pointer to
//! freed state would make the shim itself a use-after-free; a handle into
//! memory that is never released lets the trampoline check the generation
//! and drop a stale completion instead.
//!
//! The protocol (model-checked by the loom tests below) never makes one
//! thread wait for another. A delivery takes a *claim* (a count of
//! deliveries in flight), then checks the handle and reads the callback. A
//! free or a clear changes the handle or the callback, then looks at the
//! claims. Each side puts a sequentially consistent fence between its write
//! and its read (the store-buffering pattern), so either the delivery sees
//! the change and drops, or the free sees the claim. A free that sees claims
//! of other threads does not wait for them: it leaves the rest of its work
//! to whichever claim ends last (the real `SSL_free`, then the record's
//! release), so the callback's `SSL*` stays valid until it returns. A clear
//! needs no such step: no delivery that claims after it calls the callback.

use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::AtomicPtr as StdAtomicPtr;

use libc::c_void;

use crate::sync::{fence, AtomicPtr, AtomicU64, AtomicUsize, Lock, Ordering};
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
    /// The handle naming the slot's current owner; moves on retirement.
    id: AtomicU64,
    /// The user's callback (`SSL_async_callback_fn` as an address; 0 = none).
    pub callback: AtomicUsize,
    pub arg: AtomicPtr<c_void>,
    pub ssl: AtomicPtr<SSL>,
    /// The SSL's wait ctx while it carries this slot's trampoline, so that
    /// clearing the callback can take it off at once and the job-start hook
    /// only has to look at the wait ctx.
    pub wired: AtomicPtr<c_void>,
    /// Deliveries in flight ([`COUNT`]), and above them what the last one to
    /// end must do once the owner has gone ([`LAST_FREES`], [`LAST_RELEASES`]).
    claims: AtomicU64,
    /// Monotonic nanoseconds of the job start that may pause (stats only).
    pub started_ns: AtomicU64,
    /// The fd adapter's state of the SSL: the flags below, and above them
    /// the count of the SSL's job starts (an armed pause remembers the count
    /// it was armed under; a later job start makes that arm stale). One
    /// word, so an SSL using the API costs 64 bytes.
    mode: AtomicU64,
}

/// `claims`: the number of deliveries in flight;
const COUNT: u64 = (1 << 32) - 1;
/// the owner's `SSL_free` was left to the last claim: free the SSL, then
/// release the record;
const LAST_FREES: u64 = 1 << 63;
/// the SSL was freed behind the shim's back: release the record.
const LAST_RELEASES: u64 = 1 << 62;

/// `mode` flags: the adapter serves the SSL;
const FD_ON: u64 = 1;
/// the adapter reports `ASYNC_STATUS_OK` for the current pause;
const REPORTED: u64 = 2;
/// the engine called the adapter's trampoline since the last job start;
const ENGINE_CALLED: u64 = 4;
/// a watch may be armed for the SSL (set by its owner; cleared where a
/// watch is ended early: a job start, a clear, a free, the engine calling
/// back, see `adapter::forget`);
const ARMED: u64 = 8;
/// the owner was retired (its handles are stale); cleared by the next owner;
const RETIRED: u64 = 16;
/// the fd adapter's delivery for the current pause began (it and an engine
/// calling back for the same pause exclude each other: one callback);
const ADAPTER_FIRED: u64 = 32;
/// and the job-start count, above the flags.
const SEQ_ONE: u64 = 1 << 8;

/// What a delivery may call: read under a claim.
#[derive(Clone, Copy)]
pub struct Target {
    pub ssl: *mut SSL,
    pub callback: usize,
    pub arg: *mut c_void,
}

/// How a delivery began: it holds a claim and may call `Target`, or it was
/// dropped (stale handle, cleared callback, or a newer job start), which may
/// have made it the last claim of a retired owner.
pub enum Begin {
    Deliver(Target),
    Dropped(Leftover),
}

/// What ending a claim leaves to its thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    Nothing,
    /// The owner's `SSL_free` waited for this claim: free this SSL, then
    /// [`release`] the slot.
    FreeSsl(*mut SSL),
    /// The SSL is gone: [`release`] the slot.
    Release,
}

impl Slot {
    fn new(index: u32) -> Slot {
        Slot {
            id: AtomicU64::new(GEN_ONE | index as u64),
            callback: AtomicUsize::new(0),
            arg: AtomicPtr::new(ptr::null_mut()),
            ssl: AtomicPtr::new(ptr::null_mut()),
            wired: AtomicPtr::new(ptr::null_mut()),
            claims: AtomicU64::new(0),
            started_ns: AtomicU64::new(0),
            mode: AtomicU64::new(0),
        }
    }

    /// The index part of the slot's handles.
    pub fn slot_index(&self) -> u32 {
        (self.id.load(Ordering::Relaxed) & INDEX_MASK) as u32
    }

    /// The handle that names this slot's current owner (never NULL).
    pub fn handle(&self) -> *mut c_void {
        self.id.load(Ordering::Relaxed) as usize as *mut c_void
    }

    /// Gives the (released) slot to a new SSL. Claims are left alone: a
    /// late one of the previous owner still ends normally.
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

    /// Starts delivering `handle`'s completion: on `Deliver` the caller holds
    /// a claim and must end it with [`Slot::end_claim`]. A stale handle or a
    /// cleared callback drops the completion. Never waits.
    #[inline]
    pub fn begin_delivery(&self, handle: u64) -> Begin {
        if self.id.load(Ordering::Relaxed) != handle {
            return Begin::Dropped(Leftover::Nothing); // stale: nothing claimed
        }
        self.claims.fetch_add(1, Ordering::AcqRel);
        // The claim, then the checks: pairs with the fence in `retire` and
        // `set_callback`.
        fence(Ordering::SeqCst);
        let callback = self.callback.load(Ordering::Acquire);
        if self.id.load(Ordering::Acquire) != handle || callback == 0 {
            return Begin::Dropped(self.end_claim());
        }
        Begin::Deliver(Target {
            ssl: self.ssl.load(Ordering::Acquire),
            callback,
            arg: self.arg.load(Ordering::Acquire),
        })
    }

    /// [`Slot::begin_delivery`] for a pause the fd adapter armed when the
    /// SSL's job-start count was `seq`: dropped as well once a job start of
    /// the SSL began ([`Slot::end_pause`]).
    pub fn begin_pause_delivery(&self, handle: u64, seq: u64) -> Begin {
        match self.begin_delivery(handle) {
            // After the claim and begin_delivery's fence: pairs with end_pause.
            Begin::Deliver(_) if !self.claim_pause(seq) => Begin::Dropped(self.end_claim()),
            b => b,
        }
    }

    /// The fd adapter's delivery for the pause armed under `seq` may call
    /// the user: no job start since, and the engine has not called back for
    /// this pause (one read-modify-write, so exactly one of the two does).
    fn claim_pause(&self, seq: u64) -> bool {
        let mut cur = self.mode.load(Ordering::Acquire);
        loop {
            if cur >> 8 != seq || cur & ENGINE_CALLED != 0 {
                return false;
            }
            match self.mode.compare_exchange(
                cur,
                cur | ADAPTER_FIRED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Ends a claim. The last claim of an owner that has gone gets what the
    /// owner left to it.
    #[inline(always)]
    pub fn end_claim(&self) -> Leftover {
        let prev = self.claims.fetch_sub(1, Ordering::AcqRel);
        if prev == 1 {
            return Leftover::Nothing; // the one claim, nothing left to it
        }
        self.end_claim_slow(prev)
    }

    /// The rest of [`Slot::end_claim`]: other claims remain, or work was
    /// left to the last one.
    #[cold]
    #[inline(never)]
    fn end_claim_slow(&self, prev: u64) -> Leftover {
        match prev & COUNT {
            // No claim to end: a claim ended twice, which the protocol never
            // does; undone rather than left wrapped.
            0 => {
                self.claims.fetch_add(1, Ordering::AcqRel);
                Leftover::Nothing
            }
            1 => self.take_leftover(prev & !COUNT),
            _ => Leftover::Nothing,
        }
    }

    /// The count reached zero with work left: whoever clears the flags does
    /// it (a claim taken meanwhile, which will drop, may race for it).
    fn take_leftover(&self, flags: u64) -> Leftover {
        if self
            .claims
            .compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Leftover::Nothing;
        }
        if flags & LAST_FREES != 0 {
            Leftover::FreeSsl(self.ssl.load(Ordering::Acquire))
        } else {
            Leftover::Release
        }
    }

    /// A job start of the SSL (the application resuming it, or a new job):
    /// the armed pause is over, and the engine has not called back for the
    /// new job yet. A delivery for that pause that claims afterwards drops;
    /// one already under way on another thread runs to its end (not waited
    /// for: this may be the thread its callback waits for).
    pub fn end_pause(&self) {
        let mut cur = self.mode.load(Ordering::Relaxed);
        loop {
            let next = cur.wrapping_add(SEQ_ONE) & !(ENGINE_CALLED | ADAPTER_FIRED);
            match self
                .mode
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        fence(Ordering::SeqCst);
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

    /// The engine called back (through the adapter's trampoline). False
    /// when the fd adapter already called the user for this pause: the
    /// engine's call is then not passed on.
    pub fn note_engine_call(&self) -> bool {
        self.mode.fetch_or(ENGINE_CALLED, Ordering::AcqRel) & ADAPTER_FIRED == 0
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

    /// Whether the current owner was retired (its SSL is being freed).
    pub fn retired(&self) -> bool {
        self.flag(RETIRED)
    }

    /// Sets the callback. After a clear (0) returns, no delivery that claims
    /// afterwards calls the old callback; one that claimed before may still
    /// be running on another thread (not waited for).
    pub fn set_callback(&self, callback: usize) {
        self.callback.store(callback, Ordering::Release);
        if callback == 0 {
            // The change, then whatever the caller does next: pairs with the
            // fence in `begin_delivery`.
            fence(Ordering::SeqCst);
        }
    }

    /// The owner's `SSL_free` (the last reference): every handle naming it
    /// goes stale. True when no delivery holds a claim: the caller frees the
    /// SSL and releases the slot now. False when one does (on another
    /// thread, or the caller's own callback freeing its SSL): the last claim
    /// to end does both ([`Leftover::FreeSsl`]), once its callback returned.
    pub fn retire_for_free(&self) -> bool {
        self.retire(LAST_FREES)
    }

    /// The SSL is being freed behind the shim (its ex_data goes away without
    /// the shim's `SSL_free`): as [`Slot::retire_for_free`], but a claim left
    /// running only releases the slot; its callback's `SSL*` dangles, as it
    /// would natively.
    pub fn retire_behind(&self) -> bool {
        self.retire(LAST_RELEASES)
    }

    fn retire(&self, leave: u64) -> bool {
        let old = self.id.fetch_add(GEN_ONE, Ordering::AcqRel);
        if old.wrapping_add(GEN_ONE) >> INDEX_BITS == 0 {
            // Generation 0 would make index 0's handle NULL: skip it.
            self.id.fetch_add(GEN_ONE, Ordering::AcqRel);
        }
        self.set_flag(RETIRED, true);
        // The change, then the look at the claims: pairs with the fence in
        // `begin_delivery`.
        fence(Ordering::SeqCst);
        let mut cur = self.claims.load(Ordering::Acquire);
        loop {
            if cur & COUNT == 0 {
                return true;
            }
            match self.claims.compare_exchange(
                cur,
                cur | leave,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return false,
                Err(now) => cur = now,
            }
        }
    }

    /// Deliveries in flight.
    #[cfg(test)]
    pub fn claims_in_flight(&self) -> u64 {
        self.claims.load(Ordering::Acquire) & COUNT
    }
}

static CHUNKS: [StdAtomicPtr<Slot>; MAX_CHUNKS] =
    [const { StdAtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];

struct FreeList {
    queue: VecDeque<u32>,
    next: u32,
}

static FREE: Lock<FreeList> = Lock::new(FreeList {
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

/// A fresh index, allocating its chunk if needed (under the free-list
/// lock); None when the records are exhausted or memory is short.
fn fresh_index(fl: &mut FreeList) -> Option<u32> {
    let i = fl.next;
    if i as usize >= MAX_CHUNKS * CHUNK_LEN {
        return None;
    }
    let cell = &CHUNKS[i as usize >> CHUNK_BITS];
    if cell.load(std::sync::atomic::Ordering::Relaxed).is_null() {
        let layout = std::alloc::Layout::array::<Slot>(CHUNK_LEN).ok()?;
        // SAFETY: a non-zero-sized layout; a NULL result is handled (a
        // failed allocation leaves the SSL on OpenSSL's own wiring instead
        // of aborting the process).
        let base = unsafe { std::alloc::alloc(layout) }.cast::<Slot>();
        if base.is_null() {
            return None;
        }
        for k in 0..CHUNK_LEN {
            // SAFETY: base has room for CHUNK_LEN slots, each written once.
            unsafe { base.add(k).write(Slot::new(i + k as u32)) };
        }
        cell.store(base, std::sync::atomic::Ordering::Release);
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

/// Returns a retired slot once its SSL is gone and no claim needs it.
pub fn release(slot: &'static Slot) {
    slot.callback.store(0, Ordering::Relaxed);
    slot.arg.store(ptr::null_mut(), Ordering::Relaxed);
    slot.wired.store(ptr::null_mut(), Ordering::Relaxed);
    slot.ssl.store(ptr::null_mut(), Ordering::Relaxed);
    let index = slot.slot_index();
    let mut fl = FREE.lock();
    #[cfg(all(test, not(loom)))]
    tests::RELEASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Out of memory, the record is never reused (a leak of 64 bytes, not
    // an abort of the process).
    if fl.queue.try_reserve(1).is_ok() {
        fl.queue.push_back(index);
    }
}

/// Whether a record not yet retired is `ssl`'s (a search of every record:
/// only while the job layout is being measured, see `internals`).
pub fn holds_ssl(ssl: *mut SSL) -> bool {
    for cell in CHUNKS.iter() {
        let base = cell.load(std::sync::atomic::Ordering::Acquire);
        if base.is_null() {
            break; // chunks are allocated in order
        }
        // SAFETY: base points at CHUNK_LEN never-freed slots.
        let chunk = unsafe { std::slice::from_raw_parts(base, CHUNK_LEN) };
        if chunk
            .iter()
            .any(|s| s.ssl.load(Ordering::Acquire) == ssl && !s.retired())
        {
            return true;
        }
    }
    false
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

/// fork() in the child: release the free list. Claims stay as they were:
/// one of the forking thread (fork() inside a callback) ends when that
/// callback returns, as in the parent; one of another thread, which is not
/// in the child, never ends, so an `SSL_free` of its SSL in the child is
/// left to it and that SSL's copy stays allocated there (so does one whose
/// free the parent had already left to such a claim). Never freeing under
/// a running callback outweighs freeing a copy the child may not need.
pub fn after_fork_child() {
    // SAFETY: before_fork took it on this thread.
    unsafe { FREE.reset_in_child() };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Records released so far (all tests).
    pub static RELEASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn fake_ssl(n: usize) -> *mut SSL {
        (0x1000 * n) as *mut SSL
    }

    /// A whole delivery of `handle`: the callback it would call, if any.
    fn deliver(handle: *mut c_void) -> Option<usize> {
        let slot = named(handle)?;
        match slot.begin_delivery(handle as u64) {
            Begin::Deliver(t) => {
                assert_eq!(slot.end_claim(), Leftover::Nothing);
                Some(t.callback)
            }
            Begin::Dropped(_) => None,
        }
    }

    fn free(slot: &'static Slot) {
        assert!(slot.retire_for_free(), "no claim: freed at once");
        release(slot);
    }

    #[test]
    fn a_handle_resolves_to_its_slot_until_release() {
        let slot = acquire(fake_ssl(1), 0x1234, 0x55 as *mut c_void, false).expect("slot");
        let h = slot.handle();
        let Begin::Deliver(t) = slot.begin_delivery(h as u64) else {
            panic!("live handle dropped");
        };
        assert_eq!(
            (t.ssl, t.callback, t.arg as usize),
            (fake_ssl(1), 0x1234, 0x55)
        );
        assert_eq!(slot.end_claim(), Leftover::Nothing);
        free(slot);
        assert_eq!(deliver(h), None, "a released slot must not deliver");
    }

    #[test]
    fn no_handle_is_null_and_null_names_nothing_live() {
        let held: Vec<_> = (0..64)
            .map(|i| acquire(fake_ssl(i + 1), 7, ptr::null_mut(), false).unwrap())
            .collect();
        assert!(held.iter().all(|s| !s.handle().is_null()));
        assert_eq!(deliver(ptr::null_mut()), None, "NULL must name no slot");
        held.into_iter().for_each(free);
    }

    #[test]
    fn a_released_record_waits_behind_a_quarantine_before_reuse() {
        let first = acquire(fake_ssl(2), 1, ptr::null_mut(), false).unwrap();
        let old = first.handle();
        // Releases by any test from here on (other tests run in parallel):
        // the record may only come round after QUARANTINE others.
        let mark = RELEASES.load(std::sync::atomic::Ordering::Relaxed) + 1;
        free(first);
        let mut held = Vec::new();
        let again = loop {
            let s = acquire(fake_ssl(3), 2, ptr::null_mut(), false).unwrap();
            if std::ptr::eq(s, first) {
                break s;
            }
            held.push(s);
            if held.len() % 64 == 0 {
                held.drain(..).for_each(free);
            }
        };
        let since = RELEASES.load(std::sync::atomic::Ordering::Relaxed) - mark;
        assert!(
            since >= QUARANTINE,
            "reused after only {since} other releases"
        );
        assert_ne!(again.handle(), old);
        assert_eq!(deliver(old), None, "stale generation must be rejected");
        assert_eq!(deliver(again.handle()), Some(2));
        free(again);
        held.into_iter().for_each(free);
    }

    #[test]
    fn the_generation_skips_zero_when_it_wraps() {
        let slot = Slot::new(0);
        slot.id
            .store(((1u64 << 40) - 1) << INDEX_BITS, Ordering::Relaxed);
        assert!(slot.retire_for_free());
        assert_ne!(
            slot.handle() as usize,
            0,
            "index 0 after a wrap is not NULL"
        );
        assert_eq!(slot.slot_index(), 0);
    }

    #[test]
    fn garbage_handles_resolve_to_nothing() {
        assert_eq!(deliver(usize::MAX as *mut c_void), None);
        let past = ((u32::MAX as usize) << 32) | (MAX_CHUNKS * CHUNK_LEN + 5);
        assert_eq!(deliver(past as *mut c_void), None);
    }

    #[test]
    fn clearing_the_callback_stops_deliveries() {
        let slot = acquire(fake_ssl(4), 9, ptr::null_mut(), false).unwrap();
        let h = slot.handle();
        slot.set_callback(0);
        assert_eq!(deliver(h), None);
        free(slot);
    }

    #[test]
    fn a_free_during_a_delivery_is_left_to_it() {
        let slot = acquire(fake_ssl(5), 9, ptr::null_mut(), false).unwrap();
        let h = slot.handle() as u64;
        let Begin::Deliver(t) = slot.begin_delivery(h) else {
            panic!("dropped")
        };
        // Another thread frees the SSL while the callback runs: it returns
        // at once and the delivery's end does the free.
        assert!(!slot.retire_for_free(), "freed under a running callback");
        assert!(matches!(slot.begin_delivery(h), Begin::Dropped(_)));
        assert_eq!(slot.end_claim(), Leftover::FreeSsl(t.ssl));
        release(slot);
    }

    #[test]
    fn a_callback_freeing_its_own_ssl_frees_it_when_it_returns() {
        let slot = acquire(fake_ssl(6), 9, ptr::null_mut(), false).unwrap();
        let Begin::Deliver(_) = slot.begin_delivery(slot.handle() as u64) else {
            panic!("dropped")
        };
        assert!(
            !slot.retire_for_free(),
            "freed under its own running callback"
        );
        assert_eq!(slot.end_claim(), Leftover::FreeSsl(fake_ssl(6)));
        release(slot);
    }

    #[test]
    fn a_late_stray_claim_does_the_leftover_exactly_once() {
        let slot = acquire(fake_ssl(7), 9, ptr::null_mut(), false).unwrap();
        let h = slot.handle() as u64;
        let Begin::Deliver(_) = slot.begin_delivery(h) else {
            panic!("dropped")
        };
        assert!(!slot.retire_behind());
        // A stray completion claims and drops while the first still runs.
        slot.claims.fetch_add(1, Ordering::AcqRel);
        assert_eq!(slot.end_claim(), Leftover::Nothing);
        assert_eq!(slot.end_claim(), Leftover::Release);
        assert_eq!(slot.claims_in_flight(), 0);
        release(slot);
    }

    #[test]
    fn concurrent_acquire_release_keeps_slots_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 1..2000 {
                        let s = acquire(fake_ssl(t * 10_000 + i + 10), i, ptr::null_mut(), false)
                            .unwrap();
                        assert_eq!(deliver(s.handle()), Some(i));
                        free(s);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn a_slot_is_eight_words() {
        // The per-SSL memory budget: the record is 64 bytes.
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}

/// Model checks of the delivery protocol over every interleaving loom finds:
/// `RUSTFLAGS="--cfg loom" cargo test --release loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize as LoomUsize};
    use loom::sync::Arc;
    use loom::thread;

    const CALLBACK: usize = 0xc0;

    fn live_slot(ssl: usize) -> Arc<Slot> {
        let slot = Slot::new(3);
        slot.assign(ssl as *mut SSL, CALLBACK, 0x20 as *mut c_void, true);
        Arc::new(slot)
    }

    /// Does a leftover, counting the SSL frees.
    fn finish(l: Leftover, frees: &LoomUsize) {
        if let Leftover::FreeSsl(_) = l {
            frees.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The device thread delivers while the owner frees. A delivery that
    /// claims after `SSL_free` returned never calls; one under way keeps its
    /// SSL until it returns: the SSL is freed exactly once, after it.
    #[test]
    fn loom_a_free_never_waits_and_never_frees_under_a_callback() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let handle = slot.handle() as u64;
            let freed = Arc::new(AtomicBool::new(false));
            let frees = Arc::new(LoomUsize::new(0));
            let (s, f, n) = (slot.clone(), freed.clone(), frees.clone());
            let device = thread::spawn(move || {
                let after_free = f.load(Ordering::SeqCst);
                match s.begin_delivery(handle) {
                    Begin::Deliver(t) => {
                        assert!(!after_free, "a callback started after SSL_free returned");
                        assert_eq!((t.callback, t.ssl as usize), (CALLBACK, 0x1000));
                        // The callback runs: its SSL must not have been freed.
                        assert_eq!(n.load(Ordering::SeqCst), 0, "SSL freed under its callback");
                        finish(s.end_claim(), &n);
                    }
                    Begin::Dropped(l) => finish(l, &n),
                }
            });
            if slot.retire_for_free() {
                frees.fetch_add(1, Ordering::SeqCst);
            }
            freed.store(true, Ordering::SeqCst);
            device.join().unwrap();
            assert_eq!(
                frees.load(Ordering::SeqCst),
                1,
                "the SSL must be freed once"
            );
            assert!(matches!(slot.begin_delivery(handle), Begin::Dropped(_)));
        });
    }

    /// Two SSLs complete at once on two threads and each callback frees the
    /// other SSL (a proxy closing the peer): both frees return, each callback
    /// that ran freed the other SSL exactly once, never under the other's
    /// running callback.
    #[test]
    fn loom_two_callbacks_freeing_each_other_do_not_deadlock() {
        // Two slots and two threads: bounded preemptions keep the model to
        // seconds (three cover every store-buffering outcome it checks).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let a = live_slot(0xa000);
            let b = live_slot(0xb000);
            let frees = Arc::new(LoomUsize::new(0));
            let ran = Arc::new(LoomUsize::new(0));
            let spawn = |mine: Arc<Slot>, other: Arc<Slot>| {
                let (n, r) = (frees.clone(), ran.clone());
                thread::spawn(move || {
                    let h = mine.handle() as u64;
                    match mine.begin_delivery(h) {
                        Begin::Deliver(_) => {
                            r.fetch_add(1, Ordering::SeqCst);
                            // The callback frees the other SSL.
                            if other.retire_for_free() {
                                n.fetch_add(1, Ordering::SeqCst);
                            }
                            finish(mine.end_claim(), &n);
                        }
                        Begin::Dropped(l) => finish(l, &n),
                    }
                })
            };
            let (ta, tb) = (spawn(a.clone(), b.clone()), spawn(b.clone(), a.clone()));
            ta.join().unwrap();
            tb.join().unwrap();
            let (frees, ran) = (frees.load(Ordering::SeqCst), ran.load(Ordering::SeqCst));
            assert!(
                ran >= 1,
                "the first callback to claim cannot have been freed"
            );
            assert_eq!(
                frees, ran,
                "each callback that ran freed the other SSL once"
            );
        });
    }

    /// A callback that never returns (its thread blocked for good): the free
    /// still returns, and leaves its work to that claim.
    #[test]
    fn loom_a_free_returns_while_a_callback_never_does() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let handle = slot.handle() as u64;
            let claimed = Arc::new(AtomicBool::new(false));
            let (s, c) = (slot.clone(), claimed.clone());
            let device = thread::spawn(move || {
                if let Begin::Deliver(_) = s.begin_delivery(handle) {
                    c.store(true, Ordering::SeqCst); // ... and never ends its claim
                }
            });
            device.join().unwrap();
            let now = slot.retire_for_free();
            assert_eq!(now, !claimed.load(Ordering::SeqCst));
        });
    }

    /// The fd adapter's poller delivers an armed pause while the owner
    /// resumes the job itself: a delivery that claims after the job start's
    /// `end_pause` returned never calls.
    #[test]
    fn loom_no_pause_delivery_starts_after_a_job_start() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let handle = slot.handle() as u64;
            let seq = slot.pause_seq();
            let resumed = Arc::new(AtomicBool::new(false));
            let (s, r) = (slot.clone(), resumed.clone());
            let poller = thread::spawn(move || {
                let after = r.load(Ordering::SeqCst);
                if let Begin::Deliver(_) = s.begin_pause_delivery(handle, seq) {
                    assert!(!after, "callback started after the resume began");
                    s.end_claim();
                }
            });
            slot.end_pause();
            resumed.store(true, Ordering::SeqCst);
            poller.join().unwrap();
            assert!(matches!(
                slot.begin_pause_delivery(handle, seq),
                Begin::Dropped(_)
            ));
        });
    }

    /// An engine calling back (the fd adapter's trampoline) and the fd
    /// adapter's poller delivering the same pause: exactly one calls the
    /// user, whichever order they take.
    #[test]
    fn loom_engine_and_adapter_call_back_a_pause_once() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let handle = slot.handle() as u64;
            let seq = slot.pause_seq();
            let calls = Arc::new(LoomUsize::new(0));
            let (s, c) = (slot.clone(), calls.clone());
            let poller = thread::spawn(move || {
                if let Begin::Deliver(_) = s.begin_pause_delivery(handle, seq) {
                    c.fetch_add(1, Ordering::SeqCst);
                    s.end_claim();
                }
            });
            if let Begin::Deliver(_) = slot.begin_delivery(handle) {
                if slot.note_engine_call() {
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                slot.end_claim();
            }
            poller.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }

    /// Same for clearing the callback.
    #[test]
    fn loom_no_delivery_starts_after_a_clear() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let handle = slot.handle() as u64;
            let cleared = Arc::new(AtomicBool::new(false));
            let (s, c) = (slot.clone(), cleared.clone());
            let device = thread::spawn(move || {
                let after = c.load(Ordering::SeqCst);
                if let Begin::Deliver(_) = s.begin_delivery(handle) {
                    assert!(!after, "callback started after the clear returned");
                    s.end_claim();
                }
            });
            slot.set_callback(0);
            cleared.store(true, Ordering::SeqCst);
            device.join().unwrap();
        });
    }

    /// A slot handed to a new owner once its free is complete (at once, or
    /// at the end of the claim it was left to): the old handle is stale for
    /// any interleaving with a late completion.
    #[test]
    fn loom_a_reused_slot_rejects_the_old_handle() {
        loom::model(|| {
            let slot = live_slot(0x1000);
            let old = slot.handle() as u64;
            let s = slot.clone();
            let device = thread::spawn(move || {
                if let Begin::Deliver(t) = s.begin_delivery(old) {
                    assert_eq!(t.ssl as usize, 0x1000, "old handle reached the new owner");
                    if let Leftover::FreeSsl(_) = s.end_claim() {
                        s.assign(0x2000 as *mut SSL, CALLBACK, ptr::null_mut(), false);
                    }
                }
            });
            if slot.retire_for_free() {
                slot.assign(0x2000 as *mut SSL, CALLBACK, ptr::null_mut(), false);
            }
            device.join().unwrap();
            assert!(matches!(slot.begin_delivery(old), Begin::Dropped(_)));
        });
    }
}
