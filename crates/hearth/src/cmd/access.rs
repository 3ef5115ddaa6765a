//! Who may call the gateway, as `hearth gateway` and `hearth up` take it: API keys (the
//! access file or `HEARTH_API_KEYS`), the session-token secret, dev mode, and the default
//! tier's per-user limits. See docs/api-auth.md.

use std::path::PathBuf;

use anyhow::bail;
use hearth_gateway::access::{self, Tiers};
use hearth_gateway::auth::Auth;
use hearth_gateway::limits::Tier;

#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// Dev mode: serve anonymous callers (no API key, no token). Loopback only.
    #[arg(long)]
    pub dev: bool,
    /// The access file (TOML): API keys, the session-token secret, limits tiers.
    #[arg(long, env = "HEARTH_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// API keys as `name=key,name=key` (tier `default`); prefer the environment variable.
    #[arg(long, env = "HEARTH_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Secret that signs session tokens (32+ bytes; the same on every gateway).
    #[arg(long, env = "HEARTH_SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,
    /// Requests per second a user may sustain (token bucket; 0 turns it off). Default: 20
    /// with API keys, off in dev mode without keys.
    #[arg(long)]
    pub rate_per_s: Option<f64>,
    /// Requests a user may make at once above that rate. Default: 40.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Runs queued or running at once per user (0 turns the cap off). Default: 8 with API
    /// keys, off in dev mode without keys.
    #[arg(long)]
    pub max_active_runs: Option<u32>,
}

/// The default tier's limits when API keys are configured.
pub const KEYED_DEFAULT: Tier = Tier { rate_per_s: 20.0, burst: 40, max_active_runs: 8, ..Tier::UNLIMITED };

impl AccessArgs {
    /// The gateway's callers and tiers. Without any API key this is an error, unless
    /// `--dev` is given or `dev_by_default` (`hearth up`: a first try on one's own machine).
    pub fn build(&self, dev_by_default: bool) -> anyhow::Result<(Auth, Tiers)> {
        if self.rate_per_s.is_some_and(|r| !r.is_finite() || r < 0.0) {
            bail!("--rate-per-s must be 0 (off) or more");
        }
        let mut auth = Auth::closed();
        if let Some(list) = &self.api_keys {
            access::add_key_list(&mut auth, list)?;
        }
        let keyed = auth.key_count() > 0 || self.auth_file.is_some();
        // Dev mode without keys (one's own machine, loopback) has no per-user limits unless
        // asked for: a bench against `hearth up` measures hearth, not the limiter.
        let base = if keyed { KEYED_DEFAULT } else { Tier::UNLIMITED };
        let default = Tier {
            rate_per_s: self.rate_per_s.unwrap_or(base.rate_per_s),
            burst: self.burst.unwrap_or(KEYED_DEFAULT.burst),
            max_active_runs: self.max_active_runs.unwrap_or(base.max_active_runs),
            ..Tier::UNLIMITED
        };
        let mut tiers = Tiers::single(default);
        if let Some(path) = &self.auth_file {
            (auth, tiers) = access::load(path, auth, tiers)?;
        }
        if let Some(secret) = &self.session_secret {
            auth = auth.with_secret(secret.as_bytes())?;
        }
        let keys = auth.key_count();
        auth.anonymous = self.dev || (dev_by_default && keys == 0);
        if keys == 0 && !auth.anonymous {
            bail!(
                "no API keys configured: give --auth-file or HEARTH_API_KEYS (see docs/api-auth.md), \
                 or --dev for anonymous use on loopback"
            );
        }
        Ok((auth, tiers))
    }
}

/// Says loudly what the access mode means, at start.
pub fn announce(auth: &Auth, url: &str) {
    if auth.anonymous {
        eprintln!(
            "\n  !! DEV MODE: anonymous access. Anyone who can reach {url} may run code here without\n  \
             !! an API key (served on loopback only). Configure API keys (--auth-file or\n  \
             !! HEARTH_API_KEYS) to require them.\n"
        );
    }
    if auth.key_count() > 0 {
        eprintln!("hearth: {} API key(s) accepted", auth.key_count());
        if !auth.secret_configured {
            eprintln!(
                "hearth: no HEARTH_SESSION_SECRET: session tokens are signed with a secret made up now, \
                 valid on this gateway only until it restarts (give every gateway the same secret)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dev: bool, keys: Option<&str>) -> AccessArgs {
        AccessArgs {
            dev,
            auth_file: None,
            api_keys: keys.map(str::to_string),
            session_secret: None,
            rate_per_s: None,
            burst: None,
            max_active_runs: None,
        }
    }

    #[test]
    fn anonymous_access_is_explicit_or_the_first_try() {
        // `hearth gateway` without keys refuses, unless --dev.
        let e = args(false, None).build(false).unwrap_err().to_string();
        assert!(e.contains("no API keys configured") && e.contains("--dev"), "{e}");
        assert!(args(true, None).build(false).unwrap().0.anonymous);
        // `hearth up` is dev mode by default, but not once keys are configured.
        assert!(args(false, None).build(true).unwrap().0.anonymous);
        let (auth, tiers) = args(false, Some("me=k-0123456789abcdef")).build(true).unwrap();
        assert!(!auth.anonymous);
        assert_eq!(auth.key_count(), 1);
        assert_eq!(tiers.get("default").max_active_runs, 8, "limits are on with keys");
        assert_eq!(tiers.get("default").rate_per_s, 20.0);
        // Dev mode without keys has none, unless asked for.
        let dev = args(true, None).build(false).unwrap().1;
        assert_eq!((dev.get("default").rate_per_s, dev.get("default").max_active_runs), (0.0, 0));
        let asked = AccessArgs { max_active_runs: Some(2), ..args(true, None) };
        assert_eq!(asked.build(false).unwrap().1.get("default").max_active_runs, 2);
        // --dev with keys: both.
        assert!(args(true, Some("me=k-0123456789abcdef")).build(false).unwrap().0.anonymous);
        let bad = AccessArgs { rate_per_s: Some(-1.0), ..args(true, None) };
        assert!(bad.build(false).is_err());
    }
}
