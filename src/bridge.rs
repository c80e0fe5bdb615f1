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
use std::sync::atomic::Ordering;

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
    let Some(target) = slots::resolve(arg) else {
        stats::callback_dropped();
        debug!("dropped a completion for an SSL that was already freed");
        return 0;
    };
    if target.callback == 0 {
        // Cleared while the operation was in flight: the user asked never
        // to be called again, so the completion is dropped (the application
        // re-drives the SSL itself, as it must for EAGAIN).
        stats::callback_dropped();
        debug!("dropped a completion whose callback was cleared in flight");
        return 0;
    }
    stats::callback_delivered(target.slot);
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

fn set_wait_callback(wctx: *mut ASYNC_WAIT_CTX, slot: Option<&Slot>) {
    let (cb, arg): (sys::ASYNC_callback_fn, *mut c_void) = match slot {
        Some(s) => (Some(trampoline), s.handle()),
        None => (None, ptr::null_mut()),
    };
    // SAFETY: wctx is the live wait ctx libssl passes to ASYNC_start_job.
    unsafe { sys::ASYNC_WAIT_CTX_set_callback(wctx, cb, arg) };
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
        // Already ours: the common case of every job after the first.
        if let Some(slot) = slots::own(cur_arg) {
            if slot.callback.load(Ordering::Relaxed) != 0 {
                return Some(slot);
            }
        }
        set_wait_callback(wctx, None);
        debug!("callback cleared: wait ctx back to fd notification");
        return None;
    }
    let slot = state::ssl_slot(ssl)?;
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

/// Whether job starts need looking at: some SSL uses the API, or stats are on.
#[inline(always)]
pub fn hooked() -> bool {
    slots::LIVE.load(Ordering::Relaxed) != 0 || stats::enabled()
}

/// `ASYNC_start_job` when [`hooked`]: wire libssl's jobs, then forward.
///
/// # Safety
/// The arguments are `ASYNC_start_job`'s, from its caller, unchanged.
#[inline(never)]
pub unsafe fn start_job_hooked(
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
    let slot = wire(ssl, wctx);
    if !stats::enabled() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real_start(job, wctx, ret, func, args, size) };
    }
    stats::job_starting(slot);
    // SAFETY: forwarding the caller's arguments unchanged.
    let r = unsafe { real_start(job, wctx, ret, func, args, size) };
    // SAFETY: wctx is the SSL's wait ctx, alive across the call.
    stats::job_returned(r, unsafe { sys::ASYNC_WAIT_CTX_get_status(wctx) });
    r
}
