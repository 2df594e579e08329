//! Rate limits and circuit breakers as pure decisions over plain state; the state
//! lives in the database (`store::LimitsStore`), so replicas on one PostgreSQL share
//! one limit and one set of breakers.

use serde::Serialize;

/// Consecutive failures of one action on one host that open its breaker.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker refuses before letting one trial through.
pub const BREAKER_COOLDOWN_MS: i64 = 300_000;
/// The rate limit's sliding window.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// Whether one more command fits in the window: `times` are the starts within the
/// last minute (older ones are ignored), `limit` per minute. `Err(seconds)` until a
/// slot frees.
pub fn rate_slot(times: &[i64], now: i64, limit: u32) -> Result<(), u64> {
    let recent: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| now - t < RATE_WINDOW_MS)
        .collect();
    if recent.len() < limit as usize {
        return Ok(());
    }
    let oldest = recent.iter().min().copied().unwrap_or(now);
    Err(
        u64::try_from((RATE_WINDOW_MS - (now - oldest) + 999) / 1000)
            .unwrap_or(1)
            .max(1),
    )
}

/// One host and action's breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    /// Epoch ms.
    pub opened_at: Option<i64>,
}

impl Breaker {
    /// Seconds it stays open, if it is open at `now`.
    pub fn open_for(&self, now: i64) -> Option<u64> {
        let t = self.opened_at?;
        let left = BREAKER_COOLDOWN_MS - (now - t);
        (left > 0).then(|| u64::try_from((left + 999) / 1000).unwrap_or(1).max(1))
    }

    /// `Err(seconds)` while open; closed, or half-open (one trial goes through): `Ok`.
    pub fn allows(&self, now: i64) -> Result<(), u64> {
        match self.open_for(now) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    /// Records an outcome; `true` when this opens the breaker (it was not open).
    pub fn record(&mut self, ok: bool, now: i64) -> bool {
        if ok {
            *self = Self::default();
            return false;
        }
        self.failures += 1;
        // A failed half-open trial re-opens at once.
        if self.failures >= BREAKER_THRESHOLD || self.opened_at.is_some() {
            let was_open = self.open_for(now).is_some();
            self.opened_at = Some(now);
            return !was_open;
        }
        false
    }
}

/// Open circuit breakers, for /hosts.
#[derive(Debug, Clone, Serialize)]
pub struct OpenBreaker {
    pub host: String,
    pub action: String,
    pub failures: u32,
    pub retry_after_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_slides() {
        assert_eq!(rate_slot(&[], 0, 2), Ok(()));
        assert_eq!(rate_slot(&[0, 1_000], 2_000, 2), Err(58));
        assert_eq!(rate_slot(&[0, 1_000], 59_999, 2), Err(1));
        assert_eq!(rate_slot(&[0, 1_000], 60_000, 2), Ok(()));
        assert_eq!(rate_slot(&[0, 1_000], 2_000, 3), Ok(()));
    }

    #[test]
    fn a_breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let mut b = Breaker::default();
        for i in 0..BREAKER_THRESHOLD - 1 {
            assert!(!b.record(false, i64::from(i)));
            assert_eq!(b.allows(10), Ok(()));
        }
        assert!(b.record(false, 100), "the threshold opens it");
        assert_eq!(b.allows(100), Err(300));
        assert_eq!(b.allows(100 + BREAKER_COOLDOWN_MS - 1), Err(1));
        // Half-open: one trial; failing re-opens at once, succeeding closes.
        let trial = 100 + BREAKER_COOLDOWN_MS;
        assert_eq!(b.allows(trial), Ok(()));
        let mut failed = b;
        assert!(failed.record(false, trial));
        assert_eq!(failed.allows(trial + 1), Err(300));
        b.record(true, trial);
        assert_eq!(b, Breaker::default());
    }
}
