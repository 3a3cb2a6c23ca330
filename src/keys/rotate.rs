//! Rotation of the C2PA signing certificate, and how close it is to
//! expiry.
//!
//! mmgen signs without a time-stamp authority, so a reader checks each
//! manifest against its certificate's validity at reading time: when the
//! signing certificate expires, every manifest signed with it reads back
//! Invalid (`signingCredential.expired`). Rotation issues a new signing
//! certificate from the same CA for new outputs; it cannot extend the
//! life of manifests already signed.

use std::fs;
use std::path::PathBuf;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use super::files::{self, Visibility};
use super::generate::{SIGNER_ORGANIZATION, issue_signer, signer_subject};
use super::{KeyError, KeySet, KeyStore};

/// Time before the signing certificate's expiry from which mmgen warns.
pub const RENEWAL_WARNING: Duration = Duration::days(60);

/// Directory inside `keys/` that keeps replaced signing keys and chains.
pub const RETIRED_DIR: &str = "retired";

/// Name of one retired pair's directory: the rotation time in UTC, to the
/// nanosecond, so that two rotations never share a directory.
const RETIRED_NAME: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:9]Z");

/// Remaining validity of the signing certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerExpiry {
    /// More than [`RENEWAL_WARNING`] left.
    Valid {
        /// Whole days left.
        days_left: i64,
    },
    /// Less than [`RENEWAL_WARNING`] left: time to rotate.
    Soon {
        /// Whole days left.
        days_left: i64,
    },
    /// Already expired: manifests signed now would read back Invalid.
    Expired {
        /// When it expired.
        since: OffsetDateTime,
    },
}

/// The result of a rotation.
#[derive(Debug)]
pub struct Rotation {
    /// Directory that now keeps the replaced key and chain.
    pub retired_dir: PathBuf,
    /// The key set with its new signing certificate, loaded and checked.
    pub keys: KeySet,
}

impl KeySet {
    /// Classifies the signing certificate's remaining validity at `now`.
    pub fn signer_expiry_at(&self, now: OffsetDateTime) -> SignerExpiry {
        let not_after = self.leaf.not_after;
        if now >= not_after {
            return SignerExpiry::Expired { since: not_after };
        }
        let left = not_after - now;
        let days_left = left.whole_days();
        if left < RENEWAL_WARNING {
            SignerExpiry::Soon { days_left }
        } else {
            SignerExpiry::Valid { days_left }
        }
    }
}

impl KeyStore {
    /// Issues a new signing key and certificate from the existing CA, valid
    /// for `lifetime` from now, and moves the old pair to
    /// `keys/retired/<time>/`. The CA, watermark and checkpoint keys stay.
    pub fn rotate(&self, lifetime: Duration) -> Result<Rotation, KeyError> {
        self.rotate_at(OffsetDateTime::now_utc(), lifetime)
    }

    /// Rotates as [`KeyStore::rotate`] does, as if the time were `now`.
    pub(crate) fn rotate_at(
        &self,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Rotation, KeyError> {
        let current = self.load()?;
        if lifetime <= Duration::ZERO {
            return Err(KeyError::InvalidOption(format!(
                "signing certificate lifetime {lifetime} is not positive; choose at least one day"
            )));
        }
        let not_after = now + lifetime;
        if not_after > current.ca.not_after {
            return Err(KeyError::InvalidOption(format!(
                "a signing certificate valid until {not_after} would outlive its CA, which \
                 expires {}; choose a shorter lifetime",
                current.ca.not_after
            )));
        }
        let organization = current
            .leaf
            .organization
            .clone()
            .or_else(|| current.ca.organization.clone())
            .unwrap_or_else(|| SIGNER_ORGANIZATION.to_string());
        let ca_key_pem = files::read_text(self.dir(), files::CA_KEY)?;
        let issued = issue_signer(
            &current.ca_cert_pem,
            &ca_key_pem,
            signer_subject(&organization),
            now,
            not_after,
        )?;

        let retired_dir = self.retire_signer(now)?;
        // NOTE: a crash between retiring the old pair and writing the new
        // one leaves an incomplete key set, which `load` reports. The old
        // pair can then be moved back from `retired_dir`.
        files::write_new(
            self.dir(),
            files::SIGNER_KEY,
            issued.key_pem.as_bytes(),
            Visibility::Private,
        )?;
        files::write_new(
            self.dir(),
            files::SIGNER_CHAIN,
            issued.chain_pem.as_bytes(),
            Visibility::Public,
        )?;
        let keys = self.load()?;
        tracing::info!(
            retired = %retired_dir.display(),
            signer = %keys.leaf.subject,
            not_after = %keys.leaf.not_after,
            "rotated the C2PA signing certificate"
        );
        Ok(Rotation { retired_dir, keys })
    }

    /// Moves the signing key and chain into a new directory under
    /// `retired/` and returns it.
    fn retire_signer(&self, now: OffsetDateTime) -> Result<PathBuf, KeyError> {
        let name = now.format(RETIRED_NAME).map_err(|e| KeyError::Generate {
            what: "the retired directory name",
            reason: e.to_string(),
        })?;
        let parent = self.dir().join(RETIRED_DIR);
        crate::home::create_private_dir(&parent)?;
        let dir = parent.join(name);
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            move |source| KeyError::Io { path, source }
        };
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        for file in [files::SIGNER_KEY, files::SIGNER_CHAIN] {
            let from = self.dir().join(file);
            fs::rename(&from, dir.join(file)).map_err(io_err(&from))?;
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, KeyStore, KeySet) {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&tmp.path().join("keys"));
        let set = store.init().unwrap();
        (tmp, store, set)
    }

    #[test]
    fn rotation_keeps_ca_and_retires_old_pair() {
        let (_tmp, store, before) = fresh();
        let rotation = store.rotate(Duration::days(30)).unwrap();
        let after = rotation.keys;
        assert_eq!(after.ca_cert_pem, before.ca_cert_pem);
        assert_eq!(after.watermark_secret, before.watermark_secret);
        assert_ne!(after.signer.chain_pem(), before.signer.chain_pem());
        assert_ne!(after.leaf.sha256, before.leaf.sha256);
        assert_eq!(after.leaf.organization, before.leaf.organization);
        assert_eq!(after.info().signer_days_left, 29);

        let retired_chain =
            fs::read_to_string(rotation.retired_dir.join(files::SIGNER_CHAIN)).unwrap();
        assert_eq!(retired_chain, before.signer.chain_pem());
        assert!(rotation.retired_dir.join(files::SIGNER_KEY).is_file());
        let reloaded = store.load().unwrap();
        assert_eq!(reloaded.leaf.sha256, after.leaf.sha256);
    }

    #[test]
    fn two_rotations_get_their_own_directories() {
        let (_tmp, store, _set) = fresh();
        let first = store.rotate(Duration::days(10)).unwrap();
        let second = store.rotate(Duration::days(10)).unwrap();
        assert_ne!(first.retired_dir, second.retired_dir);
        assert!(first.retired_dir.join(files::SIGNER_KEY).is_file());
        assert!(second.retired_dir.join(files::SIGNER_KEY).is_file());
    }

    #[test]
    fn lifetime_beyond_the_ca_is_rejected() {
        let (_tmp, store, before) = fresh();
        let err = store.rotate(Duration::days(21 * 365)).unwrap_err();
        assert!(matches!(err, KeyError::InvalidOption(_)), "{err}");
        let err = store.rotate(Duration::ZERO).unwrap_err();
        assert!(matches!(err, KeyError::InvalidOption(_)), "{err}");
        let unchanged = store.load().unwrap();
        assert_eq!(unchanged.leaf.sha256, before.leaf.sha256);
        assert!(!store.dir().join(RETIRED_DIR).exists());
    }

    #[test]
    fn expiry_is_classified() {
        let (_tmp, _store, set) = fresh();
        let expires = set.leaf.not_after;
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            set.signer_expiry_at(now),
            SignerExpiry::Valid { days_left } if days_left > 1000
        ));
        assert_eq!(
            set.signer_expiry_at(expires - Duration::days(10)),
            SignerExpiry::Soon { days_left: 10 }
        );
        assert_eq!(
            set.signer_expiry_at(expires),
            SignerExpiry::Expired { since: expires }
        );
    }
}
