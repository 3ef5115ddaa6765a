//! The agent protocol's decoders (both directions) on arbitrary bytes: a hostile sandbox
//! writes whatever it likes to the host, and a broken host to the agent. Whatever comes,
//! decoding answers (a frame, "need more", an error) without panicking, never claims more
//! bytes than it got, and every frame it accepts encodes back to one that decodes the same.

#![no_main]

use hearth_proto::frame::{self, AgentFrame, Frame, HostFrame};
use libfuzzer_sys::fuzz_target;

fn stream<F: Frame + PartialEq + std::fmt::Debug>(mut bytes: &[u8]) {
    loop {
        match frame::decode::<F>(bytes) {
            Ok(Some((f, used))) => {
                assert!(used >= frame::HEADER_LEN && used <= bytes.len());
                let mut again = Vec::new();
                frame::encode(&f, &mut again).expect("a decoded frame encodes");
                let (back, n) = frame::decode::<F>(&again).expect("re-decodes").expect("whole");
                assert_eq!((back, n), (f, again.len()));
                bytes = &bytes[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The blocking reader agrees with the buffer decoder on the first frame.
    let first = frame::decode::<F>(bytes).ok().flatten().map(|(f, _)| f);
    if let Some(f) = first {
        let read = frame::read_frame::<F, _>(&mut &bytes[..]).expect("read_frame takes what decode took");
        assert_eq!(read, Some(f));
    }
}

fuzz_target!(|data: &[u8]| {
    stream::<AgentFrame>(data);
    stream::<HostFrame>(data);
});
