//! The shim's state on OpenSSL's own objects: one ex_data index on `SSL_CTX`
//! (the callback, arg and fd-adapter choice `SSL_new` copies) and one on
//! `SSL` (its slot).
//!
//! A CTX created after the shim initialised gets its record from the ex_data
//! constructor, so the record exists before any thread can use the CTX and
//! ex_data is never written afterwards (OpenSSL's ex_data is not safe to
//! insert into while another thread reads it). A CTX created earlier (by
//! another library's constructor) gets its record in a side table instead.
//! An SSL gets a slot only when it uses the API or its CTX had a callback,
//! an arg or an fd-adapter choice at `SSL_new`.

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use libc::{c_int, c_long, c_void};

use crate::adapter;
use crate::free;
use crate::gate;
use crate::internals;
use crate::log::debug;
use crate::retire;
use crate::slots::{self, Slot};
use crate::sync::Lock;
use crate::sys::{self, CRYPTO_EX_DATA, SSL, SSL_CTX};

/// The callback and arg set on an `SSL_CTX`, and its fd-adapter choice.
#[derive(Default)]
pub struct CtxState {
    pub callback: AtomicUsize,
    pub arg: AtomicPtr<c_void>,
    /// [`FD_DEFAULT`], [`FD_OFF`] or [`FD_ON`].
    pub fd_callbacks: AtomicUsize,
}

/// A CTX's fd-adapter choice: none (the process default), off, on.
pub const FD_DEFAULT: usize = 0;
pub const FD_OFF: usize = 1;
pub const FD_ON: usize = 2;

static CTX_INDEX: AtomicI32 = AtomicI32::new(-1);
static SSL_INDEX: AtomicI32 = AtomicI32::new(-1);

/// Records of CTXs that predate the CTX index: (CTX address, record).
/// Freed with their CTX (ex_data free functions run for every index).
static EARLY: Lock<Vec<(usize, &'static CtxState)>> = Lock::new(Vec::new());
static EARLY_LEN: AtomicUsize = AtomicUsize::new(0);

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
        // Out of memory, the CTX gets its record in the side table when a
        // setter first needs it (or that setter fails).
        let Some(rec) = new_record() else {
            return;
        };
        // SAFETY: OpenSSL hands us the new CTX's ex_data and our own index;
        // the CTX is not yet visible to any other thread.
        if unsafe { sys::CRYPTO_set_ex_data(ad, idx, rec.cast()) } != 1 {
            // SAFETY: rec came from new_record just above and was not stored.
            unsafe { free_record(rec) };
        }
    });
}

unsafe extern "C" fn ctx_free(
    parent: *mut c_void,
    ptr: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    let rec = if ptr.is_null() {
        take_early(parent as usize)
    } else {
        ptr.cast::<CtxState>()
    };
    if !rec.is_null() {
        // SAFETY: the only values stored under our CTX index, and in EARLY,
        // come from new_record; the CTX that owned this one is being freed.
        unsafe { free_record(rec) };
    }
}

/// A zeroed CTX record, or None when memory is short (never an abort).
fn new_record() -> Option<*mut CtxState> {
    let layout = std::alloc::Layout::new::<CtxState>();
    // SAFETY: a non-zero-sized layout; all-zero bytes are a valid CtxState
    // (three atomics, 0 = none).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<CtxState>();
    (!p.is_null()).then_some(p)
}

/// Frees a record from [`new_record`].
///
/// # Safety
/// `rec` came from `new_record` and nothing refers to it any more.
unsafe fn free_record(rec: *mut CtxState) {
    // SAFETY: the caller's contract; CtxState has no destructor.
    unsafe { std::alloc::dealloc(rec.cast(), std::alloc::Layout::new::<CtxState>()) };
}

/// Removes a pre-index CTX's record from the side table.
fn take_early(ctx: usize) -> *mut CtxState {
    if EARLY_LEN.load(Ordering::Acquire) == 0 {
        return ptr::null_mut();
    }
    let mut early = EARLY.lock();
    match early.iter().position(|&(c, _)| c == ctx) {
        Some(i) => {
            EARLY_LEN.fetch_sub(1, Ordering::Release);
            (early.swap_remove(i).1 as *const CtxState).cast_mut()
        }
        None => ptr::null_mut(),
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
        let slot = unsafe { &*ptr.cast::<Slot>() };
        // OpenSSL calls this; nothing may unwind into it.
        let _ = std::panic::catch_unwind(|| free::ex_data_freed(slot));
    }
}

#[cfg(not(sslasync_ossl111))]
type DupData = *mut *mut c_void;
#[cfg(sslasync_ossl111)]
type DupData = *mut c_void;

/// `SSL_dup` copies ex_data pointers verbatim; the copy already got its own
/// slot from `SSL_new` (the CTX's values, as natively), so keep that one
/// instead of sharing the source's.
unsafe extern "C" fn ssl_dup(
    to: *mut CRYPTO_EX_DATA,
    _from: *const CRYPTO_EX_DATA,
    from_d: DupData,
    idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) -> c_int {
    // OpenSSL 1.1.1 declares it `void *`; it points at the value all the same.
    #[allow(clippy::unnecessary_cast)]
    let from_d = from_d as *mut *mut c_void;
    if !from_d.is_null() {
        // SAFETY: `to` is the new SSL's ex_data and from_d points at the
        // value OpenSSL is about to store there.
        unsafe { *from_d = sys::CRYPTO_get_ex_data(to, idx) };
    }
    1
}

/// The CTX's record; with `create`, one is made for a CTX that predates
/// the shim's index (in the side table: its ex_data is never written).
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
    if EARLY_LEN.load(Ordering::Acquire) == 0 && !create {
        return None;
    }
    let mut early = EARLY.lock();
    if let Some(&(_, rec)) = early.iter().find(|&&(c, _)| c == ctx as usize) {
        return Some(rec); // boxed in EARLY until ctx_free of this CTX
    }
    if !create || early.try_reserve(1).is_err() {
        return None;
    }
    // Kept until ctx_free of this CTX takes it back out of EARLY.
    // SAFETY: a fresh record, owned by EARLY from here on.
    let rec: &'static CtxState = unsafe { &*new_record()? };
    early.push((ctx as usize, rec));
    EARLY_LEN.fetch_add(1, Ordering::Release);
    debug!("side-table record for a CTX created before sslasync initialised");
    Some(rec)
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

/// Gives `ssl` a slot holding `callback` and `arg`, and the fd-adapter
/// setting `fd_on` (the process default for an SSL whose CTX never chose:
/// one that did gave the SSL a slot at `SSL_new`).
pub fn attach_slot(
    ssl: *mut SSL,
    callback: usize,
    arg: *mut c_void,
    fd_on: Option<bool>,
) -> Option<&'static Slot> {
    let idx = SSL_INDEX.load(Ordering::Relaxed);
    if idx < 0 {
        return None;
    }
    let fd_on = fd_on.unwrap_or_else(adapter::default_on);
    let slot = slots::acquire(ssl, callback, arg, fd_on)?;
    // SAFETY: ssl is live and owned by the calling thread, per OpenSSL's
    // threading rules for a single SSL object.
    if unsafe { sys::SSL_set_ex_data(ssl, idx, (slot as *const Slot).cast_mut().cast()) } != 1 {
        // Never handed out: no claim can exist, so it is released now.
        if slot.retire_for_free() {
            slots::release(slot);
        }
        return None;
    }
    gate::hold(true);
    retire::first_record();
    internals::note_candidate(ssl);
    Some(slot)
}

/// Whether `ssl` has a wait ctx yet (libssl creates it at the SSL's first
/// async job): `SSL_get_all_async_fds` fails until then.
pub fn has_wait_ctx(ssl: *mut SSL) -> bool {
    let mut n: usize = 0;
    // SAFETY: ssl is a live SSL; a NULL array asks only for the count.
    unsafe { sys::SSL_get_all_async_fds(ssl, ptr::null_mut(), &mut n) == 1 }
}

/// Copies the CTX's callback, arg and fd-adapter choice into a new SSL, as
/// native `SSL_new` copies the first two (after ex_data construction, so it
/// reflects the CTX right now).
pub fn inherit(ssl: *mut SSL, ctx: *mut SSL_CTX) {
    let Some(cs) = ctx_state(ctx, false) else {
        return;
    };
    let cb = cs.callback.load(Ordering::Acquire);
    let arg = cs.arg.load(Ordering::Acquire);
    let fd_on = match cs.fd_callbacks.load(Ordering::Acquire) {
        FD_DEFAULT => None,
        FD_OFF => Some(false),
        _ => Some(true),
    };
    if (cb != 0 || !arg.is_null() || fd_on.is_some()) && attach_slot(ssl, cb, arg, fd_on).is_none()
    {
        debug!("no slot for a new SSL: it keeps OpenSSL's own wiring");
        if cb != 0 {
            crate::unprotected(format_args!(
                "no memory for a new SSL's record: it keeps its CTX's callback natively"
            ));
        }
    }
}

/// fork(): hold the side table across it.
pub fn before_fork() {
    EARLY.hold_across_fork();
}

/// fork() in the parent: release the side table.
pub fn after_fork_parent() {
    // SAFETY: before_fork took it on this thread.
    unsafe { EARLY.release_after_fork() };
}

/// fork() in the child: the side table is free again.
pub fn after_fork_child() {
    // SAFETY: before_fork took it on this thread.
    unsafe { EARLY.reset_in_child() };
}
