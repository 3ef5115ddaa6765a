//! What travels on a run's control subject (`hearth.control.<run_id>`, core NATS) from the
//! gateway to the executor running it, and the "run ended" notice executors send back to
//! the gateway that accepted a run.

use serde::{Deserialize, Serialize};

/// One request for a running run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMsg {
    /// Bytes for the program's stdin; `eof` closes it after them.
    Stdin {
        #[serde(default)]
        data: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        eof: bool,
    },
    /// End the run as `cancelled`, killing its whole process tree.
    Kill,
}

impl ControlMsg {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("a control message encodes").into()
    }
}

/// Sent on the accepting gateway's `done` subject once a run has ended for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub run_id: String,
    pub user_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_have_one_json_shape() {
        let m = ControlMsg::Stdin { data: "hi\n".into(), eof: true };
        assert_eq!(String::from_utf8(m.encode().to_vec()).unwrap(), r#"{"type":"stdin","data":"hi\n","eof":true}"#);
        assert_eq!(
            serde_json::from_str::<ControlMsg>(r#"{"type":"stdin"}"#).unwrap(),
            ControlMsg::Stdin { data: String::new(), eof: false }
        );
        assert_eq!(serde_json::from_str::<ControlMsg>(r#"{"type":"kill"}"#).unwrap(), ControlMsg::Kill);
        assert!(serde_json::from_str::<ControlMsg>(r#"{"type":"reboot"}"#).is_err());
    }
}
