//! Signing a generated image with its C2PA manifest.

use std::io::Cursor;
use std::time::Instant;

use c2pa::{Builder, CallbackSigner, Context, SigningAlg};

use super::claim::{self, GENERATION_LABEL, GenerationAssertion, GenerationClaim};
use super::{ManifestError, ValidationState, read};
use crate::keys::Signer;

/// Media types that [`sign_generated`] accepts.
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
    if !SIGNABLE_MIME_TYPES.contains(&mime) {
        return Err(ManifestError::UnsupportedMime(mime.to_string()));
    }
    let started = Instant::now();

    let mut builder = build_manifest(claim)?;
    let c2pa_signer = callback_signer(signer);
    let mut source = Cursor::new(image);
    let mut dest = Cursor::new(Vec::with_capacity(image.len() + 16 * 1024));
    let manifest = builder
        .sign(&c2pa_signer, mime, &mut source, &mut dest)
        .map_err(ManifestError::Sign)?;
    let bytes = dest.into_inner();

    check_read_back(&bytes, mime, signer)?;
    tracing::debug!(
        serial = claim.serial,
        mime,
        bytes = bytes.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "signed C2PA manifest"
    );
    Ok(Signed { bytes, manifest })
}

fn build_manifest(claim: &GenerationClaim) -> Result<Builder, ManifestError> {
    // This build has no thumbnail support (the `add_thumbnails` feature is
    // off), so automatic thumbnails are switched off rather than warned about.
    let context = Context::new()
        .with_settings(serde_json::json!({ "builder": { "thumbnail": { "enabled": false } } }))
        .map_err(ManifestError::Sign)?;
    let mut builder = Builder::from_context(context)
        .with_definition(claim::definition(claim))
        .map_err(ManifestError::Sign)?;
    builder
        .add_action(claim::created_action())
        .map_err(ManifestError::Sign)?;
    builder
        .add_assertion(GENERATION_LABEL, &GenerationAssertion::from(claim))
        .map_err(ManifestError::Sign)?;
    builder
        .add_assertion(claim::SOFT_BINDING_LABEL, &claim::soft_binding(claim))
        .map_err(ManifestError::Sign)?;
    Ok(builder)
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
    let report = read(bytes, mime, None)?;
    let Some(report) = report else {
        return Err(ManifestError::SignedInvalid {
            codes: "no manifest found in the output".into(),
        });
    };
    if report.state == ValidationState::Invalid {
        let codes: Vec<&str> = report
            .status
            .iter()
            .filter(|entry| entry.kind == super::StatusKind::Failure)
            .map(|entry| entry.code.as_str())
            .collect();
        tracing::error!(codes = ?codes, signer = signer.subject(), "signed output is invalid");
        return Err(ManifestError::SignedInvalid {
            codes: codes.join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use image::ImageFormat;

    use super::super::testutil::{claim, image_bytes, key_set};
    use super::super::{StatusKind, TRAINED_ALGORITHMIC_MEDIA, WATERMARK_ALGORITHM};
    use super::*;

    fn sign_and_read(format: ImageFormat, mime: &str) -> super::super::ManifestReport {
        let (_tmp, keys) = key_set();
        let signed = sign_generated(&image_bytes(format), mime, &claim(), &keys.signer).unwrap();
        assert!(!signed.manifest.is_empty());
        read(&signed.bytes, mime, None).unwrap().unwrap()
    }

    fn assert_generated_report(report: &super::super::ManifestReport) {
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert!(report.has_code("signingCredential.untrusted"), "{report:?}");
        // c2pa files signingCredential.untrusted as a failure entry, but
        // it does not make the state Invalid.
        let failures = report
            .status
            .iter()
            .filter(|s| s.kind == StatusKind::Failure && s.code != "signingCredential.untrusted");
        assert_eq!(failures.count(), 0, "{report:?}");
        assert!(report.has_code("assertion.dataHash.match"), "{report:?}");
        assert_eq!(report.actions.len(), 1);
        assert_eq!(report.actions[0].action, "c2pa.created");
        assert_eq!(
            report.actions[0].digital_source_type.as_deref(),
            Some(TRAINED_ALGORITHMIC_MEDIA)
        );
        let expected_generator = format!("mmgen/{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            report.claim_generator.as_deref(),
            Some(expected_generator.as_str())
        );
        assert_eq!(report.signer.as_deref(), Some("mmgen C2PA signer"));
        assert_eq!(report.title.as_deref(), Some("out.png"));
        assert_eq!(report.generation, Some(GenerationAssertion::from(&claim())));
        assert_eq!(
            report.issuer.as_deref(),
            Some("mmgen local signer (untrusted)")
        );
        assert_eq!(report.remote_url, None);
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
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let signed = sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap();
        let reader = c2pa::Reader::from_context(Context::new())
            .with_stream("image/png", Cursor::new(&signed.bytes))
            .unwrap();
        let manifest = reader.active_manifest().unwrap();
        let binding: serde_json::Value =
            manifest.find_assertion(claim::SOFT_BINDING_LABEL).unwrap();
        assert_eq!(binding["alg"], WATERMARK_ALGORITHM);
        assert_eq!(binding["blocks"][0]["value"], "k1:000042");
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
        let report = read(&signed, "image/png", None).unwrap().unwrap();
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
            .unwrap();
        assert_eq!(report.state, ValidationState::Trusted, "{report:?}");
        assert!(!report.has_code("signingCredential.untrusted"));

        let (_tmp2, other) = key_set();
        let foreign = read(&signed.bytes, "image/png", Some(&other.ca_cert_pem))
            .unwrap()
            .unwrap();
        assert_eq!(foreign.state, ValidationState::Valid, "{foreign:?}");
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

    #[test]
    fn sign_and_read_timing() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let runs = 20;
        let started = Instant::now();
        let mut signed = None;
        for _ in 0..runs {
            signed = Some(sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap());
        }
        let sign_ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        let bytes = signed.unwrap().bytes;
        let started = Instant::now();
        for _ in 0..runs {
            assert!(read(&bytes, "image/png", None).unwrap().is_some());
        }
        let read_ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        // Printed for benchmark records; sign includes its read-back.
        println!("64x64 PNG: sign {sign_ms:.2} ms, read {read_ms:.2} ms");
        assert!(sign_ms > read_ms * 0.5, "sign {sign_ms} read {read_ms}");
    }
}
