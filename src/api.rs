//! The shim's own C functions, declared in `sslasync.h` (not OpenSSL's):
//! the fd-adapter switch, the statistics reader, the active/inert answer
//! and the version.

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::Ordering;

use libc::{c_char, c_int, size_t};

use crate::adapter;
use crate::error::Error;
use crate::hook;
use crate::internals;
use crate::state::{self, FD_OFF, FD_ON};
use crate::stats::{self, sslasync_stats};
use crate::sys::{SSL, SSL_CTX};

/// Runs the body of one of the shim's own functions that take OpenSSL
/// objects: 0 while the shim is inert (nothing queued: there is no OpenSSL
/// function to forward to), and an `Err` or a panic becomes 0 plus an
/// error-queue entry naming `name`, as for the OpenSSL functions.
fn own(name: &CStr, body: impl FnOnce() -> Result<c_int, Error>) -> c_int {
    let run = std::panic::AssertUnwindSafe(|| {
        crate::init();
        if crate::active() {
            body()
        } else {
            Ok(0)
        }
    });
    match std::panic::catch_unwind(run) {
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
}

/// `on` as a setting: 1 or 0 (0 only where the adapter can be off).
fn fd_switch(on: c_int) -> Result<bool, Error> {
    match on {
        1 => Ok(true),
        0 if adapter::SWITCHABLE => Ok(false),
        _ => Err(Error::InvalidArgument),
    }
}

/// Turns the fd adapter on (1) or off (0) for every `SSL` created from `ctx`
/// from now on (`SSL_new` copies it, as it copies the callback). Returns 1;
/// 0 with an error queued for a NULL `ctx` or another value (and for 0 with
/// OpenSSL 1.1.1, where the adapter is always on); 0 when the shim is inert.
#[no_mangle]
pub unsafe extern "C" fn sslasync_CTX_set_fd_callbacks(ctx: *mut SSL_CTX, on: c_int) -> c_int {
    own(c"sslasync_CTX_set_fd_callbacks", || {
        if ctx.is_null() {
            return Err(Error::NullParameter);
        }
        let on = fd_switch(on)?;
        let cs = state::ctx_state(ctx, true).ok_or(Error::OutOfMemory)?;
        cs.fd_callbacks
            .store(if on { FD_ON } else { FD_OFF }, Ordering::Release);
        stats::api_used();
        Ok(1)
    })
}

/// Turns the fd adapter on (1) or off (0) for one `SSL`, from its next
/// pause on. Returns as [`sslasync_CTX_set_fd_callbacks`].
#[no_mangle]
pub unsafe extern "C" fn sslasync_set_fd_callbacks(s: *mut SSL, on: c_int) -> c_int {
    own(c"sslasync_set_fd_callbacks", || {
        if s.is_null() {
            return Err(Error::NullParameter);
        }
        let on = fd_switch(on)?;
        match state::ssl_slot(s) {
            Some(slot) => {
                slot.set_fd_on(on);
                hook::rewire(slot);
            }
            None => {
                state::attach_slot(s, 0, ptr::null_mut(), Some(on)).ok_or(Error::OutOfMemory)?;
                internals::invalidate_slotless_marks();
            }
        }
        stats::api_used();
        Ok(1)
    })
}

/// 1 when the fd adapter serves `s`, else 0 (also for a NULL `s`, with an
/// error queued, and when the shim is inert).
#[no_mangle]
pub unsafe extern "C" fn sslasync_get_fd_callbacks(s: *const SSL) -> c_int {
    own(c"sslasync_get_fd_callbacks", || {
        if s.is_null() {
            return Err(Error::NullParameter);
        }
        let on = state::ssl_slot(s.cast_mut()).map_or(adapter::default_on(), |slot| slot.fd_on());
        Ok(on as c_int)
    })
}

/// The library's version, `SSLASYNC_VERSION` of the header it was built
/// with (NUL-terminated, static).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Copies the counters into `out` (at most `size` bytes, so a caller built
/// against an older, shorter struct stays safe). Returns 1 when counting is
/// on, 0 when it is off (`out` then holds zeros but for the members kept
/// whether or not counting is on) or `out` is NULL (nothing is written and,
/// unlike the OpenSSL functions, no error is queued).
#[no_mangle]
pub unsafe extern "C" fn sslasync_stats_get(out: *mut sslasync_stats, size: size_t) -> c_int {
    std::panic::catch_unwind(|| {
        if out.is_null() {
            return 0;
        }
        let s = stats::snapshot();
        let n = size.min(std::mem::size_of::<sslasync_stats>());
        // SAFETY: the caller provides `size` writable bytes at out; we copy
        // no more than that and no more than the struct holds.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&s as *const sslasync_stats).cast::<u8>(),
                out.cast::<u8>(),
                n,
            )
        };
        s.enabled as c_int
    })
    .unwrap_or(0)
}

/// 1 when the shim gives its protections to the SSLs of this process; 0
/// when it is inert (its self-check failed or `SSLASYNC_DISABLE=1`: every
/// OpenSSL function then behaves exactly as without it), when libssl's job
/// layout turned out not to be one it can trust, or once it saw an SSL
/// whose callback was set past it. A program can log it at start-up.
#[no_mangle]
pub extern "C" fn sslasync_active() -> c_int {
    std::panic::catch_unwind(|| {
        crate::init();
        crate::protecting() as c_int
    })
    .unwrap_or(0)
}

/// The version of the loaded library, e.g. "0.4.0" (compare it with the
/// header's `SSLASYNC_VERSION`). The string is static; never NULL.
#[no_mangle]
pub extern "C" fn sslasync_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn the_version_is_the_package_version() {
        // SAFETY: sslasync_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(super::sslasync_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
