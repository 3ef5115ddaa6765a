//! Who is calling, and what they may touch.
//!
//! - **API keys** (servers): `Authorization: Bearer <key>`. A key holder may act for any
//!   user and session (it names them in the body), and issue session tokens.
//! - **Session tokens** (browsers): `POST /v1/sessions` (API key holders only) issues a
//!   short-lived token naming one user and one session, signed with HMAC-SHA256 under the
//!   gateway's secret. It is sent as `Authorization: Bearer <token>` on HTTP and as the
//!   `token=` query parameter on `/v1/ws` (browsers cannot set WebSocket headers). A token
//!   reaches only its own session's runs, events and replays, and its own user's results.
//! - **Anonymous** callers are served only in dev mode, which [`crate::serve`] refuses on
//!   any address but loopback.
//!
//! A token is `hs1.<payload>.<signature>`, both base64url without padding; the payload is
//! JSON `{"u":user,"s":session,"t":tier,"exp":unix_seconds}`, the signature the HMAC of
//! `hs1.<payload>`. Every gateway of a cluster must share the secret to accept each other's
//! tokens. API keys are kept only as SHA-256 digests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_proto::api::{RunRequest, RunResult};
use hearth_proto::ids;
use ring::hmac;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::ApiError;
use crate::AppState;

/// Prefix (and version) of every session token.
pub const TOKEN_PREFIX: &str = "hs1.";
/// The tier of callers not given one.
pub const DEFAULT_TIER: &str = "default";
/// Shortest accepted session secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Why an auth configuration was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("the session secret must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    #[error("api key {name:?}: {why}")]
    BadKey { name: String, why: String },
    #[error("api key {name:?} names tier {tier:?}, which is not configured")]
    UnknownTier { name: String, tier: String },
    #[error("{0}")]
    Invalid(String),
}

/// One API key, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// For logs and metrics; never the key itself.
    pub name: String,
    /// Limits tier of the key's requests (and default tier of the tokens it issues).
    pub tier: String,
}

/// The gateway's callers: keys, token signing, and whether anonymous callers are served.
#[derive(Clone)]
pub struct Auth {
    /// Dev mode: callers without credentials are served (loopback only).
    pub anonymous: bool,
    keys: HashMap<[u8; 32], ApiKey>,
    secret: hmac::Key,
    /// Whether the secret was configured (else made up at start: tokens then work only on
    /// this gateway until it restarts).
    pub secret_configured: bool,
    /// Lifetime of a token that asks for none.
    pub token_ttl: Duration,
    /// The longest lifetime a token may ask for.
    pub token_ttl_max: Duration,
    /// Tiers a token may be issued for.
    pub tiers: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("anonymous", &self.anonymous)
            .field("keys", &self.keys.values().map(|k| &k.name).collect::<Vec<_>>())
            .field("secret_configured", &self.secret_configured)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().try_into().expect("a SHA-256 digest is 32 bytes")
}

fn random_secret() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
    bytes
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Auth {
    /// Dev mode: anonymous callers welcome, no keys, a secret made up now.
    pub fn dev() -> Auth {
        Auth {
            anonymous: true,
            keys: HashMap::new(),
            secret: hmac::Key::new(hmac::HMAC_SHA256, &random_secret()),
            secret_configured: false,
            token_ttl: Duration::from_secs(3600),
            token_ttl_max: Duration::from_secs(24 * 3600),
            tiers: vec![DEFAULT_TIER.to_string()],
        }
    }

    /// Nobody is served without a key or a token (until keys are added).
    pub fn closed() -> Auth {
        Auth { anonymous: false, ..Auth::dev() }
    }

    /// Signs tokens with `secret` (shared by every gateway of a cluster).
    pub fn with_secret(mut self, secret: &[u8]) -> Result<Auth, AuthConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthConfigError::ShortSecret);
        }
        self.secret = hmac::Key::new(hmac::HMAC_SHA256, secret);
        self.secret_configured = true;
        Ok(self)
    }

    /// Accepts `key` as an API key named `name`, of `tier`.
    pub fn add_key(&mut self, name: &str, key: &str, tier: &str) -> Result<(), AuthConfigError> {
        let bad = |why: &str| AuthConfigError::BadKey { name: name.to_string(), why: why.to_string() };
        if key.len() < 16 {
            return Err(bad("a key must be at least 16 characters"));
        }
        if key.starts_with(TOKEN_PREFIX) || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("a key may not start with \"hs1.\" nor contain spaces or control characters"));
        }
        self.add_key_digest(name, sha256(key.as_bytes()), tier)
    }

    /// Accepts the key whose SHA-256 digest is `digest` (so config files need not hold keys).
    pub fn add_key_digest(&mut self, name: &str, digest: [u8; 32], tier: &str) -> Result<(), AuthConfigError> {
        if !self.tiers.iter().any(|t| t == tier) {
            return Err(AuthConfigError::UnknownTier { name: name.to_string(), tier: tier.to_string() });
        }
        self.keys.insert(digest, ApiKey { name: name.to_string(), tier: tier.to_string() });
        Ok(())
    }

    /// How many API keys are accepted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// A signed token for `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims encode"));
        let signed = format!("{TOKEN_PREFIX}{payload}");
        let tag = hmac::sign(&self.secret, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = || ApiError::Unauthorized("invalid or expired session token".into());
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
        let (payload, tag) = rest.split_once('.').ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let signed = &token[..TOKEN_PREFIX.len() + payload.len()];
        hmac::verify(&self.secret, signed.as_bytes(), &tag).map_err(|_| invalid())?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if claims.exp <= now_s()
            || ids::validate("user_id", &claims.u).is_err()
            || ids::validate("session_id", &claims.s).is_err()
        {
            return Err(invalid());
        }
        Ok(claims)
    }

    /// Who presents `credential` (from `Authorization: Bearer`): a token or an API key.
    fn identify(&self, credential: &str) -> Result<Caller, ApiError> {
        if credential.starts_with(TOKEN_PREFIX) {
            return self.verify(credential).map(Caller::Session);
        }
        match self.keys.get(&sha256(credential.as_bytes())) {
            Some(key) => Ok(Caller::Server(key.clone())),
            None => Err(ApiError::Unauthorized("invalid API key".into())),
        }
    }
}

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The user.
    pub u: String,
    /// The session.
    pub s: String,
    /// The limits tier.
    pub t: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Dev mode, no credentials.
    Anonymous,
    /// An API key holder.
    Server(ApiKey),
    /// A session token holder: one user, one session.
    Session(Claims),
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
        let caller = identify_request(parts, &state.config.auth)?;
        if let Caller::Session(c) = &caller {
            // Every request of a token holder counts against its user's rate.
            crate::runs::hit(state, &c.u, state.config.tiers.get(&c.t))?;
        }
        Ok(caller)
    }
}

/// The caller a request's credentials name: `Authorization: Bearer`, else `token=`, else
/// anonymous (dev mode only).
fn identify_request(parts: &Parts, auth: &Auth) -> Result<Caller, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::Unauthorized("unreadable Authorization header".into()))?;
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
            return Err(ApiError::Unauthorized("use Authorization: Bearer <API key or session token>".into()));
        }
        return auth.identify(credential.trim());
    }
    let query = Query::<TokenQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.token);
    if let Some(token) = query {
        if !token.starts_with(TOKEN_PREFIX) {
            // API keys do not belong in URLs (logs, histories); only tokens go there.
            return Err(ApiError::Unauthorized(
                "token= takes a session token; send API keys as Authorization: Bearer".into(),
            ));
        }
        return auth.verify(&token).map(Caller::Session);
    }
    if auth.anonymous {
        Ok(Caller::Anonymous)
    } else {
        Err(ApiError::Unauthorized("authentication required: Authorization: Bearer <API key or session token>".into()))
    }
}

fn forbidden(what: &str, field: &str, value: &str) -> ApiError {
    ApiError::Forbidden(format!("this session token is for another {what}: {field} must be {value:?} or left out"))
}

impl Caller {
    /// The user a session token binds to.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Session(c) => Some(&c.u),
            _ => None,
        }
    }

    /// The limits tier of this caller's requests.
    pub fn tier(&self) -> &str {
        match self {
            Caller::Anonymous => DEFAULT_TIER,
            Caller::Server(k) => &k.tier,
            Caller::Session(c) => &c.t,
        }
    }

    /// Makes `req` the caller's: a session token fills in its user and session where the
    /// request leaves them out, and refuses any other.
    pub fn own_run(&self, req: &mut RunRequest) -> Result<(), ApiError> {
        let Caller::Session(c) = self else { return Ok(()) };
        for (what, field, value, mine) in
            [("user", "user_id", &mut req.user_id, &c.u), ("session", "session_id", &mut req.session_id, &c.s)]
        {
            if value.is_empty() {
                value.clone_from(mine);
            } else if value != mine {
                return Err(forbidden(what, field, mine));
            }
        }
        Ok(())
    }

    /// The session a WebSocket opens: the query's, which a token must match (or supply).
    pub fn ws_session(&self, asked: Option<String>) -> Result<String, ApiError> {
        match (self, asked) {
            (Caller::Session(c), None) => Ok(c.s.clone()),
            (Caller::Session(c), Some(s)) if s == c.s => Ok(s),
            (Caller::Session(c), Some(_)) => Err(forbidden("session", "session_id", &c.s)),
            (_, Some(s)) => Ok(s),
            (_, None) => Err(ApiError::BadRequest("session_id is required".into())),
        }
    }

    /// Whether the caller may read `r` back: a token only its own session's runs.
    pub fn may_read(&self, r: &RunResult) -> bool {
        match self {
            Caller::Session(c) => r.user_id == c.u && r.session_id == c.s,
            _ => true,
        }
    }

    /// Only servers (and anonymous callers, in dev mode) may issue tokens and read metrics.
    pub fn require_server(&self) -> Result<(), ApiError> {
        match self {
            Caller::Session(_) => Err(ApiError::Forbidden("this needs an API key, not a session token".into())),
            _ => Ok(()),
        }
    }
}

/// `POST /v1/sessions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub user_id: String,
    /// Made up (a UUIDv7) when left out.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Lifetime in seconds (default and cap: the gateway's configuration).
    #[serde(default)]
    pub ttl_s: Option<u64>,
    /// Limits tier (default: the issuing key's).
    #[serde(default)]
    pub tier: Option<String>,
}

/// `POST /v1/sessions`: an API key holder asks for a session token for one user and
/// session; answers 201 `{"token","user_id","session_id","tier","expires_at"}`.
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    caller.require_server()?;
    let bytes = crate::runs::read_body(body, 64 << 10).await?;
    let req: SessionRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid session request: {e}")))?;
    let (claims, token) = new_session(&state.config.auth, &caller, req)?;
    let body = serde_json::json!({
        "token": token, "user_id": claims.u, "session_id": claims.s, "tier": claims.t, "expires_at": claims.exp,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Checks `req` as asked by `caller` and issues its token: `(claims, token)`.
pub fn new_session(auth: &Auth, caller: &Caller, req: SessionRequest) -> Result<(Claims, String), ApiError> {
    caller.require_server()?;
    ids::validate("user_id", &req.user_id)?;
    let session_id = req.session_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    ids::validate("session_id", &session_id)?;
    let tier = req.tier.unwrap_or_else(|| caller.tier().to_string());
    if !auth.tiers.contains(&tier) {
        return Err(ApiError::BadRequest(format!("no tier {tier:?}: the tiers are {:?}", auth.tiers)));
    }
    let ttl = match req.ttl_s {
        Some(0) => return Err(ApiError::BadRequest("ttl_s must be at least 1".into())),
        Some(s) => Duration::from_secs(s).min(auth.token_ttl_max),
        None => auth.token_ttl,
    };
    let claims = Claims { u: req.user_id, s: session_id, t: tier, exp: now_s() + ttl.as_secs() };
    let token = auth.issue(&claims);
    Ok((claims, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let mut a = Auth::closed().with_secret(&[7u8; 32]).unwrap();
        a.add_key("backend", "k-0123456789abcdef", DEFAULT_TIER).unwrap();
        a
    }

    fn claims(exp: u64) -> Claims {
        Claims { u: "u1".into(), s: "s1".into(), t: DEFAULT_TIER.into(), exp }
    }

    #[test]
    fn tokens_verify_and_any_change_breaks_them() {
        let a = auth();
        let token = a.issue(&claims(now_s() + 60));
        assert_eq!(a.verify(&token).unwrap(), claims(now_s() + 60));
        assert!(token.starts_with(TOKEN_PREFIX));
        // Flip every character in turn: nothing but the original verifies.
        for i in TOKEN_PREFIX.len()..token.len() {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            assert!(a.verify(&t).is_err(), "tampered at {i}: {t}");
        }
        // Someone else's secret, an expired token, a forged payload.
        let other = Auth::closed().with_secret(&[8u8; 32]).unwrap();
        assert!(other.verify(&token).is_err());
        assert!(a.verify(&a.issue(&claims(now_s() - 1))).is_err());
        let (_, sig) = token.rsplit_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"u":"admin","s":"s1","t":"default","exp":99999999999}"#);
        assert!(a.verify(&format!("{TOKEN_PREFIX}{forged}.{sig}")).is_err());
        for junk in ["", "hs1.", "hs1..", "hs1.x.y", "hs1.e30.", "bearer"] {
            assert!(a.verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn keys_are_matched_by_digest_and_checked_when_added() {
        let mut a = auth();
        assert_eq!(
            a.identify("k-0123456789abcdef").unwrap(),
            Caller::Server(ApiKey { name: "backend".into(), tier: DEFAULT_TIER.into() })
        );
        assert!(a.identify("k-0123456789abcdeg").is_err());
        assert!(a.add_key("short", "abc", DEFAULT_TIER).is_err());
        assert!(a.add_key("spacey", "abc def ghi jkl mno", DEFAULT_TIER).is_err());
        assert!(matches!(a.add_key("x", "k-0123456789abcdeX", "gold"), Err(AuthConfigError::UnknownTier { .. })));
        assert!(Auth::closed().with_secret(b"short").is_err());
    }

    #[test]
    fn a_token_owns_only_its_user_and_session() {
        let c = Caller::Session(claims(now_s() + 60));
        let mut req = RunRequest::default();
        c.own_run(&mut req).unwrap();
        assert_eq!((req.user_id.as_str(), req.session_id.as_str()), ("u1", "s1"));
        let mut other = RunRequest { session_id: "s2".into(), ..RunRequest::default() };
        assert!(matches!(c.own_run(&mut other), Err(ApiError::Forbidden(_))));
        let mut other = RunRequest { user_id: "u2".into(), ..RunRequest::default() };
        assert!(c.own_run(&mut other).is_err());
        assert_eq!(c.ws_session(None).unwrap(), "s1");
        assert!(c.ws_session(Some("s2".into())).is_err());
        let mine = RunResult { user_id: "u1".into(), session_id: "s1".into(), ..RunResult::default() };
        assert!(c.may_read(&mine));
        assert!(!c.may_read(&RunResult { session_id: "s2".into(), ..mine.clone() }));
        assert!(!c.may_read(&RunResult { user_id: "u2".into(), ..mine }));
        assert!(c.require_server().is_err());
    }
}
