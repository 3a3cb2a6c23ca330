//! Signing: the shared step that embeds a built manifest in an image and
//! reads it back, and the manifest of a generated image.

use std::io::Cursor;
use std::time::Instant;

use c2pa::{Builder, CallbackSigner, Context, SigningAlg};
use serde_json::Value;

use super::claim::{self, GENERATION_LABEL, GenerationAssertion, GenerationClaim};
use super::container;
use super::{ManifestError, StatusKind, ValidationState, read};
use crate::keys::Signer;

/// Media types that mmgen signs.
pub const SIGNABLE_MIME_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// A signed image and the manifest store embedded in it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The image file with the manifest embedded.
    pub bytes: Vec<u8>,
    /// The manifest store (JUMBF) bytes, for the ledger record.
    pub manifest: Vec<u8>,
}

/// Signs image bytes of `mime` ("image/png", "image/jpeg" or
/// "image/webp") with a manifest stating that `claim` generated them.
/// The output is read back first: one that does not validate is an error
/// and is never returned.
pub fn sign_generated(
    image: &[u8],
    mime: &str,
    claim: &GenerationClaim,
    signer: &Signer,
) -> Result<Signed, ManifestError> {
    check_mime(mime)?;
    let mut builder = new_builder(claim::definition(&claim.title), None)?;
    builder
        .add_action(claim::created_action())
        .map_err(ManifestError::Sign)?;
    builder
        .add_assertion(GENERATION_LABEL, &GenerationAssertion::from(claim))
        .map_err(ManifestError::Sign)?;
    builder
        .add_assertion(claim::SOFT_BINDING_LABEL, &claim::soft_binding(claim))
        .map_err(ManifestError::Sign)?;
    sign_with(builder, image, mime, signer)
}

/// Rejects media types that mmgen does not sign.
pub(super) fn check_mime(mime: &str) -> Result<(), ManifestError> {
    if SIGNABLE_MIME_TYPES.contains(&mime) {
        Ok(())
    } else {
        Err(ManifestError::UnsupportedMime(mime.to_string()))
    }
}

/// Creates a builder for `definition`, with thumbnails off.
/// `opened_source_type` makes the SDK add a `c2pa.opened` action, carrying that digital source
/// type, for the parent ingredient.
pub(super) fn new_builder(
    definition: Value,
    opened_source_type: Option<&str>,
) -> Result<Builder, ManifestError> {
    // This build has no thumbnail support (the `add_thumbnails` feature is
    // off), so automatic thumbnails are switched off rather than warned about.
    let mut settings = serde_json::json!({ "builder": { "thumbnail": { "enabled": false } } });
    if let Some(source_type) = opened_source_type {
        settings["builder"]["actions"] = serde_json::json!({
            "auto_opened_action": { "enabled": true, "source_type": source_type }
        });
    }
    let context = Context::new()
        .with_settings(settings)
        .map_err(ManifestError::Sign)?;
    Builder::from_context(context)
        .with_definition(definition)
        .map_err(ManifestError::Sign)
}

/// Signs `image` with the manifest in `builder` and reads it back.
pub(super) fn sign_with(
    mut builder: Builder,
    image: &[u8],
    mime: &str,
    signer: &Signer,
) -> Result<Signed, ManifestError> {
    container::check_container(image, mime)?;
    let started = Instant::now();
    let c2pa_signer = callback_signer(signer);
    let mut source = Cursor::new(image);
    let mut dest = Cursor::new(Vec::with_capacity(image.len() + 16 * 1024));
    let manifest = builder
        .sign(&c2pa_signer, mime, &mut source, &mut dest)
        .map_err(ManifestError::Sign)?;
    let bytes = dest.into_inner();

    check_read_back(&bytes, mime, signer)?;
    tracing::debug!(
        mime,
        bytes = bytes.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "signed C2PA manifest"
    );
    Ok(Signed { bytes, manifest })
}

/// Builds a c2pa signer around the key in `signer`. c2pa's own Ed25519
/// helper is not used because it rejects PKCS#8 v2 keys, as rcgen writes.
fn callback_signer(signer: &Signer) -> CallbackSigner {
    let key = signer.clone();
    let sign = move |_context: *const (), data: &[u8]| Ok(key.sign(data).to_vec());
    CallbackSigner::new(sign, SigningAlg::Ed25519, signer.chain_pem().as_bytes())
}

/// Reads `bytes` back and rejects an Invalid result, because c2pa 0.90
/// does not verify after signing by default. No trust anchors are used,
/// so Valid (signed by an untrusted CA) passes.
fn check_read_back(bytes: &[u8], mime: &str, signer: &Signer) -> Result<(), ManifestError> {
    let Some(report) = read(bytes, mime, None)?.embedded() else {
        return Err(ManifestError::SignedInvalid {
            codes: "no manifest found in the output".into(),
        });
    };
    if report.state == ValidationState::Invalid {
        let codes: Vec<&str> = report
            .status
            .iter()
            .filter(|entry| entry.kind == StatusKind::Failure)
            .map(|entry| entry.code.as_str())
            .collect();
        tracing::error!(codes = ?codes, signer = signer.subject(), "signed output is invalid");
        return Err(ManifestError::SignedInvalid {
            codes: codes.join(", "),
        });
    }
    Ok(())
}

/// Reads `bytes` with no trust anchors and returns the embedded report.
#[cfg(test)]
pub(super) fn read_back(bytes: &[u8], mime: &str) -> super::ManifestReport {
    match read(bytes, mime, None).unwrap() {
        super::ReadOutcome::Embedded(report) => *report,
        other => panic!("expected an embedded manifest, found {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use image::ImageFormat;

    use super::super::testutil::{claim, image_bytes, key_set};
    use super::super::{ManifestReport, TRAINED_ALGORITHMIC_MEDIA, WATERMARK_ALGORITHM};
    use super::*;

    fn sign_and_read(format: ImageFormat, mime: &str) -> ManifestReport {
        let (_tmp, keys) = key_set();
        let signed = sign_generated(&image_bytes(format), mime, &claim(), &keys.signer).unwrap();
        assert!(!signed.manifest.is_empty());
        read_back(&signed.bytes, mime)
    }

    fn assert_generated_report(report: &ManifestReport) {
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert!(report.has_code("signingCredential.untrusted"), "{report:?}");
        // c2pa files signingCredential.untrusted as a failure entry, but
        // it does not make the state Invalid.
        assert_eq!(
            report.failure_codes(),
            vec!["signingCredential.untrusted"],
            "{report:?}"
        );
        assert!(report.has_code("assertion.dataHash.match"), "{report:?}");
        let actions = &report.active.actions;
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].action, "c2pa.created");
        assert_eq!(
            actions[0].digital_source_type.as_deref(),
            Some(TRAINED_ALGORITHMIC_MEDIA)
        );
        let expected_generator = format!("mmgen/{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            report.active.claim_generator.as_deref(),
            Some(expected_generator.as_str())
        );
        let signer = &report.active.signer;
        assert_eq!(signer.name.as_deref(), Some("mmgen C2PA signer"));
        assert_eq!(
            signer.organization.as_deref(),
            Some("mmgen local signer (untrusted)")
        );
        assert_eq!(signer.issuer.as_deref(), Some("mmgen local CA (untrusted)"));
        assert!(signer.certificate_expires.is_some(), "{signer:?}");
        assert_eq!(signer.signing_time, None);
        assert_eq!(report.active.title.as_deref(), Some("out.png"));
        assert_eq!(report.generation, Some(GenerationAssertion::from(&claim())));
        assert_eq!(report.ai_disclosures.len(), 1, "{report:?}");
        assert_eq!(
            report.ai_disclosures[0].according_to,
            "mmgen local signer (untrusted)"
        );
        assert!(report.active.ingredients.is_empty());
    }

    #[test]
    fn signed_png_reads_valid() {
        assert_generated_report(&sign_and_read(ImageFormat::Png, "image/png"));
    }

    #[test]
    fn signed_jpeg_reads_valid() {
        assert_generated_report(&sign_and_read(ImageFormat::Jpeg, "image/jpeg"));
    }

    #[test]
    fn signed_webp_reads_valid() {
        assert_generated_report(&sign_and_read(ImageFormat::WebP, "image/webp"));
    }

    #[test]
    fn soft_binding_names_watermark() {
        let report = sign_and_read(ImageFormat::Png, "image/png");
        assert_eq!(report.soft_bindings.len(), 1, "{report:?}");
        assert_eq!(report.soft_bindings[0].alg, WATERMARK_ALGORITHM);
        assert_eq!(
            report.soft_bindings[0].values,
            vec![claim().watermark_payload]
        );
    }

    #[test]
    fn prompt_is_written_only_when_allowed() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let hidden = sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap();
        let hidden = read_back(&hidden.bytes, "image/png").generation.unwrap();
        assert_eq!(hidden.prompt, None);
        assert_eq!(hidden.prompt_sha256, "09".repeat(32));

        let mut open = claim();
        open.prompt = Some("a red circle".into());
        let shown = sign_generated(&png, "image/png", &open, &keys.signer).unwrap();
        let shown = read_back(&shown.bytes, "image/png").generation.unwrap();
        assert_eq!(shown.prompt.as_deref(), Some("a red circle"));
    }

    #[test]
    fn flipped_idat_byte_reads_invalid() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let mut signed = sign_generated(&png, "image/png", &claim(), &keys.signer)
            .unwrap()
            .bytes;
        let idat = signed.windows(4).position(|w| w == b"IDAT").unwrap();
        signed[idat + 10] ^= 0x01;
        let report = read_back(&signed, "image/png");
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("assertion.dataHash.mismatch"), "{report:?}");
    }

    #[test]
    fn own_ca_as_anchor_reads_trusted() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let signed = sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap();
        let report = read(&signed.bytes, "image/png", Some(&keys.ca_cert_pem))
            .unwrap()
            .embedded()
            .unwrap();
        assert_eq!(report.state, ValidationState::Trusted, "{report:?}");
        assert!(!report.has_code("signingCredential.untrusted"));

        let (_tmp2, other) = key_set();
        let foreign = read(&signed.bytes, "image/png", Some(&other.ca_cert_pem))
            .unwrap()
            .embedded()
            .unwrap();
        assert_eq!(foreign.state, ValidationState::Valid, "{foreign:?}");
        assert!(foreign.has_code("signingCredential.untrusted"));
    }

    #[test]
    fn unsupported_mime_is_rejected() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let err = sign_generated(&png, "image/gif", &claim(), &keys.signer).unwrap_err();
        assert!(matches!(err, ManifestError::UnsupportedMime(_)), "{err}");
    }

    #[test]
    fn garbage_image_fails_to_sign() {
        let (_tmp, keys) = key_set();
        let err = sign_generated(b"not a png", "image/png", &claim(), &keys.signer).unwrap_err();
        assert!(matches!(err, ManifestError::Sign(_)), "{err}");
    }
}

/// Signing identities that break a C2PA reader's rules.
#[cfg(test)]
mod certificate_tests {
    use std::time::Duration as StdDuration;

    use image::ImageFormat;
    use time::{Duration, OffsetDateTime};

    use super::super::testutil::{claim, image_bytes};
    use super::*;
    use crate::keys::test_support::{fresh_store, subject_without_organization, unchecked_signer};

    #[test]
    fn certificate_without_organization_fails_read_back() {
        // c2pa 0.90 signs with such a certificate but reads the manifest
        // back as a signature mismatch; the read-back check catches it.
        let (_tmp, signer) = unchecked_signer(subject_without_organization());
        let png = image_bytes(ImageFormat::Png);
        let err = sign_generated(&png, "image/png", &claim(), &signer).unwrap_err();
        let ManifestError::SignedInvalid { codes } = &err else {
            panic!("expected SignedInvalid, got {err}");
        };
        assert!(codes.contains("claimSignature.mismatch"), "{codes}");
    }

    #[test]
    fn manifest_turns_invalid_when_certificate_expires() {
        let (_tmp, store, _set) = fresh_store();
        let short = store.rotate(Duration::seconds(3)).unwrap().keys;
        let png = image_bytes(ImageFormat::Png);
        let signed = sign_generated(&png, "image/png", &claim(), &short.signer).unwrap();
        assert_eq!(
            read_back(&signed.bytes, "image/png").state,
            ValidationState::Valid
        );

        let left = short.signer.not_after() - OffsetDateTime::now_utc();
        let wait = left.whole_milliseconds().max(0) as u64 + 1500;
        std::thread::sleep(StdDuration::from_millis(wait));

        let expired = read_back(&signed.bytes, "image/png");
        assert_eq!(expired.state, ValidationState::Invalid, "{expired:?}");
        assert!(expired.has_code("signingCredential.expired"), "{expired:?}");
        // The SDK itself rejects signing with the expired certificate.
        let err = sign_generated(&png, "image/png", &claim(), &short.signer).unwrap_err();
        assert!(matches!(err, ManifestError::Sign(_)), "{err}");
        assert!(
            err.to_string().contains("not valid at time of signing"),
            "{err}"
        );
    }
}
