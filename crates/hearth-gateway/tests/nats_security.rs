//! The gateway and the executor against a nats-server that wants credentials and TLS. A run
//! goes end to end (gateway, executor, sandbox) with each way of proving oneself: user and
//! password over TLS (a CA and server certificate made for the test with openssl), an nkey
//! over mutual TLS (a client certificate the server verifies), a `.creds` file in operator
//! mode (JWTs made and signed here with nkeys), a token. Wrong credentials, an untrusted
//! certificate, a missing client certificate, a user JWT of an account the operator never
//! signed, or a plain connection are each refused with a clear error instead of hanging.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hearth_bus::{Bus, BusConfig, BusError, NatsSecurity};
use nkeys::KeyPair;
use serde_json::{json, Value};
use support::{post_json, NatsServer, Stack};

/// A throwaway CA and two certificates it signed, in `dir`: one for the server
/// (127.0.0.1 / localhost), one for a client (mutual TLS).
struct Certificates {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn certificates(dir: &Path) -> anyhow::Result<Certificates> {
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl").args(args).current_dir(dir).output().context("running openssl")?;
        ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=hearth test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    )?;
    let signed = |name: &str, subject: &str, ext: &str| -> anyhow::Result<(PathBuf, PathBuf)> {
        let (key, csr, extfile, pem) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"), format!("{name}.pem"));
        openssl(&[&["req"][..], &ec, &["-subj", subject, "-keyout", &key, "-out", &csr]].concat())?;
        std::fs::write(dir.join(&extfile), ext)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &pem,
        ])?;
        Ok((dir.join(pem), dir.join(key)))
    };
    let server = signed(
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    let client = signed("client", "/CN=hearth", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")?;
    Ok(Certificates { ca: dir.join("ca.pem"), server, client })
}

/// A NATS JWT (v2): `claims` plus `iss`/`sub`/`iat`/`jti`, signed with `issuer`'s nkey
/// ("ed25519-nkey"). The server checks the signature and the chain operator -> account ->
/// user; `jti` is only an id.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = json!({"jti": format!("{name}{iat}"), "iat": iat, "iss": issuer.public_key(), "sub": subject,
                        "name": name, "nats": nats});
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?));
    let signature = issuer.sign(signed.as_bytes()).map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// An account that may use JetStream without limits, signed by `operator`.
fn account_jwt(operator: &KeyPair, account: &KeyPair) -> anyhow::Result<String> {
    let limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
                        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
                        "consumer": -1});
    jwt(operator, &account.public_key(), "hearth", json!({"type": "account", "version": 2, "limits": limits}))
}

/// A `.creds` file: a user JWT signed by `account`, and the user's seed.
fn creds_file(path: &Path, account: &KeyPair) -> anyhow::Result<PathBuf> {
    let user = KeyPair::new_user();
    let nats = json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
    let token = jwt(account, &user.public_key(), "hearth-user", nats)?;
    let seed = user.seed().map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    std::fs::write(
        path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )?;
    Ok(path.to_path_buf())
}

/// Runs one program through the stack and checks what it printed.
async fn runs_end_to_end(stack: &Stack, session: &str) -> anyhow::Result<()> {
    let body = json!({"user_id": "u1", "session_id": session, "lang": "python", "code": "print('through', 6*7)"});
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body, Duration::from_secs(60)).await?;
    assert_eq!((a.status, a.json()["stdout"].as_str()), (200, Some("through 42\n")), "{:?}", a.json());
    Ok(())
}

async fn connect(url: &str, security: NatsSecurity) -> Result<Bus, BusError> {
    let config = BusConfig { security, ..support::quick_bus() };
    tokio::time::timeout(Duration::from_secs(20), Bus::connect(url, "hearth-test", config))
        .await
        .expect("connecting gives an answer in time, not a hang")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_end_to_end_over_tls_with_user_and_password() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Certificates { ca, server: (cert, key), .. } = certificates(dir.path())?;
    let conf = format!(
        "authorization {{ user: hearth, password: \"s3cret pass\" }}\ntls {{ cert_file: {cert:?}, key_file: {key:?} }}\n"
    );
    let nats = NatsServer::start_with(&conf)?;
    let url = nats.url.clone();
    let good = NatsSecurity {
        user: Some("hearth".into()),
        password: Some("s3cret pass".into()),
        tls_ca: Some(ca.clone()),
        ..NatsSecurity::default()
    };

    // Refused, each with an error that says so: a wrong password, a certificate nobody
    // told us to trust, no credentials at all.
    let wrong = NatsSecurity { password: Some("guess".into()), ..good.clone() };
    let e = connect(&url, wrong).await.err().context("a wrong password is refused")?;
    assert!(matches!(e, BusError::Connect { .. }), "{e}");
    let untrusted = NatsSecurity { tls_ca: None, ..good.clone() };
    assert!(connect(&url, untrusted).await.is_err(), "a certificate of an unknown CA is refused");
    assert!(connect(&url, NatsSecurity::default()).await.is_err(), "no credentials, no TLS: refused");
    let missing = NatsSecurity { tls_ca: Some(dir.path().join("nope.pem")), ..good.clone() };
    let e = connect(&url, missing).await.err().context("a missing CA file is refused")?;
    assert!(matches!(e, BusError::Security(_)) && e.to_string().contains("nope.pem"), "{e}");

    // The gateway and the executor both connect this way; a run goes through.
    let bus = BusConfig { security: good, ..support::quick_bus() };
    let stack = Stack::start_on(nats, bus, true, |_| {}).await?;
    runs_end_to_end(&stack, "tls").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_over_mutual_tls_runs_end_to_end_and_strangers_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = certificates(dir.path())?;
    let user = KeyPair::new_user();
    let (cert, key) = &certs.server;
    let ca = &certs.ca;
    let conf = format!(
        "authorization {{ users: [ {{ nkey: {} }} ] }}\n\
         tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {ca:?}, verify: true }}\n",
        user.public_key()
    );
    let nats = NatsServer::start_with(&conf)?;
    let seed_file = dir.path().join("hearth.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed()?))?;
    let good = NatsSecurity {
        nkey_file: Some(seed_file),
        tls_ca: Some(certs.ca.clone()),
        tls_cert: Some(certs.client.0.clone()),
        tls_key: Some(certs.client.1.clone()),
        ..NatsSecurity::default()
    };
    let stranger = NatsSecurity { nkey_file: None, nkey_seed: Some(KeyPair::new_user().seed()?), ..good.clone() };
    assert!(connect(&nats.url, stranger).await.is_err(), "an nkey the server does not know is refused");
    let no_client_cert = NatsSecurity { tls_cert: None, tls_key: None, ..good.clone() };
    assert!(connect(&nats.url, no_client_cert).await.is_err(), "the server wants a client certificate");
    // A certificate of the right CA but made for serving (no clientAuth use): refused too.
    let wrong_cert =
        NatsSecurity { tls_cert: Some(certs.server.0.clone()), tls_key: Some(certs.server.1.clone()), ..good.clone() };
    assert!(connect(&nats.url, wrong_cert).await.is_err(), "a server certificate is no client certificate");

    let bus = BusConfig { security: good, ..support::quick_bus() };
    let stack = Stack::start_on(nats, bus, true, |_| {}).await?;
    runs_end_to_end(&stack, "nkey").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_runs_end_to_end_in_operator_mode() -> anyhow::Result<()> {
    // Operator mode: the server trusts an operator; the operator signed the account (which
    // may use JetStream); the account signed the user whose JWT and seed make the .creds file.
    // JetStream wants a system account too.
    let operator = KeyPair::new_operator();
    let (account, system) = (KeyPair::new_account(), KeyPair::new_account());
    let operator_jwt =
        jwt(&operator, &operator.public_key(), "hearth-test-operator", json!({"type": "operator", "version": 2}))?;
    let system_jwt = jwt(&operator, &system.public_key(), "SYS", json!({"type": "account", "version": 2}))?;
    let conf = format!(
        "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {sys}: {system_jwt}\n  {}: {}\n}}\n",
        account.public_key(),
        account_jwt(&operator, &account)?,
        sys = system.public_key(),
    );
    let nats = NatsServer::start_with(&conf)?;
    let dir = tempfile::tempdir()?;
    let creds = creds_file(&dir.path().join("hearth.creds"), &account)?;

    // A user of an account the operator never signed is refused; so is no credential.
    let rogue = creds_file(&dir.path().join("rogue.creds"), &KeyPair::new_account())?;
    let e = connect(&nats.url, NatsSecurity { creds_file: Some(rogue), ..NatsSecurity::default() }).await;
    assert!(e.is_err(), "a user JWT of an unknown account is refused");
    assert!(connect(&nats.url, NatsSecurity::default()).await.is_err(), "no credentials: refused");
    let missing = NatsSecurity { creds_file: Some(dir.path().join("nope.creds")), ..NatsSecurity::default() };
    let e = connect(&nats.url, missing).await.err().context("a missing creds file is refused")?;
    assert!(matches!(e, BusError::Security(_)) && e.to_string().contains("nope.creds"), "{e}");

    let bus = BusConfig {
        security: NatsSecurity { creds_file: Some(creds), ..NatsSecurity::default() },
        ..support::quick_bus()
    };
    let stack = Stack::start_on(nats, bus, true, |_| {}).await?;
    runs_end_to_end(&stack, "creds").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_runs_end_to_end_and_a_wrong_one_is_refused() -> anyhow::Result<()> {
    let nats = NatsServer::start_with("authorization { token: \"t0ken-for-hearth\" }\n")?;
    let wrong = NatsSecurity { token: Some("guess".into()), ..NatsSecurity::default() };
    assert!(connect(&nats.url, wrong).await.is_err(), "a wrong token is refused");
    let good = NatsSecurity { token: Some("t0ken-for-hearth".into()), ..NatsSecurity::default() };
    let stack = Stack::start_on(nats, BusConfig { security: good, ..support::quick_bus() }, true, |_| {}).await?;
    runs_end_to_end(&stack, "token").await
}
