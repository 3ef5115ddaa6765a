//! A run's events, in order: [`EventSink`] publishes to the session's subject and keeps a
//! bounded window of unconfirmed publishes; [`forward`] turns the sandbox's output chunks
//! into `output` events: after a quiet spell, as soon as a line ends; what follows gathered
//! for a few milliseconds (never until the end), never splitting a UTF-8 character across
//! two events when it can wait for the rest.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::Context;
use bytes::Bytes;
use hearth_bus::{event, retry};
use hearth_proto::frame::Stream;
use hearth_sandbox::RunEvent;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::error::RunError;

/// An output event is published once this much is gathered, whatever the time.
const FLUSH_BYTES: usize = 64 << 10;
/// Publishes whose confirmation may be outstanding at once.
const WINDOW: usize = 64;

/// Publishes one run's events to its session subject, in order.
///
/// Each event carries the message id `<run_id>.<delivery>.<n>`. When a confirmation fails
/// in a way a cluster's leader election explains ([`retry::is_transient`]), that event and
/// every later one still unconfirmed are sent again, one at a time and in order, with the
/// same ids: the server keeps each once (its duplicate window), so a session never sees
/// an event twice nor loses one because a nats-server died.
pub struct EventSink {
    js: Context,
    subject: String,
    run_id: String,
    /// `<run_id>.<delivery>`: the ids of this delivery's events.
    id_prefix: String,
    next: u64,
    pending: VecDeque<Pending>,
}

struct Pending {
    ack: PublishAckFuture,
    payload: Bytes,
    id: String,
}

impl EventSink {
    /// A sink for delivery `delivery` of run `run_id`.
    pub fn new(js: Context, subject: String, run_id: String, delivery: i64) -> EventSink {
        let id_prefix = format!("{run_id}.{delivery}");
        EventSink { js, subject, run_id, id_prefix, next: 0, pending: VecDeque::new() }
    }

    fn error(&self, e: impl std::fmt::Display) -> RunError {
        RunError::Publish { run_id: self.run_id.clone(), message: e.to_string() }
    }

    /// Sends `payload`; confirmations are awaited once the window is full.
    pub async fn publish(&mut self, payload: Bytes) -> Result<(), RunError> {
        self.next += 1;
        let id = format!("{}.{}", self.id_prefix, self.next);
        match retry::send(&self.js, &self.subject, payload.clone(), &id).await {
            Ok(ack) => self.pending.push_back(Pending { ack, payload, id }),
            Err(e) if retry::is_transient(&e) => {
                // Everything before it first, then it, confirmed, in order.
                self.settle().await?;
                retry::publish(&self.js, &self.subject, payload, &id, retry::PATIENCE)
                    .await
                    .map_err(|e| self.error(e))?;
            }
            Err(e) => return Err(self.error(e)),
        }
        while self.pending.len() > WINDOW {
            self.confirm_first().await?;
        }
        Ok(())
    }

    /// Waits for the oldest unconfirmed event; on a transient failure re-sends it and
    /// everything after it, in order.
    async fn confirm_first(&mut self) -> Result<(), RunError> {
        let Some(first) = self.pending.pop_front() else { return Ok(()) };
        match first.ack.await {
            Ok(_) => Ok(()),
            Err(e) if retry::is_transient(&e) => {
                tracing::info!(run = %self.run_id, error = %e, "an event was not confirmed; sending it and the rest again");
                let again: Vec<(Bytes, String)> = std::iter::once((first.payload, first.id))
                    .chain(self.pending.drain(..).map(|p| (p.payload, p.id)))
                    .collect();
                for (payload, id) in again {
                    retry::publish(&self.js, &self.subject, payload, &id, retry::PATIENCE)
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Ok(())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Waits until every event sent so far is stored.
    pub async fn settle(&mut self) -> Result<(), RunError> {
        while !self.pending.is_empty() {
            self.confirm_first().await?;
        }
        Ok(())
    }
}

/// Where a chunk can be cut without splitting a UTF-8 character at its end: the whole
/// length unless the bytes end in an incomplete (but so far valid) sequence.
fn utf8_cut(buf: &[u8]) -> usize {
    match std::str::from_utf8(buf) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => buf.len(),
    }
}

struct Gathered {
    stream: Stream,
    buf: Vec<u8>,
    due: Instant,
}

/// What [`forward`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The agent said the user's program was started.
    pub started: bool,
    /// When the first `output` event went out (µs since the epoch), for the run's timing.
    pub first_us: Option<u64>,
}

/// What [`forward`] publishes through, and what it remembers between chunks.
struct Out<'a> {
    sink: &'a mut EventSink,
    session_id: &'a str,
    run_id: &'a str,
    coalesce: Duration,
    /// When the last `output` event went out: the next one waits until `coalesce` after it.
    last: Option<Instant>,
    /// When the first `output` event went out (µs since the epoch), for the run's timing.
    first_us: Option<u64>,
}

impl Out<'_> {
    async fn publish(&mut self, stream: Stream, data: &[u8]) -> Result<(), RunError> {
        self.sink.publish(event::output(self.session_id, self.run_id, stream, data)).await?;
        self.last = Some(Instant::now());
        self.first_us.get_or_insert_with(hearth_proto::api::Timing::now_us);
        Ok(())
    }

    /// No event went out for a `coalesce` period.
    fn quiet(&self, now: Instant) -> bool {
        !matches!(self.last, Some(t) if now < t + self.coalesce)
    }

    /// When output gathered from now on is due: one `coalesce` after the last event, or
    /// from now after a quiet spell (sooner when a line ends, see [`forward`]).
    fn due(&self) -> Instant {
        let now = Instant::now();
        match self.last {
            Some(t) if now < t + self.coalesce => t + self.coalesce,
            _ => now + self.coalesce,
        }
    }

    /// Publishes what is gathered, keeping back an incomplete UTF-8 character for one more
    /// period (if that is all there is, it goes out as it is).
    async fn flush(&mut self, gathered: &mut Option<Gathered>) -> Result<(), RunError> {
        let Some(g) = gathered.as_mut() else {
            return Ok(());
        };
        let cut = match utf8_cut(&g.buf) {
            0 => g.buf.len(),
            n => n,
        };
        let rest = g.buf.split_off(cut);
        let (stream, buf) = (g.stream, std::mem::take(&mut g.buf));
        self.publish(stream, &buf).await?;
        if rest.is_empty() {
            *gathered = None;
        } else if let Some(g) = gathered.as_mut() {
            g.buf = rest;
            g.due = self.due();
        }
        Ok(())
    }
}

/// Publishes the output of `events` as `output` events until the channel closes; at most
/// `cap` bytes in all (the run's output limit). After a quiet period, output goes out as
/// soon as a line ends (or `coalesce` later without one): the first line is not held back,
/// and is not cut from its newline (`print` writes the two separately).
/// What follows within `coalesce` of an event is gathered into the next one, so a chatty
/// program makes at most one event per `coalesce` (or per 64 KiB). Returns when the first `output` event was published (µs
/// since the epoch), if any was.
pub async fn forward(
    sink: &mut EventSink,
    session_id: &str,
    run_id: &str,
    mut events: mpsc::Receiver<RunEvent>,
    coalesce: Duration,
    cap: u64,
) -> Result<Forwarded, RunError> {
    let mut started = false;
    let mut out = Out { sink, session_id, run_id, coalesce, last: None, first_us: None };
    let mut sent: u64 = 0;
    let mut gathered: Option<Gathered> = None;
    loop {
        let due = gathered.as_ref().map(|g| g.due);
        tokio::select! {
            ev = events.recv() => match ev {
                Some(RunEvent::Output { stream, data }) => {
                    let room = cap.saturating_sub(sent) as usize;
                    let data = &data[..data.len().min(room)];
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if gathered.as_ref().is_some_and(|g| g.stream != stream) {
                        let g = gathered.take().expect("checked");
                        out.publish(g.stream, &g.buf).await?;
                    }
                    let due = out.due();
                    let g = gathered.get_or_insert_with(|| Gathered { stream, buf: Vec::new(), due });
                    g.buf.extend_from_slice(data);
                    let now = Instant::now();
                    let line_after_quiet = g.buf.ends_with(b"\n") && out.quiet(now);
                    if g.buf.len() >= FLUSH_BYTES || g.due <= now || line_after_quiet {
                        out.flush(&mut gathered).await?;
                    }
                }
                Some(RunEvent::Started) => started = true,
                None => break,
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                out.flush(&mut gathered).await?;
            }
        }
    }
    if let Some(g) = gathered.take() {
        out.publish(g.stream, &g.buf).await?;
    }
    Ok(Forwarded { started, first_us: out.first_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_keep_whole_characters() {
        let s = "héllo 世".as_bytes();
        assert_eq!(utf8_cut(s), s.len());
        assert_eq!(utf8_cut(&s[..s.len() - 1]), s.len() - 3);
        assert_eq!(utf8_cut(&s[..2]), 1);
        assert_eq!(utf8_cut(b"\xff\xfe"), 2, "invalid bytes are not waited for");
        assert_eq!(utf8_cut(b""), 0);
    }
}
