//! The wait-ctx callback the shim registers (the trampoline) and what it
//! does when an engine calls it: find the SSL's slot and call the user.
//!
//! The argument an engine hands back is a slot handle, never a pointer, and
//! the slot protocol ([`crate::slots`]) drops a completion whose SSL was
//! freed or whose callback was cleared before the delivery claimed the slot.
//! No shim lock is held and nothing is waited for while the user runs. The
//! frames from the trampoline to the user's callback hold no destructor, so
//! a thread that ends inside the callback (`pthread_exit`, cancellation) or
//! `longjmp`s out of it passes them; a glibc cleanup handler then ends the
//! delivery's claim ([`crate::unwind`]).

use libc::{c_int, c_void};

use crate::retire;
use crate::log::debug;
use crate::slots::{self, Begin, Leftover, Slot, Target};
use crate::stats;
use crate::sys::SSL;
use crate::unwind;

/// The user's callback as it is called: it may unwind (a thread exit or a
/// cancellation inside it is a forced unwind through the shim's frames).
type UserCallback = unsafe extern "C-unwind" fn(*mut SSL, *mut c_void) -> c_int;

/// The address the job-start hook compares wait-ctx callbacks with.
#[inline(always)]
pub fn trampoline_address() -> usize {
    trampoline as *const () as usize
}

/// The callback the shim puts on a wait ctx; `arg` is a slot handle.
pub unsafe extern "C-unwind" fn trampoline(arg: *mut c_void) -> c_int {
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
unsafe extern "C-unwind" fn trampoline_counted(arg: *mut c_void) -> c_int {
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
    let target = match slot.begin_delivery(handle as usize as u64) {
        Begin::Deliver(t) => t,
        Begin::Dropped(left) => {
            settle(slot, left);
            return dropped(slot.handle() != handle);
        }
    };
    if count {
        stats::callback_delivered(slot);
    }
    // SAFETY: the target was read under this thread's claim.
    let r = unsafe { call(slot, target) };
    settle(slot, slot.end_claim());
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
    let target = match slot.begin_pause_delivery(handle, seq) {
        Begin::Deliver(t) => t,
        Begin::Dropped(left) => {
            settle(slot, left);
            return false;
        }
    };
    if stats::enabled() {
        stats::callback_delivered(slot);
    }
    // SAFETY: the target was read under this thread's claim.
    unsafe { call(slot, target) };
    settle(slot, slot.end_claim());
    true
}

/// The user's callback, with the claim's cleanup handler registered around
/// it. A plain old frame: nothing here needs dropping if it is unwound.
///
/// # Safety
/// `target` was read under the calling thread's claim on `slot`.
#[inline(always)]
unsafe fn call(slot: &'static Slot, target: Target) -> c_int {
    // SAFETY: callback holds a non-NULL SSL_async_callback_fn stored by a
    // setter for this slot's SSL.
    let user = unsafe { std::mem::transmute::<usize, UserCallback>(target.callback) };
    let slot_arg = (slot as *const Slot).cast_mut().cast::<c_void>();
    // SAFETY: the user's C callback with its own SSL and arg, exactly as
    // native OpenSSL calls it. The claim keeps the SSL from being freed
    // (SSL_free leaves that to the last claim), and no shim lock is held.
    unwind::guarded(claim_abandoned, slot_arg, || unsafe {
        user(target.ssl, target.arg)
    })
}

/// glibc's cleanup handler for a callback its thread never returned from
/// (it ended inside it, or `longjmp`ed out): end the delivery's claim.
unsafe extern "C" fn claim_abandoned(arg: *mut c_void) {
    // SAFETY: arg is the 'static slot `call` registered.
    let slot = unsafe { &*arg.cast::<Slot>() };
    let _ = std::panic::catch_unwind(|| {
        debug!("a callback's thread left it without returning: its claim ends");
        settle(slot, slot.end_claim());
    });
}

/// How many of `slot`'s claims are the calling thread's own (callbacks of
/// that SSL it is inside).
pub fn own_claims(slot: &Slot) -> u64 {
    let arg = (slot as *const Slot).cast_mut().cast::<c_void>();
    unwind::registered(claim_abandoned, arg) as u64
}

/// Does what ending a claim left to this thread (a deferred free).
#[inline(always)]
fn settle(slot: &'static Slot, left: Leftover) {
    if left != Leftover::Nothing {
        retire::leftover(slot, left);
    }
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
