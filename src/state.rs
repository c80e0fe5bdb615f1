//! The shim's state on OpenSSL's own objects: one ex_data index on `SSL_CTX`
//! (callback and arg that `SSL_new` copies) and one on `SSL` (its slot).
//!
//! A CTX gets its small record when it is created, so `SSL_new` on one thread
//! can read it while a setter writes it on another (ex_data itself is not
//! safe to *insert* into concurrently). An SSL gets a slot only when it uses
//! the API or its CTX had a callback or arg at `SSL_new`.

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use libc::{c_int, c_long, c_void};
use parking_lot::Mutex;

use crate::log::debug;
use crate::slots::{self, Slot};
use crate::sys::{self, CRYPTO_EX_DATA, SSL, SSL_CTX};

/// The callback and arg set on an `SSL_CTX`.
#[derive(Default)]
pub struct CtxState {
    pub callback: AtomicUsize,
    pub arg: AtomicPtr<c_void>,
}

static CTX_INDEX: AtomicI32 = AtomicI32::new(-1);
static SSL_INDEX: AtomicI32 = AtomicI32::new(-1);
/// Serializes the rare late creation of a CTX record (for a CTX that existed
/// before the index was registered).
static CTX_LATE: Mutex<()> = Mutex::new(());

/// Registers both ex_data indices; returns false if OpenSSL refused.
pub fn register_indices() -> bool {
    // SAFETY: CRYPTO_get_ex_new_index takes a class number, opaque argl/argp
    // (unused) and optional callbacks whose signatures match CRYPTO_EX_*.
    let ctx = unsafe {
        sys::CRYPTO_get_ex_new_index(
            sys::CRYPTO_EX_INDEX_SSL_CTX,
            0,
            ptr::null_mut(),
            Some(ctx_new),
            None,
            Some(ctx_free),
        )
    };
    // SAFETY: as above.
    let ssl = unsafe {
        sys::CRYPTO_get_ex_new_index(
            sys::CRYPTO_EX_INDEX_SSL,
            0,
            ptr::null_mut(),
            None,
            Some(ssl_dup),
            Some(ssl_free),
        )
    };
    if ctx < 0 || ssl < 0 {
        return false;
    }
    CTX_INDEX.store(ctx, Ordering::Release);
    SSL_INDEX.store(ssl, Ordering::Release);
    debug!("ex_data indices: SSL_CTX {ctx}, SSL {ssl}");
    true
}

unsafe extern "C" fn ctx_new(
    _parent: *mut c_void,
    _ptr: *mut c_void,
    ad: *mut CRYPTO_EX_DATA,
    idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    let _ = std::panic::catch_unwind(|| {
        let rec = Box::into_raw(Box::<CtxState>::default());
        // SAFETY: OpenSSL hands us the new CTX's ex_data and our own index.
        if unsafe { sys::CRYPTO_set_ex_data(ad, idx, rec.cast()) } != 1 {
            // SAFETY: rec came from Box::into_raw just above and was not stored.
            drop(unsafe { Box::from_raw(rec) });
        }
    });
}

unsafe extern "C" fn ctx_free(
    _parent: *mut c_void,
    ptr: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if !ptr.is_null() {
        // SAFETY: the only values stored under our CTX index are boxed CtxStates.
        drop(unsafe { Box::from_raw(ptr.cast::<CtxState>()) });
    }
}

unsafe extern "C" fn ssl_free(
    _parent: *mut c_void,
    ptr: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if !ptr.is_null() {
        // SAFETY: the only values stored under our SSL index are slot
        // pointers, and slots live for 'static.
        slots::release(unsafe { &*ptr.cast::<Slot>() });
    }
}

/// `SSL_dup` copies ex_data pointers verbatim; the copy already got its own
/// slot from `SSL_new` (the CTX's values, as natively), so keep that one
/// instead of sharing the source's.
unsafe extern "C" fn ssl_dup(
    to: *mut CRYPTO_EX_DATA,
    _from: *const CRYPTO_EX_DATA,
    from_d: *mut *mut c_void,
    idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) -> c_int {
    if !from_d.is_null() {
        // SAFETY: `to` is the new SSL's ex_data and from_d points at the
        // value OpenSSL is about to store there.
        unsafe { *from_d = sys::CRYPTO_get_ex_data(to, idx) };
    }
    1
}

/// The CTX's record, created now if the CTX predates the shim's index.
pub fn ctx_state(ctx: *mut SSL_CTX, create: bool) -> Option<&'static CtxState> {
    let idx = CTX_INDEX.load(Ordering::Acquire);
    if idx < 0 {
        return None;
    }
    // SAFETY: ctx is a live SSL_CTX (checked non-NULL by the caller) and idx
    // is our registered index.
    let p = unsafe { sys::SSL_CTX_get_ex_data(ctx, idx) }.cast::<CtxState>();
    if !p.is_null() {
        // SAFETY: only ctx_free releases it, when the CTX itself goes away.
        return Some(unsafe { &*p });
    }
    if !create {
        return None;
    }
    let _guard = CTX_LATE.lock();
    // SAFETY: as above; re-read under the lock so two setters agree.
    let p = unsafe { sys::SSL_CTX_get_ex_data(ctx, idx) }.cast::<CtxState>();
    if !p.is_null() {
        // SAFETY: as above.
        return Some(unsafe { &*p });
    }
    let rec = Box::into_raw(Box::<CtxState>::default());
    // SAFETY: ctx is live; on failure we still own rec.
    if unsafe { sys::SSL_CTX_set_ex_data(ctx, idx, rec.cast()) } != 1 {
        // SAFETY: rec was not stored, so it is still exclusively ours.
        drop(unsafe { Box::from_raw(rec) });
        return None;
    }
    debug!("late CTX record for a CTX created before sslasync initialised");
    // SAFETY: stored in ex_data; freed only by ctx_free.
    Some(unsafe { &*rec })
}

/// The SSL's slot, if it has one.
#[inline]
pub fn ssl_slot(ssl: *mut SSL) -> Option<&'static Slot> {
    let idx = SSL_INDEX.load(Ordering::Relaxed);
    if idx < 0 {
        return None;
    }
    // SAFETY: ssl is a live SSL and idx our registered index.
    let p = unsafe { sys::SSL_get_ex_data(ssl, idx) }.cast::<Slot>();
    // SAFETY: non-NULL values under our index are 'static slots.
    unsafe { p.as_ref() }
}

/// Gives `ssl` a slot holding `callback` and `arg`.
pub fn attach_slot(ssl: *mut SSL, callback: usize, arg: *mut c_void) -> Option<&'static Slot> {
    let idx = SSL_INDEX.load(Ordering::Relaxed);
    if idx < 0 {
        return None;
    }
    let slot = slots::acquire(ssl, callback, arg)?;
    // SAFETY: ssl is live and owned by the calling thread, per OpenSSL's
    // threading rules for a single SSL object.
    if unsafe { sys::SSL_set_ex_data(ssl, idx, (slot as *const Slot).cast_mut().cast()) } != 1 {
        slots::release(slot);
        return None;
    }
    Some(slot)
}
