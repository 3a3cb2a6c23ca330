//! Reading and validating any file's C2PA manifest store.

use std::io::Cursor;

use c2pa::validation_status::ValidationStatus;
use c2pa::{Context, Reader};
use serde_json::json;

use super::ManifestError;
use super::claim::GENERATION_LABEL;
use super::report::{ManifestReport, StatusEntry, StatusKind, ValidationState};
use super::summary::{ai_disclosures, soft_bindings, summarize};

/// Result of reading a file's manifest store.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome {
    /// The file carries no manifest and no reference to one.
    Absent,
    /// The file's XMP points to a manifest stored at `url`. mmgen never
    /// fetches it, so nothing was validated.
    Remote {
        /// The URL from the file's `dcterms:provenance` XMP property.
        url: String,
    },
    /// An embedded manifest store, read and validated.
    Embedded(Box<ManifestReport>),
}

impl ReadOutcome {
    /// Returns the report of an embedded manifest store.
    pub fn embedded(self) -> Option<ManifestReport> {
        match self {
            ReadOutcome::Embedded(report) => Some(*report),
            _ => None,
        }
    }
}

/// Reads and validates the manifest store embedded in `image`, a file of
/// type `mime`. A manifest stored remotely is reported with its URL and
/// never fetched: this build of the c2pa crate has no HTTP client, and
/// remote fetching is also switched off in the reader's settings.
/// `trust_anchors_pem` lists the root certificates that make a Valid
/// manifest Trusted.
pub fn read(
    image: &[u8],
    mime: &str,
    trust_anchors_pem: Option<&str>,
) -> Result<ReadOutcome, ManifestError> {
    let context = reader_context(trust_anchors_pem)?;
    let reader = match Reader::from_context(context).with_stream(mime, Cursor::new(image)) {
        Ok(reader) => reader,
        Err(c2pa::Error::JumbfNotFound) => return Ok(ReadOutcome::Absent),
        Err(c2pa::Error::RemoteManifestUrl(url)) => {
            tracing::debug!(%url, "manifest is remote; not fetched");
            return Ok(ReadOutcome::Remote { url });
        }
        Err(e) => return Err(ManifestError::Read(e)),
    };
    Ok(ReadOutcome::Embedded(Box::new(report(&reader))))
}

/// Status codes of a hard binding (a hash over the asset's bytes) that
/// does not match the asset it was checked against.
const HARD_BINDING_MISMATCHES: [&str; 3] = [
    "assertion.dataHash.mismatch",
    "assertion.boxesHash.mismatch",
    "assertion.bmffHash.mismatch",
];

/// A manifest store validated on its own bytes, apart from its asset.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreReport {
    /// The report. Its `state` judges the claim, its signature and the
    /// certificate only: a hard-binding mismatch does not make it Invalid.
    /// `status` lists every entry, the mismatch included.
    pub report: ManifestReport,
    /// Whether the hard binding matched the asset it was checked against.
    pub hard_binding_matches: bool,
}

/// Reads a manifest store kept apart from its asset (as the ledger keeps
/// it) and validates it on its own bytes. `asset` is the file to check the
/// hard binding against: a modified copy does not match, and that is
/// reported in [`StoreReport::hard_binding_matches`], not in the state.
pub fn read_store(
    store: &[u8],
    mime: &str,
    asset: &[u8],
    trust_anchors_pem: Option<&str>,
) -> Result<StoreReport, ManifestError> {
    let context = reader_context(trust_anchors_pem)?;
    let reader = Reader::from_context(context)
        .with_manifest_data_and_stream(store, mime, Cursor::new(asset))
        .map_err(ManifestError::Read)?;
    let mut report = report(&reader);
    let hard_binding_matches = !HARD_BINDING_MISMATCHES
        .iter()
        .any(|code| report.has_code(code));
    report.state = state_without_hard_binding(&report);
    Ok(StoreReport {
        report,
        hard_binding_matches,
    })
}

/// Computes the state from the failures other than a hard-binding
/// mismatch. c2pa 0.90 files `signingCredential.untrusted` as a failure
/// but leaves the manifest Valid, and so does this function.
fn state_without_hard_binding(report: &ManifestReport) -> ValidationState {
    let other_failure = report.failure_codes().into_iter().any(|code| {
        code != "signingCredential.untrusted" && !HARD_BINDING_MISMATCHES.contains(&code)
    });
    if other_failure {
        ValidationState::Invalid
    } else if report.has_code("signingCredential.trusted") {
        ValidationState::Trusted
    } else {
        ValidationState::Valid
    }
}

/// Reader settings: no network access, and the given trust anchors.
fn reader_context(trust_anchors_pem: Option<&str>) -> Result<Context, ManifestError> {
    let mut settings = json!({ "verify": { "remote_manifest_fetch": false, "ocsp_fetch": false } });
    if let Some(pem) = trust_anchors_pem {
        settings["trust"] = json!({ "trust_anchors": pem });
    }
    Context::new()
        .with_settings(settings)
        .map_err(ManifestError::TrustAnchors)
}

fn report(reader: &Reader) -> ManifestReport {
    let state = match reader.validation_state() {
        c2pa::ValidationState::Invalid => ValidationState::Invalid,
        c2pa::ValidationState::Valid => ValidationState::Valid,
        c2pa::ValidationState::Trusted => ValidationState::Trusted,
    };
    let active = reader.active_manifest();
    let summary = summarize(reader, active);
    ManifestReport {
        state,
        status: status_entries(reader),
        ai_disclosures: ai_disclosures(&summary),
        soft_bindings: active.map(soft_bindings).unwrap_or_default(),
        generation: active.and_then(|m| m.find_assertion(GENERATION_LABEL).ok()),
        active: summary,
    }
}

/// Status entries of the active manifest, then those of its ingredients.
fn status_entries(reader: &Reader) -> Vec<StatusEntry> {
    let Some(results) = reader.validation_results() else {
        let all = reader.validation_status().unwrap_or_default();
        return all.iter().map(|s| entry(s, kind_of(s))).collect();
    };
    let mut entries = Vec::new();
    let deltas = results.ingredient_deltas().into_iter().flatten();
    let groups = results
        .active_manifest()
        .into_iter()
        .chain(deltas.map(|d| d.validation_deltas()));
    for codes in groups {
        let kinds = [
            (codes.success(), StatusKind::Success),
            (codes.informational(), StatusKind::Informational),
            (codes.failure(), StatusKind::Failure),
        ];
        for (list, kind) in kinds {
            entries.extend(list.iter().map(|s| entry(s, kind)));
        }
    }
    entries
}

fn entry(status: &ValidationStatus, kind: StatusKind) -> StatusEntry {
    StatusEntry {
        code: status.code().to_string(),
        explanation: status.explanation().map(str::to_string),
        kind,
    }
}

fn kind_of(status: &ValidationStatus) -> StatusKind {
    match status.kind() {
        c2pa::status_tracker::LogKind::Success => StatusKind::Success,
        c2pa::status_tracker::LogKind::Informational => StatusKind::Informational,
        c2pa::status_tracker::LogKind::Failure => StatusKind::Failure,
    }
}

#[cfg(test)]
mod tests {
    use image::ImageFormat;

    use super::super::testutil::{claim, fixture, image_bytes, key_set, png_with_xmp};
    use super::*;

    fn read_fixture(name: &str, mime: &str) -> ReadOutcome {
        read(&fixture(name), mime, None).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn embedded_fixture(name: &str) -> ManifestReport {
        read_fixture(name, "image/jpeg")
            .embedded()
            .unwrap_or_else(|| panic!("{name} has no embedded manifest"))
    }

    #[test]
    fn fixture_c_is_valid() {
        let report = embedded_fixture("C.jpg");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert!(report.has_code("signingCredential.untrusted"));
        assert_eq!(
            report.active.claim_generator.as_deref(),
            Some("make_test_images/0.33.1")
        );
        let signer = &report.active.signer;
        assert_eq!(signer.name.as_deref(), Some("C2PA Signer"));
        assert_eq!(
            signer.organization.as_deref(),
            Some("C2PA Test Signing Cert")
        );
        assert!(signer.issuer.is_some(), "{signer:?}");
        assert!(signer.signing_time.is_some(), "{signer:?}");
        let actions = &report.active.actions;
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(actions[0].action, "c2pa.created");
        assert_eq!(
            actions[0].digital_source_type.as_deref(),
            Some("http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia")
        );
        // algorithmicMedia is not generative AI.
        assert!(report.ai_disclosures.is_empty(), "{report:?}");
        assert_eq!(report.generation, None);
    }

    #[test]
    fn fixture_ca_has_parent_without_manifest() {
        let report = embedded_fixture("CA.jpg");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let names: Vec<&str> = report
            .active
            .actions
            .iter()
            .map(|a| a.action.as_str())
            .collect();
        assert_eq!(names, ["c2pa.opened", "c2pa.color_adjustments"]);
        let ingredients = &report.active.ingredients;
        assert_eq!(ingredients.len(), 1, "{report:?}");
        assert_eq!(ingredients[0].title.as_deref(), Some("A.jpg"));
        assert_eq!(ingredients[0].relationship, "parentOf");
        assert!(ingredients[0].manifest.is_none());
    }

    #[test]
    fn fixture_caca_chain_has_two_generations() {
        let report = embedded_fixture("CACA.jpg");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let parent = &report.active.ingredients[0];
        assert_eq!(parent.title.as_deref(), Some("CA.jpg"));
        assert_eq!(parent.relationship, "parentOf");
        let parent_manifest = parent.manifest.as_ref().expect("CA.jpg's manifest");
        assert_eq!(
            parent_manifest.signer.organization.as_deref(),
            Some("C2PA Test Signing Cert")
        );
        assert_eq!(parent_manifest.actions[0].action, "c2pa.opened");
        let grandparent = &parent_manifest.ingredients[0];
        assert_eq!(grandparent.title.as_deref(), Some("A.jpg"));
        assert!(grandparent.manifest.is_none());
    }

    #[test]
    fn fixture_xca_has_data_hash_mismatch() {
        let report = embedded_fixture("XCA.jpg");
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("assertion.dataHash.mismatch"), "{report:?}");
    }

    #[test]
    fn fixture_e_sig_has_signature_mismatch() {
        let report = embedded_fixture("E-sig-CA.jpg");
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("claimSignature.mismatch"), "{report:?}");
    }

    #[test]
    fn fixtures_without_manifest_read_absent() {
        let cases = [
            ("no_manifest.jpg", "image/jpeg"),
            ("libpng-test.png", "image/png"),
            ("sample1.png", "image/png"),
            ("test.webp", "image/webp"),
        ];
        for (name, mime) in cases {
            assert_eq!(read_fixture(name, mime), ReadOutcome::Absent, "{name}");
        }
    }

    #[test]
    fn remote_reference_is_reported_not_fetched() {
        let url = "http://127.0.0.1:9/manifests/abc.c2pa";
        let png = png_with_xmp(&format!(
            r#"<rdf:Description rdf:about="" xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/>"#
        ));
        let outcome = read(&png, "image/png", None).unwrap();
        assert_eq!(outcome, ReadOutcome::Remote { url: url.into() });
    }

    #[test]
    fn truncated_files_are_errors() {
        let bytes = fixture("C.jpg");
        for len in [0, 2, 100, 1000, 5000] {
            let result = read(&bytes[..len], "image/jpeg", None);
            assert!(result.is_err(), "length {len}: {result:?}");
        }
    }

    #[test]
    fn cut_image_data_reads_invalid() {
        // The manifest sits before the image data, so cutting the end of
        // the file leaves it readable but breaks the data hash.
        let bytes = fixture("C.jpg");
        let report = read(&bytes[..bytes.len() / 2], "image/jpeg", None)
            .unwrap()
            .embedded()
            .unwrap();
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("assertion.dataHash.mismatch"), "{report:?}");
    }

    #[test]
    fn garbage_is_an_error_or_absent() {
        for mime in ["image/png", "image/jpeg", "image/webp"] {
            let result = read(b"\x89PNG\r\n\x1a\ngarbage-garbage", mime, None);
            assert!(
                result.is_err() || matches!(result, Ok(ReadOutcome::Absent)),
                "{mime}: {result:?}"
            );
        }
    }

    #[test]
    fn invalid_trust_anchors_are_rejected() {
        let result = read(&fixture("C.jpg"), "image/jpeg", Some("not a pem"));
        assert!(
            matches!(result, Err(ManifestError::TrustAnchors(_))),
            "{result:?}"
        );
    }

    #[test]
    fn store_validates_apart_from_a_modified_copy() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let signed =
            super::super::sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap();

        let copy = image_bytes(ImageFormat::Jpeg);
        let apart = read_store(&signed.manifest, "image/png", &copy, None).unwrap();
        assert_eq!(apart.report.state, ValidationState::Valid, "{apart:?}");
        assert!(!apart.hard_binding_matches);
        assert!(apart.report.has_code("assertion.dataHash.mismatch"));
        assert!(apart.report.has_code("claimSignature.validated"));
        assert_eq!(
            apart.report.generation,
            Some(super::super::GenerationAssertion::from(&claim()))
        );

        let trusted = read_store(
            &signed.manifest,
            "image/png",
            &copy,
            Some(&keys.ca_cert_pem),
        );
        assert_eq!(trusted.unwrap().report.state, ValidationState::Trusted);

        let original = read_store(&signed.manifest, "image/png", &signed.bytes, None).unwrap();
        assert!(original.hard_binding_matches, "{original:?}");
        assert_eq!(original.report.state, ValidationState::Valid);
    }

    #[test]
    fn altered_store_is_invalid_or_unreadable() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let signed =
            super::super::sign_generated(&png, "image/png", &claim(), &keys.signer).unwrap();
        let mut store = signed.manifest.clone();
        // The payload text sits in the generation assertion; changing one
        // digit breaks its hashed URI and so the claim.
        let needle = b"mmgen-wm1:0102030405060708:42";
        let at = store
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("payload in the store");
        store[at + needle.len() - 1] = b'3';
        match read_store(&store, "image/png", &signed.bytes, None) {
            Ok(apart) => assert_eq!(apart.report.state, ValidationState::Invalid, "{apart:?}"),
            Err(err) => assert!(matches!(err, ManifestError::Read(_)), "{err}"),
        }
    }
}
