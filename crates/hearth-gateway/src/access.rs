//! The access file (`hearth gateway --auth-file`): API keys, the session-token secret and
//! lifetimes, and the limits tiers. TOML, every field optional, unknown fields refused:
//!
//! ```toml
//! session_secret = "at least 32 bytes, the same on every gateway"   # or session_secret_file
//! token_ttl_s = 3600          # a token's lifetime when POST /v1/sessions asks for none
//! token_ttl_max_s = 86400     # the longest it may ask for
//!
//! [[api_keys]]
//! name = "backend"            # for logs; never the key
//! key = "a long random string"    # or key_sha256 = "<hex digest of the key>"
//! tier = "pro"                # default: "default"
//!
//! [tiers.default]             # fields left out keep the command line's values
//! rate_per_s = 10
//! burst = 40
//! max_active_runs = 4
//!
//! [tiers.pro]
//! max_active_runs = 32
//! max_limits = { wall_ms = 30000, memory_mb = 1024 }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_proto::LimitsRequest;
use serde::Deserialize;

use crate::auth::{Auth, AuthConfigError, DEFAULT_TIER};
use crate::limits::Tier;

/// The tiers by name; `default` is always there.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiers(pub HashMap<String, Tier>);

impl Tiers {
    /// Only the `default` tier, as given.
    pub fn single(default: Tier) -> Tiers {
        Tiers(HashMap::from([(DEFAULT_TIER.to_string(), default)]))
    }

    /// The tier named `name` (a tier a token names but no longer configured: `default`).
    pub fn get(&self, name: &str) -> &Tier {
        self.0.get(name).or_else(|| self.0.get(DEFAULT_TIER)).unwrap_or(&Tier::UNLIMITED)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.keys().cloned().collect();
        names.sort();
        names
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    session_secret: Option<String>,
    session_secret_file: Option<PathBuf>,
    token_ttl_s: Option<u64>,
    token_ttl_max_s: Option<u64>,
    #[serde(default)]
    api_keys: Vec<KeyEntry>,
    #[serde(default)]
    tiers: HashMap<String, TierEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    rate_per_s: Option<f64>,
    burst: Option<u32>,
    max_active_runs: Option<u32>,
    #[serde(default)]
    max_limits: LimitsRequest,
}

fn invalid(why: impl Into<String>) -> AuthConfigError {
    AuthConfigError::Invalid(why.into())
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads the access file at `path` over `auth` and `tiers` (what the command line set).
pub fn load(path: &Path, auth: Auth, tiers: Tiers) -> Result<(Auth, Tiers), AuthConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("reading {}: {e}", path.display())))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")), auth, tiers)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Parses an access file (relative paths in it are taken from `dir`).
pub fn parse(text: &str, dir: &Path, mut auth: Auth, mut tiers: Tiers) -> Result<(Auth, Tiers), AuthConfigError> {
    let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let base = tiers.get(DEFAULT_TIER).clone();
    for (name, t) in file.tiers {
        if hearth_proto::ids::validate("tier", &name).is_err() {
            return Err(invalid(format!("tier name {name:?} must be [A-Za-z0-9_-]{{1,64}}")));
        }
        let from = tiers.0.get(&name).cloned().unwrap_or_else(|| base.clone());
        let rate = t.rate_per_s.unwrap_or(from.rate_per_s);
        if !rate.is_finite() || rate < 0.0 {
            return Err(invalid(format!("tier {name}: rate_per_s must be 0 (off) or more")));
        }
        let tier = Tier {
            rate_per_s: rate,
            burst: t.burst.unwrap_or(from.burst),
            max_active_runs: t.max_active_runs.unwrap_or(from.max_active_runs),
            max_limits: t.max_limits,
        };
        tiers.0.insert(name, tier);
    }
    auth.tiers = tiers.names();
    let secret = match (file.session_secret, file.session_secret_file) {
        (Some(_), Some(_)) => return Err(invalid("give session_secret or session_secret_file, not both")),
        (Some(s), None) => Some(s.into_bytes()),
        (None, Some(p)) => {
            let p = dir.join(p);
            let s = std::fs::read_to_string(&p).map_err(|e| invalid(format!("reading {}: {e}", p.display())))?;
            Some(s.trim().as_bytes().to_vec())
        }
        (None, None) => None,
    };
    if let Some(secret) = secret {
        auth = auth.with_secret(&secret)?;
    }
    if let Some(s) = file.token_ttl_max_s {
        auth.token_ttl_max = Duration::from_secs(s.max(1));
    }
    if let Some(s) = file.token_ttl_s {
        auth.token_ttl = Duration::from_secs(s.max(1));
    }
    auth.token_ttl = auth.token_ttl.min(auth.token_ttl_max);
    for k in file.api_keys {
        let tier = k.tier.as_deref().unwrap_or(DEFAULT_TIER);
        match (&k.key, &k.key_sha256) {
            (Some(key), None) => auth.add_key(&k.name, key, tier)?,
            (None, Some(digest)) => {
                let digest = hex32(digest).ok_or_else(|| AuthConfigError::BadKey {
                    name: k.name.clone(),
                    why: "key_sha256 must be 64 hex digits".into(),
                })?;
                auth.add_key_digest(&k.name, digest, tier)?
            }
            _ => {
                return Err(AuthConfigError::BadKey {
                    name: k.name,
                    why: "give key or key_sha256 (one of them)".into(),
                })
            }
        }
    }
    Ok((auth, tiers))
}

/// Adds the keys of a `name=key,name=key` list (`HEARTH_API_KEYS`), all of tier `default`.
pub fn add_key_list(auth: &mut Auth, list: &str) -> Result<(), AuthConfigError> {
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, key) = entry.split_once('=').ok_or_else(|| {
            invalid(format!(
                "HEARTH_API_KEYS entries are name=key, not {:?}",
                entry.chars().take(4).collect::<String>() + "..."
            ))
        })?;
        auth.add_key(name.trim(), key.trim(), DEFAULT_TIER)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Caller;

    fn base() -> (Auth, Tiers) {
        let default = Tier { rate_per_s: 20.0, burst: 40, max_active_runs: 8, ..Tier::UNLIMITED };
        (Auth::closed(), Tiers::single(default))
    }

    #[test]
    fn a_full_file_parses_and_tiers_inherit_the_command_line() {
        let text = r#"
            session_secret = "0123456789abcdef0123456789abcdef"
            token_ttl_s = 600
            [[api_keys]]
            name = "backend"
            key = "k-0123456789abcdef"
            tier = "pro"
            [[api_keys]]
            name = "ci"
            key_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
            [tiers.pro]
            max_active_runs = 32
            max_limits = { wall_ms = 30000 }
        "#;
        let (auth, tiers) = base();
        let (auth, tiers) = parse(text, Path::new("."), auth, tiers).unwrap();
        assert_eq!(auth.key_count(), 2);
        assert!(auth.secret_configured);
        assert_eq!(auth.token_ttl, Duration::from_secs(600));
        let pro = tiers.get("pro");
        assert_eq!((pro.rate_per_s, pro.burst, pro.max_active_runs), (20.0, 40, 32));
        assert_eq!(pro.max_limits.wall_ms, Some(30000));
        assert_eq!(tiers.get("nope").max_active_runs, 8, "unknown tiers fall back to default");
        assert_eq!(auth.tiers, vec!["default".to_string(), "pro".to_string()]);
        let token =
            auth.issue(&crate::auth::Claims { u: "u".into(), s: "s".into(), t: "pro".into(), exp: u64::MAX / 2 });
        assert_eq!(auth.verify(&token).unwrap().t, "pro");
        let _ = Caller::Anonymous;
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("sessions_secret = 'x'", "unknown field"),
            ("session_secret = 'short'", "at least 32"),
            ("[[api_keys]]\nname = 'a'\n", "give key or key_sha256"),
            ("[[api_keys]]\nname = 'a'\nkey = 'k-0123456789abcdef'\ntier = 'gold'\n", "not configured"),
            ("[[api_keys]]\nname = 'a'\nkey_sha256 = 'abc'\n", "64 hex"),
            ("[tiers.'a.b']\n", "tier name"),
            ("[tiers.x]\nrate_per_s = -1.0\n", "rate_per_s"),
            ("[tiers.x]\nmax_limits = { wall = 5 }\n", "unknown field"),
        ] {
            let (auth, tiers) = base();
            let err = parse(text, Path::new("."), auth, tiers).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn key_lists_from_the_environment() {
        let mut auth = Auth::closed();
        add_key_list(&mut auth, "a=k-0123456789abcdef, b=k-fedcba9876543210,").unwrap();
        assert_eq!(auth.key_count(), 2);
        assert!(add_key_list(&mut auth, "nokey").is_err());
        assert!(add_key_list(&mut auth, "a=short").is_err());
    }
}
