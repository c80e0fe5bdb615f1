//! The end of a record whose SSL is going: the real `SSL_free` that a free
//! left to the last running callback, and the record's return to the pool.

use crate::gate;
use crate::log::debug;
use crate::real;
use crate::slots::{self, Leftover, Slot};

/// Does what the last claim of a retired record was left.
pub fn leftover(slot: &'static Slot, left: Leftover) {
    let _ = std::panic::catch_unwind(|| match left {
        Leftover::Nothing => {}
        Leftover::FreeSsl(ssl) => {
            if let Some(real) = real::SSL_free() {
                debug!("the callback returned: its deferred SSL_free runs");
                // SAFETY: the application's last reference, which its
                // SSL_free left to this claim; the record is retired.
                unsafe { real(ssl) };
            }
            release(slot);
        }
        Leftover::Release => release(slot),
    });
}

/// The record goes back to the free list; the SSL no longer needs the
/// job-start hook.
pub fn release(slot: &'static Slot) {
    slots::release(slot);
    gate::hold(false);
}
