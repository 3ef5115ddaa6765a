//! Per-user limits at the gateway: a token-bucket request rate and a cap on runs queued or
//! running at once, per limits tier. Both are kept in this gateway's memory (see
//! `docs/api-auth.md`, "Several gateways", for why, and what that means with several).
//!
//! Runs in flight are counted from acceptance until the gateway hears that the run ended:
//! the executor's notice on this gateway's `done` subject, a `?wait=true` answer, a kill of
//! a queued run, or a stored final result. A notice can be lost (an executor that died
//! mid-run and a run that is then redelivered elsewhere still sends one; a gateway
//! restart loses the counts with it), so a user found at the cap has the entries older
//! than [`RECHECK_AFTER`] checked against the results store first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_proto::{Limits, LimitsRequest};

/// A run counted longer than this is looked up in the store when its user is at the cap.
pub const RECHECK_AFTER: Duration = Duration::from_secs(5);
/// Buckets are pruned (full ones dropped) every this many requests.
const PRUNE_EVERY: u64 = 4096;

/// The limits of one tier of users.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Requests per second a user may sustain; 0 turns the rate limit off.
    pub rate_per_s: f64,
    /// Requests a user may make at once above the rate (the bucket's size).
    pub burst: u32,
    /// Runs queued or running at once per user; 0 turns the cap off.
    pub max_active_runs: u32,
    /// Caps on what a run may ask for, under the server's maxima (unset: the server's).
    pub max_limits: LimitsRequest,
}

impl Tier {
    /// No limits at all (the library's default; the CLI sets real ones).
    pub const UNLIMITED: Tier = Tier {
        rate_per_s: 0.0,
        burst: 0,
        max_active_runs: 0,
        max_limits: LimitsRequest { wall_ms: None, cpu_ms: None, memory_mb: None, pids: None, output_bytes: None },
    };

    /// The server's maxima lowered by this tier's.
    pub fn cap(&self, server: &Limits) -> Limits {
        let m = &self.max_limits;
        let low = |tier: Option<u64>, server: u64| tier.map_or(server, |t| t.clamp(1, server));
        Limits {
            wall_ms: low(m.wall_ms, server.wall_ms),
            cpu_ms: low(m.cpu_ms, server.cpu_ms),
            memory_mb: low(m.memory_mb, server.memory_mb),
            pids: low(m.pids, server.pids),
            output_bytes: low(m.output_bytes, server.output_bytes),
            file_bytes: server.file_bytes,
        }
    }
}

/// Why a request was turned away (a 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Over {
    /// The user's request rate; retry after this many seconds.
    Rate { retry_after_s: u64 },
    /// The user's runs in flight; these entries are old enough to be checked for an end
    /// nobody told this gateway about.
    Runs { active: usize, max: u32, stale: Vec<String> },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The gateway's per-user counters.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<(HashMap<String, Bucket>, u64)>,
    /// user -> run id -> when accepted.
    active: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Limiter {
    /// Takes one request of `user` from its bucket.
    pub fn hit(&self, user: &str, tier: &Tier, now: Instant) -> Result<(), Over> {
        if tier.rate_per_s <= 0.0 {
            return Ok(());
        }
        let size = f64::from(tier.burst.max(1));
        let mut guard = self.buckets.lock().expect("the limiter lock is never poisoned");
        let (buckets, count) = &mut *guard;
        *count += 1;
        if *count % PRUNE_EVERY == 0 {
            // A bucket that has refilled holds nothing worth keeping.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * tier.rate_per_s < size);
        }
        let b = buckets.entry(user.to_string()).or_insert(Bucket { tokens: size, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * tier.rate_per_s).min(size);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / tier.rate_per_s;
            Err(Over::Rate { retry_after_s: wait.ceil().max(1.0) as u64 })
        }
    }

    /// Counts `run_id` as in flight for `user`, unless the user is at the tier's cap.
    pub fn reserve(&self, user: &str, run_id: &str, tier: &Tier, now: Instant) -> Result<(), Over> {
        let mut active = self.active.lock().expect("the limiter lock is never poisoned");
        let runs = active.entry(user.to_string()).or_default();
        if tier.max_active_runs > 0 && runs.len() >= tier.max_active_runs as usize {
            let stale = runs.iter().filter(|(_, at)| now.duration_since(**at) >= RECHECK_AFTER);
            let stale = stale.map(|(id, _)| id.clone()).collect();
            return Err(Over::Runs { active: runs.len(), max: tier.max_active_runs, stale });
        }
        runs.insert(run_id.to_string(), now);
        Ok(())
    }

    /// `run_id` of `user` has ended (or was never queued).
    pub fn release(&self, user: &str, run_id: &str) {
        let mut active = self.active.lock().expect("the limiter lock is never poisoned");
        if let Some(runs) = active.get_mut(user) {
            runs.remove(run_id);
            if runs.is_empty() {
                active.remove(user);
            }
        }
    }

    /// Runs in flight for `user`.
    pub fn active(&self, user: &str) -> usize {
        self.active.lock().expect("the limiter lock is never poisoned").get(user).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(rate: f64, burst: u32, runs: u32) -> Tier {
        Tier { rate_per_s: rate, burst, max_active_runs: runs, ..Tier::UNLIMITED }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let l = Limiter::default();
        let t = tier(2.0, 3, 0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.hit("u", &t, t0), Ok(()));
        }
        assert_eq!(l.hit("u", &t, t0), Err(Over::Rate { retry_after_s: 1 }));
        assert_eq!(l.hit("other", &t, t0), Ok(()), "users have their own buckets");
        // Half a second at 2/s refills one request, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.hit("u", &t, t1), Ok(()));
        assert!(l.hit("u", &t, t1).is_err());
        // A long pause refills to the burst size only.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.hit("u", &t, t2), Ok(()));
        }
        assert!(l.hit("u", &t, t2).is_err());
        let slow = tier(0.1, 1, 0);
        assert_eq!(l.hit("s", &slow, t0), Ok(()));
        assert_eq!(l.hit("s", &slow, t0), Err(Over::Rate { retry_after_s: 10 }));
        assert_eq!(l.hit("s", &Tier::UNLIMITED, t0), Ok(()), "rate 0 means no limit");
    }

    #[test]
    fn runs_in_flight_are_capped_and_released() {
        let l = Limiter::default();
        let t = tier(0.0, 0, 2);
        let t0 = Instant::now();
        l.reserve("u", "r1", &t, t0).unwrap();
        l.reserve("u", "r2", &t, t0 + RECHECK_AFTER).unwrap();
        let over = l.reserve("u", "r3", &t, t0 + RECHECK_AFTER).unwrap_err();
        assert_eq!(over, Over::Runs { active: 2, max: 2, stale: vec!["r1".into()] });
        l.reserve("v", "r4", &t, t0).unwrap();
        l.release("u", "r1");
        l.release("u", "nope");
        assert_eq!(l.active("u"), 1);
        l.reserve("u", "r3", &t, t0).unwrap();
        l.release("u", "r2");
        l.release("u", "r3");
        assert_eq!(l.active("u"), 0);
        assert!(l.active.lock().unwrap().get("u").is_none(), "empty users are dropped");
    }

    #[test]
    fn tiers_lower_the_server_maxima_never_raise_them() {
        let t = Tier {
            max_limits: LimitsRequest { wall_ms: Some(2000), memory_mb: Some(1 << 20), ..Default::default() },
            ..Tier::UNLIMITED
        };
        let cap = t.cap(&Limits::MAX);
        assert_eq!(cap.wall_ms, 2000);
        assert_eq!(cap.memory_mb, Limits::MAX.memory_mb);
        assert_eq!(cap.cpu_ms, Limits::MAX.cpu_ms);
    }
}
