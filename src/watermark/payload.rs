//! The watermark payload: which key made the mark and which ledger serial
//! it names, with its text form `mmgen-wm1:<16 hex key id>:<serial>`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::WatermarkError;
use super::key::hex;

/// Prefix of the payload's text form; the `1` is the scheme version.
const PREFIX: &str = "mmgen-wm1";

/// Maximum number of characters of a rejected text that an error repeats.
const MAX_ECHO_CHARS: usize = 64;

/// The (key id, ledger serial) pair that a watermark encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Payload {
    /// Public id of the watermark key, see [`super::WatermarkKey::id`].
    pub key_id: [u8; 8],
    /// Serial of the ledger record that the image belongs to.
    pub serial: u64,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}:{}:{}", hex(&self.key_id), self.serial)
    }
}

impl FromStr for Payload {
    type Err = WatermarkError;

    /// Parses `mmgen-wm1:<16 hex digits>:<decimal serial>`. Hex digits may
    /// be upper or lower case; the serial has no sign and fits in a u64.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| WatermarkError::InvalidPayload {
            text: echo(text),
            reason: reason.to_string(),
        };

        let mut parts = text.split(':');
        let (Some(prefix), Some(key_id), Some(serial), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected three parts separated by ':'"));
        };
        if prefix != PREFIX {
            return Err(invalid("the text must start with 'mmgen-wm1:'"));
        }

        let key_id = parse_key_id(key_id)
            .ok_or_else(|| invalid("the key id must be exactly 16 hexadecimal digits"))?;
        let serial = parse_serial(serial)
            .ok_or_else(|| invalid("the serial must be a decimal number from 0 to 2^64-1"))?;
        Ok(Self { key_id, serial })
    }
}

impl Serialize for Payload {
    /// Serializes as `{"key_id": "<16 hex>", "serial": N, "text": "..."}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("Payload", 3)?;
        state.serialize_field("key_id", &hex(&self.key_id))?;
        state.serialize_field("serial", &self.serial)?;
        state.serialize_field("text", &self.to_string())?;
        state.end()
    }
}

fn parse_key_id(digits: &str) -> Option<[u8; 8]> {
    let bytes = digits.as_bytes();
    if bytes.len() != 16 {
        return None;
    }
    let mut key_id = [0u8; 8];
    for (out, pair) in key_id.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = hex_value(pair[0])?;
        let low = hex_value(pair[1])?;
        *out = (high << 4) | low;
    }
    Some(key_id)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|value| value as u8)
}

fn parse_serial(digits: &str) -> Option<u64> {
    // u64::from_str would also take a leading '+'.
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Shortens `text` for an error message, so huge input stays out of logs.
fn echo(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO_CHARS {
        return text.to_string();
    }
    let head: String = text.chars().take(MAX_ECHO_CHARS).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        Payload {
            key_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            serial: 42,
        }
    }

    #[test]
    fn display_is_canonical_text() {
        assert_eq!(sample().to_string(), "mmgen-wm1:0123456789abcdef:42");
    }

    #[test]
    fn text_round_trips() {
        for serial in [0, 1, 42, u64::MAX] {
            let payload = Payload { serial, ..sample() };
            let parsed: Payload = payload.to_string().parse().unwrap();
            assert_eq!(parsed, payload);
        }
    }

    #[test]
    fn upper_case_hex_parses() {
        let parsed: Payload = "mmgen-wm1:0123456789ABCDEF:42".parse().unwrap();
        assert_eq!(parsed, sample());
    }

    #[test]
    fn malformed_text_is_rejected() {
        let cases = [
            "",
            "mmgen-wm1",
            "mmgen-wm1:0123456789abcdef",
            "mmgen-wm1:0123456789abcdef:",
            "mmgen-wm1:0123456789abcdef:42:7",
            "mmgen-wm2:0123456789abcdef:42",
            "MMGEN-WM1:0123456789abcdef:42",
            " mmgen-wm1:0123456789abcdef:42",
            "mmgen-wm1:0123456789abcde:42",
            "mmgen-wm1:0123456789abcdef0:42",
            "mmgen-wm1:0123456789abcdeg:42",
            "mmgen-wm1:+123456789abcdef:42",
            "mmgen-wm1:0123456789abcdef:+42",
            "mmgen-wm1:0123456789abcdef:-1",
            "mmgen-wm1:0123456789abcdef:4 2",
            "mmgen-wm1:0123456789abcdef:18446744073709551616",
            "mmgen-wm1:0123456789abcdé:42",
        ];
        for text in cases {
            let result = text.parse::<Payload>();
            assert!(result.is_err(), "{text:?} parsed as {result:?}");
        }
    }

    #[test]
    fn error_names_text_and_reason() {
        let error = "mmgen-wm1:xyz:42".parse::<Payload>().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("mmgen-wm1:xyz:42"), "{message}");
        assert!(message.contains("16 hexadecimal digits"), "{message}");
    }

    #[test]
    fn error_shortens_huge_text() {
        let text = "x".repeat(100_000);
        let message = text.parse::<Payload>().unwrap_err().to_string();
        assert!(message.len() < 400, "message of {} bytes", message.len());
    }

    #[test]
    fn serializes_hex_serial_and_text() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["key_id"], "0123456789abcdef");
        assert_eq!(json["serial"], 42);
        assert_eq!(json["text"], "mmgen-wm1:0123456789abcdef:42");
    }
}
