//! The watermark secret and the values derived from it.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC message that derives the sign-pattern key from the secret.
const PATTERN_LABEL: &[u8] = b"mmgen watermark pattern v1";

/// SHA-256 prefix that derives the public key id from the secret.
const KEY_ID_LABEL: &[u8] = b"mmgen watermark key id v1";

/// A watermark key: the pattern key and the public id derived from a
/// 32-byte secret. The secret itself is not kept.
///
/// `Debug` prints only the key id, never the pattern key.
#[derive(Clone)]
pub struct WatermarkKey {
    pattern_key: [u8; 32],
    id: [u8; 8],
}

impl WatermarkKey {
    /// Derives the pattern key and the key id from `secret`.
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            pattern_key: derive_pattern_key(&secret),
            id: derive_key_id(&secret),
        }
    }

    /// First 8 bytes of SHA-256("mmgen watermark key id v1" || secret).
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// HMAC-SHA256(secret, "mmgen watermark pattern v1"), the ChaCha20 key
    /// of every sign pattern made with this secret.
    pub(crate) fn pattern_key(&self) -> &[u8; 32] {
        &self.pattern_key
    }
}

impl fmt::Debug for WatermarkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatermarkKey")
            .field("id", &hex(&self.id))
            .finish_non_exhaustive()
    }
}

fn derive_pattern_key(secret: &[u8; 32]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this constructor cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(PATTERN_LABEL);
    mac.finalize().into_bytes().into()
}

fn derive_key_id(secret: &[u8; 32]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(KEY_ID_LABEL);
    hasher.update(secret);
    let digest = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// Lowercase hexadecimal digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_labelled_sha256_prefix() {
        let secret = [7u8; 32];
        let mut hasher = Sha256::new();
        hasher.update(b"mmgen watermark key id v1");
        hasher.update(secret);
        let digest = hasher.finalize();
        assert_eq!(WatermarkKey::new(secret).id(), digest[..8]);
    }

    #[test]
    fn pattern_key_is_hmac_of_label() {
        let secret = [9u8; 32];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).unwrap();
        mac.update(b"mmgen watermark pattern v1");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(WatermarkKey::new(secret).pattern_key(), &expected);
    }

    #[test]
    fn different_secrets_different_ids() {
        let a = WatermarkKey::new([1u8; 32]);
        let b = WatermarkKey::new([2u8; 32]);
        assert_ne!(a.id(), b.id());
        assert_ne!(a.pattern_key(), b.pattern_key());
    }

    #[test]
    fn debug_hides_secret() {
        let secret = [0xabu8; 32];
        let key = WatermarkKey::new(secret);
        let text = format!("{key:?}");
        assert!(text.contains(&hex(&key.id())), "{text}");
        assert!(!text.contains("abab"), "secret bytes in {text}");
        assert!(!text.contains(&hex(key.pattern_key())), "{text}");
        assert!(!text.contains("171, 171"), "secret array in {text}");
    }
}
