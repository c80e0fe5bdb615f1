//! The exported OpenSSL functions, all written in one idiom: check pointers,
//! run the body behind `catch_unwind`, turn failure into 0 plus an entry on
//! the OpenSSL error queue. The getter, called on every event, first tries a
//! frame-free forward (two NULL checks and a tail call; nothing that can
//! panic) and takes the same idiom for everything else.
//!
//! Each setter first calls the real OpenSSL setter, which keeps libssl's own
//! fields (and its return value, e.g. 0 for a QUIC object on 3.2+) exactly
//! native; the shim's state then decides what the wait ctx carries. While the
//! shim is inert the real function's result is all that happens.

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::Ordering;

use libc::{c_int, c_void};

use crate::bridge;
use crate::error::Error;
use crate::real::{self, active};
use crate::state;
use crate::sys::{ASYNC_job_fn, ASYNC_JOB, ASYNC_WAIT_CTX, SSL, SSL_CTX};
use crate::SSL_async_callback_fn;

/// Runs an entry point body (a `Result<c_int, Error>` block) so that neither
/// a panic nor an error crosses into C: both become 0 and an error entry.
macro_rules! entry {
    ($name:expr, $body:block) => {{
        let name: &CStr = $name;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<c_int, Error> {
            $body
        })) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                e.raise(name);
                0
            }
            Err(_) => {
                Error::Internal.raise(name);
                0
            }
        }
    }};
}

/// A required pointer argument.
fn required<T>(p: *mut T) -> Result<*mut T, Error> {
    if p.is_null() {
        Err(Error::NullParameter)
    } else {
        Ok(p)
    }
}

/// The real OpenSSL function, which must exist for the entry point to work.
fn real_fn<F: Copy>(f: Option<F>) -> Result<F, Error> {
    f.ok_or(Error::Internal)
}

fn callback_word(cb: SSL_async_callback_fn) -> usize {
    cb.map_or(0, |f| f as usize)
}

/// Sets the callback every `SSL` created from `ctx` from now on starts with.
/// Returns 1; 0 with `ERR_R_PASSED_NULL_PARAMETER` queued if `ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_set_async_callback(
    ctx: *mut SSL_CTX,
    callback: SSL_async_callback_fn,
) -> c_int {
    entry!(c"SSL_CTX_set_async_callback", {
        let ctx = required(ctx)?;
        // SAFETY: ctx is a non-NULL SSL_CTX from the caller; the real setter
        // has this exact prototype.
        let r = unsafe { real_fn(real::real().ctx_set_callback)?(ctx, callback) };
        if r == 1 && active() {
            let cs = state::ctx_state(ctx, true).ok_or(Error::OutOfMemory)?;
            cs.callback
                .store(callback_word(callback), Ordering::Release);
        }
        Ok(r)
    })
}

/// Sets the argument every `SSL` created from `ctx` from now on starts with.
/// Returns 1; 0 with `ERR_R_PASSED_NULL_PARAMETER` queued if `ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_set_async_callback_arg(
    ctx: *mut SSL_CTX,
    arg: *mut c_void,
) -> c_int {
    entry!(c"SSL_CTX_set_async_callback_arg", {
        let ctx = required(ctx)?;
        // SAFETY: as in SSL_CTX_set_async_callback.
        let r = unsafe { real_fn(real::real().ctx_set_arg)?(ctx, arg) };
        if r == 1 && active() {
            let cs = state::ctx_state(ctx, true).ok_or(Error::OutOfMemory)?;
            cs.arg.store(arg, Ordering::Release);
        }
        Ok(r)
    })
}

/// Sets (or with NULL clears) the callback of one `SSL`; it takes effect
/// from the SSL's next job start or resume, whenever it is set.
/// Returns 1; 0 if `s` is NULL (error queued) or not a TLS connection.
#[no_mangle]
pub unsafe extern "C" fn SSL_set_async_callback(
    s: *mut SSL,
    callback: SSL_async_callback_fn,
) -> c_int {
    entry!(c"SSL_set_async_callback", {
        let s = required(s)?;
        // SAFETY: s is a non-NULL SSL from the caller; exact prototype.
        let r = unsafe { real_fn(real::real().set_callback)?(s, callback) };
        if r == 1 && active() {
            let cb = callback_word(callback);
            match state::ssl_slot(s) {
                Some(slot) => {
                    slot.callback.store(cb, Ordering::Release);
                    if cb == 0 {
                        bridge::unwire(slot);
                    }
                }
                None if cb != 0 => {
                    state::attach_slot(s, cb, ptr::null_mut()).ok_or(Error::OutOfMemory)?;
                    bridge::slot_attached_late();
                }
                None => {}
            }
        }
        Ok(r)
    })
}

/// Sets the argument passed to the SSL's callback; read when it fires.
/// Returns 1; 0 if `s` is NULL (error queued) or not a TLS connection.
#[no_mangle]
pub unsafe extern "C" fn SSL_set_async_callback_arg(s: *mut SSL, arg: *mut c_void) -> c_int {
    entry!(c"SSL_set_async_callback_arg", {
        let s = required(s)?;
        // SAFETY: as in SSL_set_async_callback.
        let r = unsafe { real_fn(real::real().set_arg)?(s, arg) };
        if r == 1 && active() {
            match state::ssl_slot(s) {
                Some(slot) => slot.arg.store(arg, Ordering::Release),
                None if !arg.is_null() => {
                    state::attach_slot(s, 0, arg).ok_or(Error::OutOfMemory)?;
                    bridge::slot_attached_late();
                }
                None => {}
            }
        }
        Ok(r)
    })
}

/// Writes the engine's status for the SSL's async job into `*status` and
/// returns 1; returns 0 with `*status` untouched before the SSL's first job.
/// NULL `s` or `status`: 0 with `ERR_R_PASSED_NULL_PARAMETER` queued.
#[no_mangle]
pub unsafe extern "C" fn SSL_get_async_status(s: *mut SSL, status: *mut c_int) -> c_int {
    if !s.is_null() && !status.is_null() {
        if let Some(f) = real::get_status_resolved() {
            // SAFETY: both pointers are non-NULL and from the caller; the
            // real getter reads the SSL's wait ctx, which libssl owns.
            return unsafe { f(s, status) };
        }
    }
    // SAFETY: the caller's arguments, unchanged.
    unsafe { get_async_status_checked(s, status) }
}

/// NULL arguments (an error entry) or an unresolved real getter.
#[cold]
#[inline(never)]
unsafe extern "C" fn get_async_status_checked(s: *mut SSL, status: *mut c_int) -> c_int {
    entry!(c"SSL_get_async_status", {
        let s = required(s)?;
        let status = required(status)?;
        // SAFETY: both pointers are non-NULL and from the caller.
        Ok(unsafe { real_fn(real::real().get_status)?(s, status) })
    })
}

/// Interposes `SSL_new` to copy the CTX's callback and arg into the new SSL
/// at creation, as native OpenSSL copies them into its own fields.
///
/// cbindgen:ignore
#[no_mangle]
pub unsafe extern "C" fn SSL_new(ctx: *mut SSL_CTX) -> *mut SSL {
    let Some(f) = real::real().ssl_new else {
        Error::Internal.raise(c"SSL_new");
        return ptr::null_mut();
    };
    // SAFETY: forwarding the caller's argument to the real SSL_new.
    let s = unsafe { f(ctx) };
    if !s.is_null() && !ctx.is_null() && active() {
        let _ = std::panic::catch_unwind(|| bridge::inherit(s, ctx));
    }
    s
}

/// Interposes `SSL_dup`: upstream OpenSSL builds link libssl with
/// `-Bsymbolic`, so its `SSL_dup` reaches `SSL_new` without passing the
/// interposer above. A real copy that came out without the shim's state gets
/// the CTX's values here, which is what native `SSL_dup` gives it.
///
/// cbindgen:ignore
#[no_mangle]
pub unsafe extern "C" fn SSL_dup(s: *mut SSL) -> *mut SSL {
    let Some(f) = real::real().ssl_dup else {
        Error::Internal.raise(c"SSL_dup");
        return ptr::null_mut();
    };
    // SAFETY: forwarding the caller's argument to the real SSL_dup.
    let copy = unsafe { f(s) };
    if !copy.is_null() && copy != s && active() {
        let _ = std::panic::catch_unwind(|| {
            if state::ssl_slot(copy).is_none() {
                // SAFETY: copy is the live SSL the real SSL_dup just made.
                let ctx = unsafe { openssl_sys::SSL_get_SSL_CTX(copy) };
                if !ctx.is_null() {
                    bridge::inherit(copy, ctx);
                }
            }
        });
    }
    copy
}

/// Interposes libcrypto's `ASYNC_start_job`: for a job libssl starts or
/// resumes for an SSL, wire its wait ctx first; pass everything through.
/// While no SSL uses the API (and stats are off) this is a tail call.
///
/// cbindgen:ignore
#[no_mangle]
pub unsafe extern "C" fn ASYNC_start_job(
    job: *mut *mut ASYNC_JOB,
    wctx: *mut ASYNC_WAIT_CTX,
    ret: *mut c_int,
    func: ASYNC_job_fn,
    args: *mut c_void,
    size: usize,
) -> c_int {
    if let Some(real_start) = real::start_job_resolved() {
        if !bridge::hooked() || bridge::nothing_to_do(wctx) {
            // SAFETY: forwarding the caller's arguments unchanged.
            return unsafe { real_start(job, wctx, ret, func, args, size) };
        }
    }
    // SAFETY: the caller's arguments, forwarded unchanged.
    unsafe { bridge::start_job_hooked(job, wctx, ret, func, args, size) }
}
