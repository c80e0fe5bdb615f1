//! The bridge between libssl's async jobs and the user's callback: the
//! wait-ctx trampoline and the re-wiring done on every job start and resume.
//!
//! libssl registers its own trampoline only when it creates an SSL's wait ctx
//! (the first job), which is why native OpenSSL misses late registrations and
//! calls through NULL after a clear. The shim instead sees every
//! `ASYNC_start_job` libssl makes, and before each one puts on the SSL's wait
//! ctx exactly what the SSL's current state asks for: its trampoline when a
//! callback is set, nothing otherwise (so engines fall back to wait fds).

use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_void};

use crate::log::debug;
use crate::slots::{self, Slot};
use crate::state;
use crate::stats;
use crate::sys::{self, ASYNC_WAIT_CTX, SSL};

/// `sizeof(struct ssl_async_args)`: five pointer-sized words (SSL*, buffer,
/// length, type tag padded, function pointer) from OpenSSL 1.1.0 to 4.0.
pub const SSL_ASYNC_ARGS_SIZE: usize = 5 * std::mem::size_of::<usize>();

/// The callback the shim puts on a wait ctx; `arg` is a slot handle.
pub unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    if stats::enabled() {
        // SAFETY: same contract.
        return unsafe { trampoline_counted(arg) };
    }
    // SAFETY: same contract.
    unsafe { deliver(arg, false) }
}

/// [`trampoline`] with `SSLASYNC_STATS=1`, kept out of line so the plain
/// delivery path needs no stack frame.
#[cold]
#[inline(never)]
unsafe extern "C" fn trampoline_counted(arg: *mut c_void) -> c_int {
    // SAFETY: same contract.
    unsafe { deliver(arg, true) }
}

/// Calls the user's callback for the slot `handle` names, if it still may.
///
/// # Safety
/// `handle` is a wait-ctx callback argument the shim registered.
#[inline(always)]
unsafe fn deliver(handle: *mut c_void, count: bool) -> c_int {
    let target = match slots::resolve(handle) {
        Some(t) if t.callback != 0 => t,
        other => return dropped(other.is_none()),
    };
    if count {
        stats::callback_delivered(target.slot);
    }
    // SAFETY: callback holds a non-NULL SSL_async_callback_fn stored by a
    // setter; ssl and arg are the values the user gave for this very SSL.
    let user = unsafe {
        std::mem::transmute::<usize, unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int>(
            target.callback,
        )
    };
    // SAFETY: calling the user's C callback with its own SSL and arg, exactly
    // as native OpenSSL does. No shim lock is held here.
    unsafe { user(target.ssl, target.arg) }
}

/// A completion nobody may be told about: kept out of line (and
/// non-unwinding, so it is a tail call) so delivery needs no stack frame.
#[cold]
#[inline(never)]
extern "C" fn dropped(freed: bool) -> c_int {
    stats::callback_dropped();
    if freed {
        debug!("dropped a completion for an SSL that was already freed");
    } else {
        // Cleared while the operation was in flight: the user asked never
        // to be called again, so the completion is dropped (the application
        // re-drives the SSL itself, as it must for EAGAIN).
        debug!("dropped a completion whose callback was cleared in flight");
    }
    0
}

/// Word offset of the callback inside `ASYNC_WAIT_CTX`,
/// found at load time by [`probe_wait_ctx_layout`]. Until then (or if the
/// layout is not recognised) it is 0, the `fds` list pointer, which never
/// equals the trampoline's address: the job-start hook then always takes
/// its checked path.
static WCTX_CB: AtomicUsize = AtomicUsize::new(0);
/// Word offset of the callback's argument, likewise (0 never matches a mark).
static WCTX_ARG: AtomicUsize = AtomicUsize::new(0);

/// Bumped whenever a setter gives an SSL that may already have a wait ctx
/// its first slot, which invalidates every "no slot" mark at once.
static SLOTLESS_EPOCH: AtomicUsize = AtomicUsize::new(0);

/// The "this SSL has no slot" mark for the current epoch. It is put in the
/// argument of a wait ctx whose callback stays NULL (engines never read the
/// argument then), so later job starts of an SSL that does not use the API
/// skip the ex_data lookup. Top and bottom bits set: never a pointer, never
/// a slot handle next to a NULL callback.
#[inline(always)]
fn slotless_mark() -> usize {
    (1 << 63) | (SLOTLESS_EPOCH.load(Ordering::Relaxed) << 1) | 1
}

/// A setter attached a slot to an SSL that may have run jobs already.
pub fn slot_attached_late() {
    SLOTLESS_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Finds where a wait ctx keeps its callback and arg by setting two known
/// pairs through the API and looking for them among the words every
/// OpenSSL 3.0 to 4.0 wait ctx has (fds, numadd, numdel, callback,
/// callback_arg, then status). Anything unexpected leaves the offsets unknown.
pub fn probe_wait_ctx_layout() {
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
        // With counting on, every job start takes the checked path.
        if let (Some((cb, arg)), false) = (found, stats::enabled()) {
            WCTX_ARG.store(arg, Ordering::Release);
            WCTX_CB.store(cb, Ordering::Release);
        }
    }
}

/// Whether the job can start untouched: `wctx` already carries this
/// shim's trampoline (a cleared callback is taken off at once), or it bears
/// the current "no slot" mark. Reads the fields directly (no call, no stack
/// frame); until their offsets are known both checks fail.
#[inline(always)]
pub fn nothing_to_do(wctx: *mut ASYNC_WAIT_CTX) -> bool {
    if wctx.is_null() {
        return false;
    }
    let words = wctx as *const usize;
    // SAFETY: wctx is the live wait ctx passed to ASYNC_start_job and the
    // offsets are 0 or were verified at load time to lie inside it.
    let word = |offset: &AtomicUsize| unsafe { *words.add(offset.load(Ordering::Relaxed)) };
    // The wired case first: it is the one on the callback path.
    word(&WCTX_CB) == trampoline as *const () as usize || word(&WCTX_ARG) == slotless_mark()
}

/// Puts `slot`'s trampoline on `wctx`, or takes any callback off it.
fn set_wait_callback(wctx: *mut ASYNC_WAIT_CTX, slot: Option<&Slot>) {
    let (cb, arg): (sys::ASYNC_callback_fn, *mut c_void) = match slot {
        Some(s) => {
            s.wired.store(wctx.cast(), Ordering::Relaxed);
            (Some(trampoline), s.handle())
        }
        None => (None, ptr::null_mut()),
    };
    // SAFETY: wctx is a live wait ctx: the one libssl passes to
    // ASYNC_start_job, or the one recorded while its SSL is alive.
    unsafe { sys::ASYNC_WAIT_CTX_set_callback(wctx, cb, arg) };
}

/// Called when the user clears `slot`'s callback: the wait ctx carrying its
/// trampoline goes back to wait-fd notification right away, so the
/// job-start hook never has to look further than the wait ctx.
pub fn unwire(slot: &Slot) {
    let w = slot.wired.swap(ptr::null_mut(), Ordering::Relaxed);
    if !w.is_null() {
        set_wait_callback(w.cast(), None);
        debug!("callback cleared: wait ctx back to fd notification");
    }
}

/// Makes `wctx` (the wait ctx of `ssl`'s job, about to start or resume)
/// carry the shim's trampoline iff `ssl` currently has a callback.
/// Returns the SSL's slot when its trampoline is on the wait ctx.
#[inline]
pub fn wire(ssl: *mut SSL, wctx: *mut ASYNC_WAIT_CTX) -> Option<&'static Slot> {
    let mut cur: sys::ASYNC_callback_fn = None;
    let mut cur_arg: *mut c_void = ptr::null_mut();
    // SAFETY: wctx is live; get_callback only writes the two out-params.
    let has = unsafe { sys::ASYNC_WAIT_CTX_get_callback(wctx, &mut cur, &mut cur_arg) } == 1;
    if has && cur.map(|f| f as usize) == Some(trampoline as *const () as usize) {
        // Already ours (clearing takes it off at once, see `unwire`).
        return slots::own(cur_arg);
    }
    let Some(slot) = state::ssl_slot(ssl) else {
        if !has {
            // SAFETY: wctx is live; a NULL callback keeps engines on wait
            // fds, and the mark lets the next job start skip this lookup.
            unsafe { sys::ASYNC_WAIT_CTX_set_callback(wctx, None, slotless_mark() as *mut c_void) };
        }
        return None;
    };
    let cb = slot.callback.load(Ordering::Acquire);
    if cb != 0 {
        set_wait_callback(wctx, Some(slot));
        if !has {
            // Native OpenSSL would not have wired this callback: set after
            // the first job, or set again after a clear.
            stats::late_registration();
            debug!("callback wired after the first job");
        }
        Some(slot)
    } else {
        if has {
            // libssl's own trampoline, pointing at a callback now cleared.
            set_wait_callback(wctx, None);
        }
        None
    }
}

/// Copies the CTX's callback and arg into a new SSL, as native `SSL_new`
/// does (after ex_data construction, so it reflects the CTX right now).
pub fn inherit(ssl: *mut SSL, ctx: *mut sys::SSL_CTX) {
    let Some(cs) = state::ctx_state(ctx, false) else {
        return;
    };
    let cb = cs.callback.load(Ordering::Acquire);
    let arg = cs.arg.load(Ordering::Acquire);
    if (cb != 0 || !arg.is_null()) && state::attach_slot(ssl, cb, arg).is_none() {
        debug!("no slot for a new SSL: it keeps OpenSSL's own wiring");
    }
}

/// Whether job starts need looking at: some SSL uses the API, or stats are
/// on (counting holds one permanent count in `LIVE`, so this is one load).
#[inline(always)]
pub fn hooked() -> bool {
    slots::LIVE.load(Ordering::Relaxed) != 0
}

/// `ASYNC_start_job` when [`hooked`]: wire libssl's jobs, then forward.
/// (`extern "C"` makes it non-unwinding, so the hook can tail-call it.)
///
/// # Safety
/// The arguments are `ASYNC_start_job`'s, from its caller, unchanged.
#[inline(never)]
pub unsafe extern "C" fn start_job_hooked(
    job: *mut *mut sys::ASYNC_JOB,
    wctx: *mut ASYNC_WAIT_CTX,
    ret: *mut c_int,
    func: sys::ASYNC_job_fn,
    args: *mut c_void,
    size: usize,
) -> c_int {
    let Some(real_start) = crate::real::start_job() else {
        return sys::ASYNC_ERR;
    };
    if size != SSL_ASYNC_ARGS_SIZE
        || !crate::real::in_libssl(func)
        || wctx.is_null()
        || args.is_null()
    {
        // SAFETY: not a libssl job: forwarded untouched.
        return unsafe { real_start(job, wctx, ret, func, args, size) };
    }
    // SAFETY: func is libssl code and size matches, so this call comes from
    // libssl's ssl_start_async_job and args points at its struct
    // ssl_async_args, whose first member is the public SSL*.
    let ssl = unsafe { *args.cast::<*mut SSL>() };
    // This function cannot unwind (extern "C" would abort the host), so a
    // panic in the shim's own code degrades to forwarding the job untouched.
    let slot = std::panic::catch_unwind(|| wire(ssl, wctx)).unwrap_or(None);
    if !stats::enabled() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real_start(job, wctx, ret, func, args, size) };
    }
    let _ = std::panic::catch_unwind(|| stats::job_starting(slot));
    // SAFETY: forwarding the caller's arguments unchanged.
    let r = unsafe { real_start(job, wctx, ret, func, args, size) };
    // SAFETY: wctx is the SSL's wait ctx, alive across the call.
    let status = unsafe { sys::ASYNC_WAIT_CTX_get_status(wctx) };
    let _ = std::panic::catch_unwind(|| stats::job_returned(r, status));
    r
}
