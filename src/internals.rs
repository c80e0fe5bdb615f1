//! Everything the shim assumes about OpenSSL's internals, each assumption
//! with how it is verified and what the shim does when it does not hold.
//!
//! | assumption | verified | when it fails |
//! |---|---|---|
//! | a job whose entry point lies in libssl's code and whose argument block is `sizeof(struct ssl_async_args)` was started by libssl's `ssl_start_async_job` | the code range is read from the loaded libssl's program headers at load | a job from elsewhere is forwarded untouched |
//! | the args' first word is the public `SSL*`, and the job out-pointer is `&ssl->job`, a fixed offset from it | measured on the first such job whose first word is an SSL the application gave the API (pointer equality, nothing dereferenced); every later job must match it, compared without dereferencing | until measured, jobs are forwarded untouched; an impossible offset makes the shim give OpenSSL's own wiring and `sslasync_active()` 0; a mismatch is forwarded untouched and counted |
//! | an SSL's reference count is an `int` inside the object, before `&ssl->job` | once the job offset is known, on an SSL fresh from `SSL_new` or starting a job on its owner's thread (normally one reference; retried on later ones): exactly one word follows `SSL_up_ref` and `SSL_free` 1→2→1→2→1 | unknown: `SSL_free` cannot tell the last reference, so a callback running on another thread at the final free is not waited for by deferring the free (its `SSL*` dangles, as natively); known, the shim's `SSL_free` drops a reference that is not the last itself (a compare-and-swap loop on the int OpenSSL's own atomic decrement works on) |
//! | an `ASYNC_WAIT_CTX` keeps its callback and argument in two of its first five words | at load, two known pairs are set through the API and found | the job-start hook always takes its checked (API) path |
//! | engines read a wait ctx's argument only when its callback is set | OpenSSL's API pairs them; libssl's own argument is the SSL | (design) the "no slot" mark lives only beside a NULL callback |

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

use libc::c_void;

use crate::log::{debug, notice};
use crate::sys::{self, ASYNC_job_fn, ASYNC_WAIT_CTX, SSL};

/// `sizeof(struct ssl_async_args)`: five pointer-sized words (SSL*, buffer,
/// length, type tag padded, function pointer) from OpenSSL 1.1.0 to 4.0.
pub const SSL_ASYNC_ARGS_SIZE: usize = 5 * std::mem::size_of::<usize>();

// ------------------------------------------------------------ libssl's code

static TEXT_START: AtomicUsize = AtomicUsize::new(0);
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Records libssl's executable segment (found by `real` at load).
pub fn set_libssl_code(start: usize, len: usize) {
    TEXT_START.store(start, Ordering::Relaxed);
    TEXT_LEN.store(len, Ordering::Relaxed);
}

#[inline]
fn in_libssl(func: ASYNC_job_fn) -> bool {
    let f = func.map_or(0, |f| f as usize);
    f.wrapping_sub(TEXT_START.load(Ordering::Relaxed)) < TEXT_LEN.load(Ordering::Relaxed)
}

// ---------------------------------------------------------- job arguments

const UNKNOWN: usize = usize::MAX;
/// An offset no libssl has: the measurement found one (`&ssl->job` is a
/// small, aligned offset into the SSL object in every version).
const IMPOSSIBLE: usize = usize::MAX - 1;
/// `job out-pointer - SSL*` of libssl's jobs, once measured.
static JOB_OFFSET: AtomicUsize = AtomicUsize::new(UNKNOWN);
/// Jobs that looked like libssl's but failed the offset check.
static UNVERIFIED: AtomicUsize = AtomicUsize::new(0);

/// SSLs given to the API while the offset is unknown: the first libssl job
/// whose first word is one of them measures it. The newest few are kept
/// here; `SSL_free` takes an SSL out (so an entry is always a live SSL).
/// Once more were given the API, the records themselves are searched too
/// (`slots::holds_ssl`), so that no SSL using the API is taken for one that
/// does not and its jobs left unwired.
const CANDIDATES: usize = 16;
static CANDIDATE: [AtomicUsize; CANDIDATES] = [const { AtomicUsize::new(0) }; CANDIDATES];
static CANDIDATE_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Jobs forwarded untouched because their arguments did not check out.
pub fn unverified_jobs() -> u64 {
    UNVERIFIED.load(Ordering::Relaxed) as u64
}

/// The state of the job layout: 0 not measured yet (no SSL that uses the
/// API has started a job), 1 measured, 2 found impossible (final).
pub fn job_layout_state() -> u64 {
    match JOB_OFFSET.load(Ordering::Relaxed) {
        UNKNOWN => 0,
        IMPOSSIBLE => 2,
        _ => 1,
    }
}

/// Whether the layout turned out to be one the shim cannot trust: its
/// protections (late registration, clearing a wired callback) are off.
pub fn job_layout_failed() -> bool {
    JOB_OFFSET.load(Ordering::Relaxed) == IMPOSSIBLE
}

/// Whether a job is libssl's by its shape (entry point in libssl, argument
/// block of `struct ssl_async_args`'s size), while the layout that would
/// name its SSL is not measured yet.
pub fn unmeasured_libssl_job(func: ASYNC_job_fn, size: usize) -> bool {
    JOB_OFFSET.load(Ordering::Relaxed) == UNKNOWN && size == SSL_ASYNC_ARGS_SIZE && in_libssl(func)
}

/// An SSL was given the API (a slot): its first job can measure the layout.
pub fn note_candidate(ssl: *mut SSL) {
    if JOB_OFFSET.load(Ordering::Relaxed) != UNKNOWN {
        return;
    }
    let i = CANDIDATE_NEXT.fetch_add(1, Ordering::Relaxed) % CANDIDATES;
    CANDIDATE[i].store(ssl as usize, Ordering::Release);
}

/// An SSL is being freed: it can no longer name a job.
pub fn forget_candidate(ssl: *mut SSL) {
    if JOB_OFFSET.load(Ordering::Relaxed) != UNKNOWN || ssl.is_null() {
        return;
    }
    for c in &CANDIDATE {
        let _ = c.compare_exchange(ssl as usize, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// After the list overflowed, a job that is not in it scans every record
/// (chunks of 4096): only until the layout is measured, at most once per
/// SSL between two setters (a mark then lets its job starts skip this).
fn is_candidate(first: usize) -> bool {
    CANDIDATE.iter().any(|c| c.load(Ordering::Acquire) == first)
        || (CANDIDATE_NEXT.load(Ordering::Relaxed) > CANDIDATES
            && crate::slots::holds_ssl(first as *mut SSL))
}

/// The SSL a job belongs to, if the job is provably libssl's: entry point
/// in libssl, the args' size, and the out-pointer at the measured offset
/// from the args' first word. Reads the args block (which `size` covers)
/// and nothing the first word points at.
///
/// # Safety
/// The arguments are `ASYNC_start_job`'s, from its caller.
#[inline]
pub unsafe fn job_ssl(
    job: *mut *mut sys::ASYNC_JOB,
    func: ASYNC_job_fn,
    args: *mut c_void,
    size: usize,
) -> Option<*mut SSL> {
    if size != SSL_ASYNC_ARGS_SIZE || args.is_null() || job.is_null() || !in_libssl(func) {
        return None; // not libssl's: nothing to check, nothing to count
    }
    // SAFETY: args points at `size` bytes, and size covers the first word.
    let first = unsafe { args.cast::<usize>().read_unaligned() };
    let offset = (job as usize).wrapping_sub(first);
    let known = JOB_OFFSET.load(Ordering::Relaxed);
    if offset == known && first != 0 {
        return Some(first as *mut SSL);
    }
    if known == UNKNOWN {
        return measure(first, offset);
    }
    if known != IMPOSSIBLE {
        unverified(offset);
    }
    None
}

/// While the layout is unknown: a job whose first word is an SSL given to
/// the API measures it (any other job is forwarded untouched).
#[cold]
#[inline(never)]
fn measure(first: usize, offset: usize) -> Option<*mut SSL> {
    if first == 0 || !is_candidate(first) {
        return None;
    }
    // &ssl->job lies inside the SSL object, pointer-aligned.
    let ok = offset < 0x1_0000 && offset % std::mem::align_of::<usize>() == 0;
    let value = if ok { offset } else { IMPOSSIBLE };
    match JOB_OFFSET.compare_exchange(UNKNOWN, value, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) if ok => debug!("libssl jobs: &ssl->job = ssl + {offset:#x}"),
        Ok(_) => notice!(
            "libssl's async job layout is not one sslasync knows (job at ssl + {offset:#x}): \
             callbacks keep OpenSSL's own wiring"
        ),
        Err(_) => {} // measured by another thread just now
    }
    for c in &CANDIDATE {
        c.store(0, Ordering::Relaxed);
    }
    (JOB_OFFSET.load(Ordering::Relaxed) == offset).then_some(first as *mut SSL)
}

#[cold]
#[inline(never)]
fn unverified(offset: usize) {
    if UNVERIFIED.fetch_add(1, Ordering::Relaxed) == 0 {
        debug!(
            "a libssl job's arguments do not match the measured layout (offset {offset:#x}): \
             jobs like it are forwarded untouched"
        );
    }
}

// -------------------------------------------------------- reference count

/// Byte offset of an SSL's reference count, once measured.
static REFS_OFFSET: AtomicUsize = AtomicUsize::new(UNKNOWN);
const REFS_NOT_PROBED: u8 = 0;
const REFS_PROBING: u8 = 1;
const REFS_DONE: u8 = 2;
static REFS_PROBE: AtomicU8 = AtomicU8::new(REFS_NOT_PROBED);
/// Probes that found no single candidate (an SSL with more than one
/// reference, say); after this many the count is taken as not found.
static REFS_MISSES: AtomicU8 = AtomicU8::new(0);
const REFS_TRIES: u8 = 8;

/// 0 not probed yet, 1 the reference count found, 2 not found.
pub fn free_deferral_state() -> u64 {
    match (
        REFS_PROBE.load(Ordering::Acquire),
        REFS_OFFSET.load(Ordering::Acquire),
    ) {
        (REFS_DONE, UNKNOWN) => 2,
        (REFS_DONE, _) => 1,
        _ => 0,
    }
}

/// What [`drop_reference`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum RefDrop {
    /// Another reference remains: one was dropped, exactly as the real
    /// `SSL_free` drops a reference that is not the last.
    NotLast,
    /// The caller holds the last reference: the real `SSL_free` frees.
    Last,
    /// The count's place is unknown: nothing was done.
    Unknown,
}

/// `SSL_free`'s first step, done by the shim so that "is this the last
/// reference" and the decrement are one atomic step: two threads dropping
/// the last two references at once cannot both see another one remain.
#[inline]
pub fn drop_reference(ssl: *mut SSL) -> RefDrop {
    let off = REFS_OFFSET.load(Ordering::Relaxed);
    if off == UNKNOWN {
        return RefDrop::Unknown;
    }
    // SAFETY: ssl is a live SSL (its SSL_free has not run) and off was
    // verified to be its aligned int reference count, inside the object.
    // OpenSSL changes it with atomic instructions (CRYPTO_UP_REF/DOWN_REF)
    // on every target the shim builds for (x86-64 and aarch64 have them;
    // OpenSSL's lock-based fallback is for targets without atomics).
    let refs = unsafe { AtomicI32::from_ptr(ssl.cast::<u8>().add(off).cast::<i32>()) };
    let mut cur = refs.load(Ordering::Acquire);
    while cur > 1 {
        match refs.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return RefDrop::NotLast,
            Err(now) => cur = now,
        }
    }
    RefDrop::Last
}

/// Whether [`probe_references`] would run now: not probed yet, and the
/// job offset (its bound) known.
#[inline]
pub fn references_probe_due() -> bool {
    REFS_PROBE.load(Ordering::Relaxed) == REFS_NOT_PROBED
        && !matches!(JOB_OFFSET.load(Ordering::Relaxed), UNKNOWN | IMPOSSIBLE)
}

/// Finds where the reference count lives, on `ssl`, which normally has one
/// reference: an SSL fresh from `SSL_new`, or one whose first job measured
/// the job offset (which bounds the object). At most one probe runs at a
/// time; others return at once. A probe that finds no single candidate is
/// retried on a later SSL, up to a few times.
///
/// # Safety
/// `ssl` is a live TLS connection object the calling thread owns.
pub unsafe fn probe_references(
    ssl: *mut SSL,
    up_ref: unsafe extern "C" fn(*mut SSL) -> libc::c_int,
    free: unsafe extern "C" fn(*mut SSL),
) {
    if REFS_PROBE.load(Ordering::Relaxed) != REFS_NOT_PROBED {
        return;
    }
    let bound = JOB_OFFSET.load(Ordering::Relaxed);
    if bound == UNKNOWN || bound == IMPOSSIBLE {
        return;
    }
    if REFS_PROBE
        .compare_exchange(
            REFS_NOT_PROBED,
            REFS_PROBING,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return;
    }
    // SAFETY: [ssl, ssl + bound) lies inside the SSL object (&ssl->job is
    // at ssl + bound); the reference changes are undone before returning.
    let found = unsafe { find_references(ssl, bound, up_ref, free) };
    match found {
        Some(off) => {
            REFS_OFFSET.store(off, Ordering::Release);
            debug!("SSL reference count at ssl + {off:#x}");
        }
        None if REFS_MISSES.fetch_add(1, Ordering::Relaxed) + 1 < REFS_TRIES => {
            REFS_PROBE.store(REFS_NOT_PROBED, Ordering::Release);
            return;
        }
        None => notice!(
            "an SSL's reference count was not found: SSL_free cannot leave the free to a \
             callback of the SSL still running (its SSL* dangles, as natively)"
        ),
    }
    REFS_PROBE.store(REFS_DONE, Ordering::Release);
}

/// The one int among the object's first `bound` bytes that goes 1→2→1→2→1
/// with two `SSL_up_ref`/`SSL_free` pairs.
///
/// # Safety
/// As for [`probe_references`].
unsafe fn find_references(
    ssl: *mut SSL,
    bound: usize,
    up_ref: unsafe extern "C" fn(*mut SSL) -> libc::c_int,
    free: unsafe extern "C" fn(*mut SSL),
) -> Option<usize> {
    const MAX: usize = 64;
    let words = ssl.cast::<i32>();
    // SAFETY: i < bound / 4 keeps every read inside the object (caller).
    let word = |i: usize| unsafe { ptr::read_volatile(words.add(i)) };
    let mut cand = [0usize; MAX];
    let mut n = 0;
    // SAFETY: the real SSL_up_ref on a live SSL.
    if unsafe { up_ref(ssl) } != 1 {
        return None;
    }
    for i in 0..bound / 4 {
        if word(i) == 2 {
            if n == MAX {
                n = 0; // too many: give up below, after undoing the reference
                break;
            }
            cand[n] = i;
            n += 1;
        }
    }
    let keep = |cand: &mut [usize; MAX], n: usize, v: i32| -> usize {
        let mut m = 0;
        for k in 0..n {
            if word(cand[k]) == v {
                cand[m] = cand[k];
                m += 1;
            }
        }
        m
    };
    // SAFETY: drops the reference taken above (not the last: the caller's
    // remains), so the real SSL_free only decrements.
    unsafe { free(ssl) };
    n = keep(&mut cand, n, 1);
    // SAFETY: as above, a second pair.
    if n != 0 && unsafe { up_ref(ssl) } == 1 {
        n = keep(&mut cand, n, 2);
        // SAFETY: as above.
        unsafe { free(ssl) };
        n = keep(&mut cand, n, 1);
    } else {
        n = 0;
    }
    (n == 1).then(|| cand[0] * 4)
}

// ------------------------------------------------------- wait-ctx words

/// Word offsets of the callback and its argument inside `ASYNC_WAIT_CTX`.
/// 0 until verified: word 0 is the fds list pointer, which never equals the
/// trampoline or a mark, so the hook's fast checks simply fail.
static WCTX_CB: AtomicUsize = AtomicUsize::new(0);
static WCTX_ARG: AtomicUsize = AtomicUsize::new(0);

/// Finds where a wait ctx keeps its callback and arg by setting two known
/// pairs through the API and looking for them among the words every
/// OpenSSL 3.0 to 4.0 wait ctx has (fds, numadd, numdel, callback,
/// callback_arg, then status). Anything unexpected leaves them unknown.
pub fn probe_wait_ctx_layout() {
    #[cfg(not(sslasync_ossl111))]
    probe_wait_ctx_words();
}

#[cfg(not(sslasync_ossl111))]
fn probe_wait_ctx_words() {
    use libc::c_int;
    unsafe extern "C" fn s1(_: *mut c_void) -> c_int {
        1
    }
    unsafe extern "C" fn s2(_: *mut c_void) -> c_int {
        2
    }
    const WORDS: usize = 5;
    // SAFETY: a fresh wait ctx, freed below; only its first WORDS words,
    // which every supported OpenSSL allocates, are read.
    unsafe {
        let w = sys::ASYNC_WAIT_CTX_new();
        if w.is_null() {
            return;
        }
        let words = w as *const usize;
        let find = |v: usize| (0..WORDS).find(|&i| ptr::read_volatile(words.add(i)) == v);
        let found = (|| {
            sys::ASYNC_WAIT_CTX_set_callback(w, Some(s1), 0x5151_0001 as *mut c_void);
            let (cb, arg) = (find(s1 as *const () as usize)?, find(0x5151_0001)?);
            sys::ASYNC_WAIT_CTX_set_callback(w, Some(s2), 0x5252_0002 as *mut c_void);
            let ok = ptr::read_volatile(words.add(cb)) == s2 as *const () as usize
                && ptr::read_volatile(words.add(arg)) == 0x5252_0002;
            ok.then_some((cb, arg))
        })();
        sys::ASYNC_WAIT_CTX_free(w);
        if let Some((cb, arg)) = found {
            WCTX_ARG.store(arg, Ordering::Release);
            WCTX_CB.store(cb, Ordering::Release);
        }
    }
}

/// Whether `wctx` carries `callback` or, beside a NULL callback, the current
/// "no slot" mark. Reads the two words directly (no call, no stack frame).
#[inline(always)]
pub fn wait_ctx_is(wctx: *mut ASYNC_WAIT_CTX, callback: usize) -> bool {
    if wctx.is_null() {
        return false;
    }
    let words = wctx as *const usize;
    // SAFETY: wctx is the live wait ctx passed to ASYNC_start_job and the
    // offsets are 0 or were verified at load to lie inside every wait ctx.
    let word = |offset: &AtomicUsize| unsafe { *words.add(offset.load(Ordering::Relaxed)) };
    word(&WCTX_CB) == callback || word(&WCTX_ARG) == slotless_mark()
}

// ----------------------------------------------------- the "no slot" mark

/// Bumped whenever a setter gives an SSL that may already have a wait ctx
/// its first slot, which invalidates every mark at once.
static SLOTLESS_EPOCH: AtomicUsize = AtomicUsize::new(0);

/// The "this SSL has no slot" mark of the current epoch, put in the argument
/// of a wait ctx whose callback stays NULL, so later job starts of an SSL
/// that does not use the API skip the ex_data lookup. Top and bottom bits
/// set: never a pointer.
#[inline(always)]
pub fn slotless_mark() -> usize {
    (1 << 63) | (SLOTLESS_EPOCH.load(Ordering::Relaxed) << 1) | 1
}

/// A setter attached a slot to an SSL that may have run jobs already.
pub fn invalidate_slotless_marks() {
    SLOTLESS_EPOCH.fetch_add(1, Ordering::Relaxed);
}
