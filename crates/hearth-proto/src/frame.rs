//! The agent protocol: frames between the host (a sandbox driver) and the agent that is
//! PID 1 inside every sandbox, over any byte stream (pipe, virtio-serial, vsock).
//!
//! A frame is a 6-byte header — protocol version (`u8`), kind (`u8`), payload length
//! (`u32`, big-endian) — then the payload. Control payloads are JSON; `Output` and `Stdin`
//! carry raw bytes so the hot path never encodes output. Payloads over [`MAX_PAYLOAD`] are
//! refused on both sides, so a broken peer cannot make the other allocate without bound.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::Limits;
use crate::status::Status;

/// Protocol version carried in every header; a peer refuses any other.
pub const VERSION: u8 = 1;
/// Header bytes before each payload.
pub const HEADER_LEN: usize = 6;
/// Largest payload accepted (a run request carries the code, files and stdin).
pub const MAX_PAYLOAD: usize = 32 << 20;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("unsupported protocol version {0} (expected {VERSION})")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("bad payload for frame kind {kind}: {reason}")]
    Payload { kind: u8, reason: String },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One file to write into the work dir before compiling/running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// Relative path inside the work dir (no `..`, not absolute).
    pub path: String,
    #[serde(with = "crate::b64")]
    pub data: Vec<u8>,
    #[serde(default)]
    pub executable: bool,
}

/// A command and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// argv; `argv[0]` is an absolute path, or relative to the work dir.
    pub argv: Vec<String>,
    pub limits: Limits,
}

/// Everything the agent needs for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRun {
    pub files: Vec<FileSpec>,
    pub compile: Option<Step>,
    pub run: Step,
    /// The whole environment of the program (nothing is inherited).
    pub env: Vec<(String, String)>,
    #[serde(with = "crate::b64")]
    pub stdin: Vec<u8>,
    /// Keep the program's stdin open after `stdin` for `Stdin` frames (interactive runs).
    #[serde(default)]
    pub keep_stdin_open: bool,
    /// The program's argv as the language's prestarted loader takes it, when the language
    /// has one. Used only if the sandbox was prepared (see [`Prepare`]); otherwise the agent
    /// execs `run.argv` as usual, so a job is valid for any sandbox.
    #[serde(default)]
    pub warm_argv: Option<Vec<String>>,
}

/// Start a language's interpreter now, in the work dir, with its stdio on fresh pipes,
/// blocked until a run hands it the program (the argv arrives on its fd 3, NUL-separated,
/// closed after). The run then costs no interpreter start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Outcome of a compile step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileResult {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Compiler stdout and stderr, interleaved as written, capped.
    #[serde(with = "crate::b64")]
    pub output: Vec<u8>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
}

/// The agent's report at the end of a run. Output was streamed before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResult {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_ms: u64,
    /// `wall_ms` in microseconds (0 from an agent too old to say).
    #[serde(default)]
    pub wall_us: u64,
    pub cpu_ms: u64,
    /// Peak resident memory of the largest process of the run.
    pub memory_kb: u64,
    /// Output was cut at the output limit.
    pub truncated: bool,
    pub compile: Option<CompileResult>,
    /// Why the run could not start, when it could not (bad file name, exec failure).
    pub message: Option<String>,
    /// OOM kills in the run's own cgroup, where the agent owns one (inside a VM, where the
    /// host cannot see the guest's cgroups); 0 otherwise. The host judges from it.
    #[serde(default)]
    pub oom_kills: u64,
    /// Peak memory of that cgroup in KiB (0 where the agent owns none).
    #[serde(default)]
    pub cgroup_peak_kb: u64,
}

/// What the agent says once it can take a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u8,
    pub agent_version: String,
}

/// Host to agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFrame {
    Run(Box<AgentRun>),
    Stdin(Vec<u8>),
    CloseStdin,
    Kill,
    Ping,
    Prepare(Box<Prepare>),
}

/// Agent to host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentFrame {
    Ready(Ready),
    /// The user's program (not the compiler) has been started.
    Started,
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
    Result(Box<AgentResult>),
    Pong,
    Error {
        message: String,
    },
    /// The interpreter asked for by `Prepare` is started and waiting.
    Prepared,
}

/// A frame type of one direction.
pub trait Frame: Sized {
    /// Appends the payload and returns the kind byte.
    fn write_payload(&self, out: &mut Vec<u8>) -> u8;
    /// Builds a frame from its kind and payload.
    fn from_parts(kind: u8, payload: &[u8]) -> Result<Self, FrameError>;
}

fn json<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("serializing to a Vec cannot fail");
}

fn from_json<'a, T: Deserialize<'a>>(kind: u8, payload: &'a [u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Payload { kind, reason: e.to_string() })
}

fn empty(kind: u8, payload: &[u8]) -> Result<(), FrameError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(FrameError::Payload { kind, reason: "expected no payload".into() })
    }
}

impl Frame for HostFrame {
    fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            HostFrame::Run(run) => {
                json(run, out);
                1
            }
            HostFrame::Stdin(data) => {
                out.extend_from_slice(data);
                2
            }
            HostFrame::CloseStdin => 3,
            HostFrame::Kill => 4,
            HostFrame::Ping => 5,
            HostFrame::Prepare(p) => {
                json(p, out);
                6
            }
        }
    }

    fn from_parts(kind: u8, payload: &[u8]) -> Result<Self, FrameError> {
        Ok(match kind {
            1 => HostFrame::Run(Box::new(from_json(kind, payload)?)),
            2 => HostFrame::Stdin(payload.to_vec()),
            3 => empty(kind, payload).map(|_| HostFrame::CloseStdin)?,
            4 => empty(kind, payload).map(|_| HostFrame::Kill)?,
            5 => empty(kind, payload).map(|_| HostFrame::Ping)?,
            6 => HostFrame::Prepare(Box::new(from_json(kind, payload)?)),
            other => return Err(FrameError::Kind(other)),
        })
    }
}

impl Frame for AgentFrame {
    fn write_payload(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            AgentFrame::Ready(ready) => {
                json(ready, out);
                16
            }
            AgentFrame::Started => 17,
            AgentFrame::Output { stream, data } => {
                out.push(match stream {
                    Stream::Stdout => 1,
                    Stream::Stderr => 2,
                });
                out.extend_from_slice(data);
                18
            }
            AgentFrame::Result(result) => {
                json(result, out);
                19
            }
            AgentFrame::Pong => 20,
            AgentFrame::Error { message } => {
                json(message, out);
                21
            }
            AgentFrame::Prepared => 22,
        }
    }

    fn from_parts(kind: u8, payload: &[u8]) -> Result<Self, FrameError> {
        Ok(match kind {
            16 => AgentFrame::Ready(from_json(kind, payload)?),
            17 => empty(kind, payload).map(|_| AgentFrame::Started)?,
            18 => {
                let (first, data) =
                    payload.split_first().ok_or(FrameError::Payload { kind, reason: "missing stream byte".into() })?;
                let stream = match first {
                    1 => Stream::Stdout,
                    2 => Stream::Stderr,
                    s => return Err(FrameError::Payload { kind, reason: format!("bad stream {s}") }),
                };
                AgentFrame::Output { stream, data: data.to_vec() }
            }
            19 => AgentFrame::Result(Box::new(from_json(kind, payload)?)),
            20 => empty(kind, payload).map(|_| AgentFrame::Pong)?,
            21 => AgentFrame::Error { message: from_json(kind, payload)? },
            22 => empty(kind, payload).map(|_| AgentFrame::Prepared)?,
            other => return Err(FrameError::Kind(other)),
        })
    }
}

/// Appends one encoded frame to `out`.
pub fn encode<F: Frame>(frame: &F, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[VERSION, 0, 0, 0, 0, 0]);
    let kind = frame.write_payload(out);
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    out[start + 1] = kind;
    out[start + 2..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decodes the first frame of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// frame and how many bytes it used. The header is checked before the payload is awaited.
pub fn decode<F: Frame>(buf: &[u8]) -> Result<Option<(F, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = check_header(header)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((F::from_parts(header[1], payload)?, HEADER_LEN + len)))
}

fn check_header(header: &[u8]) -> Result<usize, FrameError> {
    if header[0] != VERSION {
        return Err(FrameError::Version(header[0]));
    }
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Blocking read of one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame<F: Frame, R: Read>(r: &mut R) -> Result<Option<F>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = check_header(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    F::from_parts(header[1], &payload).map(Some)
}

/// Blocking write of one frame (a single `write_all`, so frames never interleave).
pub fn write_frame<F: Frame, W: Write>(w: &mut W, frame: &F) -> Result<(), FrameError> {
    let mut buf = Vec::new();
    encode(frame, &mut buf)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<F: Frame + PartialEq + std::fmt::Debug>(frame: F) {
        let mut buf = Vec::new();
        encode(&frame, &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(decode::<F>(&buf[..cut]).unwrap().is_none(), "partial frame decoded at {cut}");
        }
        let (back, used) = decode::<F>(&buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(back, frame);
        let mut reader = &buf[..];
        assert_eq!(read_frame::<F, _>(&mut reader).unwrap().unwrap(), frame);
        assert!(read_frame::<F, _>(&mut reader).unwrap().is_none());
    }

    #[test]
    fn every_frame_roundtrips() {
        let run = AgentRun {
            files: vec![FileSpec { path: "main.py".into(), data: b"print(1)\xff".to_vec(), executable: false }],
            compile: None,
            run: Step { argv: vec!["/usr/bin/python3".into(), "main.py".into()], limits: Limits::DEFAULT },
            env: vec![("PATH".into(), "/usr/bin".into())],
            stdin: vec![0, 1, 2],
            keep_stdin_open: false,
            warm_argv: Some(vec!["main.py".into()]),
        };
        roundtrip(HostFrame::Run(Box::new(run)));
        roundtrip(HostFrame::Prepare(Box::new(Prepare { argv: vec!["/usr/bin/python3".into()], env: Vec::new() })));
        roundtrip(AgentFrame::Prepared);
        roundtrip(HostFrame::Stdin(b"abc".to_vec()));
        roundtrip(HostFrame::Stdin(Vec::new()));
        roundtrip(HostFrame::CloseStdin);
        roundtrip(HostFrame::Kill);
        roundtrip(HostFrame::Ping);
        roundtrip(AgentFrame::Ready(Ready { protocol: VERSION, agent_version: "0.1.0".into() }));
        roundtrip(AgentFrame::Started);
        roundtrip(AgentFrame::Output { stream: Stream::Stderr, data: vec![0xff, 0xfe] });
        roundtrip(AgentFrame::Pong);
        roundtrip(AgentFrame::Error { message: "boom".into() });
        roundtrip(AgentFrame::Result(Box::new(AgentResult {
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            wall_ms: 1,
            wall_us: 1200,
            cpu_ms: 2,
            memory_kb: 3,
            truncated: false,
            compile: None,
            message: None,
            oom_kills: 1,
            cgroup_peak_kb: 4,
        })));
    }

    #[test]
    fn hostile_headers_are_refused_before_allocation() {
        let huge = [VERSION, 18, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode::<AgentFrame>(&huge), Err(FrameError::TooLarge(_))));
        assert!(matches!(read_frame::<AgentFrame, _>(&mut &huge[..]), Err(FrameError::TooLarge(_))));
        assert!(matches!(decode::<AgentFrame>(&[9, 18, 0, 0, 0, 0]), Err(FrameError::Version(9))));
        assert!(matches!(decode::<AgentFrame>(&[VERSION, 99, 0, 0, 0, 0]), Err(FrameError::Kind(99))));
        assert!(matches!(decode::<HostFrame>(&[VERSION, 4, 0, 0, 0, 1, 7]), Err(FrameError::Payload { .. })));
        assert!(matches!(decode::<AgentFrame>(&[VERSION, 18, 0, 0, 0, 0]), Err(FrameError::Payload { .. })));
        assert!(matches!(
            read_frame::<HostFrame, _>(&mut &[VERSION, 2, 0, 0, 0, 5, 1][..]),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        // A small deterministic fuzz: every prefix of a pseudo-random stream.
        let mut x: u32 = 0x1234_5678;
        let bytes: Vec<u8> = (0..4096)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 == 0 {
                    VERSION
                } else {
                    x as u8
                }
            })
            .collect();
        for start in 0..bytes.len() {
            let _ = decode::<AgentFrame>(&bytes[start..]);
            let _ = decode::<HostFrame>(&bytes[start..]);
        }
    }
}
