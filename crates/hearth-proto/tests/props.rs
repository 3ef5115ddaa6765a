//! Property tests of the decoders that take bytes from outside: agent frames (a sandbox
//! may be hostile) and API request bodies (a client may be).

use hearth_proto::api::RunRequest;
use hearth_proto::frame::{self, AgentFrame, HostFrame, Stream};
use proptest::prelude::*;

fn output_frame() -> impl Strategy<Value = AgentFrame> {
    (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..512))
        .prop_map(|(out, data)| AgentFrame::Output { stream: if out { Stream::Stdout } else { Stream::Stderr }, data })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever arrives, the decoders answer (a frame, "need more", or an error) without
    /// panicking, and never claim more bytes than they were given.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some((_, used))) = frame::decode::<AgentFrame>(&bytes) {
            prop_assert!(used <= bytes.len());
        }
        if let Ok(Some((_, used))) = frame::decode::<HostFrame>(&bytes) {
            prop_assert!(used <= bytes.len());
        }
        let _ = frame::read_frame::<HostFrame, _>(&mut &bytes[..]);
    }

    /// Headers that look valid with any kind byte and payload never panic either.
    #[test]
    fn plausible_headers_never_panic(kind in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = vec![frame::VERSION, kind];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let _ = frame::decode::<AgentFrame>(&bytes);
        let _ = frame::decode::<HostFrame>(&bytes);
    }

    /// A stream of frames cut into arbitrary pieces decodes to the same frames, in order.
    #[test]
    fn streams_decode_the_same_however_they_are_cut(
        frames in proptest::collection::vec(output_frame(), 1..20),
        cuts in proptest::collection::vec(1usize..64, 1..50),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            frame::encode(f, &mut wire).unwrap();
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cut = cuts.iter().cycle();
        while pos < wire.len() {
            let end = (pos + cut.next().unwrap()).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            while let Some((f, used)) = frame::decode::<AgentFrame>(&buf).unwrap() {
                buf.drain(..used);
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// Any text thrown at the request parser gets an answer, never a panic.
    #[test]
    fn request_parser_never_panics(text in ".{0,300}") {
        let _ = serde_json::from_str::<RunRequest>(&text);
    }

    /// Well-formed bodies with hostile field values parse (validation is the gateway's job)
    /// and survive a round trip.
    #[test]
    fn hostile_field_values_roundtrip(user in ".{0,80}", session in ".{0,80}", code in ".{0,200}") {
        let req = RunRequest { user_id: user, session_id: session, lang: "python".into(), code: Some(code), ..RunRequest::default() };
        let json = serde_json::to_string(&req).unwrap();
        prop_assert_eq!(serde_json::from_str::<RunRequest>(&json).unwrap(), req);
    }
}
