//! The executor's configuration: typed, with explicit defaults, validated once.

use std::path::PathBuf;
use std::time::Duration;

use hearth_bus::BusConfig;
use hearth_proto::Limits;

use crate::error::ExecutorError;

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub nats_url: String,
    /// Unique among executors; goes into the heartbeat subject (`[A-Za-z0-9_-]`).
    pub id: String,
    /// Runs at once.
    pub slots: usize,
    /// Ready plain sandboxes to keep.
    pub warm: usize,
    /// Ready sandboxes per language with a prestart loader, its interpreter already started
    /// (python, node): a run of that language skips the interpreter's start-up.
    pub prepared: usize,
    pub bus: BusConfig,
    pub heartbeat_every: Duration,
    /// Output is gathered this long before it is published (fewer, larger events).
    pub coalesce: Duration,
    /// The `hearth-agent` binary; found beside the executable when `None`.
    pub agent: Option<PathBuf>,
    /// Limits of a run that asks for none.
    pub limits_default: Limits,
    /// The most a run may ask for.
    pub limits_max: Limits,
    /// How long runs in hand may take to finish after shutdown was asked for.
    pub drain_timeout: Duration,
    /// How long a pull request waits for runs before it is renewed.
    pub pull_expires: Duration,
    /// The isolation driver and what it needs (image, guest resources).
    pub driver: crate::driver::DriverSpec,
    /// Sandboxes one delivery of a run may use when they fail before the user's program
    /// starts (then the run moves to a fresh one unseen); the last failure is reported.
    pub sandbox_attempts: u32,
}

/// The CPUs of this host (the default number of slots).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl ExecutorConfig {
    /// Defaults for an executor on `nats_url`.
    pub fn new(nats_url: impl Into<String>) -> ExecutorConfig {
        let slots = cpus();
        ExecutorConfig {
            nats_url: nats_url.into(),
            id: default_id(),
            slots,
            warm: slots,
            prepared: 2,
            bus: BusConfig::default(),
            heartbeat_every: Duration::from_secs(1),
            coalesce: Duration::from_millis(10),
            agent: None,
            limits_default: Limits::DEFAULT,
            limits_max: Limits::MAX,
            drain_timeout: Duration::from_secs(30),
            pull_expires: Duration::from_secs(2),
            driver: crate::driver::DriverSpec::default(),
            sandbox_attempts: 3,
        }
    }

    pub fn validate(&self) -> Result<(), ExecutorError> {
        let bad = |why: String| Err(ExecutorError::Config(why));
        if hearth_proto::ids::validate("executor id", &self.id).is_err() {
            return bad(format!("executor id {:?} must match [A-Za-z0-9_-]{{1,64}}", self.id));
        }
        if self.slots == 0 {
            return bad("slots must be at least 1".into());
        }
        if self.sandbox_attempts == 0 {
            return bad("sandbox_attempts must be at least 1".into());
        }
        if self.bus.max_deliver < 2 {
            return bad("max_deliver must be at least 2 (the last delivery only reports the failure)".into());
        }
        if self.bus.ack_wait < Duration::from_millis(300) {
            return bad("ack_wait must be at least 300 ms".into());
        }
        if self.heartbeat_every.is_zero() || self.pull_expires < Duration::from_millis(100) {
            return bad("heartbeat_every must be positive and pull_expires at least 100 ms".into());
        }
        Ok(())
    }
}

/// `<hostname>-<pid>`, cut to the id alphabet.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(40).collect();
    let host = if host.is_empty() { "executor".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        let c = ExecutorConfig::new("nats://127.0.0.1:4222");
        c.validate().unwrap();
        assert!(c.slots >= 1);
        let mut bad = c.clone();
        bad.id = "a.b".into();
        assert!(bad.validate().is_err());
        let mut bad = c.clone();
        bad.slots = 0;
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.bus.max_deliver = 1;
        assert!(bad.validate().is_err());
    }
}
