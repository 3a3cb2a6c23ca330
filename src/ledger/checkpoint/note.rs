//! Signed notes in the C2SP signed-note form, with Ed25519 keys.
//!
//! A note is a text ending in a newline, a blank line, and one or more
//! signature lines `— <key name> <base64(key id || signature)>`, where the
//! dash is U+2014 and the key id is a big-endian u32. The signature covers
//! the text including its final newline. For Ed25519 the key id is the
//! first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key).
//!
//! A verifier key is shared as the text `<name>+<key id in 8 hex
//! digits>+<base64(0x01 || public key)>`, the form that Go's sumdb `note`
//! package reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::CheckpointError;

/// Signature type byte of Ed25519 in key ids and verifier keys.
const ED25519_TYPE: u8 = 0x01;

/// Start of every signature line: U+2014 EM DASH and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Largest note that `open` accepts. A checkpoint with one signature is
/// under 300 bytes.
const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Maximum number of signature lines that `open` accepts; the spec requires
/// at least 16.
const MAX_SIGNATURES: usize = 100;

/// Computes the key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_TYPE]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Checks that a key name is non-empty, has no Unicode white space, no
/// plus sign and no control character.
pub fn check_name(name: &str) -> Result<(), CheckpointError> {
    let bad = name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control());
    if bad {
        return Err(CheckpointError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Signs `text`, which must end in a newline, and returns the whole note.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> String {
    let signature = key.sign(text.as_bytes());
    let mut payload = Vec::with_capacity(4 + 64);
    payload.extend_from_slice(&key_id(name, &key.verifying_key()).to_be_bytes());
    payload.extend_from_slice(&signature.to_bytes());
    format!(
        "{text}\n{SIGNATURE_PREFIX}{name} {}\n",
        STANDARD.encode(payload)
    )
}

/// One parsed signature line.
struct SignatureLine<'a> {
    name: &'a str,
    key_id: u32,
    signature: Vec<u8>,
}

/// Checks a note's form and its signature by the key `name`/`key`, and
/// returns the signed text.
///
/// Signature lines of other keys are ignored, as the spec requires. The
/// note is rejected when a line of this key fails to verify, or when none
/// is present.
pub fn open<'a>(note: &'a str, name: &str, key: &VerifyingKey) -> Result<&'a str, CheckpointError> {
    let (text, lines) = split(note)?;
    let wanted = key_id(name, key);
    let mut verified = false;
    for line in lines
        .iter()
        .filter(|l| l.name == name && l.key_id == wanted)
    {
        let bad = || CheckpointError::BadSignature {
            name: name.to_string(),
        };
        let signature = Signature::from_slice(&line.signature).map_err(|_| bad())?;
        key.verify_strict(text.as_bytes(), &signature)
            .map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        return Err(CheckpointError::NoKnownSignature {
            name: name.to_string(),
            key_id: wanted,
        });
    }
    Ok(text)
}

/// Returns the signed text and the signature of the one line by the key
/// `name`/`key`, without checking the signature, for batch verification.
/// Returns `None` when the note is malformed or has no such line or more
/// than one, which [`open`] then reports.
pub fn signed_by<'a>(
    note: &'a str,
    name: &str,
    key: &VerifyingKey,
) -> Option<(&'a str, Signature)> {
    let (text, lines) = split(note).ok()?;
    let wanted = key_id(name, key);
    let mut matching = lines
        .iter()
        .filter(|l| l.name == name && l.key_id == wanted);
    let line = matching.next()?;
    if matching.next().is_some() {
        return None;
    }
    let signature = Signature::from_slice(&line.signature).ok()?;
    Some((text, signature))
}

/// Splits a note into its text and parsed signature lines, checking the
/// form only.
fn split(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), CheckpointError> {
    let malformed = |reason: &str| CheckpointError::MalformedNote {
        reason: reason.to_string(),
    };
    if note.len() > MAX_NOTE_BYTES {
        return Err(malformed("the note is larger than 64 KiB"));
    }
    if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(malformed(
            "the note contains a control character other than newline",
        ));
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(malformed(
            "no blank line separates the text from the signatures",
        ));
    };
    let lines = parse_signatures(&note[split + 2..])?;
    Ok((&note[..split + 1], lines))
}

fn parse_signatures(block: &str) -> Result<Vec<SignatureLine<'_>>, CheckpointError> {
    let malformed = |reason: String| CheckpointError::MalformedNote { reason };
    let Some(body) = block.strip_suffix('\n') else {
        return Err(malformed(
            "the last signature line does not end in a newline".into(),
        ));
    };
    let mut lines = Vec::new();
    for line in body.split('\n') {
        let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
            return Err(malformed(format!(
                "signature line {line:?} does not start with an em dash (U+2014) and a space"
            )));
        };
        let Some((name, encoded)) = rest.split_once(' ') else {
            return Err(malformed(format!(
                "signature line {line:?} has no space between key name and signature"
            )));
        };
        check_name(name)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| malformed(format!("signature of {name} is not base64 ({e})")))?;
        if bytes.len() < 5 {
            return Err(malformed(format!(
                "signature of {name} has {} bytes, fewer than a key id and a signature",
                bytes.len()
            )));
        }
        lines.push(SignatureLine {
            name,
            key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            signature: bytes[4..].to_vec(),
        });
    }
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "the note has {} signatures, more than {MAX_SIGNATURES}",
            lines.len()
        )));
    }
    Ok(lines)
}

/// Formats the verifier key text of an Ed25519 key under `name`.
pub fn verifier_key_text(name: &str, key: &VerifyingKey) -> String {
    let mut encoded = vec![ED25519_TYPE];
    encoded.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{:08x}+{}",
        key_id(name, key),
        STANDARD.encode(encoded)
    )
}

/// Parses a verifier key text into its name and Ed25519 key, checking
/// that the key id matches.
pub fn parse_verifier_key(text: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let text = text.trim();
    let invalid = |reason: &str| CheckpointError::InvalidVerifierKey {
        text: text.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("expected NAME+KEYID+BASE64KEY"));
    };
    check_name(name)?;
    if id_hex.len() != 8 {
        return Err(invalid("the key id must be 8 hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| invalid("the key id is not hex"))?;
    let bytes = STANDARD
        .decode(key_b64)
        .map_err(|_| invalid("the key is not base64"))?;
    let Some((&ED25519_TYPE, key_bytes)) = bytes.split_first() else {
        return Err(invalid("the key is not an Ed25519 key (type byte 0x01)"));
    };
    let key_bytes: [u8; 32] = key_bytes
        .try_into()
        .map_err(|_| invalid("an Ed25519 key has 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| invalid("the bytes are not an Ed25519 public key"))?;
    if key_id(name, &key) != id {
        return Err(invalid("the key id does not match the name and key"));
    }
    Ok((name.to_string(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signed_note_has_spec_form() {
        let note = sign("hello\nworld\n", "example.com/log", &key(1));
        let (text, signature_line) = note.split_once("\n\n").expect("blank line");

        assert_eq!(text, "hello\nworld");
        assert!(signature_line.starts_with("\u{2014} example.com/log "));
        assert!(signature_line.ends_with('\n'));
        let encoded = signature_line
            .trim_end()
            .rsplit(' ')
            .next()
            .expect("base64");
        let bytes = STANDARD.decode(encoded).expect("base64");
        assert_eq!(bytes.len(), 4 + 64);
        let id = key_id("example.com/log", &key(1).verifying_key());
        assert_eq!(bytes[..4], id.to_be_bytes());
    }

    #[test]
    fn key_id_known_answer() {
        // SHA-256("example.com/log" || 0x0A || 0x01 || key)[:4], computed
        // with Python's hashlib for the key of seed [1; 32].
        let public = key(1).verifying_key();
        assert_eq!(
            crate::ledger::to_hex(public.as_bytes()),
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        assert_eq!(key_id("example.com/log", &public), 0x9be5_d3c6);
    }

    #[test]
    fn open_accepts_own_signature_and_ignores_others() {
        let signer = key(1);
        let note = sign("a\nb\n", "log", &signer);
        let public = signer.verifying_key();
        assert_eq!(open(&note, "log", &public), Ok("a\nb\n"));

        // A cosignature by another key is ignored.
        let other = sign("a\nb\n", "witness", &key(2));
        let other_line = other.split_once("\n\n").expect("blank").1;
        let cosigned = format!("{note}{other_line}");
        assert_eq!(open(&cosigned, "log", &public), Ok("a\nb\n"));
    }

    #[test]
    fn open_rejects_changed_text_and_foreign_notes() {
        let signer = key(1);
        let note = sign("size 5\n", "log", &signer);
        let public = signer.verifying_key();

        let changed = note.replace("size 5", "size 6");
        assert!(matches!(
            open(&changed, "log", &public),
            Err(CheckpointError::BadSignature { .. })
        ));
        let foreign = sign("size 5\n", "log", &key(2));
        assert!(matches!(
            open(&foreign, "log", &public),
            Err(CheckpointError::NoKnownSignature { .. })
        ));
        let renamed = sign("size 5\n", "other", &signer);
        assert!(matches!(
            open(&renamed, "log", &public),
            Err(CheckpointError::NoKnownSignature { .. })
        ));
    }

    #[test]
    fn open_rejects_malformed_notes() {
        let signer = key(1);
        let public = signer.verifying_key();
        let note = sign("x\n", "log", &signer);
        let cases = [
            ("no blank line", "x\n".to_string()),
            ("hyphen for dash", note.replace('\u{2014}', "-")),
            ("no final newline", note.trim_end().to_string()),
            ("control character", note.replace("x\n", "x\r\n")),
            ("bad base64", note.replace(" log ", " log !")),
        ];
        for (case, text) in cases {
            let result = open(&text, "log", &public);
            assert!(result.is_err(), "{case}: {result:?}");
        }
    }

    #[test]
    fn verifier_key_round_trips_and_checks_id() {
        let public = key(3).verifying_key();
        let text = verifier_key_text("host/mmgen-ledger", &public);
        assert!(text.starts_with("host/mmgen-ledger+"));
        let (name, parsed) = parse_verifier_key(&text).expect("parse");
        assert_eq!(name, "host/mmgen-ledger");
        assert_eq!(parsed, public);

        let wrong_id = text.replacen('+', "+0", 1);
        assert!(parse_verifier_key(&wrong_id).is_err());
        let renamed = text.replacen("host", "other", 1);
        assert!(parse_verifier_key(&renamed).is_err());
        assert!(parse_verifier_key("name-only").is_err());
    }
}
