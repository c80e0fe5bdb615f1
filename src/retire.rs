//! The end of a record whose SSL is going: the real `SSL_free` that a free
//! left to the last running callback, and the record's return to the pool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use crate::gate;
use crate::log::debug;
use crate::real;
use crate::slots::{self, Leftover, Slot};

/// Set once the process exits: OpenSSL's own exit handler is about to tear
/// the library down, and a deferred free must not run after it.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Deferred frees running now.
static FREEING: AtomicUsize = AtomicUsize::new(0);
static AT_EXIT: Once = Once::new();

/// Does what the last claim of a retired record was left.
pub fn leftover(slot: &'static Slot, left: Leftover) {
    let _ = std::panic::catch_unwind(|| match left {
        Leftover::Nothing => {}
        Leftover::FreeSsl(ssl) => {
            deferred_free(ssl);
            release(slot);
        }
        Leftover::Release => release(slot),
    });
}

/// Called when an SSL gets a record: registers the exit handler below, long
/// after OpenSSL registered its own (an SSL exists), so it runs before
/// OpenSSL's, and before any free can be deferred.
pub fn first_record() {
    AT_EXIT.call_once(|| {
        extern "C" fn exiting() {
            at_exit();
        }
        // SAFETY: a plain extern "C" fn with no arguments.
        unsafe { libc::atexit(exiting) };
    });
}

/// The real `SSL_free` an application's `SSL_free` left to a callback. Not
/// once the process is exiting (OpenSSL's exit handler may already have
/// run): the SSL is then left, as everything is at exit. With cancellation
/// held off: the free closes the SSL's socket, a cancellation point, and
/// its thread's callback may just have asked for its own cancellation.
fn deferred_free(ssl: *mut crate::sys::SSL) {
    let _quiet = crate::thread::NoCancel::new();
    FREEING.fetch_add(1, Ordering::SeqCst);
    if !EXITING.load(Ordering::SeqCst) {
        if let Some(real) = real::SSL_free() {
            debug!("the callback returned: its deferred SSL_free runs");
            // SAFETY: the application's last reference, which its SSL_free
            // left to this claim; the record is retired.
            unsafe { real(ssl) };
        }
    }
    FREEING.fetch_sub(1, Ordering::SeqCst);
}

/// At exit: no deferred free starts any more, and one running on another
/// thread is given a moment to finish before OpenSSL goes (bounded: the
/// exit never hangs on it).
fn at_exit() {
    let _quiet = crate::thread::NoCancel::new(); // sleeping is a cancellation point
    EXITING.store(true, Ordering::SeqCst);
    for _ in 0..1000 {
        if FREEING.load(Ordering::SeqCst) == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The record goes back to the free list; the SSL no longer needs the
/// job-start hook.
pub fn release(slot: &'static Slot) {
    slots::release(slot);
    gate::hold(false);
}

/// fork() in the child: frees running on the parent's other threads are
/// not running here.
pub fn after_fork_child() {
    FREEING.store(0, Ordering::SeqCst);
}
