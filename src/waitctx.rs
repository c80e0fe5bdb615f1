//! An `ASYNC_WAIT_CTX`'s callback, status and fds through OpenSSL's API, the
//! same calls on every version: 1.1.1's wait ctx has neither callback nor
//! status (there the callback half is absent and the shim keeps the status).

use libc::{c_int, c_void};

use crate::sys::{self, ASYNC_WAIT_CTX};

/// A wait-ctx callback as the API stores it.
#[cfg(not(sslasync_ossl111))]
pub type Callback = sys::ASYNC_callback_fn;
#[cfg(sslasync_ossl111)]
pub type Callback = Option<unsafe extern "C" fn(*mut c_void) -> c_int>;

/// One of the shim's trampolines as the wait ctx stores it. They are
/// declared "C-unwind" (a thread may end inside the user's callback they
/// call); OpenSSL's C type cannot say so, and the call is the same.
pub fn as_callback(
    t: unsafe extern "C-unwind" fn(*mut c_void) -> c_int,
) -> unsafe extern "C" fn(*mut c_void) -> c_int {
    // SAFETY: the same C calling convention; only the unwinding annotation
    // differs, and glibc's forced unwind needs no more than unwind tables.
    unsafe {
        std::mem::transmute::<
            unsafe extern "C-unwind" fn(*mut c_void) -> c_int,
            unsafe extern "C" fn(*mut c_void) -> c_int,
        >(t)
    }
}

/// Whether this OpenSSL's wait ctx can carry a callback at all.
pub const HAS_CALLBACK: bool = cfg!(not(sslasync_ossl111));

/// The callback and argument on `wctx`, if one is set.
///
/// # Safety
/// `wctx` is a live wait ctx.
#[inline]
pub unsafe fn callback(wctx: *mut ASYNC_WAIT_CTX) -> Option<(usize, *mut c_void)> {
    #[cfg(not(sslasync_ossl111))]
    {
        let mut cb: sys::ASYNC_callback_fn = None;
        let mut arg: *mut c_void = std::ptr::null_mut();
        // SAFETY: wctx is live; get_callback only writes the two out-params.
        let has = unsafe { sys::ASYNC_WAIT_CTX_get_callback(wctx, &mut cb, &mut arg) } == 1;
        has.then(|| (cb.map_or(0, |f| f as usize), arg))
    }
    #[cfg(sslasync_ossl111)]
    {
        let _ = wctx;
        None
    }
}

/// Sets (or with `None` clears) `wctx`'s callback; nothing on 1.1.1.
///
/// # Safety
/// `wctx` is a live wait ctx.
#[inline]
pub unsafe fn set_callback(wctx: *mut ASYNC_WAIT_CTX, cb: Callback, arg: *mut c_void) {
    #[cfg(not(sslasync_ossl111))]
    // SAFETY: wctx is live; set_callback stores the pair.
    unsafe {
        sys::ASYNC_WAIT_CTX_set_callback(wctx, cb, arg);
    }
    #[cfg(sslasync_ossl111)]
    let _ = (wctx, cb, arg);
}

/// The status an engine left on `wctx` (`ASYNC_STATUS_UNSUPPORTED` on 1.1.1).
///
/// # Safety
/// `wctx` is a live wait ctx.
#[inline]
pub unsafe fn status(wctx: *mut ASYNC_WAIT_CTX) -> c_int {
    #[cfg(not(sslasync_ossl111))]
    // SAFETY: wctx is live.
    return unsafe { sys::ASYNC_WAIT_CTX_get_status(wctx) };
    #[cfg(sslasync_ossl111)]
    {
        let _ = wctx;
        sys::ASYNC_STATUS_UNSUPPORTED
    }
}

/// Writes `wctx`'s status (nothing on 1.1.1, where the slot holds it).
///
/// # Safety
/// `wctx` is a live wait ctx.
#[inline]
pub unsafe fn set_status(wctx: *mut ASYNC_WAIT_CTX, status: c_int) {
    #[cfg(not(sslasync_ossl111))]
    // SAFETY: wctx is live.
    unsafe {
        sys::ASYNC_WAIT_CTX_set_status(wctx, status);
    }
    #[cfg(sslasync_ossl111)]
    let _ = (wctx, status);
}

/// Copies up to `out.len()` of the fds registered on `wctx` into `out`;
/// returns how many there are in all (0 when none or on error).
///
/// # Safety
/// `wctx` is a live wait ctx.
pub unsafe fn fds(wctx: *mut ASYNC_WAIT_CTX, out: &mut [c_int]) -> usize {
    let mut n: usize = 0;
    // SAFETY: a NULL array asks only for the count.
    if unsafe { sys::ASYNC_WAIT_CTX_get_all_fds(wctx, std::ptr::null_mut(), &mut n) } != 1 || n == 0
    {
        return 0;
    }
    if n <= out.len() {
        let mut got = n;
        // SAFETY: out has room for n fds, which is what the count said.
        if unsafe { sys::ASYNC_WAIT_CTX_get_all_fds(wctx, out.as_mut_ptr(), &mut got) } != 1 {
            return 0;
        }
    }
    n
}
