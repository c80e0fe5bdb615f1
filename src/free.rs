//! `SSL_free` of an SSL that uses the API, and the end of its record: no
//! callback of it starts afterwards, and none is waited for.
//!
//! The last `SSL_free` of such an SSL (the shim knows it is the last from
//! the reference count, see `internals`) retires the record at once. When a
//! callback of the SSL is running (on another thread, or the one freeing it
//! from inside that callback), the real free is left to the callback's end,
//! on its thread, so its `SSL*` stays valid until it returns. A free the
//! shim does not see (libssl freeing an SSL internally past the interposer)
//! is caught by the ex_data free callback.

use crate::adapter;
use crate::internals::{self, RefDrop};
use crate::log::debug;
use crate::real;
use crate::retire::release;
use crate::slots::Slot;
use crate::stats;
use crate::sys::SSL;

/// The real `SSL_free`'s type.
pub type RealFree = unsafe extern "C" fn(*mut SSL);

/// The shim's `SSL_free` of `s`, which has `slot`.
///
/// # Safety
/// `s` is a live SSL the caller owns one reference of; `real` is the real
/// `SSL_free`.
pub unsafe fn free_ssl(real: RealFree, s: *mut SSL, slot: &'static Slot) {
    match internals::drop_reference(s) {
        // Another reference keeps the SSL: dropped, as the real SSL_free
        // would (the decision and the decrement in one step).
        RefDrop::NotLast => return,
        // The count's place is unknown: the final free retires the record
        // from its ex_data callback.
        // SAFETY: the caller's argument, unchanged.
        RefDrop::Unknown => return unsafe { real(s) },
        RefDrop::Last => {}
    }
    internals::forget_candidate(s);
    adapter::forget(slot);
    if slot.retire_for_free() {
        // SAFETY: the caller's last reference; the record is retired, so its
        // ex_data callback leaves it alone.
        unsafe { real(s) };
        release(slot);
    } else {
        stats::free_deferred();
        debug!("SSL_free while its callback runs: freed when that returns");
    }
}

/// The SSL's ex_data is being freed: the SSL is really going away. When the
/// shim's `SSL_free` retired the record it releases it too; otherwise the
/// SSL was freed past the shim, and this is where its record ends (a
/// callback running then keeps a dangling `SSL*`, as natively).
pub fn ex_data_freed(slot: &'static Slot) {
    if slot.retired() {
        return;
    }
    internals::forget_candidate(slot.ssl.load(std::sync::atomic::Ordering::Acquire));
    adapter::forget(slot);
    if slot.retire_behind() {
        release(slot);
    }
}

/// Measures where an SSL's reference count lives, on `s` (fresh from
/// `SSL_new`, or starting a job on its owner's thread), until found (see
/// `internals`).
///
/// # Safety
/// `s` is a live SSL the calling thread owns.
pub unsafe fn probe_references(s: *mut SSL) {
    if !internals::references_probe_due() {
        return;
    }
    let Some(real_free) = real::SSL_free() else {
        return;
    };
    if real::is_quic(s) {
        return; // only a TLS connection object is known to reach &ssl->job
    }
    // SAFETY: the caller's contract; the real SSL_up_ref and SSL_free.
    unsafe { internals::probe_references(s, crate::sys::SSL_up_ref, real_free) };
}
