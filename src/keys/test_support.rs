//! Signing identities that mmgen would never create, for tests of what
//! C2PA readers do with them.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use rcgen::{DistinguishedName, DnType};
use time::{Duration, OffsetDateTime};

use super::generate::issue_signer;
use super::{KeySet, KeyStore, Signer, files};

/// Builds a subject with a common name only: no C, no O.
pub(crate) fn subject_without_organization() -> DistinguishedName {
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "signer without organisation");
    subject
}

/// Creates a fresh key set in a temporary directory, kept alive by the
/// guard.
pub(crate) fn fresh_store() -> (tempfile::TempDir, KeyStore, KeySet) {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(&tmp.path().join("keys"));
    let set = store.init().unwrap();
    (tmp, store, set)
}

/// Issues a signing certificate for `subject` from the CA of `store`,
/// valid for a day, and returns its key and PEM chain.
pub(crate) fn issue_for(
    store: &KeyStore,
    set: &KeySet,
    subject: DistinguishedName,
) -> (String, String) {
    let now = OffsetDateTime::now_utc();
    let ca_key = files::read_text(store.dir(), files::CA_KEY).unwrap();
    let issued = issue_signer(
        &set.ca_cert_pem,
        &ca_key,
        subject,
        now,
        now + Duration::days(1),
    )
    .unwrap();
    (issued.key_pem, issued.chain_pem)
}

/// Builds a signer for `subject`, issued by the CA of a fresh key set,
/// without the checks of [`KeyStore::load`].
pub(crate) fn unchecked_signer(subject: DistinguishedName) -> (tempfile::TempDir, Signer) {
    let (tmp, store, set) = fresh_store();
    let (key_pem, chain_pem) = issue_for(&store, &set, subject);
    let key = SigningKey::from_pkcs8_pem(&key_pem).unwrap();
    let not_after = OffsetDateTime::now_utc() + Duration::days(1);
    let signer = Signer::new(
        key,
        chain_pem,
        "CN=signer without organisation".into(),
        not_after,
    );
    (tmp, signer)
}
