//! Per-SSL records in chunks that are never freed, named by (index,
//! generation) handles, so a completion that outlives its SSL is detected.
//!
//! An engine keeps the wait ctx's callback argument for as long as an
//! operation is in flight, possibly past `SSL_free`. Handing it a pointer to
//! freed state would make the shim itself a use-after-free; a handle into
//! memory that is never released lets the trampoline check the generation
//! and drop a stale completion instead.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::sys::SSL;

const CHUNK_BITS: u32 = 12;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// 4096 chunks of 4096 records: 16M SSLs using the API at the same time.
const MAX_CHUNKS: usize = 4096;

/// What the shim keeps for one SSL that uses the API.
#[repr(C)]
pub struct Slot {
    /// Bumped when the slot is released; handles carry the value they saw.
    pub gen: AtomicU32,
    index: u32,
    /// The user's callback (`SSL_async_callback_fn` as an address; 0 = none).
    pub callback: AtomicUsize,
    pub arg: AtomicPtr<libc::c_void>,
    pub ssl: AtomicPtr<SSL>,
    /// The SSL's wait ctx while it carries this slot's trampoline, so that
    /// clearing the callback can take it off at once and the job-start hook
    /// only has to look at the wait ctx.
    pub wired: AtomicPtr<libc::c_void>,
    /// Monotonic nanoseconds of the job start that may pause (stats only).
    pub started_ns: AtomicU64,
}

impl Slot {
    const fn empty() -> Slot {
        Slot {
            gen: AtomicU32::new(0),
            index: 0,
            callback: AtomicUsize::new(0),
            arg: AtomicPtr::new(ptr::null_mut()),
            ssl: AtomicPtr::new(ptr::null_mut()),
            wired: AtomicPtr::new(ptr::null_mut()),
            started_ns: AtomicU64::new(0),
        }
    }

    /// The handle that names this slot in its current generation.
    pub fn handle(&self) -> *mut libc::c_void {
        let gen = self.gen.load(Ordering::Relaxed) as usize;
        ((gen << 32) | self.index as usize) as *mut libc::c_void
    }
}

static CHUNKS: [AtomicPtr<Slot>; MAX_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];

/// Slots currently owned by an SSL, plus one while stats are counting. Zero
/// means no SSL in the process uses the API, which lets the job-start hook
/// skip everything.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);

struct FreeList {
    free: Vec<u32>,
    next: u32,
}

static FREE: Mutex<FreeList> = Mutex::new(FreeList {
    free: Vec::new(),
    next: 0,
});

/// The chunk holding `index`. Handles only ever carry indices below
/// MAX_CHUNKS * CHUNK_LEN; a corrupt one is masked into range (and then
/// fails its generation check) rather than tested, to keep delivery short.
fn chunk(index: u32) -> *mut Slot {
    CHUNKS[(index >> CHUNK_BITS) as usize & (MAX_CHUNKS - 1)].load(Ordering::Acquire)
}

/// The slot with this index, if its chunk exists.
fn slot_at(index: u32) -> Option<&'static Slot> {
    let base = chunk(index);
    if base.is_null() {
        return None;
    }
    // SAFETY: chunks are CHUNK_LEN slots allocated once and never freed, so
    // base + (index % CHUNK_LEN) is in bounds and lives for 'static.
    Some(unsafe { &*base.add(index as usize & (CHUNK_LEN - 1)) })
}

/// Takes a free slot for `ssl`, with the given initial callback and arg.
pub fn acquire(ssl: *mut SSL, callback: usize, arg: *mut libc::c_void) -> Option<&'static Slot> {
    let index = {
        let mut fl = FREE.lock();
        match fl.free.pop() {
            Some(i) => i,
            None => {
                let i = fl.next;
                if i as usize >= MAX_CHUNKS * CHUNK_LEN {
                    return None; // 16M SSLs using the API at once
                }
                if chunk(i).is_null() {
                    let fresh: Box<[Slot]> = (0..CHUNK_LEN).map(|_| Slot::empty()).collect();
                    let base = Box::into_raw(fresh) as *mut Slot;
                    for k in 0..CHUNK_LEN {
                        // SAFETY: base points to CHUNK_LEN slots we own and
                        // nobody else can see yet.
                        unsafe { (*base.add(k)).index = i + k as u32 };
                    }
                    CHUNKS[(i >> CHUNK_BITS) as usize].store(base, Ordering::Release);
                }
                fl.next = i + 1;
                i
            }
        }
    };
    let slot = slot_at(index)?;
    slot.ssl.store(ssl, Ordering::Release);
    slot.arg.store(arg, Ordering::Release);
    slot.wired.store(ptr::null_mut(), Ordering::Release);
    slot.started_ns.store(0, Ordering::Relaxed);
    slot.callback.store(callback, Ordering::Release);
    LIVE.fetch_add(1, Ordering::Relaxed);
    Some(slot)
}

/// Returns a slot when its SSL is freed. The generation moves first, so a
/// completion racing with this sees either the old values or a mismatch.
pub fn release(slot: &'static Slot) {
    slot.gen.fetch_add(1, Ordering::AcqRel);
    // Release stores: a reader that sees any of these also sees the new
    // generation (see `resolve`).
    slot.callback.store(0, Ordering::Release);
    slot.arg.store(ptr::null_mut(), Ordering::Release);
    slot.wired.store(ptr::null_mut(), Ordering::Release);
    slot.ssl.store(ptr::null_mut(), Ordering::Release);
    LIVE.fetch_sub(1, Ordering::Relaxed);
    FREE.lock().free.push(slot.index);
}

/// What a handle named, if that slot is still in the same generation.
pub struct Target {
    pub ssl: *mut SSL,
    pub callback: usize,
    pub arg: *mut libc::c_void,
    pub slot: &'static Slot,
}

/// Resolves a handle that may be stale (the trampoline's view). The fields
/// are read first and the generation after them: `release` moves the
/// generation before any field changes, so fields that belong to another
/// owner always come with a generation that no longer matches.
pub fn resolve(handle: *mut libc::c_void) -> Option<Target> {
    let h = handle as usize;
    let slot = slot_at(h as u32)?;
    let gen = (h >> 32) as u32;
    let callback = slot.callback.load(Ordering::Acquire);
    let arg = slot.arg.load(Ordering::Acquire);
    let ssl = slot.ssl.load(Ordering::Acquire);
    if slot.gen.load(Ordering::Acquire) != gen {
        return None;
    }
    Some(Target {
        ssl,
        callback,
        arg,
        slot,
    })
}

/// Resolves a handle the shim itself put on a live SSL's wait ctx: valid
/// because that SSL (and so its slot generation) is alive during the call.
pub fn own(handle: *mut libc::c_void) -> Option<&'static Slot> {
    slot_at(handle as usize as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_ssl(n: usize) -> *mut SSL {
        (0x1000 * n) as *mut SSL
    }

    #[test]
    fn a_handle_resolves_to_its_slot_until_release() {
        let slot = acquire(fake_ssl(1), 0x1234, 0x55 as *mut libc::c_void).expect("slot");
        let h = slot.handle();
        let t = resolve(h).expect("live handle");
        assert_eq!(
            (t.ssl, t.callback, t.arg as usize),
            (fake_ssl(1), 0x1234, 0x55)
        );
        assert!(std::ptr::eq(own(h).unwrap(), slot));
        release(slot);
        assert!(resolve(h).is_none(), "a released slot must not resolve");
    }

    #[test]
    fn a_reused_slot_does_not_answer_an_old_handle() {
        let first = acquire(fake_ssl(2), 1, std::ptr::null_mut()).unwrap();
        let old = first.handle();
        release(first);
        // Drain until the same record comes back (other tests run in parallel).
        let mut held = Vec::new();
        let again = loop {
            let s = acquire(fake_ssl(3), 2, std::ptr::null_mut()).unwrap();
            if std::ptr::eq(s, first) {
                break s;
            }
            held.push(s);
        };
        assert_ne!(again.handle(), old);
        assert!(resolve(old).is_none(), "stale generation must be rejected");
        assert_eq!(resolve(again.handle()).unwrap().callback, 2);
        release(again);
        held.into_iter().for_each(release);
    }

    #[test]
    fn garbage_handles_resolve_to_nothing() {
        assert!(resolve(usize::MAX as *mut libc::c_void).is_none());
        // An index past the table is masked into it; the generation, which
        // no slot reaches in a test, still rejects it.
        let past = ((u32::MAX as usize) << 32) | (MAX_CHUNKS * CHUNK_LEN + 5);
        assert!(resolve(past as *mut libc::c_void).is_none());
    }

    #[test]
    fn concurrent_acquire_release_keeps_slots_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let s = acquire(fake_ssl(t * 10_000 + i + 10), i, std::ptr::null_mut())
                            .unwrap();
                        let t = resolve(s.handle()).unwrap();
                        assert_eq!(t.callback, i);
                        release(s);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn a_slot_stays_small() {
        // The per-SSL memory budget: a slot plus OpenSSL's ex_data entry.
        assert!(std::mem::size_of::<Slot>() <= 48);
    }
}
