//! Mapped dumps that shrink while they are read: a `SIGBUS` guard and a per-batch check.
//!
//! # The problem
//! A read-only shared map of a file stays valid when the file is truncated, but its pages past
//! the new end are gone: touching one raises `SIGBUS`, which kills the process. The tail of the
//! page that holds the new end is zeroed by the kernel instead, without any signal. Frames are
//! handed out borrowed from the map (zero copy) and read by the kernels long after
//! [`FrameReader::frame`](super::FrameReader::frame) returned, so no check before a read can
//! close the race: the file can shrink between the check and the read.
//!
//! # What ptyflow does
//! 1. **A guard for faults** (Linux): the first [`Dump::open`](super::Dump::open) installs one
//!    process-wide `SIGBUS` handler and every dump registers its map's address range in a fixed
//!    table (no allocation, no locks: the handler only does atomic loads and stores). For a fault
//!    inside a registered map, the handler maps an anonymous zero page over the faulting page
//!    (`mmap(MAP_FIXED)`), records the page's offset in the dump (the lowest one seen) and
//!    returns: the faulting read is retried and sees zeros. A fault anywhere else goes to the
//!    handler that was installed before (Rust's stack-overflow handler, a sanitizer's, an
//!    embedding program's), or, if there was none, to the default action (the process dies
//!    with `SIGBUS` as before).
//! 2. **A check after reading** ([`Dump::check_frames`](super::Dump::check_frames)): one
//!    `fstat` and one atomic load. It fails, naming the file and the first frame of the range
//!    that is not intact, if the file now ends before the range does (this also catches the
//!    zeroed tail of the last page, which raises no signal) or if the guard replaced a page of
//!    it. The pipeline calls it per batch before and after processing ([`crate::pipeline::run`]),
//!    so frames that were read as zeros are reported as an error, never delivered as data.
//!
//! # Why this and not the alternatives
//! - Re-checking the length per batch alone is racy: a truncation between the check and the
//!   read still raises `SIGBUS`.
//! - Reading (`pread`) instead of mapping, for every file or for files that are not "sealed",
//!   costs a copy of every frame and gives up zero copy, the reason the reader maps; a file on
//!   a local disk cannot be sealed against truncation by another process anyway.
//! - The guard costs nothing while nothing changes: the handler runs only on a fault, and the
//!   check is one `fstat` (≈ 0.3 µs) per batch of 64 frames.
//!
//! # Limits
//! - Linux only (on other systems the check still reports a shrunken file, but a fault past
//!   the new end kills the process as before).
//! - A program that embeds ptyflow and later installs its own `SIGBUS` handler without
//!   chaining to the previous one takes the guard out. ptyflow's handler is installed once and
//!   never removed.
//! - Up to [`SLOTS`] dumps open at once are guarded; beyond that a dump opens unguarded (the
//!   check still works) and says so in [`DumpInfo::notes`](super::DumpInfo::notes).
//! - `mmap` is not on POSIX's list of async-signal-safe functions; on Linux it is a plain
//!   system call that takes no user-space lock, so calling it from the handler is safe there.
//! - A file that is truncated and then grown back to its size before the check shows zeros
//!   where the old bytes were without a fault only in the page that held the short end; the
//!   check cannot see that (it is the same as rewriting the file in place, which ptyflow does
//!   not detect either).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How many maps can be guarded at once.
pub(crate) const SLOTS: usize = 256;

/// One registered map. `start == 0` means free.
struct Slot {
    claimed: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Offset in the map of the lowest page the handler replaced, `u64::MAX` if none.
    first_fault: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the table
const FREE: Slot = Slot {
    claimed: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    first_fault: AtomicU64::new(u64::MAX),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// A map's registration; dropping it unregisters the map (before the map is unmapped: a
/// [`Dump`](super::Dump) declares it before its map).
#[derive(Debug)]
pub(crate) struct Guard {
    slot: Option<usize>,
}

impl Guard {
    /// Registers `map` with the fault handler (installing it on first use). Returns an
    /// unguarded registration when the table is full or the system has no guard.
    pub(crate) fn register(map: &[u8]) -> Guard {
        if !sys::install() || map.is_empty() {
            return Guard { slot: None };
        }
        for (i, s) in TABLE.iter().enumerate() {
            if s.claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.first_fault.store(u64::MAX, Ordering::Relaxed);
                s.len.store(map.len(), Ordering::Relaxed);
                // Published last: the handler reads `start` first (Acquire), then `len`.
                s.start.store(map.as_ptr() as usize, Ordering::Release);
                return Guard { slot: Some(i) };
            }
        }
        Guard { slot: None }
    }

    /// Whether faults in the map are caught.
    pub(crate) fn is_active(&self) -> bool {
        self.slot.is_some()
    }

    /// Offset in the map of the lowest page the handler replaced with zeros, if any.
    pub(crate) fn first_fault(&self) -> Option<u64> {
        let s = &TABLE[self.slot?];
        match s.first_fault.load(Ordering::Acquire) {
            u64::MAX => None,
            at => Some(at),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let s = &TABLE[i];
            s.start.store(0, Ordering::Release);
            s.len.store(0, Ordering::Relaxed);
            s.claimed.store(false, Ordering::Release);
        }
    }
}

/// The slot whose map holds `addr`, for the handler.
fn slot_of(addr: usize) -> Option<&'static Slot> {
    TABLE.iter().find(|s| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && addr >= start && addr - start < s.len.load(Ordering::Relaxed)
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::slot_of;

    /// The page size, read once at installation (the handler must not call `sysconf`).
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    /// The `SIGBUS` action before ours, to chain to.
    static PREVIOUS: OnceLock<Previous> = OnceLock::new();
    /// Whether ours is installed.
    static INSTALLED: OnceLock<bool> = OnceLock::new();

    struct Previous(libc::sigaction);
    // SAFETY: a `sigaction` is plain data (a handler address, flags and a signal mask); it is
    // written once before it is published through the `OnceLock` and only read afterwards.
    unsafe impl Sync for Previous {}
    // SAFETY: as above; nothing in it is tied to a thread.
    unsafe impl Send for Previous {}

    /// Installs the handler once per process; `false` if the system refused.
    pub(super) fn install() -> bool {
        *INSTALLED.get_or_init(|| {
            // SAFETY: `sysconf` has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page <= 0 {
                return false;
            }
            PAGE.store(page as usize, Ordering::Relaxed);
            // SAFETY: a zeroed `sigaction` is a valid value (no handler, no flags, an empty
            // mask once `sigemptyset` ran); we then fill in our handler.
            let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
            ours.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `sa_mask` is a valid `sigset_t` inside `ours`.
            unsafe { libc::sigemptyset(&mut ours.sa_mask) };
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are to live `sigaction` values; `on_sigbus` has the
            // signature `SA_SIGINFO` requires and only does async-signal-safe work.
            if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut old) } != 0 {
                return false;
            }
            let _ = PREVIOUS.set(Previous(old));
            true
        })
    }

    /// The `SIGBUS` handler: a fault inside a registered map gets a zero page, any other goes
    /// to the previous handler (module docs).
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        if let (Some(slot), true) = (slot_of(addr), page > 0) {
            let start = slot.start.load(Ordering::Acquire);
            let at = addr & !(page - 1);
            // SAFETY: `at` is the page-aligned start of a page inside a live read-only map
            // that this process owns (registered by a `Dump` that unregisters before it
            // unmaps). Replacing that one page with an anonymous zero page changes only what
            // this map shows; nobody writes through it.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                // Maps start on a page boundary, so `at >= start`.
                let offset = at.saturating_sub(start) as u64;
                slot.first_fault.fetch_min(offset, Ordering::AcqRel);
                return;
            }
        }
        chain(sig, info, ctx);
    }

    /// Hands a fault that is not ours to the previous handler, or to the default action.
    fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let prev = PREVIOUS.get().map(|p| &p.0);
        match prev.map(|p| p.sa_sigaction) {
            Some(h) if h != libc::SIG_DFL && h != libc::SIG_IGN => {
                let siginfo = prev.is_some_and(|p| p.sa_flags & libc::SA_SIGINFO != 0);
                if siginfo {
                    // SAFETY: the previous action was installed with `SA_SIGINFO`, so its
                    // handler has this signature; we pass on what the kernel gave us.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { std::mem::transmute(h) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: without `SA_SIGINFO` a handler takes only the signal number.
                    let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                    f(sig);
                }
            }
            _ => {
                // No handler before ours: restore the default action and return; the faulting
                // instruction runs again and the process dies with SIGBUS, as without ptyflow.
                // SAFETY: a zeroed `sigaction` with `SIG_DFL` (0) is the default action;
                // `sigaction` is async-signal-safe.
                unsafe {
                    let mut dfl: libc::sigaction = std::mem::zeroed();
                    dfl.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod sys {
    /// No guard on this system (module docs, "Limits").
    pub(super) fn install() -> bool {
        false
    }
}
