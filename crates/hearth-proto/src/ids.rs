//! Ids that end up inside NATS subjects (`code.out.<session_id>`) must never carry a token
//! separator (`.`) or a wildcard (`*`, `>`): one client could otherwise read another's
//! output. Every id is checked here, once, before it reaches a subject.

use thiserror::Error;

/// Longest accepted user or session id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why an id was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_ID_LEN} bytes")]
    TooLong { field: &'static str },
    #[error("{field} may only contain A-Z, a-z, 0-9, '_' and '-'")]
    BadChar { field: &'static str },
}

/// Checks `value` against `[A-Za-z0-9_-]{1,64}`; `field` names it in the error.
pub fn validate(field: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { field });
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(IdError::BadChar { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate("session_id", "s1").is_ok());
        assert!(validate("session_id", "A-z_09").is_ok());
        assert!(validate("session_id", &"x".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_subject_syntax_and_oddities() {
        for bad in ["a.>", "*", ">", "a b", "a.b", "é", "a\n", "a\0"] {
            assert_eq!(validate("session_id", bad), Err(IdError::BadChar { field: "session_id" }), "{bad:?}");
        }
        assert_eq!(validate("user_id", ""), Err(IdError::Empty { field: "user_id" }));
        assert_eq!(validate("user_id", &"x".repeat(65)), Err(IdError::TooLong { field: "user_id" }));
    }
}
