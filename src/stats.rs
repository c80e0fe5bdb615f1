//! Optional process-wide counters (`SSLASYNC_STATS=1`): callbacks delivered
//! and dropped, pauses, statuses, late registrations and a latency histogram.
//!
//! Off by default, when each hook costs one relaxed load of a flag. On, they
//! are relaxed atomic increments; the report goes to stderr at exit and the
//! same numbers are readable from C through `sslasync_stats_get`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use libc::{c_int, size_t};

use crate::slots::Slot;

/// Number of latency buckets: bucket `i` counts latencies below `2^i` microseconds
/// (bucket 0: under 1 microsecond); the last one also takes everything longer.
pub const SSLASYNC_LATENCY_BUCKETS: usize = 24;

/// The counters, as `sslasync_stats_get` copies them out.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sslasync_stats {
    /// Whether counting is on (`SSLASYNC_STATS=1`); all else is 0 when off.
    pub enabled: u64,
    /// Completions handed to the application's callback.
    pub callbacks_delivered: u64,
    /// Completions dropped: their SSL was freed, or it has no callback.
    pub callbacks_dropped: u64,
    /// Async jobs started by libssl that paused.
    pub pauses: u64,
    /// Wait-ctx status seen at those pauses: `ASYNC_STATUS_OK`.
    pub status_ok: u64,
    /// ... `ASYNC_STATUS_EAGAIN` (the engine asked for a re-drive).
    pub status_eagain: u64,
    /// ... `ASYNC_STATUS_ERR`.
    pub status_err: u64,
    /// Callbacks wired where native OpenSSL would not have (set after the
    /// SSL's first job, or set again after being cleared).
    pub late_registrations: u64,
    /// Delivery latency from the job start that paused to the callback.
    pub latency_us_log2: [u64; SSLASYNC_LATENCY_BUCKETS],
}

static ENABLED: AtomicBool = AtomicBool::new(false);

struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    pauses: AtomicU64,
    ok: AtomicU64,
    eagain: AtomicU64,
    err: AtomicU64,
    late: AtomicU64,
    latency: [AtomicU64; SSLASYNC_LATENCY_BUCKETS],
}

static C: Counters = Counters {
    delivered: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    pauses: AtomicU64::new(0),
    ok: AtomicU64::new(0),
    eagain: AtomicU64::new(0),
    err: AtomicU64::new(0),
    late: AtomicU64::new(0),
    latency: [const { AtomicU64::new(0) }; SSLASYNC_LATENCY_BUCKETS],
};

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub fn init_from_env() {
    if std::env::var_os("SSLASYNC_STATS").is_some_and(|v| v != "0" && !v.is_empty()) {
        EPOCH.get_or_init(Instant::now);
        ENABLED.store(true, Ordering::Relaxed);
        // Counting needs every job start: a permanent count keeps the
        // job-start hook off its early exit.
        crate::slots::LIVE.fetch_add(1, Ordering::Relaxed);
        extern "C" fn at_exit() {
            let _ = std::panic::catch_unwind(report);
        }
        // SAFETY: at_exit is a plain extern "C" fn with no arguments.
        unsafe { libc::atexit(at_exit) };
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn callback_dropped() {
    if enabled() {
        bump(&C.dropped);
    }
}

pub fn late_registration() {
    if enabled() {
        bump(&C.late);
    }
}

/// A callback is about to be delivered (only called while counting).
pub fn callback_delivered(slot: &Slot) {
    bump(&C.delivered);
    let start = slot.started_ns.load(Ordering::Relaxed);
    if start != 0 {
        let us = now_ns().saturating_sub(start) / 1000;
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        bump(&C.latency[bucket.min(SSLASYNC_LATENCY_BUCKETS - 1)]);
    }
}

/// Before a libssl job (re)starts: remember when, for the latency histogram.
pub fn job_starting(slot: Option<&Slot>) {
    if let Some(s) = slot {
        s.started_ns.store(now_ns(), Ordering::Relaxed);
    }
}

/// After a libssl job returned: count a pause and the status it left.
pub fn job_returned(result: c_int, status: c_int) {
    if result != crate::sys::ASYNC_PAUSE {
        return;
    }
    bump(&C.pauses);
    match status {
        crate::sys::ASYNC_STATUS_OK => bump(&C.ok),
        crate::sys::ASYNC_STATUS_EAGAIN => bump(&C.eagain),
        crate::sys::ASYNC_STATUS_ERR => bump(&C.err),
        _ => {}
    }
}

/// A consistent-enough copy of the counters (each read is atomic).
pub fn snapshot() -> sslasync_stats {
    let mut s = sslasync_stats {
        enabled: enabled() as u64,
        ..Default::default()
    };
    if s.enabled == 0 {
        return s;
    }
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    s.callbacks_delivered = r(&C.delivered);
    s.callbacks_dropped = r(&C.dropped);
    s.pauses = r(&C.pauses);
    s.status_ok = r(&C.ok);
    s.status_eagain = r(&C.eagain);
    s.status_err = r(&C.err);
    s.late_registrations = r(&C.late);
    for (out, c) in s.latency_us_log2.iter_mut().zip(C.latency.iter()) {
        *out = r(c);
    }
    s
}

fn report() {
    let s = snapshot();
    let mut lat = String::new();
    for (i, n) in s
        .latency_us_log2
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
    {
        lat.push_str(&format!(" <{}us:{}", 1u64 << i, n));
    }
    eprintln!(
        "sslasync stats: callbacks delivered={} dropped={} pauses={} status ok={} eagain={} err={} \
         late_registrations={}\nsslasync stats: pause-to-callback latency{}",
        s.callbacks_delivered,
        s.callbacks_dropped,
        s.pauses,
        s.status_ok,
        s.status_eagain,
        s.status_err,
        s.late_registrations,
        if lat.is_empty() { " (none)".to_string() } else { lat }
    );
}

/// Copies the counters into `out` (at most `size` bytes, so a caller built
/// against an older, shorter struct stays safe). Returns 1 when counting is
/// on, 0 when it is off (`out` then zeroed) or `out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn sslasync_stats_get(out: *mut sslasync_stats, size: size_t) -> c_int {
    std::panic::catch_unwind(|| {
        if out.is_null() {
            return 0;
        }
        let s = snapshot();
        let n = size.min(std::mem::size_of::<sslasync_stats>());
        // SAFETY: the caller provides `size` writable bytes at out; we copy
        // no more than that and no more than the struct holds.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&s as *const sslasync_stats).cast::<u8>(),
                out.cast::<u8>(),
                n,
            )
        };
        s.enabled as c_int
    })
    .unwrap_or(0)
}
