//! Optional process-wide counters (`SSLASYNC_STATS=1` or `=json`): callbacks
//! delivered and dropped, pauses, statuses, late registrations, latencies.
//!
//! Off by default, when each hook costs one relaxed load of a flag. On, they
//! are relaxed atomic increments; a report goes to stderr at exit, from
//! processes that used the API or saw a pause, and the same numbers are
//! readable from C through `sslasync_stats_get`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use libc::c_int;

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
    let form = match std::env::var_os("SSLASYNC_STATS") {
        None => return,
        Some(v) if v.is_empty() || v == "0" => return,
        Some(v) if v == "1" => TEXT,
        Some(v) if v == "json" => JSON,
        Some(v) => {
            crate::log::notice!(
                "SSLASYNC_STATS={} is not 0, 1 or json: statistics stay off",
                v.to_string_lossy()
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
fn program() -> String {
    // SAFETY: glibc sets this pointer before any constructor runs and never
    // frees it; it is NUL-terminated or NULL.
    let p = unsafe { program_invocation_short_name };
    if p.is_null() {
        return String::from("?");
    }
    // SAFETY: as above.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

fn report() {
    let s = snapshot();
    if !USED.load(Ordering::Relaxed) && s.pauses == 0 {
        return; // a process that merely loaded the shim (e.g. a wrapper's sh)
    }
    let (pid, prog) = (std::process::id(), program());
    let line = match FORM.load(Ordering::Relaxed) {
        JSON => json(&s, pid, &prog),
        _ => text(&s, &format!("sslasync[{pid} {prog}] stats:")),
    };
    // One write, so reports of concurrent processes do not interleave.
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn text(s: &sslasync_stats, who: &str) -> String {
    let mut lat = String::new();
    for (i, n) in s
        .latency_us_log2
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
    {
        lat.push_str(&format!(" <{}us:{}", 1u64 << i, n));
    }
    if lat.is_empty() {
        lat.push_str(" (none)");
    }
    let unverified = match s.jobs_unverified {
        0 => String::new(),
        n => format!(" jobs_unverified={n}"),
    };
    let mut counts = String::new();
    for (name, _, v) in fields(s) {
        counts.push_str(&format!(" {name}={v}"));
    }
    format!("{who}{counts}{unverified}\n{who} pause-to-callback latency{lat}\n")
}

/// The counters both reports print, in order: (text-report name, JSON key,
/// value); the text names keep the report's historic spelling.
fn fields(s: &sslasync_stats) -> [(&'static str, &'static str, u64); 11] {
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
    ]
}

fn json(s: &sslasync_stats, pid: u32, prog: &str) -> String {
    let mut name = String::new();
    for c in prog.chars() {
        match c {
            '"' => name.push_str("\\\""),
            '\\' => name.push_str("\\\\"),
            c if (c as u32) < 0x20 => name.push_str(&format!("\\u{:04x}", c as u32)),
            c => name.push(c),
        }
    }
    let mut counts = String::new();
    for (_, key, v) in fields(s) {
        counts.push_str(&format!("\"{key}\":{v},"));
    }
    let lat: Vec<String> = s.latency_us_log2.iter().map(u64::to_string).collect();
    format!(
        "{{\"sslasync\":\"{}\",\"pid\":{pid},\"program\":\"{name}\",{counts}\
         \"jobs_unverified\":{},\"latency_us_log2\":[{}]}}\n",
        env!("CARGO_PKG_VERSION"),
        s.jobs_unverified,
        lat.join(",")
    )
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
        let j = json(&s, 42, "a\"b\\c");
        assert!(j.starts_with("{\"sslasync\":\""), "{j}");
        assert!(j.contains("\"pid\":42,\"program\":\"a\\\"b\\\\c\""), "{j}");
        assert!(j.contains("\"pauses\":3,"), "{j}");
        assert!(j.ends_with("]}\n") && j.matches('\n').count() == 1, "{j}");
    }

    #[test]
    fn the_text_report_names_the_process_on_every_line() {
        let t = text(&sslasync_stats::default(), "sslasync[7 prog] stats:");
        assert_eq!(t.lines().count(), 2);
        assert!(
            t.lines().all(|l| l.starts_with("sslasync[7 prog] stats: ")),
            "{t}"
        );
    }
}
