//! How a hearth process proves itself to NATS and protects the connection: user/password,
//! a token, an nkey seed or a credentials file (JWT + nkey, NATS's decentralized auth), and
//! TLS (a CA to trust, a client certificate for mutual TLS, TLS required). The gateway and
//! the executor take the same settings.

use std::fmt;
use std::path::PathBuf;

use async_nats::ConnectOptions;

use crate::error::BusError;

/// NATS credentials and TLS; all optional (the default is a plain connection, no auth).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`): the server knows the public key.
    pub nkey_seed: Option<String>,
    /// A file holding an nkey seed (read at connect).
    pub nkey_file: Option<PathBuf>,
    /// A `.creds` file (a user JWT and its nkey seed).
    pub creds_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the server's certificate (else the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection that is not TLS (also implied by any TLS file or a `tls://` URL).
    pub require_tls: bool,
}

impl fmt::Debug for NatsSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsSecurity")
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("nkey_seed", &secret(&self.nkey_seed))
            .field("nkey_file", &self.nkey_file)
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

fn invalid(what: &str) -> BusError {
    BusError::Security(what.to_string())
}

impl NatsSecurity {
    /// Whether anything TLS is asked for.
    pub fn wants_tls(&self) -> bool {
        self.require_tls || self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// Checks that the settings make sense together (once, at start).
    pub fn validate(&self) -> Result<(), BusError> {
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some() || self.nkey_file.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(invalid("give one of user/password, token, nkey seed or credentials file"));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(invalid("a NATS user needs a password, and a password a user"));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("a TLS client certificate needs its key, and a key its certificate"));
        }
        if self.nkey_seed.is_some() && self.nkey_file.is_some() {
            return Err(invalid("give an nkey seed or a seed file, not both"));
        }
        for path in
            [&self.nkey_file, &self.creds_file, &self.tls_ca, &self.tls_cert, &self.tls_key].into_iter().flatten()
        {
            if !path.is_file() {
                return Err(BusError::Security(format!("{} is not a readable file", path.display())));
            }
        }
        Ok(())
    }

    /// `options` with these credentials and TLS settings.
    pub async fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, BusError> {
        self.validate()?;
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        let seed = match &self.nkey_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| BusError::Security(format!("reading {}: {e}", path.display())))?,
            ),
            None => self.nkey_seed.clone(),
        };
        if let Some(seed) = seed {
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| BusError::Security(format!("reading {}: {e}", path.display())))?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.wants_tls() {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_contradict_each_other_are_refused_and_secrets_never_printed() {
        let pw = NatsSecurity { user: Some("u".into()), password: Some("hunter2".into()), ..Default::default() };
        assert!(pw.validate().is_ok());
        assert!(!format!("{pw:?}").contains("hunter2"));
        let half = NatsSecurity { user: Some("u".into()), ..Default::default() };
        assert!(half.validate().is_err());
        let two = NatsSecurity { token: Some("t".into()), ..pw.clone() };
        assert!(two.validate().is_err());
        let cert_only = NatsSecurity { tls_cert: Some("/etc/hostname".into()), ..Default::default() };
        assert!(cert_only.validate().is_err());
        let missing = NatsSecurity { tls_ca: Some("/no/such/ca.pem".into()), ..Default::default() };
        assert!(missing.validate().unwrap_err().to_string().contains("/no/such/ca.pem"));
        assert!(NatsSecurity { require_tls: true, ..Default::default() }.wants_tls());
    }
}
