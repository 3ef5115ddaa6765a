//! The gateway and the executor against a nats-server that wants credentials and TLS: a
//! run goes end to end over a TLS connection authenticated by user and password (a CA and
//! a server certificate made for the test with openssl), an nkey is accepted, and wrong
//! credentials, an untrusted certificate or a plain connection are refused with a clear
//! error instead of hanging.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use hearth_bus::{Bus, BusConfig, BusError, NatsSecurity};
use serde_json::json;
use support::{post_json, NatsServer, Stack};

/// A throwaway CA and a certificate it signed for 127.0.0.1 / localhost, in `dir`:
/// (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
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
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]].concat())?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    Ok((dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
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
    let (ca, cert, key) = certificates(dir.path())?;
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
    let body = json!({"user_id": "u1", "session_id": "tls", "lang": "python", "code": "print('over tls')"});
    let a = post_json(stack.addr, "/v1/runs?wait=true", &body, Duration::from_secs(60)).await?;
    assert_eq!((a.status, a.json()["stdout"].as_str()), (200, Some("over tls\n")), "{:?}", a.json());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_is_accepted_and_another_refused() -> anyhow::Result<()> {
    let user = nkeys::KeyPair::new_user();
    let conf = format!("authorization {{ users: [ {{ nkey: {} }} ] }}\n", user.public_key());
    let nats = NatsServer::start_with(&conf)?;
    let dir = tempfile::tempdir()?;
    let seed_file = dir.path().join("hearth.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed()?))?;
    let bus = connect(&nats.url, NatsSecurity { nkey_file: Some(seed_file), ..NatsSecurity::default() }).await?;
    assert!(bus.client.server_info().version.starts_with('2'));
    let stranger = nkeys::KeyPair::new_user().seed()?;
    let refused = connect(&nats.url, NatsSecurity { nkey_seed: Some(stranger), ..NatsSecurity::default() }).await;
    assert!(refused.is_err(), "an nkey the server does not know is refused");
    Ok(())
}
