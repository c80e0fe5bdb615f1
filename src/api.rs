//! The shim's own C functions, declared in `sslasync.h` (not OpenSSL's):
//! the statistics reader, the active/inert answer and the version.

use libc::{c_char, c_int, size_t};

use crate::stats::{self, sslasync_stats};

/// The library's version, `SSLASYNC_VERSION` of the header it was built
/// with (NUL-terminated, static).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Copies the counters into `out` (at most `size` bytes, so a caller built
/// against an older, shorter struct stays safe). Returns 1 when counting is
/// on, 0 when it is off (`out` then zeroed) or `out` is NULL (nothing is
/// written and, unlike the OpenSSL functions, no error is queued).
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

/// 1 when the shim is active in this process, 0 when it is inert (its
/// self-check failed or `SSLASYNC_DISABLE=1`: every OpenSSL function then
/// behaves exactly as without it). A program can log it at start-up.
#[no_mangle]
pub extern "C" fn sslasync_active() -> c_int {
    std::panic::catch_unwind(|| {
        crate::init();
        crate::active() as c_int
    })
    .unwrap_or(0)
}

/// The version of the loaded library, e.g. "0.2.0" (compare it with the
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
