//! Session fan-out: one ordered consumer per gateway over every session's events
//! (`code.out.>` on `EVENTS`), handed to the sockets open here by session, instead of one
//! JetStream consumer per socket (which costs the server a consumer and heartbeats each and
//! does not reach ten thousand sockets).
//!
//! The guarantee a socket gives its client (every event of the session after `since`, in
//! order, no gap, no duplicate) comes from three rules:
//! 1. A socket [`Hub::subscribe`]s *before* it reads the session's history
//!    ([`catch_up`]), so every event stored after the history read is pushed to it live.
//! 2. History is read from the stream leader (`STREAM.MSG.GET`, then an ordered consumer
//!    for long histories), so it holds everything stored before the read.
//! 3. Every event carries its stream sequence; a socket sends only sequences above the
//!    last it sent, so what history and the live feed both carry goes out once.
//!
//! A socket whose inbox is full (a slow client) is not waited for: the hub drops the
//! event and marks the socket lagged; the socket then discards what it holds and catches
//! up from the stream again (rule 2), so nothing is lost and memory stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, StreamExt};
use hearth_bus::{event, names};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// Events a socket may hold unsent before it counts as lagged (the default).
pub const INBOX: usize = 256;
/// History events read one by one (`STREAM.MSG.GET`) before an ordered consumer takes
/// over: a short history costs no consumer.
const GETS_BEFORE_CONSUMER: usize = 32;
/// Any single NATS request of a catch-up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session's events could not be read.
#[derive(Debug, Error)]
pub enum HubError {
    #[error("reading the session's events: {0}")]
    Read(String),
    #[error("reading the session's events timed out")]
    Timeout,
}

/// One event, ready to send: its stream sequence and its text with `seq` spliced in.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub text: Utf8Bytes,
}

impl Event {
    /// The event stored at `seq` with `payload`; `None` for a payload that is not a JSON
    /// object (nothing hearth publishes).
    pub fn new(seq: u64, payload: &[u8]) -> Option<Event> {
        event::with_seq(payload, seq).map(|text| Event { seq, text: text.into() })
    }
}

/// One socket's place in the hub.
pub struct Sub {
    id: u64,
    tx: mpsc::Sender<Event>,
    /// Set when an event was dropped because the inbox was full.
    lagged: AtomicBool,
}

impl Sub {
    /// True (once) when events were dropped since the last call: catch up before sending more.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }
}

/// Removes its socket from the hub when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    session: String,
    pub sub: Arc<Sub>,
    pub inbox: mpsc::Receiver<Event>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.session, self.sub.id);
    }
}

/// The sockets of this gateway by session, and the feed that serves them.
pub struct Hub {
    sessions: Mutex<HashMap<String, Vec<Arc<Sub>>>>,
    /// Inbox size of each socket.
    inbox: usize,
    next_id: AtomicU64,
    /// The last stream sequence the feed handed out.
    pub position: AtomicU64,
    /// Events dropped for full inboxes (each made a socket catch up).
    pub lagged: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(INBOX)
    }
}

impl Hub {
    /// A hub whose sockets hold at most `inbox` unsent events each.
    pub fn new(inbox: usize) -> Hub {
        Hub {
            sessions: Mutex::default(),
            inbox: inbox.max(1),
            next_id: AtomicU64::new(0),
            position: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    /// Registers a socket of `session`; its inbox gets every event stored from now on.
    pub fn subscribe(self: &Arc<Self>, session: &str) -> Subscription {
        let (tx, inbox) = mpsc::channel(self.inbox);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Sub { id, tx, lagged: AtomicBool::new(false) });
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.entry(session.to_string()).or_default().push(sub.clone());
        drop(sessions);
        Subscription { hub: self.clone(), session: session.to_string(), sub, inbox }
    }

    fn unsubscribe(&self, session: &str, id: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = sessions.get_mut(session) {
            subs.retain(|s| s.id != id);
            if subs.is_empty() {
                sessions.remove(session);
            }
        }
    }

    /// Sockets open here.
    pub fn sockets(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }

    /// Hands `event` of `session` to every socket of it, never waiting for one.
    pub fn dispatch(&self, session: &str, event: Event) {
        self.position.fetch_max(event.seq, Ordering::Relaxed);
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = sessions.get(session) else { return };
        for sub in subs {
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(event.clone()) {
                // Set after the drop and before any later event is queued: the socket sees
                // the flag no later than the first event after the gap.
                sub.lagged.store(true, Ordering::Release);
                self.lagged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Longest pull of the feed's consumer. Its idle heartbeat is half of it, and async-nats
/// recreates an ordered consumer after two missed beats were noticed twice: so when the
/// nats-server holding the feed's consumer dies, the feed is back in about twice this. One
/// consumer per gateway: a short pull costs nothing.
const FEED_PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Feeds `hub` from `events` for as long as it runs: an ordered consumer over every
/// session's events starting after `from` (the stream's last sequence when the gateway
/// started), recreated after any failure right after the last sequence handed out, and
/// after every reconnect of the gateway's NATS connection (`connects` changes): the server
/// it used may be gone and the consumer with it, and waiting for heartbeats to say so takes
/// longer than making a new one.
pub async fn feed(
    hub: Arc<Hub>,
    events: Stream,
    from: u64,
    mut connects: watch::Receiver<u64>,
    latency: Arc<crate::status::Latency>,
) {
    hub.position.fetch_max(from, Ordering::Relaxed);
    connects.borrow_and_update();
    loop {
        let start = hub.position.load(Ordering::Relaxed) + 1;
        let config = OrderedConfig {
            filter_subject: names::EVENTS_WILDCARD.into(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            max_expires: FEED_PULL_EXPIRES,
            ..OrderedConfig::default()
        };
        let messages = match events.create_consumer(config).await {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the session feed could not start; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                msg = messages.next() => msg,
                Ok(()) = connects.changed() => {
                    tracing::info!("nats reconnected; restarting the session feed after seq {}", hub.position.load(Ordering::Relaxed));
                    break;
                }
            };
            let msg = match msg {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the session feed failed; restarting it");
                    break;
                }
                None => break,
            };
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            if let Some(run_id) = crate::status::result_run_id(&msg.payload) {
                latency.ended(&run_id);
            }
            let Some(session) = msg.subject.as_str().strip_prefix("code.out.") else { continue };
            match Event::new(seq, &msg.payload) {
                Some(ev) => hub.dispatch(session, ev),
                None => {
                    hub.position.fetch_max(seq, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T, HubError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f).await.map_err(|_| HubError::Timeout)
}

/// Sends `ev` as a text frame; false when the socket is gone.
async fn send<S: Sink<Message> + Unpin>(out: &mut S, ev: Event, sent: &AtomicU64) -> bool {
    let ok = out.send(Message::Text(ev.text)).await.is_ok();
    sent.fetch_add(ok as u64, Ordering::Relaxed);
    ok
}

/// Reads `session`'s stored events after `*last` from the stream leader, in order, and
/// sends each to `out`, advancing `*last` (and counting in `sent`). Returns once it has
/// read everything stored when it looked last: `Ok(false)` if the socket went away.
/// `seen` is shown each event before it goes out.
pub async fn catch_up<S: Sink<Message> + Unpin>(
    events: &Stream,
    session: &str,
    last: &mut u64,
    out: &mut S,
    sent: &AtomicU64,
    mut seen: impl FnMut(&Event),
) -> Result<bool, HubError> {
    let subject = names::events_subject(session);
    for _ in 0..GETS_BEFORE_CONSUMER {
        let got =
            timed(events.raw_message_builder().sequence(*last + 1).next_by_subject(subject.clone()).send()).await?;
        let msg = match got {
            Ok(msg) => msg,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(true),
            Err(e) => return Err(HubError::Read(e.to_string())),
        };
        *last = msg.sequence;
        if let Some(ev) = Event::new(msg.sequence, &msg.payload) {
            seen(&ev);
            if !send(out, ev, sent).await {
                return Ok(false);
            }
        }
    }
    // A long history: one ordered consumer reads the rest, until nothing is pending.
    let config = OrderedConfig {
        filter_subject: subject,
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: *last + 1 },
        ..OrderedConfig::default()
    };
    let consumer = timed(events.create_consumer(config)).await?.map_err(|e| HubError::Read(e.to_string()))?;
    let info = consumer.cached_info();
    if info.num_pending == 0 {
        return Ok(true);
    }
    let mut messages = timed(consumer.messages()).await?.map_err(|e| HubError::Read(e.to_string()))?;
    loop {
        let msg = match timed(messages.next()).await? {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Err(HubError::Read(e.to_string())),
            None => return Err(HubError::Read("the history consumer ended".into())),
        };
        let info = msg.info().map_err(|e| HubError::Read(e.to_string()))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        *last = seq;
        if let Some(ev) = Event::new(seq, &msg.payload) {
            seen(&ev);
            if !send(out, ev, sent).await {
                return Ok(false);
            }
        }
        if pending == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Event {
        Event::new(seq, br#"{"type":"status"}"#).unwrap()
    }

    #[test]
    fn events_go_to_every_socket_of_their_session_only() {
        let hub = Arc::new(Hub::default());
        let mut a1 = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.dispatch("a", ev(1));
        hub.dispatch("c", ev(2));
        assert_eq!(a1.inbox.try_recv().unwrap().seq, 1);
        assert_eq!(a2.inbox.try_recv().unwrap().seq, 1);
        assert!(b.inbox.try_recv().is_err());
        assert_eq!(hub.position.load(Ordering::Relaxed), 2);
        assert_eq!(hub.sockets(), 3);
        drop(a1);
        drop(b);
        assert_eq!(hub.sockets(), 1);
        assert_eq!(hub.sessions.lock().unwrap().len(), 1, "a session without sockets is forgotten");
    }

    #[test]
    fn a_full_inbox_marks_the_socket_lagged_instead_of_waiting() {
        let hub = Arc::new(Hub::default());
        let mut s = hub.subscribe("a");
        for seq in 1..=(INBOX as u64 + 3) {
            hub.dispatch("a", ev(seq));
        }
        assert_eq!(hub.lagged.load(Ordering::Relaxed), 3);
        assert!(s.sub.take_lagged());
        assert!(!s.sub.take_lagged(), "the flag is taken once");
        assert_eq!(s.inbox.try_recv().unwrap().seq, 1);
        let text = ev(7).text;
        assert!(text.as_str().starts_with("{\"seq\":7,"));
    }
}
