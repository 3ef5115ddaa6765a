//! Session events on `code.out.<session_id>` (DESIGN.md §2). Publishers never set `seq`:
//! it is the `EVENTS` stream sequence of the message, known only once stored, and the
//! gateway splices it in ([`with_seq`]) when it forwards an event, so a replay from
//! `since=<seq>` is exact.

use bytes::Bytes;
use hearth_proto::api::{text_and_b64, RunResult};
use hearth_proto::frame::Stream;
use hearth_proto::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct StatusEvent<'a> {
    session_id: &'a str,
    run_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: Status,
    /// Which delivery of the run this is (2 and up after an executor died).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<i64>,
    /// The executor running it.
    #[serde(skip_serializing_if = "Option::is_none")]
    executor: Option<&'a str>,
}

#[derive(Serialize)]
struct OutputEvent<'a> {
    session_id: &'a str,
    run_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: Status,
    stream: Stream,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_b64: Option<String>,
}

#[derive(Serialize)]
struct ResultEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    result: &'a RunResult,
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // These types hold only strings, numbers and enums: encoding cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("event encodes"))
}

/// The `status: queued` event (the gateway's, before the run is queued).
pub fn queued(session_id: &str, run_id: &str) -> Bytes {
    encode(&StatusEvent { session_id, run_id, kind: "status", status: Status::Queued, attempt: None, executor: None })
}

/// The `status: running` event: delivery `attempt` of the run, on `executor`.
pub fn running(session_id: &str, run_id: &str, executor: &str, attempt: i64) -> Bytes {
    let (attempt, executor) = (Some(attempt), Some(executor));
    encode(&StatusEvent { session_id, run_id, kind: "status", status: Status::Running, attempt, executor })
}

/// An `output` event: `output` when the bytes are UTF-8, else only `output_b64`.
pub fn output(session_id: &str, run_id: &str, stream: Stream, data: &[u8]) -> Bytes {
    let (text, b64) = text_and_b64(data);
    let (output, output_b64) = match b64 {
        Some(b) => (None, Some(b)),
        None => (Some(text), None),
    };
    encode(&OutputEvent { session_id, run_id, kind: "output", status: Status::Running, stream, output, output_b64 })
}

/// The final `result` event: the whole [`RunResult`] with `type: "result"`.
pub fn result(result: &RunResult) -> Bytes {
    encode(&ResultEvent { kind: "result", result })
}

/// What any reader needs of an event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventHead {
    pub session_id: String,
    pub run_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Option<Status>,
}

impl EventHead {
    /// True for the event that ends a run.
    pub fn is_result(&self) -> bool {
        self.kind == "result"
    }
}

/// `payload` (a JSON object without `seq`) with `"seq":seq` put first; `None` when the
/// payload is not a non-empty JSON object.
pub fn with_seq(payload: &[u8], seq: u64) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix('{')?;
    if !rest.ends_with('}') || rest.trim_start().starts_with('}') {
        return None;
    }
    Some(format!("{{\"seq\":{seq},{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_slice(&queued("s1", "r1")).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["status"], "queued");
        assert_eq!(v["session_id"], "s1");
        assert!(v.get("attempt").is_none() && v.get("executor").is_none());
        let v: serde_json::Value = serde_json::from_slice(&running("s1", "r1", "ex1", 2)).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["executor"].as_str(), v["attempt"].as_i64()),
            (Some("running"), Some("ex1"), Some(2))
        );
        let v: serde_json::Value = serde_json::from_slice(&output("s1", "r1", Stream::Stderr, b"hi\n")).unwrap();
        assert_eq!(
            (v["stream"].as_str(), v["output"].as_str(), v["status"].as_str()),
            (Some("stderr"), Some("hi\n"), Some("running"))
        );
        let v: serde_json::Value = serde_json::from_slice(&output("s1", "r1", Stream::Stdout, b"\xff\xfe\n")).unwrap();
        assert_eq!(v["output_b64"], "//4K");
        assert!(v.get("output").is_none());
        let r =
            RunResult { run_id: "r1".into(), session_id: "s1".into(), status: Some(Status::Ok), ..Default::default() };
        let v: serde_json::Value = serde_json::from_slice(&result(&r)).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["status"].as_str(), v["run_id"].as_str()),
            (Some("result"), Some("ok"), Some("r1"))
        );
        let head: EventHead = serde_json::from_value(v).unwrap();
        assert!(head.is_result());
    }

    #[test]
    fn seq_is_spliced_into_objects_only() {
        let e = running("s1", "r1", "ex1", 2);
        let v: serde_json::Value = serde_json::from_str(&with_seq(&e, 42).unwrap()).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["attempt"], 2);
        assert_eq!(with_seq(b"{}", 1), None);
        assert_eq!(with_seq(b"[1]", 1), None);
        assert_eq!(with_seq(b"\xff", 1), None);
    }
}
