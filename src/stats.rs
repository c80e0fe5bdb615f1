//! Optional process-wide counters (`SSLASYNC_STATS=1` or `=json`): callbacks
//! delivered and dropped, pauses, statuses, late registrations, latencies.
//!
//! Off by default, when each hook costs one relaxed load of a flag. On, they
//! are relaxed atomic increments; a report goes to stderr at exit, from
//! processes that used the API or saw a pause, and the same numbers are
//! readable from C through `sslasync_stats_get`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use libc::c_int;

use crate::log::Buf;
use crate::slots::Slot;

/// Number of latency buckets: bucket `i` counts latencies below `2^i` microseconds
/// (bucket 0: under 1 microsecond); the last one also takes everything longer.
pub const SSLASYNC_LATENCY_BUCKETS: usize = 24;

/// The counters, as `sslasync_stats_get` copies them out.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sslasync_stats {
    /// Whether counting is on (`SSLASYNC_STATS=1` or `json`); when off, all
    /// else but `jobs_unverified` and the `adapter_*` counters is 0.
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
    /// Jobs that looked like libssl's but whose arguments did not match the
    /// layout measured at start-up: started untouched, never wired. Counted
    /// whether or not counting is on; nonzero means a libssl the shim does
    /// not understand.
    pub jobs_unverified: u64,
    /// Pauses the fd adapter started watching (counted whether or not
    /// counting is on, like the three below).
    pub adapter_arms: u64,
    /// Callbacks the fd adapter delivered.
    pub adapter_deliveries: u64,
    /// Watched pauses that ended without a callback: the SSL was freed, its
    /// callback cleared, or a job start came first (the application resumed
    /// it itself). Once nothing is watched, arms = deliveries + drops.
    pub adapter_drops: u64,
    /// Pauses left to the application's wait fds because the adapter could
    /// not watch them (the poller thread could not start, an fd could not be
    /// duplicated or watched).
    pub adapter_unavailable: u64,
    /// `SSL_free` calls that returned at once while a callback of the SSL
    /// ran on another thread: the SSL was freed when that callback returned
    /// (counted whether or not counting is on).
    pub frees_deferred: u64,
    /// Job starts of SSLs whose callback was set past the shim (a library
    /// loaded with `RTLD_DEEPBIND`, libssl called through a handle): they get
    /// OpenSSL's own behaviour, and `sslasync_active()` returns 0 (counted
    /// whether or not counting is on, while any SSL of the process uses the
    /// API through the shim).
    pub jobs_bypassed: u64,
    /// Where the shim stands with libssl's job layout: 0 not measured yet
    /// (no SSL that uses the API has started a job), 1 measured, 2 not one
    /// the shim can trust (its protections are off; `sslasync_active()` 0).
    pub job_layout: u64,
    /// Whether `SSL_free` can leave the real free to a callback of the SSL
    /// still running: 0 not known yet (no SSL was created since the job
    /// layout was measured), 1 yes, 2 no (the SSL's reference count was
    /// not found: such a callback keeps a dangling `SSL*`, as natively).
    pub free_deferral: u64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The exit report's form.
const TEXT: u8 = 0;
const JSON: u8 = 1;
static FORM: AtomicU8 = AtomicU8::new(TEXT);
/// Whether this process called one of the API setters (the report is only
/// printed where the API was used or a pause was seen).
static USED: AtomicBool = AtomicBool::new(false);

struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    pauses: AtomicU64,
    ok: AtomicU64,
    eagain: AtomicU64,
    err: AtomicU64,
    late: AtomicU64,
    latency: [AtomicU64; SSLASYNC_LATENCY_BUCKETS],
    arms: AtomicU64,
    adapter_delivered: AtomicU64,
    adapter_dropped: AtomicU64,
    unavailable: AtomicU64,
    frees_deferred: AtomicU64,
    bypassed: AtomicU64,
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
    arms: AtomicU64::new(0),
    adapter_delivered: AtomicU64::new(0),
    adapter_dropped: AtomicU64::new(0),
    unavailable: AtomicU64::new(0),
    frees_deferred: AtomicU64::new(0),
    bypassed: AtomicU64::new(0),
};

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Reads `SSLASYNC_STATS`: unset, empty or `0` off; `1` a text report;
/// `json` one JSON object. Anything else is reported once and counts as off.
pub fn init_from_env() {
    let form = match crate::env(c"SSLASYNC_STATS") {
        None | Some(b"") | Some(b"0") => return,
        Some(b"1") => TEXT,
        Some(b"json") => JSON,
        Some(v) => {
            crate::log::notice!(
                "SSLASYNC_STATS={} is not 0, 1 or json: statistics stay off",
                String::from_utf8_lossy(v)
            );
            return;
        }
    };
    FORM.store(form, Ordering::Relaxed);
    EPOCH.get_or_init(Instant::now);
    ENABLED.store(true, Ordering::Relaxed);
    extern "C" fn at_exit() {
        let _ = std::panic::catch_unwind(report);
    }
    // SAFETY: at_exit is a plain extern "C" fn with no arguments.
    unsafe { libc::atexit(at_exit) };
}

/// A setter of the API was called (decides whether the report is printed).
#[inline]
pub fn api_used() {
    if enabled() && !USED.load(Ordering::Relaxed) {
        USED.store(true, Ordering::Relaxed);
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

/// The fd adapter armed a pause (always counted: it is off the fast path).
pub fn adapter_armed() {
    bump(&C.arms);
}

/// The fd adapter delivered a callback.
pub fn adapter_delivered() {
    bump(&C.adapter_delivered);
}

/// A watched pause ended without a callback.
pub fn adapter_dropped() {
    bump(&C.adapter_dropped);
}

/// A pause the fd adapter could not watch.
pub fn adapter_unavailable() {
    bump(&C.unavailable);
}

/// An `SSL_free` left to a callback running on another thread.
pub fn free_deferred() {
    bump(&C.frees_deferred);
}

/// A job start of an SSL whose callback was set past the shim.
pub fn job_bypassed() {
    bump(&C.bypassed);
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
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut s = sslasync_stats {
        enabled: enabled() as u64,
        jobs_unverified: crate::internals::unverified_jobs(),
        adapter_arms: r(&C.arms),
        adapter_deliveries: r(&C.adapter_delivered),
        adapter_drops: r(&C.adapter_dropped),
        adapter_unavailable: r(&C.unavailable),
        frees_deferred: r(&C.frees_deferred),
        jobs_bypassed: r(&C.bypassed),
        job_layout: crate::internals::job_layout_state(),
        free_deferral: crate::internals::free_deferral_state(),
        ..Default::default()
    };
    if s.enabled == 0 {
        return s;
    }
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
    s.jobs_unverified = crate::internals::unverified_jobs();
    s
}

extern "C" {
    /// glibc's short program name (argv[0] without its directory).
    static program_invocation_short_name: *const libc::c_char;
}

/// The short name of this program, for the report.
fn program() -> &'static str {
    // SAFETY: glibc sets this pointer before any constructor runs and never
    // frees it; it is NUL-terminated or NULL.
    let p = unsafe { program_invocation_short_name };
    if p.is_null() {
        return "?";
    }
    // SAFETY: as above.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .unwrap_or("?")
}

/// The exit report, built in a fixed buffer: it allocates nothing (it may
/// run when memory is short), and a report too long for it is cut.
fn report() {
    let s = snapshot();
    if !USED.load(Ordering::Relaxed) && s.pauses == 0 {
        return; // a process that merely loaded the shim (e.g. a wrapper's sh)
    }
    let mut out = Buf::<2048>::new();
    let _ = match FORM.load(Ordering::Relaxed) {
        JSON => json(&mut out, &s, std::process::id(), program()),
        _ => text(&mut out, &s, std::process::id(), program()),
    };
    // One write, so reports of concurrent processes do not interleave.
    crate::log::write_stderr(out.as_bytes());
}

fn text(out: &mut impl fmt::Write, s: &sslasync_stats, pid: u32, prog: &str) -> fmt::Result {
    write!(out, "sslasync[{pid} {prog}] stats:")?;
    for (name, _, v) in fields(s) {
        write!(out, " {name}={v}")?;
    }
    if s.jobs_unverified != 0 {
        write!(out, " jobs_unverified={}", s.jobs_unverified)?;
    }
    write!(
        out,
        "\nsslasync[{pid} {prog}] stats: pause-to-callback latency"
    )?;
    let mut any = false;
    for (i, n) in s
        .latency_us_log2
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
    {
        write!(out, " <{}us:{}", 1u64 << i, n)?;
        any = true;
    }
    if !any {
        out.write_str(" (none)")?;
    }
    out.write_str("\n")
}

/// The counters both reports print, in order: (text-report name, JSON key,
/// value); the text names keep the report's historic spelling.
fn fields(s: &sslasync_stats) -> [(&'static str, &'static str, u64); 15] {
    [
        (
            "callbacks delivered",
            "callbacks_delivered",
            s.callbacks_delivered,
        ),
        ("dropped", "callbacks_dropped", s.callbacks_dropped),
        ("pauses", "pauses", s.pauses),
        ("status ok", "status_ok", s.status_ok),
        ("eagain", "status_eagain", s.status_eagain),
        ("err", "status_err", s.status_err),
        (
            "late_registrations",
            "late_registrations",
            s.late_registrations,
        ),
        ("adapter_arms", "adapter_arms", s.adapter_arms),
        (
            "adapter_deliveries",
            "adapter_deliveries",
            s.adapter_deliveries,
        ),
        ("adapter_drops", "adapter_drops", s.adapter_drops),
        (
            "adapter_unavailable",
            "adapter_unavailable",
            s.adapter_unavailable,
        ),
        ("frees_deferred", "frees_deferred", s.frees_deferred),
        ("jobs_bypassed", "jobs_bypassed", s.jobs_bypassed),
        ("job_layout", "job_layout", s.job_layout),
        ("free_deferral", "free_deferral", s.free_deferral),
    ]
}

fn json(out: &mut impl fmt::Write, s: &sslasync_stats, pid: u32, prog: &str) -> fmt::Result {
    write!(
        out,
        "{{\"sslasync\":\"{}\",\"pid\":{pid},\"program\":\"",
        env!("CARGO_PKG_VERSION")
    )?;
    for c in prog.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_str("\",")?;
    for (_, key, v) in fields(s) {
        write!(out, "\"{key}\":{v},")?;
    }
    write!(
        out,
        "\"jobs_unverified\":{},\"latency_us_log2\":[",
        s.jobs_unverified
    )?;
    for (i, n) in s.latency_us_log2.iter().enumerate() {
        write!(out, "{}{n}", if i == 0 { "" } else { "," })?;
    }
    out.write_str("]}\n")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_is_one_object_with_an_escaped_name() {
        let s = sslasync_stats {
            enabled: 1,
            pauses: 3,
            ..Default::default()
        };
        let mut b = Buf::<2048>::new();
        json(&mut b, &s, 42, "a\"b\\c").unwrap();
        let j = b.as_str();
        assert!(j.starts_with("{\"sslasync\":\""), "{j}");
        assert!(j.contains("\"pid\":42,\"program\":\"a\\\"b\\\\c\""), "{j}");
        assert!(j.contains("\"pauses\":3,"), "{j}");
        assert!(j.ends_with("]}\n") && j.matches('\n').count() == 1, "{j}");
    }

    #[test]
    fn the_text_report_names_the_process_on_every_line() {
        let mut b = Buf::<2048>::new();
        text(&mut b, &sslasync_stats::default(), 7, "prog").unwrap();
        let t = b.as_str();
        assert_eq!(t.lines().count(), 2);
        assert!(
            t.lines().all(|l| l.starts_with("sslasync[7 prog] stats: ")),
            "{t}"
        );
    }
}
