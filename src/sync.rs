//! The synchronisation the shim's shared state is built from: the slot
//! atomics (loom's under `--cfg loom`) and a spin lock a fork()ed child resets.
//!
//! The locks are spin locks rather than futex mutexes because fork() must be
//! able to take them all in its prepare handler and hand the child a clean
//! state: a parked waiter of a queueing mutex would be a thread that no
//! longer exists in the child. Every critical section is a few pointer moves.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize};
pub use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize};

/// One step of a wait loop: spin briefly, then give the CPU away.
#[inline]
pub fn relax(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *spins = spins.saturating_add(1);
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The identity of the calling thread, as the slot protocol records it:
/// `pthread_self()`, read inline on x86-64 glibc (it is on every delivery).
#[inline(always)]
pub fn current_thread() -> usize {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        let me: usize;
        // SAFETY: glibc's pthread_self() is exactly this load: the thread
        // control block's `self` word at %fs:0x10 (the x86-64 TLS ABI,
        // which GCC's stack protector relies on too). Reads only.
        unsafe {
            std::arch::asm!("mov {}, qword ptr fs:[0x10]", out(reg) me,
                            options(nostack, readonly, preserves_flags));
        }
        me
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    // SAFETY: pthread_self has no preconditions.
    unsafe {
        libc::pthread_self() as usize
    }
}

/// A mutual-exclusion lock that can be held across fork() and released in
/// both the parent and the child.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, which exists for one
// holder of the lock at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        let mut spins = 0;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                relax(&mut spins);
            }
        }
        SpinGuard { lock: self }
    }

    /// fork()'s prepare handler: take the lock and keep it past this call.
    pub fn hold_across_fork(&self) {
        std::mem::forget(self.lock());
    }

    /// fork()'s parent and child handlers: release what
    /// [`hold_across_fork`](Self::hold_across_fork) took.
    ///
    /// # Safety
    /// Only after `hold_across_fork` on this thread (the forking one).
    pub unsafe fn release_after_fork(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
