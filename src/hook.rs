//! The job-start hook: what happens when libssl starts or resumes an async
//! job for an SSL (libcrypto's `ASYNC_start_job`, interposed in `entry.rs`).
//!
//! libssl registers its own wait-ctx callback only when it creates an SSL's
//! wait ctx (the first job), which is why native OpenSSL misses late
//! registrations and calls through NULL after a clear. Before every job the
//! hook instead makes the SSL's wait ctx carry exactly what the SSL's state
//! asks for: the shim's trampoline when a callback is set, nothing otherwise
//! (so engines fall back to wait fds). For SSLs the fd adapter serves it
//! also ends the previous pause's watch before the job and arms the new
//! pause after it.

use std::ptr;
use std::sync::atomic::Ordering;

use libc::{c_int, c_void};

use crate::adapter;
use crate::deliver::{self, trampoline_address};
use crate::free;
use crate::gate;
use crate::internals;
use crate::log::debug;
use crate::slots::{self, Slot};
use crate::state;
use crate::stats;
use crate::sys::{self, ASYNC_job_fn, ASYNC_JOB, ASYNC_WAIT_CTX, SSL};
use crate::waitctx;

/// The real `ASYNC_start_job`'s type.
pub type StartJob = unsafe extern "C" fn(
    *mut *mut ASYNC_JOB,
    *mut ASYNC_WAIT_CTX,
    *mut c_int,
    ASYNC_job_fn,
    *mut c_void,
    usize,
) -> c_int;

/// Whether a job can start untouched without looking further: nothing in
/// the process needs job starts looked at, or `wctx` already carries the
/// trampoline (a cleared callback is taken off at once) or the current "no
/// slot" mark. A few loads, no call: this is the hook's fast path.
#[inline(always)]
pub fn pass_through(wctx: *mut ASYNC_WAIT_CTX) -> bool {
    !gate::open() || internals::wait_ctx_is(wctx, trampoline_address())
}

#[cold]
#[inline(never)]
fn bypassed() {
    stats::job_bypassed();
    crate::unprotected(format_args!(
        "an SSL's async callback was set past sslasync (a library loaded with RTLD_DEEPBIND, \
         or libssl called through a dlopen handle)"
    ));
}

/// The hook's checked path: wire libssl's jobs, then start them.
///
/// # Safety
/// The arguments are `ASYNC_start_job`'s, from its caller, unchanged, and
/// `real` is the real `ASYNC_start_job`.
pub unsafe fn start_job(
    real: StartJob,
    job: *mut *mut ASYNC_JOB,
    wctx: *mut ASYNC_WAIT_CTX,
    ret: *mut c_int,
    func: ASYNC_job_fn,
    args: *mut c_void,
    size: usize,
) -> c_int {
    // SAFETY: the caller's arguments; job_ssl reads only the args block.
    let ssl = unsafe { internals::job_ssl(job, func, args, size) };
    if let Some(s) = ssl.filter(|_| internals::references_probe_due()) {
        // The first jobs of the process: find the reference count on this
        // SSL, whose owner is starting it, before any callback can run.
        // SAFETY: s is the live SSL whose job this thread starts.
        let _ = std::panic::catch_unwind(|| unsafe { free::probe_references(s) });
    }
    // A panic in the shim's own code degrades to starting the job untouched:
    // the real call below must happen exactly once whatever happened here.
    let wired = match ssl {
        Some(ssl) if !wctx.is_null() => {
            std::panic::catch_unwind(|| wire(ssl, wctx)).unwrap_or(None)
        }
        None if !wctx.is_null() && internals::unmeasured_libssl_job(func, size) => {
            // Before the layout is measured, a libssl job that is not one
            // of an SSL given the API can still skip later lookups.
            // SAFETY: wctx is the live wait ctx of this job.
            unsafe { mark_slotless(wctx) };
            None
        }
        _ => None,
    };
    let adapted = wired.map(|(s, _)| s).filter(|s| s.fd_on() || s.reported());
    let started = adapted.filter(|&s| {
        // SAFETY: wctx is this SSL's live wait ctx.
        std::panic::catch_unwind(|| unsafe { adapter::job_starting(s, wctx) }).is_ok()
    });
    if !stats::enabled() && adapted.is_none() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(job, wctx, ret, func, args, size) };
    }
    let in_force = wired.filter(|&(_, on)| on).map(|(s, _)| s);
    if stats::enabled() {
        let _ = std::panic::catch_unwind(|| stats::job_starting(in_force));
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    let r = unsafe { real(job, wctx, ret, func, args, size) };
    if let (Some(s), sys::ASYNC_PAUSE) = (started, r) {
        // SAFETY: wctx is this SSL's live wait ctx, and the SSL's job paused.
        let _ = std::panic::catch_unwind(|| unsafe { adapter::paused(s, wctx) });
    }
    if stats::enabled() && !wctx.is_null() {
        // SAFETY: wctx is the SSL's wait ctx, alive across the call.
        let status = unsafe { status_of(wctx, adapted) };
        let _ = std::panic::catch_unwind(|| stats::job_returned(r, status));
    }
    r
}

/// The status the application reads for `wctx`'s SSL: the wait ctx's, or
/// on 1.1.1 (whose wait ctx has none) the adapter's report.
///
/// # Safety
/// `wctx` is a live wait ctx.
pub unsafe fn status_of(wctx: *mut ASYNC_WAIT_CTX, slot: Option<&Slot>) -> c_int {
    if waitctx::HAS_CALLBACK {
        // SAFETY: caller.
        unsafe { waitctx::status(wctx) }
    } else if slot.is_some_and(Slot::reported) {
        sys::ASYNC_STATUS_OK
    } else {
        sys::ASYNC_STATUS_UNSUPPORTED
    }
}

/// Puts the current "no slot" mark on a wait ctx with no callback, so the
/// next job starts of its SSL take the fast path. Any setter that may give
/// such an SSL a callback invalidates the marks.
///
/// # Safety
/// `wctx` is a live wait ctx.
unsafe fn mark_slotless(wctx: *mut ASYNC_WAIT_CTX) {
    if waitctx::HAS_CALLBACK {
        // SAFETY: wctx is live (caller).
        if unsafe { waitctx::callback(wctx) }.is_none() {
            let mark = internals::slotless_mark() as *mut c_void;
            // SAFETY: wctx is live; a NULL callback keeps engines on wait
            // fds, and the mark lets the next job start skip the lookup.
            unsafe { waitctx::set_callback(wctx, None, mark) };
        }
    }
}

/// Puts `slot`'s trampoline on `wctx` (the adapter's when the adapter
/// serves the SSL), or takes any callback off it.
fn set_wait_callback(wctx: *mut ASYNC_WAIT_CTX, slot: Option<&Slot>) {
    let (cb, arg): (waitctx::Callback, *mut c_void) = match slot {
        Some(s) => {
            s.wired.store(wctx.cast(), Ordering::Relaxed);
            let t = if s.fd_on() {
                adapter::trampoline_fd
            } else {
                deliver::current_trampoline()
            };
            (Some(waitctx::as_callback(t)), s.handle())
        }
        None => (None, ptr::null_mut()),
    };
    // SAFETY: wctx is a live wait ctx: the one libssl passes to
    // ASYNC_start_job, or the one recorded while its SSL is alive.
    unsafe { waitctx::set_callback(wctx, cb, arg) };
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
    adapter::forget(slot);
}

/// Called when the adapter is switched for `slot`'s SSL: a wait ctx already
/// carrying a trampoline gets the matching one (the plain one lets job
/// starts take the fast path, which would skip the adapter).
pub fn rewire(slot: &Slot) {
    let w = slot.wired.load(Ordering::Relaxed);
    if !w.is_null() && slot.callback.load(Ordering::Acquire) != 0 {
        set_wait_callback(w.cast(), Some(slot));
    }
}

/// Makes `wctx` (the wait ctx of `ssl`'s job, about to start or resume)
/// carry the shim's trampoline iff `ssl` currently has a callback.
/// Returns the SSL's slot, if it has one, and whether its callback is in
/// force for this job.
fn wire(ssl: *mut SSL, wctx: *mut ASYNC_WAIT_CTX) -> Option<(&'static Slot, bool)> {
    // SAFETY: wctx is live.
    let cur = unsafe { waitctx::callback(wctx) };
    if let Some((cb, arg)) = cur {
        if deliver::is_trampoline(cb) || cb == adapter::trampoline_address() {
            // Already ours (clearing takes it off at once, see `unwire`); the
            // SSL is alive during its own job start, so its slot is current.
            return slots::named(arg).map(|s| (s, true));
        }
    }
    let has = cur.is_some();
    let Some(slot) = state::ssl_slot(ssl) else {
        if cur.is_some_and(|(cb, _)| cb != 0) {
            // libssl wired a callback the shim never saw set: the SSL's
            // setter or SSL_new bypassed the shim.
            bypassed();
        }
        if !has {
            // SAFETY: wctx is live.
            unsafe { mark_slotless(wctx) };
        }
        return None;
    };
    if slot.callback.load(Ordering::Acquire) != 0 {
        if waitctx::HAS_CALLBACK {
            set_wait_callback(wctx, Some(slot));
            if !has {
                // Native OpenSSL would not have wired this callback: set after
                // the first job, or set again after a clear.
                stats::late_registration();
                debug!("callback wired after the first job");
            }
        }
        Some((slot, true))
    } else {
        if has {
            // libssl's own trampoline, pointing at a callback now cleared.
            set_wait_callback(wctx, None);
        }
        Some((slot, false))
    }
}
