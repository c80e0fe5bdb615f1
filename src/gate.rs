//! Whether the job-start hook must look at job starts at all: a count of
//! reasons (SSLs holding a slot, counting statistics).
//!
//! Zero, which is every inert shim and every process where no SSL uses the
//! API, lets `ASYNC_start_job` forward after one load.

use std::sync::atomic::{AtomicUsize, Ordering};

static REASONS: AtomicUsize = AtomicUsize::new(0);

/// Whether any reason is present.
#[inline(always)]
pub fn open() -> bool {
    REASONS.load(Ordering::Relaxed) != 0
}

/// Adds (`true`) or removes (`false`) one reason.
pub fn hold(on: bool) {
    if on {
        REASONS.fetch_add(1, Ordering::Relaxed);
    } else {
        REASONS.fetch_sub(1, Ordering::Relaxed);
    }
}
