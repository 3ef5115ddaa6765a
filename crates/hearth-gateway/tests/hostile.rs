//! Hostile input, as a property: random requests (methods, paths with random ids, queries,
//! `Authorization` and other header values, bodies of random bytes, random JSON, and JSON
//! shaped like a run or a session request with fields of random types) and random WebSocket
//! frames, thrown at the real gateway (a real nats-server, an executor with real sandboxes,
//! API keys and session tokens on). Every answer is a 2xx or a 4xx, a 4xx is a JSON error,
//! and the connection is never dropped: after each answer the same connection (socket)
//! still serves.
//!
//! Case counts: `HOSTILE_HTTP_CASES` (default 4000) and `HOSTILE_WS_CASES` (default 2000);
//! the file takes about 15 s alone on this 2-core machine (3000 cases took 7-9 s), well
//! under a minute in CI with everything else running; set them higher to search longer.
//! The generators lean towards well-formed requests with a few fields spoiled, so that most
//! cases get past parsing into auth, validation, the queue and the store; each test checks
//! at its end that they did (every kind of answer it expects was seen), so that it cannot
//! pass by only ever being refused at the door. A failure prints the case (shrunk, a
//! little: shrinking replays requests). Seeds are random on each run.
//!
//! Framing headers (`content-length`, `transfer-encoding`, `connection`, `host`, `upgrade`,
//! `expect`, `te`) are left to hyper on both sides and not randomised: an unparsable frame is
//! hyper's 400, not the gateway's.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use futures_util::SinkExt;
use hearth_gateway::auth::{Auth, DEFAULT_TIER};
use hearth_proto::Limits;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use support::http::{request_with, ws_connect_with, ws_next, Ws};
use support::Stack;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "hostile-key-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Strings as an attacker sends them: valid ids, near-valid ids, path tricks, NATS subject
/// tricks, any Unicode, control characters, long ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,64}",
        "[A-Za-z0-9_.*> /-]{0,70}",
        "\\PC{0,40}",
        ".{0,12}",
        Just(String::new()),
        Just("../../etc/passwd".to_string()),
        Just("a.>".to_string()),
        Just("*".to_string()),
        Just("python".to_string()),
        "[a-z]{65,300}",
        any::<String>(),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(text(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Programs that end soon (random text mostly does not even parse; the server's maxima
/// end the others within 2 s).
fn code() -> BoxedStrategy<Value> {
    prop_oneof![
        Just("print(1)".to_string()),
        Just("echo hi".to_string()),
        // Programs that wait (for stdin, or a second): there is something to kill or feed.
        Just("print(input())".to_string()),
        Just("import time\ntime.sleep(1)".to_string()),
        "\\PC{0,40}",
    ]
    .prop_map(Value::from)
    .boxed()
}

/// How a well-formed object is spoiled: a field set to anything, set to a string, or left
/// out; or a field nobody knows added.
#[derive(Debug, Clone)]
enum Spoil {
    Any(usize, Value),
    Text(usize, String),
    Remove(usize),
    Unknown(String, Value),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(i, v)| Spoil::Any(i, v)),
        (any::<usize>(), text()).prop_map(|(i, t)| Spoil::Text(i, t)),
        any::<usize>().prop_map(Spoil::Remove),
        (text(), json_value()).prop_map(|(k, v)| Spoil::Unknown(k, v)),
    ]
}

/// `base` with none to three of its fields (or those of `names`) spoiled: often valid, so
/// that requests get past parsing into validation, auth and the queue; often just not.
fn spoiled(base: impl Strategy<Value = Value>, names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (base, prop_oneof![Just(Vec::new()), vec(spoil(), 1..4)]).prop_map(move |(mut v, spoils)| {
        let map = v.as_object_mut().expect("an object");
        for s in spoils {
            match s {
                Spoil::Any(i, x) => drop(map.insert(names[i % names.len()].into(), x)),
                Spoil::Text(i, t) => drop(map.insert(names[i % names.len()].into(), t.into())),
                Spoil::Remove(i) => drop(map.remove(names[i % names.len()])),
                Spoil::Unknown(k, x) => drop(map.insert(k, x)),
            }
        }
        v
    })
}

const RUN_FIELDS: &[&str] =
    &["user_id", "session_id", "lang", "code", "files", "entry", "stdin", "args", "limits", "interactive"];

/// A run request: valid as made (for the API key: the token's user and session half of
/// the time), then maybe spoiled.
fn run_shaped() -> impl Strategy<Value = Value> {
    let file = (text(), text(), prop_oneof![Just("utf8"), Just("base64")])
        .prop_map(|(name, content, encoding)| json!({"name": name, "content": content, "encoding": encoding}));
    let limits = vec(
        (
            prop_oneof![Just("wall_ms"), Just("cpu_ms"), Just("memory_mb"), Just("pids"), Just("output_bytes")],
            0u64..100_000,
        ),
        0..3,
    )
    .prop_map(|l| Value::Object(l.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect()));
    let base = (
        prop_oneof![Just("u1".to_string()), "[A-Za-z0-9_-]{1,64}"],
        prop_oneof![Just("python"), Just("bash"), Just("py"), Just("no-such-language")],
        code(),
        proptest::option::weighted(0.3, text()),
        proptest::option::weighted(0.2, vec(text(), 0..4)),
        proptest::option::weighted(0.3, limits),
        proptest::option::weighted(0.2, vec(file, 1..3)),
        proptest::option::weighted(0.2, any::<bool>()),
    )
        .prop_map(|(user, lang, code, stdin, args, limits, files, interactive)| {
            let mut v = json!({"user_id": user, "session_id": "hostile", "lang": lang, "code": code});
            if let Some(x) = stdin {
                v["stdin"] = x.into();
            }
            if let Some(x) = args {
                v["args"] = x.into();
            }
            if let Some(x) = limits {
                v["limits"] = x;
            }
            if let Some(x) = files {
                v["files"] = Value::Array(x);
                v.as_object_mut().unwrap().remove("code");
            }
            if let Some(x) = interactive {
                v["interactive"] = x.into();
            }
            v
        });
    spoiled(base, RUN_FIELDS)
}

fn session_shaped() -> impl Strategy<Value = Value> {
    let base = (
        "[A-Za-z0-9_-]{1,64}",
        proptest::option::of("[A-Za-z0-9_-]{1,64}"),
        proptest::option::of(0u64..200_000),
        proptest::option::weighted(0.3, prop_oneof![Just(DEFAULT_TIER.to_string()), text()]),
    )
        .prop_map(|(user, session, ttl, tier)| {
            let mut v = json!({"user_id": user});
            if let Some(x) = session {
                v["session_id"] = x.into();
            }
            if let Some(x) = ttl {
                v["ttl_s"] = x.into();
            }
            if let Some(x) = tier {
                v["tier"] = x.into();
            }
            v
        });
    spoiled(base, &["user_id", "session_id", "ttl_s", "tier"])
}

/// A body, mostly of the shape `endpoint` takes.
fn body(endpoint: &str) -> impl Strategy<Value = Vec<u8>> {
    let (shaped, other) = match endpoint {
        "/v1/sessions" => (session_shaped().boxed(), run_shaped().boxed()),
        _ => (run_shaped().boxed(), session_shaped().boxed()),
    };
    let cut = shaped.clone().prop_flat_map(|v| {
        let s = v.to_string().into_bytes();
        let n = s.len();
        (Just(s), 0..=n).prop_map(|(s, cut)| s[..cut].to_vec())
    });
    prop_oneof![
        6 => shaped.prop_map(|v| v.to_string().into_bytes()),
        1 => other.prop_map(|v| v.to_string().into_bytes()),
        1 => Just(Vec::new()),
        1 => vec(any::<u8>(), 0..2048),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        // Valid JSON cut short.
        1 => cut,
    ]
}

/// Every byte outside the URI's unreserved set, percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn path() -> impl Strategy<Value = String> {
    let fixed = prop_oneof![
        Just("/v1/runs"),
        Just("/v1/sessions"),
        Just("/v1/languages"),
        Just("/healthz"),
        Just("/readyz"),
        Just("/metrics"),
        Just("/v1/status"),
        Just("/v1/ws"),
        Just("/"),
        Just("/status"),
    ]
    .prop_map(str::to_string);
    let query = prop_oneof![
        4 => Just(String::new()),
        2 => Just("?wait=true".to_string()),
        1 => Just("?wait=false".to_string()),
        1 => text().prop_map(|t| format!("?wait={}", encode(&t))),
        1 => (text(), text()).prop_map(|(k, v)| format!("?{}={}", encode(&k), encode(&v))),
    ];
    prop_oneof![
        6 => query.clone().prop_map(|q| format!("/v1/runs{q}")),
        4 => Just("/v1/sessions".to_string()),
        2 => (fixed, query.clone()).prop_map(|(p, q)| p + &q),
        3 => (text(), query.clone()).prop_map(|(id, q)| format!("/v1/runs/{}{q}", encode(&id))),
        // A run this test submitted (whoever's it is): see `KNOWN`.
        2 => (any::<usize>(), query).prop_map(|(n, q)| format!("/v1/runs/{KNOWN}{n}{q}")),
        1 => text().prop_map(|f| format!("/ui/{}", encode(&f))),
        1 => (text(), any::<i64>(), text()).prop_map(|(s, since, t)| {
            format!("/v1/ws?session_id={}&since={since}&token={}", encode(&s), encode(&t))
        }),
        1 => vec(text(), 1..4).prop_map(|segs| segs.iter().map(|s| format!("/{}", encode(s))).collect()),
    ]
}

/// A header value as bytes a client may send (visible ASCII, spaces, tabs, obs-text).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..80)
}

#[derive(Debug, Clone)]
enum Credential {
    None,
    Key,
    Token,
    Bearer(String),
    Raw(Vec<u8>),
}

#[derive(Clone)]
struct Request {
    method: String,
    path: String,
    credential: Credential,
    content_type: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("credential", &self.credential)
            .field("content_type", &self.content_type.as_deref().map(text))
            .field("headers", &self.headers.iter().map(|(n, v)| (n, text(v))).collect::<Vec<_>>())
            .field("body", &text(&self.body))
            .finish()
    }
}

const FRAMING: [&str; 8] =
    ["content-length", "transfer-encoding", "connection", "host", "upgrade", "expect", "te", "keep-alive"];

fn request() -> impl Strategy<Value = Request> {
    // Mostly the method the endpoint takes (so that requests get past routing), else any.
    let path_and_method = path().prop_flat_map(|path| {
        let right = match endpoint(&path) {
            "/v1/runs" | "/v1/sessions" => "POST",
            _ => "GET",
        };
        let method = prop_oneof![
            6 => Just(right),
            1 => prop_oneof![Just("POST"), Just("GET"), Just("PUT"), Just("DELETE"), Just("PATCH"), Just("OPTIONS"),
                             Just("HEAD"), Just("BREW")],
        ];
        let body = body(endpoint(&path));
        (Just(path), method.prop_map(str::to_string), body)
    });
    let credential = prop_oneof![
        4 => Just(Credential::Key),
        3 => Just(Credential::Token),
        1 => Just(Credential::None),
        1 => text().prop_map(Credential::Bearer),
        1 => header_value().prop_map(Credential::Raw),
    ];
    let content_type = proptest::option::of(prop_oneof![
        Just(b"application/json".to_vec()),
        Just(b"text/plain".to_vec()),
        header_value(),
    ]);
    let header = (
        "[a-z][a-z0-9-]{0,20}".prop_filter("not a framing header", |n| !FRAMING.contains(&n.as_str())),
        header_value(),
    );
    (path_and_method, credential, content_type, vec(header, 0..4)).prop_map(
        |((path, method, body), credential, content_type, headers)| Request {
            method,
            path,
            credential,
            content_type,
            headers,
            body,
        },
    )
}

/// In a path, `{KNOWN}{n}` stands for the n-th run (modulo) a request of this test got
/// accepted.
const KNOWN: &str = "KNOWN-RUN-";

/// What the requests got: how many answers of each status each (method, endpoint) got,
/// and the runs accepted.
#[derive(Default)]
struct Seen {
    answers: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str, u16), usize>>,
    runs: std::sync::Mutex<Vec<String>>,
}

impl Seen {
    /// `path` with a known run's id in place of `{KNOWN}{n}`.
    fn path(&self, path: &str) -> String {
        let Some((head, tail)) = path.split_once(KNOWN) else { return path.to_string() };
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = tail[..digits].parse().unwrap_or(0);
        let runs = self.runs.lock().unwrap();
        let id = runs.get(n % runs.len().max(1)).map_or("0190aaaa-0000-7000-8000-000000000000", String::as_str);
        format!("{head}{id}{}", &tail[digits..])
    }
}

/// The endpoint a path names (its route), for the tally.
fn endpoint(path: &str) -> &'static str {
    match path.split('?').next().unwrap_or_default() {
        "/v1/runs" => "/v1/runs",
        p if p.starts_with("/v1/runs/") => "/v1/runs/{id}",
        "/v1/sessions" => "/v1/sessions",
        "/v1/ws" => "/v1/ws",
        "/" | "/status" => "ui",
        p if p.starts_with("/ui/") => "ui",
        "/healthz" | "/readyz" | "/metrics" | "/v1/status" | "/v1/languages" => "operations",
        _ => "elsewhere",
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `req` on a fresh connection, checks the answer, then checks that the same
/// connection still serves (unless the gateway said it would close it).
async fn check(addr: SocketAddr, token: &str, req: &Request, seen: &Seen) -> anyhow::Result<()> {
    let mut sender = timeout(WAIT, connect(addr)).await??;
    let path = seen.path(&req.path);
    let mut builder = hyper::Request::builder()
        .method(hyper::Method::from_bytes(req.method.as_bytes())?)
        .uri(&path)
        .header("host", addr.to_string());
    let auth = match &req.credential {
        Credential::None => None,
        Credential::Key => Some(format!("Bearer {KEY}").into_bytes()),
        Credential::Token => Some(format!("Bearer {token}").into_bytes()),
        // Bytes no header may hold (controls, DEL) left out: hyper would not send them.
        Credential::Bearer(t) => Some(
            format!("Bearer {t}")
                .into_bytes()
                .into_iter()
                .filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
                .collect(),
        ),
        Credential::Raw(v) => Some(v.clone()),
    };
    if let Some(v) = auth {
        builder = builder.header("authorization", hyper::header::HeaderValue::from_bytes(&v)?);
    }
    if let Some(v) = &req.content_type {
        builder = builder.header("content-type", hyper::header::HeaderValue::from_bytes(v)?);
    }
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), hyper::header::HeaderValue::from_bytes(value)?);
    }
    let http = builder.body(Full::new(Bytes::from(req.body.clone())))?;
    let answer = timeout(WAIT, async {
        let resp = sender.send_request(http).await.context("the connection was dropped before an answer")?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.context("the answer's body was cut")?.to_bytes();
        anyhow::Ok((parts, body))
    })
    .await
    .context("no answer in time")??;
    let (parts, body) = answer;
    let status = parts.status.as_u16();
    *seen.answers.lock().unwrap().entry((req.method.clone(), endpoint(&path), status)).or_insert(0) += 1;
    ensure!((200..300).contains(&status) || (400..500).contains(&status), "status {status}: {body:?}");
    let content_type = parts.headers.get("content-type").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let is_json = content_type.starts_with(b"application/json");
    if req.method != "HEAD" {
        if status >= 400 {
            // The UI's pages answer in HTML (here: "not built"), the API in JSON.
            let ui = endpoint(&req.path) == "ui";
            if !(ui && status == 404 && !is_json) {
                let v: Value =
                    serde_json::from_slice(&body).with_context(|| format!("a {status} that is not JSON: {body:?}"))?;
                ensure!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "not a JSON error: {v}");
            }
        } else if is_json {
            let v: Value =
                serde_json::from_slice(&body).with_context(|| format!("a {status} with a body that is not JSON"))?;
            if req.method == "POST" && endpoint(&path) == "/v1/runs" {
                seen.runs.lock().unwrap().push(v["run_id"].as_str().context("an accepted run without run_id")?.into());
            }
        }
    }
    let closing = parts.headers.get("connection").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if !closing {
        let again = hyper::Request::get("/healthz").header("host", addr.to_string()).body(Full::new(Bytes::new()))?;
        let resp = timeout(WAIT, async {
            sender.ready().await?;
            sender.send_request(again).await
        })
        .await
        .context("no answer in time on the same connection")?
        .context("the connection was dropped after the answer")?;
        ensure!(resp.status() == 200, "healthz on the same connection: {}", resp.status());
    }
    Ok(())
}

/// The gateway with API keys and tokens; runs are bounded at 2 s (so a random run that
/// reads stdin, or a `?wait=true`, ends soon).
async fn stack() -> anyhow::Result<(Stack, String)> {
    let max = Limits { wall_ms: 2000, cpu_ms: 2000, ..Limits::MAX };
    let mut stack = Stack::start_with(support::quick_bus(), false, |c| {
        c.limits_max = max;
        let mut auth = Auth::closed().with_secret(b"a test secret of at least 32 bytes!").unwrap();
        auth.add_key("backend", KEY, DEFAULT_TIER).unwrap();
        c.auth = auth;
    })
    .await?;
    stack.start_executor_configured("hostile", |c| c.limits_max = max).await?;
    let body = serde_json::to_vec(&json!({"user_id": "u1", "session_id": "hostile"}))?;
    let header = format!("Bearer {KEY}");
    let a = request_with(stack.addr, "POST", "/v1/sessions", &[("authorization", &header)], Some(body), WAIT).await?;
    ensure!(a.status == 201, "issuing a token: {}", a.status);
    let token = a.json()["token"].as_str().context("token")?.to_string();
    Ok((stack, token))
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters: 200, ..Config::default() })
}

#[test]
fn random_requests_get_a_2xx_or_a_json_4xx_and_the_connection_stays() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (stack, token) = rt.block_on(stack())?;
    let seen = Seen::default();
    let result = runner(cases("HOSTILE_HTTP_CASES", 4000)).run(&request(), |req| {
        rt.block_on(check(stack.addr, &token, &req, &seen)).map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    let seen = seen.answers.into_inner().unwrap();
    eprintln!("answers by (method, endpoint, status): {seen:?}");
    // The requests went deep: past parsing into validation, auth, the queue and the store.
    let got = |method: &str, endpoint: &str, statuses: &[u16]| {
        seen.keys().any(|(m, e, s)| m == method && *e == endpoint && statuses.contains(s))
    };
    for (method, endpoint, statuses) in [
        ("POST", "/v1/runs", &[200, 202][..]),
        ("POST", "/v1/runs", &[400]),
        ("POST", "/v1/runs", &[401]),
        ("POST", "/v1/runs", &[403]),
        ("POST", "/v1/runs", &[422]),
        ("POST", "/v1/sessions", &[201]),
        ("POST", "/v1/sessions", &[400]),
        ("GET", "/v1/runs/{id}", &[400]),
        ("GET", "/v1/runs/{id}", &[404]),
        ("GET", "/v1/runs/{id}", &[200, 202]),
    ] {
        ensure!(got(method, endpoint, statuses), "no {method} {endpoint} answered {statuses:?}: {seen:?}");
    }
    if let Err(e) = result {
        bail!("{e}");
    }
    // The gateway still serves as before.
    let a = rt.block_on(request_with(stack.addr, "GET", "/readyz", &[], None, WAIT))?;
    ensure!(a.status == 200, "readyz after the storm: {}", a.status);
    drop(stack);
    Ok(())
}

/// A client frame: text of any kind, JSON of any kind, binary, or shaped like a `run`,
/// `stdin` or `kill` frame (then often valid), whose `run_id` may be `{KNOWN}{n}`: one of the
/// runs this test started last, so that stdin and kill reach runs that are queued, running
/// or just ended.
#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Json(Value),
    Binary(Vec<u8>),
}

fn frame() -> impl Strategy<Value = Frame> {
    let run = (run_shaped(), proptest::option::weighted(0.1, text())).prop_map(|(mut v, kind)| {
        v["type"] = kind.unwrap_or_else(|| "run".into()).into();
        Frame::Json(v)
    });
    let run_id = || prop_oneof![3 => any::<u8>().prop_map(|n| format!("{KNOWN}{n}")), 1 => text()];
    let kill = run_id().prop_map(|id| json!({"type": "kill", "run_id": id}));
    let stdin =
        (run_id(), text(), prop_oneof![Just(None), Just(Some(true)), Just(Some(false))]).prop_map(|(id, data, eof)| {
            match eof {
                Some(true) => json!({"type": "stdin", "run_id": id, "eof": true}),
                eof => json!({"type": "stdin", "run_id": id, "data": data, "eof": eof.is_some()}),
            }
        });
    let control = prop_oneof![kill, stdin];
    prop_oneof![
        4 => run,
        5 => spoiled(control, &["type", "run_id", "data", "eof"]).prop_map(Frame::Json),
        1 => any::<String>().prop_map(Frame::Text),
        1 => json_value().prop_map(Frame::Json),
        1 => vec(any::<u8>(), 0..256).prop_map(Frame::Binary),
    ]
}

/// Codes that would mean the gateway failed rather than refused.
const FAILURES: [&str; 4] = ["internal", "unavailable", "not_ready", "queue_full"];

/// The answers the frames got: `accepted`, `sent`, or the error's code.
type Replies = std::collections::BTreeMap<String, usize>;

async fn check_frame(ws: &mut Ws, runs: &mut Vec<String>, frame: &Frame, replies: &mut Replies) -> anyhow::Result<()> {
    let message = match frame {
        Frame::Text(t) => Message::text(t.clone()),
        Frame::Json(v) => {
            let mut v = v.clone();
            let known =
                v["run_id"].as_str().and_then(|id| id.strip_prefix(KNOWN)).and_then(|n| n.parse::<usize>().ok());
            if let (Some(n), false) = (known, runs.is_empty()) {
                v["run_id"] = runs[runs.len() - 1 - n % runs.len().min(4)].clone().into();
            }
            Message::text(v.to_string())
        }
        Frame::Binary(b) => Message::binary(b.clone()),
    };
    timeout(WAIT, ws.send(message)).await.context("sending took too long")??;
    loop {
        let f = ws_next(ws, WAIT).await?.context("the socket was closed")?;
        match f["type"].as_str() {
            Some("accepted") => {
                runs.push(f["run_id"].as_str().context("run_id")?.to_string());
                *replies.entry("accepted".into()).or_default() += 1;
                return Ok(());
            }
            Some("sent") => {
                *replies.entry("sent".into()).or_default() += 1;
                return Ok(());
            }
            Some("error") => {
                let code = f["error"]["code"].as_str().context("an error frame without a code")?;
                ensure!(!FAILURES.contains(&code), "the gateway failed: {f}");
                ensure!(f["error"]["message"].is_string(), "an error frame without a message: {f}");
                *replies.entry(code.into()).or_default() += 1;
                return Ok(());
            }
            // The session's events (of runs accepted before) come in between.
            _ => ensure!(f["seq"].is_u64() && f["session_id"] == "hostile", "not an event: {f}"),
        }
    }
}

#[test]
fn random_websocket_frames_are_each_answered_and_the_socket_stays() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (stack, token) = rt.block_on(stack())?;
    let header = format!("Bearer {KEY}");
    // One socket with the API key, one with the session's token: both live through it all.
    let mut with_key =
        rt.block_on(ws_connect_with(stack.addr, "session_id=hostile", &[("authorization", header.as_str())]))?;
    let mut with_token = rt.block_on(ws_connect_with(stack.addr, &format!("token={token}"), &[]))?;
    let mut runs = Vec::new();
    let mut replies = Replies::new();
    let state = std::cell::RefCell::new((&mut with_key, &mut with_token, &mut runs, &mut replies, false));
    let result = runner(cases("HOSTILE_WS_CASES", 2000)).run(&frame(), |f| {
        let mut guard = state.borrow_mut();
        let (key, token, runs, replies, flip) = &mut *guard;
        // The two sockets take turns.
        *flip = !*flip;
        let ws: &mut Ws = if *flip { key } else { token };
        rt.block_on(check_frame(ws, runs, &f, replies)).map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    eprintln!("answers by kind: {replies:?}");
    if let Err(e) = result {
        bail!("{e}");
    }
    // The frames went deep: runs accepted, refused for each reason, and stdin and kill that
    // reached real runs (queued, running or ended, as timing has it).
    for kind in ["accepted", "bad_request", "invalid_id", "not_found", "forbidden", "unknown_language"] {
        ensure!(replies.contains_key(kind), "no frame was answered {kind}: {replies:?}");
    }
    let reached: usize = ["sent", "not_running", "run_ended"].iter().filter_map(|k| replies.get(*k)).sum();
    ensure!(reached > 0, "no stdin or kill reached a run: {replies:?}");
    // Both sockets still answer.
    let ping = Frame::Json(json!({"type": "kill", "run_id": "0190aaaa-0000-7000-8000-000000000000"}));
    for ws in [&mut with_key, &mut with_token] {
        rt.block_on(check_frame(ws, &mut runs, &ping, &mut replies))?;
    }
    drop(stack);
    Ok(())
}
