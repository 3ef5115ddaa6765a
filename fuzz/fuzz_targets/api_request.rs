//! The gateway's request parsing on arbitrary bytes: the run body (`POST /v1/runs`, the
//! WebSocket `run` frame) through the gateway's own parser and validator, the session
//! request, the control messages, and session tokens. None may panic; an accepted run
//! body survives a round trip; a token verifies only if this gateway's key signed it.

#![no_main]

use hearth_gateway::auth::{Auth, Claims};
use hearth_gateway::runs::{parse_body, validate_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_body(data) {
        let _ = validate_request(&req, |lang| Some(lang == "python"));
        let text = serde_json::to_vec(&req).expect("a request encodes");
        assert_eq!(parse_body(&text).expect("re-parses"), req);
    }
    let _ = serde_json::from_slice::<hearth_gateway::auth::SessionRequest>(data);
    let _ = serde_json::from_slice::<hearth_bus::control::ControlMsg>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let auth = Auth::closed().with_secret(&[42u8; 32]).expect("a 32-byte secret");
        if let Ok(claims) = auth.verify(text) {
            // Random bytes cannot be a token signed with our key; only our own tokens verify.
            assert_eq!(auth.issue(&claims), text, "a token that verifies is the one we would issue");
        }
        let _ = hearth_proto::ids::validate("session_id", text);
        let claims = Claims { u: text.into(), s: "s".into(), t: "default".into(), exp: u64::MAX / 4 };
        let token = auth.issue(&claims);
        if hearth_proto::ids::validate("user_id", text).is_ok() {
            assert_eq!(auth.verify(&token).expect("our own token verifies"), claims);
        } else {
            assert!(auth.verify(&token).is_err(), "a token naming an invalid id is refused");
        }
    }
});
