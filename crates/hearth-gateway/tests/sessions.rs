//! The session fan-out (`hub`): every socket of a session gets every event after its
//! `since`, in order, once, whether it keeps up or not, and never another session's.
//! Events are published straight to the `EVENTS` stream (no executor needed), in bursts far
//! faster than a socket with a one-event inbox can take them, so sockets fall behind, get
//! marked lagged and catch up from the stream; the test checks that this really happened.

mod support;

use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::jetstream;
use serde_json::{json, Value};
use support::{get, ws_connect, ws_next, Stack};

const BEFORE: u64 = 40;
/// The burst ends here; a short tail follows, then the end mark `TOTAL`.
const BURST: u64 = 1500;
const TOTAL: u64 = 1550;

/// Publishes event `i` of session `s` (pipelined: the ack is awaited later).
async fn publish(js: &jetstream::Context, s: &str, i: u64) -> anyhow::Result<jetstream::context::PublishAckFuture> {
    let ev = json!({"session_id": s, "run_id": "r1", "type": "output", "status": "running", "i": i});
    Ok(js.publish(format!("code.out.{s}"), serde_json::to_vec(&ev)?.into()).await?)
}

/// Reads frames until event `TOTAL` of the session (the end mark, not returned); sleeps `pause` every 50 frames;
/// says on `caught_up` when it has read the history published before the burst.
async fn read_all(
    mut ws: support::http::Ws,
    pause: Duration,
    caught_up: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut got = Vec::new();
    loop {
        let Some(v) = ws_next(&mut ws, Duration::from_secs(20)).await? else { bail!("socket closed early") };
        if v["session_id"] != "s" {
            bail!("a frame of another session or not an event: {v}");
        }
        let (seq, i) = (v["seq"].as_u64().context("seq")?, v["i"].as_u64().context("i")?);
        got.push((seq, i));
        if i == BEFORE - 1 {
            let _ = caught_up.send(()).await;
        }
        if got.len() % 50 == 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if i == TOTAL {
            got.pop();
            return Ok(got);
        }
    }
}

/// Waits until the gateway serves (its streams then exist).
async fn serving(stack: &Stack) -> anyhow::Result<()> {
    for _ in 0..200 {
        if get(stack.addr, "/healthz").await.is_ok_and(|a| a.status == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the gateway did not serve within 10 s")
}

fn check(name: &str, got: &[(u64, u64)], first: u64) {
    let is: Vec<u64> = got.iter().map(|(_, i)| *i).collect();
    let want: Vec<u64> = (first..TOTAL).collect();
    assert_eq!(is, want, "{name}: every event once, in order");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{name}: seq increases");
}

/// Publishes `BEFORE` events, opens three sockets (two from the start, one since the 10th)
/// and waits until they replayed them, then bursts the rest while more sockets open (since
/// the 30th, 20th, 5th, ...); checks what every socket got. Returns the lagged count.
async fn burst(inbox: usize) -> anyhow::Result<u64> {
    let stack = Stack::start_with(support::quick_bus(), false, |c| c.ws_inbox = inbox).await?;
    serving(&stack).await?;
    let js = jetstream::new(async_nats::connect(&stack.nats.url).await?);
    let mut seqs = Vec::new();
    for i in 0..BEFORE {
        seqs.push(publish(&js, "s", i).await?.await?.sequence);
        publish(&js, "other", i).await?.await?;
    }
    // Sockets opened after part of the history exists: they must replay it first.
    let fast = ws_connect(stack.addr, "session_id=s").await?;
    let slow = ws_connect(stack.addr, "session_id=s").await?;
    let resumed = ws_connect(stack.addr, &format!("session_id=s&since={}", seqs[9])).await?;
    let (caught_up, mut live) = tokio::sync::mpsc::channel(32);
    let mut readers = vec![
        ("fast", 0, tokio::spawn(read_all(fast, Duration::ZERO, caught_up.clone()))),
        ("slow", 0, tokio::spawn(read_all(slow, Duration::from_millis(20), caught_up.clone()))),
        ("resumed since the 10th", 10, tokio::spawn(read_all(resumed, Duration::ZERO, caught_up.clone()))),
    ];
    // The burst starts once every socket has replayed the history and is fed live.
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(20), live.recv()).await?.context("a reader stopped")?;
    }
    let mut acks = Vec::new();
    let mut late = [30usize, 20, 5, 39, 1, 12, 25, 33].into_iter();
    for i in BEFORE..BURST {
        acks.push(publish(&js, "s", i).await?);
        if i % 7 == 0 {
            acks.push(publish(&js, "other", i).await?);
        }
        if i % 300 == 0 {
            // Opened in the middle of the burst, from somewhere in the history.
            if let Some(from) = late.next() {
                let ws = ws_connect(stack.addr, &format!("session_id=s&since={}", seqs[from - 1])).await?;
                let reader = tokio::spawn(read_all(ws, Duration::ZERO, caught_up.clone()));
                readers.push(("opened mid-burst", from as u64, reader));
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await?;
    }
    // Once the feed has caught up: sockets that replay a long history while a short tail
    // (less than an inbox holds) comes live, so they get the tail both ways.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for from in late {
        let ws = ws_connect(stack.addr, &format!("session_id=s&since={}", seqs[from - 1])).await?;
        readers.push((
            "opened before the tail",
            from as u64,
            tokio::spawn(read_all(ws, Duration::ZERO, caught_up.clone())),
        ));
    }
    for i in BURST..TOTAL {
        acks.push(publish(&js, "s", i).await?);
    }
    for ack in acks {
        ack.await?;
    }
    // The end mark, after everything: a duplicate of anything would come before it.
    publish(&js, "s", TOTAL).await?.await?;
    for (name, first, reader) in readers {
        let got = tokio::time::timeout(Duration::from_secs(60), reader).await???;
        check(name, &got, first);
    }
    let metrics = String::from_utf8(get(stack.addr, "/metrics").await?.body.to_vec())?;
    let lagged =
        metrics.lines().find_map(|l| l.strip_prefix("hearth_ws_lagged_total ")).context("no lagged counter")?;
    Ok(lagged.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_gets_every_event_once_in_order_even_when_it_falls_behind() -> anyhow::Result<()> {
    let lagged = burst(1).await?;
    assert!(lagged > 0, "the burst should have overrun one-event inboxes (else the catch-up path went untested)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_opened_during_a_burst_replay_then_follow_without_duplicates() -> anyhow::Result<()> {
    burst(hearth_gateway::hub::INBOX).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_sees_only_what_follows_its_since_and_nothing_is_replayed_twice() -> anyhow::Result<()> {
    let stack = Stack::start(support::quick_bus(), false).await?;
    serving(&stack).await?;
    let js = jetstream::new(async_nats::connect(&stack.nats.url).await?);
    let a = publish(&js, "s", 0).await?.await?.sequence;
    let b = publish(&js, "s", 1).await?.await?.sequence;
    // since = the last event: nothing stored is sent, the next live one is.
    let mut ws = ws_connect(stack.addr, &format!("session_id=s&since={b}")).await?;
    let c = publish(&js, "s", 2).await?.await?.sequence;
    let v: Value = ws_next(&mut ws, Duration::from_secs(10)).await?.context("closed")?;
    assert_eq!((v["seq"].as_u64(), v["i"].as_u64()), (Some(c), Some(2)));
    // since = 0 means everything retained.
    let mut all = ws_connect(stack.addr, "session_id=s&since=0").await?;
    for want in [a, b, c] {
        let v = ws_next(&mut all, Duration::from_secs(10)).await?.context("closed")?;
        assert_eq!(v["seq"].as_u64(), Some(want));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws_next(&mut all, Duration::from_secs(1))).await.is_err(),
        "nothing more after the history"
    );
    Ok(())
}
