//! [`KernelWait`]: what a kernel thread waits for in spindle, and until when, for dumps.
//!
//! A green thread's wait reason and deadline live in its worker-owned part, which the
//! worker reads when it answers a dump. A kernel thread has no worker: it publishes them
//! itself, and whoever takes a dump reads them from another thread at any moment. So both
//! go into one atomic word, written only by the thread itself and read with one load: a
//! reader never pairs one wait's reason with another wait's deadline. Relaxed on both
//! sides: a dump is a picture for humans, and nothing else is published through the word.
//!
//! The word: the `WaitReason` discriminant in the low 8 bits; above it the deadline as a
//! stamp of `debug/clock.rs` (microseconds since its epoch, rounded up so that the listed
//! deadline is never before the real one) plus one, or 0 for none. 56 bits of
//! microseconds last two thousand years; a later deadline is shown as that far.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::debug::clock;
use crate::park::WaitReason;

/// Bits of the word below the deadline.
const REASON_BITS: u32 = 8;

/// The largest deadline field (the stamp plus one).
const MAX_DEADLINE_FIELD: u64 = u64::MAX >> REASON_BITS;

/// What a kernel thread waits for and until when (module docs).
pub(crate) struct KernelWait(AtomicU64);

impl KernelWait {
    /// Not waiting.
    pub(crate) const fn new() -> KernelWait {
        KernelWait(AtomicU64::new(0))
    }

    /// Shows the thread waiting for `reason` until `deadline` (`None`: no deadline), or not
    /// waiting with `WaitReason::None`. Called only by the thread itself.
    pub(crate) fn show(&self, reason: WaitReason, deadline: Option<Instant>) {
        let field = deadline.map_or(0, |d| {
            clock::stamp_rounded_up(d)
                .saturating_add(1)
                .min(MAX_DEADLINE_FIELD)
        });
        self.0
            .store((field << REASON_BITS) | reason as u64, Relaxed);
    }

    /// The reason and deadline shown last, read together.
    pub(crate) fn get(&self) -> (WaitReason, Option<Instant>) {
        let word = self.0.load(Relaxed);
        let reason = WaitReason::from_u8(word as u8);
        let deadline = match word >> REASON_BITS {
            0 => None,
            field => Some(clock::instant_of(field - 1)),
        };
        (reason, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::KernelWait;
    use crate::park::WaitReason;
    use std::time::{Duration, Instant};

    #[test]
    fn reason_and_deadline_come_back_together() {
        let w = KernelWait::new();
        assert_eq!(w.get(), (WaitReason::None, None));
        w.show(WaitReason::Park, None);
        assert_eq!(w.get(), (WaitReason::Park, None));
        let deadline = Instant::now() + Duration::from_secs(3600);
        w.show(WaitReason::Sleep, Some(deadline));
        let (reason, until) = w.get();
        assert_eq!(reason, WaitReason::Sleep);
        let until = until.unwrap();
        // Rounded up to the microsecond, never earlier.
        assert!(
            until >= deadline && until - deadline < Duration::from_micros(1),
            "{until:?}"
        );
        w.show(WaitReason::None, None);
        assert_eq!(w.get(), (WaitReason::None, None));
    }

    #[test]
    fn a_deadline_past_the_field_is_shown_as_far_as_it_goes() {
        let w = KernelWait::new();
        let far = Instant::now() + Duration::from_secs(3000 * 365 * 24 * 3600);
        w.show(WaitReason::Park, Some(far));
        let (reason, until) = w.get();
        assert_eq!(reason, WaitReason::Park);
        assert!(until.unwrap() > Instant::now() + Duration::from_secs(1000 * 365 * 24 * 3600));
    }
}
