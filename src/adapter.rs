//! The fd adapter: callbacks from engines that only signal wait fds. When
//! such a pause is armed, one poller thread watches the fds and calls back.
//!
//! A pause is armed when the SSL has a callback and the adapter on, its job
//! paused without the engine calling back or setting a status, and its wait
//! ctx holds fds. The shim watches its own duplicates of those fds (so the
//! engine closing its fd, and the number being reused, cannot misfire), keyed
//! by a token rather than the fd number; the first readable one ends the
//! watch, and the user is called through the slot protocol, which also checks
//! that no job start of the SSL has begun since the arm. A job start, a clear
//! and `SSL_free` end a watch that has not fired.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use libc::{c_int, c_void};

use crate::deliver;
use crate::log::{debug, notice};
use crate::slots::{self, Slot};
use crate::stats;
use crate::sync::Lock;
use crate::sys::{self, ASYNC_WAIT_CTX};
use crate::thread;
use crate::waitctx;

// ------------------------------------------------------------- the switch

/// Whether SSLs of CTXs that never chose get the adapter.
static DEFAULT_ON: AtomicBool = AtomicBool::new(cfg!(sslasync_ossl111));

/// Whether the adapter can be turned off: on OpenSSL 1.1.1 it is the only
/// source of callbacks, so it is always on.
pub const SWITCHABLE: bool = cfg!(not(sslasync_ossl111));

/// Reads `SSLASYNC_FD_CALLBACKS` (`1` on, `0` or unset off); anything else
/// is said once on stderr and counts as `0`.
pub fn init_from_env() {
    let on = match crate::env(c"SSLASYNC_FD_CALLBACKS") {
        None => false,
        Some(b"1") => true,
        Some(b"0") => false,
        Some(v) => {
            notice!(
                "SSLASYNC_FD_CALLBACKS={} is not 0 or 1: {}",
                String::from_utf8_lossy(v),
                if SWITCHABLE {
                    "the fd adapter stays off"
                } else {
                    "ignored (with OpenSSL 1.1.1 the fd adapter is always on)"
                }
            );
            false
        }
    };
    DEFAULT_ON.store(on || !SWITCHABLE, Ordering::Relaxed);
    thread::remember_initial_placement();
}

/// The adapter setting of an SSL whose CTX never chose one.
pub fn default_on() -> bool {
    DEFAULT_ON.load(Ordering::Relaxed)
}

// ------------------------------------------------- the engine's trampoline

/// The address the job-start hook compares wait-ctx callbacks with.
pub fn trampoline_address() -> usize {
    trampoline_fd as *const () as usize
}

/// The wait-ctx callback of SSLs the adapter serves: the same delivery as
/// the plain trampoline, but, under the delivery's claim (so the record is
/// still this SSL's), it tells the hook the engine called back (so that
/// pause is not armed), ends a watch that engine made redundant, and drops
/// the call if the adapter already called back for the pause. It is a
/// distinct address so such SSLs never take the hook's fast path.
pub unsafe extern "C-unwind" fn trampoline_fd(arg: *mut c_void) -> c_int {
    fn engine_called(slot: &Slot) -> bool {
        let first = slot.note_engine_call();
        let _ = std::panic::catch_unwind(|| forget(slot));
        first
    }
    // SAFETY: the trampoline's own contract: arg is a wait-ctx argument.
    unsafe { deliver::deliver_engine_call(arg, engine_called) }
}

// ------------------------------------------------------ arming and ending

/// Fds watched per pause; engines register one.
const MAX_FDS: usize = 4;
const INDEX_BITS: u32 = 24;

/// One armed pause: the shim's duplicates of its fds, and what a delivery
/// must still find (the slot's handle and the job-start count).
struct Watch {
    token: u64,
    handle: u64,
    seq: u64,
    fds: [c_int; MAX_FDS],
    n: usize,
    /// The epoll set the fds were added to (a poller abandoned since may
    /// have been replaced by one on another set).
    ep: c_int,
}

/// Armed pauses by slot index (a slot has at most one paused job).
static WATCHES: Lock<Option<HashMap<u32, Watch>>> = Lock::new(None);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A job of an SSL the adapter serves is about to start or resume: the
/// current pause, if armed, is over, and no callback for it starts after
/// this returned (one already running on another thread is not waited for).
///
/// # Safety
/// `wctx` is the SSL's live wait ctx.
pub unsafe fn job_starting(slot: &Slot, wctx: *mut ASYNC_WAIT_CTX) {
    slot.end_pause();
    forget(slot);
    if slot.set_reported(false) {
        // The OK was the adapter's, for the pause now ending: back to what
        // the fd-only engine itself left.
        // SAFETY: wctx is live (caller).
        unsafe {
            if waitctx::status(wctx) == sys::ASYNC_STATUS_OK {
                waitctx::set_status(wctx, sys::ASYNC_STATUS_UNSUPPORTED);
            }
        }
    }
}

/// A job of an SSL the adapter serves paused: arm it if the engine left it
/// to its wait fds.
///
/// # Safety
/// `wctx` is the SSL's live wait ctx.
pub unsafe fn paused(slot: &Slot, wctx: *mut ASYNC_WAIT_CTX) {
    if slot.callback.load(Ordering::Acquire) == 0 || !slot.fd_on() || slot.engine_called() {
        return;
    }
    // SAFETY: wctx is live (caller).
    if unsafe { waitctx::status(wctx) } != sys::ASYNC_STATUS_UNSUPPORTED {
        return; // the engine reports (OK, EAGAIN, ERR): it is not fd-only
    }
    let mut fds = [-1; MAX_FDS];
    // SAFETY: wctx is live (caller).
    let n = unsafe { waitctx::fds(wctx, &mut fds) };
    if n == 0 {
        return;
    }
    if n > MAX_FDS {
        return unavailable(format_args!("{n} wait fds (at most {MAX_FDS} are watched)"));
    }
    let Some(ep) = poller() else {
        return unavailable(format_args!("the poller thread cannot start"));
    };
    let mut dups = [-1; MAX_FDS];
    for i in 0..n {
        // SAFETY: fcntl on an fd the engine registered; a failure is -1.
        dups[i] = unsafe { libc::fcntl(fds[i], libc::F_DUPFD_CLOEXEC, 0) };
        if dups[i] < 0 {
            close_all(&dups[..i]);
            return unavailable(format_args!("a wait fd cannot be duplicated"));
        }
    }
    let index = slot.slot_index();
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) & ((1 << (64 - INDEX_BITS)) - 1);
    let key = token << INDEX_BITS | index as u64;
    let watch = Watch {
        token,
        handle: slot.handle() as usize as u64,
        seq: slot.pause_seq(),
        fds: dups,
        n,
        ep,
    };
    // Reported before the watch can fire: the callback may read it.
    slot.set_reported(true);
    // SAFETY: wctx is live (caller).
    unsafe { waitctx::set_status(wctx, sys::ASYNC_STATUS_OK) };
    // Entered and watched under the table's lock, so the poller (which
    // takes a watch under it) cannot end the watch and close its fds while
    // some are still being added, and an abandoned poller's epoll set
    // (EPOLL changes under the lock too) is never added to.
    let armed = {
        let mut table = WATCHES.lock();
        if EPOLL.load(Ordering::Acquire) != ep {
            Err("the poller thread ended")
        } else if table
            .get_or_insert_with(HashMap::new)
            .try_reserve(1)
            .is_err()
        {
            Err("no memory for the watch")
        } else if !listen(ep, &dups[..n], key) {
            Err("a wait fd cannot be watched")
        } else {
            table.get_or_insert_with(HashMap::new).insert(index, watch);
            Ok(())
        }
    };
    if let Err(why) = armed {
        close_all(&dups[..n]);
        slot.set_reported(false);
        // SAFETY: wctx is live (caller).
        unsafe { waitctx::set_status(wctx, sys::ASYNC_STATUS_UNSUPPORTED) };
        return unavailable(format_args!("{why}"));
    }
    slot.set_armed();
    stats::adapter_armed();
    if slot.engine_called() {
        // The engine called back since the check above: the pause is its.
        forget(slot);
    }
    debug!("fd adapter: watching {n} wait fd(s) of a paused job");
}

/// Adds `fds` to the epoll set `ep` under `key`; on a failure takes out the
/// ones added. Under the table's lock.
fn listen(ep: c_int, fds: &[c_int], key: u64) -> bool {
    for (i, &fd) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: ep is the poller's epoll fd and fd the shim's own dup.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            unlisten(ep, &fds[..i]);
            return false;
        }
    }
    true
}

/// Takes `fds` out of the epoll set `ep`. Under the table's lock, where `ep`
/// is open: a set is closed only after its watches left the table.
fn unlisten(ep: c_int, fds: &[c_int]) {
    for &fd in fds {
        // SAFETY: fd is the shim's own dup, still open; the description
        // it shares with the engine's fd must leave the epoll set before
        // the dup goes, or the engine's fd would keep it there.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }
}

/// Ends the SSL's armed pause, if any, without a callback (a job start, a
/// clear or `SSL_free`; an engine calling back too). The SSL has at most one
/// watch, and only its owner arms one, so the table entry of its index is it.
pub fn forget(slot: &Slot) {
    if slot.take_armed() {
        let index = slot.slot_index();
        if let Some(w) = take(index, None) {
            close_all(&w.fds[..w.n]);
            stats::adapter_dropped();
        }
    }
}

#[cold]
fn unavailable(why: std::fmt::Arguments) {
    stats::adapter_unavailable();
    debug!("fd adapter: {why}: the pause keeps its wait fds only");
}

/// Removes the watch of slot `index` (with this token, if given) from the
/// table and from the epoll set; whoever does owns it, and closes its fds.
fn take(index: u32, token: Option<u64>) -> Option<Watch> {
    let mut table = WATCHES.lock();
    let map = table.as_mut()?;
    if token.is_some() && map.get(&index).map(|w| w.token) != token {
        return None;
    }
    let w = map.remove(&index)?;
    unlisten(w.ep, &w.fds[..w.n]);
    Some(w)
}

fn close_all(fds: &[c_int]) {
    let _quiet = thread::NoCancel::new(); // close() is a cancellation point
    for &fd in fds {
        // SAFETY: the shim's own dups, closed once by their owner.
        unsafe { libc::close(fd) };
    }
}

// ------------------------------------------------------------- the poller

/// The poller's epoll fd, -1 until it runs.
static EPOLL: AtomicI32 = AtomicI32::new(-1);
static STARTING: Lock<()> = Lock::new(());

/// The running poller's epoll fd, starting it on first use.
fn poller() -> Option<c_int> {
    let ep = EPOLL.load(Ordering::Acquire);
    if ep >= 0 {
        return Some(ep);
    }
    let _one = STARTING.lock();
    let ep = EPOLL.load(Ordering::Acquire);
    if ep >= 0 {
        return Some(ep);
    }
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return None;
    }
    if !start_poller(ep) {
        // SAFETY: ep was created above and nothing else knows it.
        unsafe { libc::close(ep) };
        return None;
    }
    EPOLL.store(ep, Ordering::Release);
    debug!("fd adapter: poller thread started");
    Some(ep)
}

/// Starts a poller thread on `ep` (see `thread.rs` for its attributes).
fn start_poller(ep: c_int) -> bool {
    thread::spawn(c"sslasync-fd", poller_main, ep as usize as *mut c_void)
}

/// The poller thread. If a callback ends it (`pthread_exit`, a
/// cancellation), the unwind through this frame starts a replacement on the
/// same epoll set, so armed pauses are still delivered. It runs with
/// cancellation off except inside the user's callbacks.
unsafe extern "C-unwind" fn poller_main(arg: *mut c_void) -> *mut c_void {
    let ep = arg as usize as c_int;
    thread::cancellation_off();
    let ended = PollerEnded(ep);
    run(ep);
    std::mem::forget(ended); // run() returns only when the poller gave up
    std::ptr::null_mut()
}

/// Dropped only if the poller thread unwinds: a callback ended it.
struct PollerEnded(c_int);

impl Drop for PollerEnded {
    fn drop(&mut self) {
        let ep = self.0;
        let _ = std::panic::catch_unwind(|| {
            // Only this thread abandons its own set, so this stays true.
            let current = EPOLL.load(Ordering::Acquire) == ep;
            // Under the start lock, which fork() handlers hold: a fork never
            // sees a thread being created half-way.
            if current && {
                let _one = STARTING.lock();
                start_poller(ep)
            } {
                notice!("fd adapter: a callback ended the poller thread; a new one took over");
                return;
            }
            if current {
                notice!("fd adapter: a callback ended the poller thread and none can start");
            }
            // Otherwise the thread was already abandoning its set (a callback
            // it called ended it): the rest of the set's pauses still go.
            abandon_poller(ep, Ending::Unwinding { close: current });
        });
    }
}

/// How the poller thread gives up its epoll set.
#[derive(Clone, Copy)]
enum Ending {
    /// `epoll_wait` failed: the set is no longer the shim's (it was closed
    /// behind its back), so it is not closed again; the callbacks run as
    /// on a live poller.
    SetLost,
    /// The thread is unwinding (a callback ended it) and no replacement
    /// can start: the callbacks run from its last frame; `close` when the
    /// set is still the shim's.
    Unwinding { close: bool },
}

/// The poller cannot go on: every pause armed on its set `ep` is called
/// back now, as if its fd were ready (the application resumes the job,
/// which pauses again if the engine is not done and is armed with a new
/// poller), so that no application waits for a callback that would never
/// come. From an unwinding thread, a callback that ends the thread again
/// ends the process: the one case where a callback cannot end its thread.
fn abandon_poller(ep: c_int, how: Ending) {
    {
        // Under the table's lock: an arm in progress either finished adding
        // its watch (drained below) or sees the poller gone.
        let _table = WATCHES.lock();
        let _ = EPOLL.compare_exchange(ep, -1, Ordering::AcqRel, Ordering::Relaxed);
    }
    loop {
        // Only this set's watches: a newer poller's are its own.
        let next = std::panic::catch_unwind(|| {
            let mut table = WATCHES.lock();
            let map = table.as_mut()?;
            let index = map.iter().find(|(_, w)| w.ep == ep).map(|(i, _)| *i)?;
            map.remove(&index)
        });
        let Ok(Some(w)) = next else {
            break;
        };
        close_all(&w.fds[..w.n]);
        match how {
            Ending::SetLost => thread::cancellable(|| deliver_watch(&w)),
            Ending::Unwinding { .. } => deliver_watch(&w),
        }
    }
    if let Ending::Unwinding { close: true } = how {
        let _quiet = thread::NoCancel::new();
        // SAFETY: the shim's own epoll fd, closed once: EPOLL no longer
        // names it and its watches have left the table, so nothing uses it.
        unsafe { libc::close(ep) };
    }
}

fn run(ep: c_int) {
    const BATCH: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        // SAFETY: events has room for BATCH entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), BATCH as c_int, -1) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            notice!("fd adapter: the poller stopped: {err}");
            abandon_poller(ep, Ending::SetLost);
            return;
        }
        for ev in &events[..n as usize] {
            let key = ev.u64;
            // The shim's own part may not unwind into this loop; the
            // user's callback, outside it, may end the thread.
            if let Ok(Some(w)) = std::panic::catch_unwind(|| fired(key)) {
                thread::cancellable(|| deliver_watch(&w));
            }
        }
    }
}

/// A watched fd is readable: end its watch (once, whichever of its fds).
fn fired(key: u64) -> Option<Watch> {
    let index = (key & ((1 << INDEX_BITS) - 1)) as u32;
    let token = key >> INDEX_BITS;
    // None: ended already (another of its fds, a job start, a free).
    let w = take(index, Some(token))?;
    // The slot's armed mark stays (the next `forget` finds the entry
    // gone). The fds go first: the callback may resume the job, whose
    // engine may then close and reuse them.
    close_all(&w.fds[..w.n]);
    Some(w)
}

/// Calls the user for an ended watch, once.
fn deliver_watch(w: &Watch) {
    // SAFETY: handle and seq were recorded for this slot when it was armed.
    if unsafe { deliver::deliver_pause(w.handle, w.seq) } {
        stats::adapter_delivered();
    } else {
        stats::adapter_dropped();
    }
}

// ----------------------------------------------------------------- fork

/// fork(): hold the watch table and the start lock across it.
pub fn before_fork() {
    STARTING.hold_across_fork();
    WATCHES.hold_across_fork();
}

/// fork() in the parent: release them.
pub fn after_fork_parent() {
    // SAFETY: before_fork took both on this thread.
    unsafe {
        WATCHES.release_after_fork();
        STARTING.release_after_fork();
    }
}

/// fork() in the child: the poller thread did not come along. The next arm
/// starts a new one; the parent's watches are closed (the epoll set is
/// shared with the parent, so nothing is removed from it: closing the
/// child's copies leaves the parent's registrations alone).
pub fn after_fork_child() {
    // SAFETY: before_fork took both on this thread.
    unsafe {
        WATCHES.reset_in_child();
        STARTING.reset_in_child();
    }
    let ep = EPOLL.swap(-1, Ordering::AcqRel);
    if ep >= 0 {
        // SAFETY: the child's copy of the parent's epoll fd.
        unsafe { libc::close(ep) };
    }
    let old = WATCHES.lock().take();
    for (index, w) in old.into_iter().flatten() {
        close_all(&w.fds[..w.n]);
        if let Some(slot) = slots::at_index(index) {
            slot.take_armed();
        }
    }
}
