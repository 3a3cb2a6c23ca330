//! Summaries of the manifests in a store: signer, claim generator,
//! actions and the ingredient chain, plus what they claim about AI.

use c2pa::{Manifest, Reader};
use serde_json::Value;
use x509_parser::pem::Pem;
use x509_parser::prelude::X509Name;

use super::claim::SOFT_BINDING_LABEL;
use super::report::{
    ActionEntry, AiDisclosure, IngredientEntry, ManifestSummary, SignerInfo, SoftBindingEntry,
};
use super::source_type::is_ai_generated;

/// Maximum depth of the ingredient chain that is followed. A store is a
/// tree, so real chains end well before this. The limit guards against a
/// crafted store whose ingredients point back at each other.
const MAX_CHAIN_DEPTH: usize = 16;

/// Summarises `manifest` and, recursively, the manifests of its
/// ingredients that `reader` contains.
pub(super) fn summarize(reader: &Reader, manifest: Option<&Manifest>) -> ManifestSummary {
    summarize_at(reader, manifest, 0)
}

fn summarize_at(reader: &Reader, manifest: Option<&Manifest>, depth: usize) -> ManifestSummary {
    let Some(manifest) = manifest else {
        return ManifestSummary {
            label: None,
            claim_generator: None,
            signer: SignerInfo::default(),
            title: None,
            actions: Vec::new(),
            ingredients: Vec::new(),
        };
    };
    ManifestSummary {
        label: manifest.label().map(str::to_string),
        claim_generator: claim_generator(manifest),
        signer: signer_info(manifest),
        title: manifest.title().map(str::to_string),
        actions: actions(manifest),
        ingredients: ingredients(reader, manifest, depth),
    }
}

fn ingredients(reader: &Reader, manifest: &Manifest, depth: usize) -> Vec<IngredientEntry> {
    manifest
        .ingredients()
        .iter()
        .map(|ingredient| {
            let child = ingredient
                .active_manifest()
                .filter(|_| depth + 1 < MAX_CHAIN_DEPTH)
                .and_then(|label| reader.get_manifest(label));
            IngredientEntry {
                title: ingredient.title().map(str::to_string),
                relationship: relationship_name(ingredient.relationship()).to_string(),
                format: ingredient.format().map(str::to_string),
                manifest: child.map(|m| Box::new(summarize_at(reader, Some(m), depth + 1))),
                failures_when_added: recorded_failures(ingredient),
            }
        })
        .collect()
}

/// Failure codes of the validation results stored with an ingredient.
fn recorded_failures(ingredient: &c2pa::Ingredient) -> Vec<String> {
    let failures: Vec<&c2pa::validation_status::ValidationStatus> = match ingredient
        .validation_results()
        .and_then(|r| r.active_manifest())
    {
        Some(codes) => codes.failure().iter().collect(),
        None => ingredient
            .validation_status()
            .unwrap_or_default()
            .iter()
            .filter(|s| *s.kind() == c2pa::status_tracker::LogKind::Failure)
            .collect(),
    };
    failures
        .into_iter()
        .map(|status| status.code().to_string())
        .filter(|code| code != "signingCredential.untrusted")
        .collect()
}

fn relationship_name(relationship: &c2pa::Relationship) -> &'static str {
    match relationship {
        c2pa::Relationship::ParentOf => "parentOf",
        c2pa::Relationship::ComponentOf => "componentOf",
        c2pa::Relationship::InputTo => "inputTo",
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

/// Reads the signer's names from the first certificate of the chain, and
/// falls back on what the SDK reports when the chain does not parse.
fn signer_info(manifest: &Manifest) -> SignerInfo {
    let Some(signature) = manifest.signature_info() else {
        return SignerInfo::default();
    };
    let mut info = SignerInfo {
        name: signature.common_name.clone(),
        organization: signature.issuer.clone(),
        issuer: None,
        certificate_expires: None,
        signing_time: signature.time.clone(),
    };
    let first = Pem::iter_from_buffer(signature.cert_chain().as_bytes()).next();
    let Some(Ok(pem)) = first else {
        return info;
    };
    let Ok(cert) = pem.parse_x509() else {
        return info;
    };
    info.name = first_attribute(cert.subject(), Attribute::CommonName).or(info.name);
    info.organization =
        first_attribute(cert.subject(), Attribute::Organization).or(info.organization);
    info.issuer = first_attribute(cert.issuer(), Attribute::Organization)
        .or_else(|| first_attribute(cert.issuer(), Attribute::CommonName));
    info.certificate_expires = cert
        .validity()
        .not_after
        .to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    info
}

enum Attribute {
    CommonName,
    Organization,
}

fn first_attribute(name: &X509Name<'_>, attribute: Attribute) -> Option<String> {
    let value = match attribute {
        Attribute::CommonName => name.iter_common_name().next(),
        Attribute::Organization => name.iter_organization().next(),
    };
    value
        .and_then(|value| value.as_str().ok())
        .map(str::to_string)
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
                description: action["description"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Collects the `c2pa.soft-binding` assertions of `manifest`. Blocks whose
/// value is not a string are skipped.
pub(super) fn soft_bindings(manifest: &Manifest) -> Vec<SoftBindingEntry> {
    manifest
        .assertions()
        .iter()
        .filter(|a| a.label() == SOFT_BINDING_LABEL)
        .filter_map(|a| a.value().ok())
        .filter_map(|value| {
            let alg = value["alg"].as_str()?.to_string();
            let values = value["blocks"]
                .as_array()
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b["value"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Some(SoftBindingEntry { alg, values })
        })
        .collect()
}

/// Lists every action in the chain whose digital source type names
/// generative AI, attributed to the signer of its manifest.
pub(super) fn ai_disclosures(summary: &ManifestSummary) -> Vec<AiDisclosure> {
    let mut found = Vec::new();
    collect_disclosures(summary, false, &mut found);
    found
}

fn collect_disclosures(
    summary: &ManifestSummary,
    in_ingredient: bool,
    out: &mut Vec<AiDisclosure>,
) {
    let according_to = summary
        .signer
        .display_name()
        .map(str::to_string)
        .or_else(|| summary.claim_generator.clone())
        .unwrap_or_else(|| "an unnamed signer".to_string());
    for action in &summary.actions {
        let Some(source) = action.digital_source_type.as_deref() else {
            continue;
        };
        if is_ai_generated(source) {
            out.push(AiDisclosure {
                according_to: according_to.clone(),
                digital_source_type: source.to_string(),
                action: action.action.clone(),
                in_ingredient,
            });
        }
    }
    for ingredient in &summary.ingredients {
        if let Some(manifest) = &ingredient.manifest {
            collect_disclosures(manifest, true, out);
        }
    }
}
