//! The wait-ctx callbacks the shim registers (the trampolines) and what they
//! do when an engine calls one: find the SSL's slot and call the user.
//!
//! The argument an engine hands back is a slot handle, never a pointer, and
//! the slot protocol ([`crate::slots`]) drops a completion whose SSL was
//! freed or whose callback was cleared before the delivery claimed the slot.
//! No shim lock is held and nothing is waited for while the user runs. The
//! user's callback and the trampolines are "C-unwind": when the callback's
//! thread ends inside it (`pthread_exit`, a cancellation), glibc's forced
//! unwind passes through the shim's frames and the claim's guard releases
//! it on the way, at no cost to a callback that returns.

use libc::{c_int, c_void};

use crate::log::debug;
use crate::retire;
use crate::slots::{self, Begin, Leftover, Slot, Target};
use crate::stats;
use crate::sys::SSL;

/// The user's callback as it is called: it may unwind (a thread exit or a
/// cancellation inside it is a forced unwind through the shim's frames).
type UserCallback = unsafe extern "C-unwind" fn(*mut SSL, *mut c_void) -> c_int;

/// The address the job-start hook's fast path compares wait-ctx callbacks
/// with: the plain trampoline (with statistics on, the counting one is
/// registered instead, and every job start takes the checked path anyway).
#[inline(always)]
pub fn trampoline_address() -> usize {
    trampoline as *const () as usize
}

/// Whether `cb` is one of the two trampolines.
#[inline]
pub fn is_trampoline(cb: usize) -> bool {
    cb == trampoline_address() || cb == trampoline_counted as *const () as usize
}

/// The trampoline to register on a wait ctx now.
pub fn current_trampoline() -> unsafe extern "C-unwind" fn(*mut c_void) -> c_int {
    if stats::enabled() {
        trampoline_counted
    } else {
        trampoline
    }
}

/// The callback the shim puts on a wait ctx; `arg` is a slot handle.
pub unsafe extern "C-unwind" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: same contract.
    unsafe { deliver(arg, false) }
}

/// [`trampoline`] with `SSLASYNC_STATS` on, registered instead of it.
unsafe extern "C-unwind" fn trampoline_counted(arg: *mut c_void) -> c_int {
    // SAFETY: same contract.
    unsafe { deliver(arg, true) }
}

/// The fd adapter's trampoline's delivery: an engine calling back for an
/// SSL the adapter serves. Under the claim, `engine_called` tells the
/// adapter (which ends a watch the call made redundant) and says whether
/// the user may be called: not when the adapter already called back for
/// this pause.
///
/// # Safety
/// `handle` is a wait-ctx callback argument (any value: it is checked).
pub unsafe fn deliver_engine_call(handle: *mut c_void, engine_called: fn(&Slot) -> bool) -> c_int {
    let (slot, target) = match claim(handle) {
        Ok(claimed) => claimed,
        Err(r) => return r,
    };
    if !engine_called(slot) {
        settle(slot, slot.end_claim());
        stats::callback_dropped();
        debug!("dropped an engine's callback: the fd adapter called back for that pause");
        return 0;
    }
    if stats::enabled() {
        stats::callback_delivered(slot);
    }
    // SAFETY: the target was read under this thread's claim.
    unsafe { call(slot, target) }
}

/// Calls the user's callback for the slot `handle` names, if it still may.
///
/// # Safety
/// `handle` is a wait-ctx callback argument (any value: it is checked).
#[inline(always)]
unsafe fn deliver(handle: *mut c_void, count: bool) -> c_int {
    let (slot, target) = match claim(handle) {
        Ok(claimed) => claimed,
        Err(r) => return r,
    };
    if count {
        stats::callback_delivered(slot);
    }
    // SAFETY: the target was read under this thread's claim.
    unsafe { call(slot, target) }
}

/// Claims the slot `handle` names for a delivery: its slot and what to
/// call, or (the completion dropped) what the trampoline returns.
#[inline(always)]
fn claim(handle: *mut c_void) -> Result<(&'static Slot, Target), c_int> {
    let Some(slot) = slots::named(handle) else {
        return Err(dropped(true));
    };
    match slot.begin_delivery(handle as usize as u64) {
        Begin::Deliver(t) => Ok((slot, t)),
        Begin::Dropped(left) => {
            settle(slot, left);
            Err(dropped(slot.handle() != handle))
        }
    }
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
    true
}

/// A delivery's claim, ended when the user's callback returns, or when the
/// callback's thread unwinds through this frame (it ended inside it).
struct Claim(&'static Slot);

impl Drop for Claim {
    #[inline(always)]
    fn drop(&mut self) {
        settle(self.0, self.0.end_claim());
    }
}

/// The user's callback, then the end of the claim.
///
/// # Safety
/// `target` was read under the calling thread's claim on `slot`.
#[inline(always)]
unsafe fn call(slot: &'static Slot, target: Target) -> c_int {
    let claim = Claim(slot);
    // SAFETY: callback holds a non-NULL SSL_async_callback_fn stored by a
    // setter for this slot's SSL.
    let user = unsafe { std::mem::transmute::<usize, UserCallback>(target.callback) };
    // SAFETY: the user's C callback with its own SSL and arg, exactly as
    // native OpenSSL calls it. The claim keeps the SSL from being freed
    // (SSL_free leaves that to the last claim), and no shim lock is held.
    let r = unsafe { user(target.ssl, target.arg) };
    drop(claim);
    r
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
