//! The key directory `<home>/keys/`: create once, load and check.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use time::OffsetDateTime;

use super::cert::{CertDetails, parse_pem_chain};
use super::files::{self, Visibility};
use super::generate::{KeyOptions, generate};
use super::{KeyError, KeySet, Signer};

/// The key files of one mmgen home. Private files are mode 0600, the
/// directory 0700, and no operation ever overwrites an existing file.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// A store in `dir`, usually `Home::keys_dir()`. Nothing is read yet.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks whether any key file exists, complete set or not.
    pub fn exists(&self) -> bool {
        !files::present(&self.dir).is_empty()
    }

    /// Loads every key file and checks that the certificates match their
    /// keys and that the CA issued the signing certificate.
    pub fn load(&self) -> Result<KeySet, KeyError> {
        self.check_complete()?;

        let ca_key = self.read_key(files::CA_KEY)?;
        let ca = self.read_ca_cert(&ca_key)?;
        let ca_cert_pem = files::read_text(&self.dir, files::CA_CERT)?;

        let signer_key = self.read_key(files::SIGNER_KEY)?;
        let chain_pem = files::read_text(&self.dir, files::SIGNER_CHAIN)?;
        let leaf = self.check_chain(&chain_pem, &signer_key, &ca)?;

        let watermark_secret = self.read_watermark_secret()?;
        let checkpoint_key = self.read_key(files::CHECKPOINT_KEY)?;

        tracing::debug!(dir = %self.dir.display(), signer = %leaf.subject, "loaded key set");
        let signer = Signer::new(signer_key, chain_pem, leaf.subject.clone(), leaf.not_after);
        Ok(KeySet {
            signer,
            ca_cert_pem,
            watermark_secret,
            checkpoint_key,
            ca,
            leaf,
        })
    }

    /// Creates a new key set with the default subjects and returns it
    /// loaded. Fails with [`KeyError::AlreadyExists`] when any key file is
    /// present.
    pub fn init(&self) -> Result<KeySet, KeyError> {
        self.init_with(&KeyOptions::default())
    }

    /// Creates a new key set with `options` and returns it loaded. Fails
    /// with [`KeyError::AlreadyExists`] when any key file is present.
    pub fn init_with(&self, options: &KeyOptions) -> Result<KeySet, KeyError> {
        options.validate()?;
        if self.exists() {
            return Err(KeyError::AlreadyExists {
                dir: self.dir.clone(),
            });
        }
        crate::home::create_private_dir(&self.dir)?;

        let generated = generate(OffsetDateTime::now_utc(), options)?;
        // NOTE: the files are written one by one, so a crash between two
        // writes leaves an incomplete set, which `load` then reports.
        let writes = [
            (files::CA_KEY, &generated.ca_key_pem, Visibility::Private),
            (files::CA_CERT, &generated.ca_cert_pem, Visibility::Public),
            (
                files::SIGNER_KEY,
                &generated.signer_key_pem,
                Visibility::Private,
            ),
            (
                files::SIGNER_CHAIN,
                &generated.signer_chain_pem,
                Visibility::Public,
            ),
            (
                files::WATERMARK_KEY,
                &generated.watermark_hex,
                Visibility::Private,
            ),
            (
                files::CHECKPOINT_KEY,
                &generated.checkpoint_key_pem,
                Visibility::Private,
            ),
        ];
        for (name, contents, visibility) in writes {
            files::write_new(&self.dir, name, contents.as_bytes(), visibility)?;
        }
        tracing::info!(dir = %self.dir.display(), "created a new key set");

        self.load()
    }

    /// Loads the key set, or creates one when no key file exists. The
    /// flag is true when the set was created by this call.
    pub fn load_or_init(&self) -> Result<(KeySet, bool), KeyError> {
        if self.exists() {
            Ok((self.load()?, false))
        } else {
            Ok((self.init()?, true))
        }
    }

    fn check_complete(&self) -> Result<(), KeyError> {
        if !self.exists() {
            return Err(KeyError::Missing {
                dir: self.dir.clone(),
            });
        }
        for name in files::ALL {
            let path = self.dir.join(name);
            if !path.exists() {
                return Err(KeyError::Incomplete {
                    dir: self.dir.clone(),
                    path,
                });
            }
        }
        Ok(())
    }

    pub(super) fn read_key(&self, name: &str) -> Result<SigningKey, KeyError> {
        let text = files::read_text(&self.dir, name)?;
        SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Corrupt {
            path: self.dir.join(name),
            reason: format!("not a PKCS#8 Ed25519 private key ({e})"),
        })
    }

    fn read_ca_cert(&self, ca_key: &SigningKey) -> Result<CertDetails, KeyError> {
        let path = self.dir.join(files::CA_CERT);
        let text = files::read_text(&self.dir, files::CA_CERT)?;
        let mut certs = parse_pem_chain(&path, &text)?;
        if certs.len() != 1 {
            return Err(KeyError::Corrupt {
                path,
                reason: format!("expected one certificate, found {}", certs.len()),
            });
        }
        let ca = certs.remove(0);
        let mismatch = |reason: &str| KeyError::Mismatch {
            cert: path.clone(),
            key: self.dir.join(files::CA_KEY),
            reason: reason.into(),
        };
        if ca.public_key != ca_key.verifying_key().to_bytes() {
            return Err(mismatch("the certificate holds a different public key"));
        }
        if !ca.is_signed_by(&ca) {
            return Err(mismatch("the self-signature does not verify"));
        }
        Ok(ca)
    }

    fn check_chain(
        &self,
        chain_pem: &str,
        signer_key: &SigningKey,
        ca: &CertDetails,
    ) -> Result<CertDetails, KeyError> {
        let path = self.dir.join(files::SIGNER_CHAIN);
        let mut chain = parse_pem_chain(&path, chain_pem)?;
        if chain.len() != 2 {
            return Err(KeyError::Corrupt {
                path,
                reason: format!(
                    "expected two certificates (signer, then CA), found {}",
                    chain.len()
                ),
            });
        }
        let leaf = chain.remove(0);
        let mismatch = |key: &str, reason: &str| KeyError::Mismatch {
            cert: path.clone(),
            key: self.dir.join(key),
            reason: reason.into(),
        };
        if leaf.public_key != signer_key.verifying_key().to_bytes() {
            return Err(mismatch(
                files::SIGNER_KEY,
                "the first certificate holds a different public key",
            ));
        }
        if chain[0].sha256 != ca.sha256 {
            return Err(mismatch(
                files::CA_CERT,
                "the second certificate is not the CA certificate",
            ));
        }
        if !leaf.is_signed_by(ca) {
            return Err(mismatch(
                files::CA_CERT,
                "the CA's signature on the first certificate does not verify",
            ));
        }
        // c2pa 0.90 signs with such a certificate without complaint, but
        // reads every manifest back Invalid (claimSignature.mismatch).
        if leaf.organization.is_none() {
            return Err(KeyError::CertificateProfile {
                path,
                reason: "the signing certificate's subject has no organisation (O=), \
                         and c2pa 0.90 reads manifests signed with such a certificate \
                         back as claimSignature.mismatch"
                    .into(),
            });
        }
        Ok(leaf)
    }

    fn read_watermark_secret(&self) -> Result<[u8; 32], KeyError> {
        let text = files::read_text(&self.dir, files::WATERMARK_KEY)?;
        parse_hex_32(text.trim()).ok_or_else(|| KeyError::Corrupt {
            path: self.dir.join(files::WATERMARK_KEY),
            reason: "expected 64 hexadecimal digits".into(),
        })
    }
}

fn parse_hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use ed25519_dalek::Verifier;

    use super::*;

    fn fresh() -> (tempfile::TempDir, KeyStore, KeySet) {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&tmp.path().join("keys"));
        let set = store.init().unwrap();
        (tmp, store, set)
    }

    #[test]
    fn fresh_set_round_trips() {
        let (_tmp, store, created) = fresh();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.watermark_secret, created.watermark_secret);
        assert_eq!(loaded.ca_cert_pem, created.ca_cert_pem);
        assert_eq!(loaded.signer.chain_pem(), created.signer.chain_pem());
        assert_eq!(
            loaded.checkpoint_key.to_bytes(),
            created.checkpoint_key.to_bytes()
        );
        assert_eq!(loaded.info(), created.info());
        assert_ne!(loaded.watermark_secret, [0u8; 32]);
    }

    #[test]
    fn signer_signature_verifies() {
        let (_tmp, _store, set) = fresh();
        let signature = ed25519_dalek::Signature::from_bytes(&set.signer.sign(b"claim"));
        let key = set.signer.verifying_key();
        assert!(key.verify(b"claim", &signature).is_ok());
        assert!(key.verify(b"other", &signature).is_err());
    }

    #[test]
    fn info_reports_subjects_and_validity() {
        let (_tmp, _store, set) = fresh();
        let info = set.info();
        assert_eq!(
            info.ca_subject,
            "C=ZZ, O=mmgen local CA (untrusted), CN=mmgen local CA"
        );
        assert!(info.signer_subject.contains("O=mmgen local signer"));
        assert_eq!(info.signer_issuer, info.ca_subject);
        assert_eq!(info.ca_sha256.len(), 64);
        assert_ne!(info.ca_sha256, info.signer_sha256);
        assert!((1093..=1095).contains(&info.signer_days_left), "{info:?}");
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["signer_days_left"], info.signer_days_left);
    }

    #[test]
    fn info_counts_negative_days_after_expiry() {
        let (_tmp, _store, set) = fresh();
        let later = OffsetDateTime::now_utc() + SIGNER_LIFETIME_PLUS_TEN_DAYS;
        assert_eq!(set.info_at(later).signer_days_left, -10);
    }

    const SIGNER_LIFETIME_PLUS_TEN_DAYS: time::Duration = time::Duration::days(3 * 365 + 10);

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, store, _set) = fresh();
        let mode = |name: &str| {
            let meta = fs::metadata(store.dir().join(name)).unwrap();
            meta.permissions().mode() & 0o777
        };
        for name in [
            files::CA_KEY,
            files::SIGNER_KEY,
            files::WATERMARK_KEY,
            files::CHECKPOINT_KEY,
        ] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        assert_eq!(mode(files::CA_CERT), 0o644);
        assert_eq!(mode(files::SIGNER_CHAIN), 0o644);
        let dir_mode = fs::metadata(store.dir()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let (_tmp, store, set) = fresh();
        let debug = format!("{set:?} {:?}", set.signer);
        let secrets = [
            files::read_text(store.dir(), files::WATERMARK_KEY).unwrap(),
            crate::keys::generate::hex(&set.checkpoint_key.to_bytes()),
            crate::keys::generate::hex(&store.read_key(files::SIGNER_KEY).unwrap().to_bytes()),
        ];
        for secret in secrets {
            assert!(!debug.contains(secret.trim()), "secret in {debug}");
        }
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(debug.contains("mmgen C2PA signer"));
    }

    #[test]
    fn init_never_overwrites() {
        let (_tmp, store, set) = fresh();
        let err = store.init().unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        let (again, created) = store.load_or_init().unwrap();
        assert!(!created);
        assert_eq!(again.watermark_secret, set.watermark_secret);
    }

    #[test]
    fn load_or_init_creates_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&tmp.path().join("keys"));
        assert!(!store.exists());
        let (_, created) = store.load_or_init().unwrap();
        assert!(created);
        assert!(store.exists());
    }

    #[test]
    fn empty_dir_reports_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let err = KeyStore::new(tmp.path()).load().unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, KeyError::Missing { .. }));
        assert!(message.contains("run `mmgen keys init`"), "{message}");
    }

    #[test]
    fn missing_file_reports_incomplete() {
        let (_tmp, store, _set) = fresh();
        fs::remove_file(store.dir().join(files::SIGNER_CHAIN)).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, KeyError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains(files::SIGNER_CHAIN));
        let init_err = store.init().unwrap_err();
        assert!(matches!(init_err, KeyError::AlreadyExists { .. }));
    }

    fn overwrite(store: &KeyStore, name: &str, contents: &str) {
        fs::write(store.dir().join(name), contents).unwrap();
    }

    #[test]
    fn garbage_files_report_corrupt() {
        for name in files::ALL {
            let (_tmp, store, _set) = fresh();
            overwrite(&store, name, "-----BEGIN garbage\n\u{0}\u{1}");
            let err = store.load().unwrap_err();
            assert!(matches!(err, KeyError::Corrupt { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn truncated_chain_reports_corrupt() {
        let (_tmp, store, set) = fresh();
        let chain = set.signer.chain_pem();
        overwrite(&store, files::SIGNER_CHAIN, &chain[..chain.len() / 3]);
        let err = store.load().unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn foreign_signer_key_reports_mismatch() {
        let (_tmp, store, _set) = fresh();
        let other = files::read_text(store.dir(), files::CHECKPOINT_KEY).unwrap();
        overwrite(&store, files::SIGNER_KEY, &other);
        let err = store.load().unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains(files::SIGNER_KEY), "{err}");
    }

    #[test]
    fn foreign_ca_reports_mismatch() {
        let (_tmp, store, _set) = fresh();
        let (_tmp2, other_store, _other) = fresh();
        for name in [files::CA_KEY, files::CA_CERT] {
            let text = files::read_text(other_store.dir(), name).unwrap();
            overwrite(&store, name, &text);
        }
        let err = store.load().unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains(files::SIGNER_CHAIN), "{err}");
    }

    #[test]
    fn signer_without_organization_is_rejected() {
        let (_tmp, store, set) = fresh();
        let subject = crate::keys::test_support::subject_without_organization();
        let (key_pem, chain_pem) = crate::keys::test_support::issue_for(&store, &set, subject);
        overwrite(&store, files::SIGNER_KEY, &key_pem);
        overwrite(&store, files::SIGNER_CHAIN, &chain_pem);
        let err = store.load().unwrap_err();
        assert!(matches!(err, KeyError::CertificateProfile { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("(O=)"), "{message}");
        assert!(message.contains("mmgen keys rotate"), "{message}");
    }

    #[test]
    fn organization_option_names_both_subjects() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&tmp.path().join("keys"));
        let options = KeyOptions {
            organization: Some("Example News Ltd".into()),
        };
        let set = store.init_with(&options).unwrap();
        assert_eq!(set.leaf.organization.as_deref(), Some("Example News Ltd"));
        assert_eq!(set.ca.organization.as_deref(), Some("Example News Ltd"));
        assert!(set.info().signer_subject.contains("CN=mmgen C2PA signer"));
    }

    #[test]
    fn invalid_organization_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(&tmp.path().join("keys"));
        for name in ["", "line\nbreak", &"x".repeat(65)] {
            let options = KeyOptions {
                organization: Some(name.to_string()),
            };
            let err = store.init_with(&options).unwrap_err();
            assert!(matches!(err, KeyError::InvalidOption(_)), "{name:?}: {err}");
        }
        assert!(!store.exists());
    }

    #[test]
    fn hex_secret_parsing() {
        assert_eq!(parse_hex_32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hex_32(&"ab".repeat(31)), None);
        assert_eq!(parse_hex_32(&"zz".repeat(32)), None);
        assert_eq!(parse_hex_32(&"é".repeat(32)), None);
    }
}
