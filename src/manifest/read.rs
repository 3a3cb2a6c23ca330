//! Reading and validating any file's C2PA manifest.

use std::io::Cursor;

use c2pa::validation_status::ValidationStatus;
use c2pa::{Context, Manifest, Reader};
use serde_json::{Value, json};

use super::ManifestError;
use super::claim::GENERATION_LABEL;
use super::report::{ActionEntry, ManifestReport, StatusEntry, StatusKind, ValidationState};

/// Reads and validates the manifest store of `image`, a file of type
/// `mime`. Returns `Ok(None)` when the file has no manifest. A manifest
/// stored remotely is reported with its URL and never fetched.
/// `trust_anchors_pem` lists the root certificates that make a Valid
/// manifest Trusted.
pub fn read(
    image: &[u8],
    mime: &str,
    trust_anchors_pem: Option<&str>,
) -> Result<Option<ManifestReport>, ManifestError> {
    let context = reader_context(trust_anchors_pem)?;
    let reader = match Reader::from_context(context).with_stream(mime, Cursor::new(image)) {
        Ok(reader) => reader,
        Err(c2pa::Error::JumbfNotFound) => return Ok(None),
        Err(c2pa::Error::RemoteManifestUrl(url)) => {
            tracing::debug!(%url, "manifest is remote; not fetched");
            return Ok(Some(ManifestReport::remote(url)));
        }
        Err(e) => return Err(ManifestError::Read(e)),
    };
    Ok(Some(report(&reader)))
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
    let manifest = reader.active_manifest();
    let signature = manifest.and_then(Manifest::signature_info);
    ManifestReport {
        state,
        status: status_entries(reader),
        claim_generator: manifest.and_then(claim_generator),
        signer: signature.and_then(|s| s.common_name.clone()),
        issuer: signature.and_then(|s| s.issuer.clone()),
        signing_time: signature.and_then(|s| s.time.clone()),
        title: manifest.and_then(|m| m.title().map(str::to_string)),
        actions: manifest.map(actions).unwrap_or_default(),
        ingredients: manifest.map(ingredient_titles).unwrap_or_default(),
        generation: manifest.and_then(|m| m.find_assertion(GENERATION_LABEL).ok()),
        remote_url: reader.remote_url().map(str::to_string),
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

/// `name/version` of the first claim generator, else the v1 string.
fn claim_generator(manifest: &Manifest) -> Option<String> {
    let info = manifest
        .claim_generator_info
        .as_ref()
        .and_then(|v| v.first());
    match info {
        Some(info) => Some(match &info.version {
            Some(version) => format!("{}/{version}", info.name),
            None => info.name.clone(),
        }),
        None => manifest.claim_generator().map(str::to_string),
    }
}

/// Actions from the v2 assertion, else from the v1 one.
fn actions(manifest: &Manifest) -> Vec<ActionEntry> {
    let value: Option<Value> = ["c2pa.actions.v2", "c2pa.actions"]
        .iter()
        .find_map(|label| manifest.find_assertion(label).ok());
    let Some(list) = value.as_ref().and_then(|v| v["actions"].as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|action| {
            Some(ActionEntry {
                action: action["action"].as_str()?.to_string(),
                digital_source_type: action["digitalSourceType"].as_str().map(str::to_string),
            })
        })
        .collect()
}

fn ingredient_titles(manifest: &Manifest) -> Vec<String> {
    manifest
        .ingredients()
        .iter()
        .map(|i| i.title().unwrap_or("(untitled)").to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::fixture;
    use super::*;

    fn read_fixture(name: &str, mime: &str) -> Option<ManifestReport> {
        read(&fixture(name), mime, None).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn fixture_c_is_valid() {
        let report = read_fixture("C.jpg", "image/jpeg").unwrap();
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert!(report.has_code("signingCredential.untrusted"));
        assert!(report.claim_generator.is_some());
    }

    #[test]
    fn fixture_ca_has_ingredient() {
        let report = read_fixture("CA.jpg", "image/jpeg").unwrap();
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert_eq!(report.ingredients.len(), 1, "{report:?}");
    }

    #[test]
    fn fixture_xca_has_data_hash_mismatch() {
        let report = read_fixture("XCA.jpg", "image/jpeg").unwrap();
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("assertion.dataHash.mismatch"), "{report:?}");
    }

    #[test]
    fn fixture_e_sig_has_signature_mismatch() {
        let report = read_fixture("E-sig-CA.jpg", "image/jpeg").unwrap();
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("claimSignature.mismatch"), "{report:?}");
    }

    #[test]
    fn fixtures_without_manifest_read_none() {
        let cases = [
            ("no_manifest.jpg", "image/jpeg"),
            ("libpng-test.png", "image/png"),
            ("sample1.png", "image/png"),
            ("test.webp", "image/webp"),
        ];
        for (name, mime) in cases {
            assert!(read_fixture(name, mime).is_none(), "{name}");
        }
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
            .unwrap();
        assert_eq!(report.state, ValidationState::Invalid);
        assert!(report.has_code("assertion.dataHash.mismatch"), "{report:?}");
    }

    #[test]
    fn garbage_is_an_error() {
        for mime in ["image/png", "image/jpeg", "image/webp"] {
            let result = read(b"\x89PNG\r\n\x1a\ngarbage-garbage", mime, None);
            assert!(
                result.is_err() || matches!(result, Ok(None)),
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
}
