//! The wait-ctx callback the shim registers (the trampoline) and what it
//! does when an engine calls it: find the SSL's slot and call the user.
//!
//! The argument an engine hands back is a slot handle, never a pointer, and
//! the slot protocol ([`crate::slots`]) makes `SSL_free` and a clear wait for
//! a delivery in progress, so the user is never called for a freed SSL or
//! after a clear returned. No shim lock is held while the user runs.

use libc::{c_int, c_void};

use crate::log::debug;
use crate::slots;
use crate::stats;
use crate::sync::current_thread;
use crate::sys::SSL;

/// The address the job-start hook compares wait-ctx callbacks with.
#[inline(always)]
pub fn trampoline_address() -> usize {
    trampoline as *const () as usize
}

/// The callback the shim puts on a wait ctx; `arg` is a slot handle.
pub unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    if stats::enabled() {
        // SAFETY: same contract.
        return unsafe { trampoline_counted(arg) };
    }
    // SAFETY: same contract.
    unsafe { deliver(arg, false) }
}

/// [`trampoline`] with `SSLASYNC_STATS` on, kept out of line so the plain
/// path keeps few registers live across the user's callback.
#[cold]
#[inline(never)]
unsafe extern "C" fn trampoline_counted(arg: *mut c_void) -> c_int {
    // SAFETY: same contract.
    unsafe { deliver(arg, true) }
}

/// Calls the user's callback for the slot `handle` names, if it still may.
///
/// # Safety
/// `handle` is a wait-ctx callback argument (any value: it is checked).
#[inline(always)]
unsafe fn deliver(handle: *mut c_void, count: bool) -> c_int {
    let Some(slot) = slots::named(handle) else {
        return dropped(true);
    };
    let Some((target, claim)) = slot.begin_delivery(handle as usize as u64, current_thread())
    else {
        return dropped(slot.handle() != handle);
    };
    if count {
        stats::callback_delivered(slot);
    }
    // SAFETY: callback holds a non-NULL SSL_async_callback_fn stored by a
    // setter for this slot's SSL.
    let user = unsafe {
        std::mem::transmute::<usize, unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int>(
            target.callback,
        )
    };
    // SAFETY: the user's C callback with its own SSL and arg, exactly as
    // native OpenSSL calls it; the claim keeps SSL_free of that SSL waiting
    // until it returns, and no shim lock is held.
    let r = unsafe { user(target.ssl, target.arg) };
    drop(claim);
    r
}

/// Calls the user for the pause the fd adapter armed under job-start count
/// `seq`; false when it may not (freed, cleared, or a job start of the SSL
/// began since: the application resumed it itself).
///
/// # Safety
/// `handle` and `seq` were recorded from a slot when the pause was armed.
pub unsafe fn deliver_pause(handle: u64, seq: u64) -> bool {
    let Some(slot) = slots::named(handle as usize as *mut c_void) else {
        return false;
    };
    let Some((target, claim)) = slot.begin_pause_delivery(handle, seq, current_thread()) else {
        return false;
    };
    if stats::enabled() {
        stats::callback_delivered(slot);
    }
    // SAFETY: as in `deliver`: a non-NULL SSL_async_callback_fn for this
    // slot's SSL, called with its current arg under the claim, no lock held.
    unsafe {
        let user = std::mem::transmute::<usize, unsafe extern "C" fn(*mut SSL, *mut c_void) -> c_int>(
            target.callback,
        );
        user(target.ssl, target.arg);
    }
    drop(claim);
    true
}

/// A completion nobody may be told about.
#[cold]
#[inline(never)]
fn dropped(freed: bool) -> c_int {
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
