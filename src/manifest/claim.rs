//! What a generated image's manifest asserts, and how it is written.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Label of mmgen's own assertion about a generation.
pub const GENERATION_LABEL: &str = "org.mmgen.generation";
/// Label of the C2PA soft-binding assertion that names the watermark.
pub const SOFT_BINDING_LABEL: &str = "c2pa.soft-binding";
/// Soft-binding algorithm identifier of mmgen's latent watermark, in the
/// reverse-domain `vendor.name.version` form of the C2PA soft-binding
/// algorithm list. The block value is the watermark payload text
/// (`mmgen-wm1:<key id hex>:<serial>`).
pub const WATERMARK_ALGORITHM: &str = "org.mmgen.latent-watermark.1";
/// IPTC digital source type of media made by a trained model.
pub const TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// Claim generator name written into every manifest.
pub const CLAIM_GENERATOR: &str = "mmgen";

/// The facts of one generation that go into its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationClaim {
    /// Model name, such as `builtin`.
    pub model_name: String,
    /// SHA-256 of the model weights file.
    pub weights_sha256: [u8; 32],
    /// Watermark payload embedded in the initial latent, as text.
    pub watermark_payload: String,
    /// Ledger serial of this generation.
    pub serial: u64,
    /// Number of sampler steps.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub guidance: f64,
    /// Seed of the sampler noise.
    pub seed: u64,
    /// SHA-256 of the UTF-8 prompt.
    pub prompt_sha256: [u8; 32],
    /// The prompt text, only when the request allows publishing it;
    /// otherwise the manifest carries only `prompt_sha256`.
    pub prompt: Option<String>,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Manifest title, usually the output file name.
    pub title: String,
}

/// The `org.mmgen.generation` assertion as stored in a manifest, with
/// hashes in lower-case hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationAssertion {
    /// Model name.
    pub model_name: String,
    /// SHA-256 of the model weights, lower-case hex.
    pub weights_sha256: String,
    /// Ledger serial.
    pub serial: u64,
    /// Watermark payload.
    pub watermark_payload: String,
    /// Sampler steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Sampler seed.
    pub seed: u64,
    /// SHA-256 of the prompt, lower-case hex.
    pub prompt_sha256: String,
    /// The prompt, when the generation request allowed publishing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Output width in pixels.
    #[serde(default)]
    pub width: u32,
    /// Output height in pixels.
    #[serde(default)]
    pub height: u32,
}

impl From<&GenerationClaim> for GenerationAssertion {
    fn from(claim: &GenerationClaim) -> Self {
        Self {
            model_name: claim.model_name.clone(),
            weights_sha256: hex(&claim.weights_sha256),
            serial: claim.serial,
            watermark_payload: claim.watermark_payload.clone(),
            steps: claim.steps,
            guidance: claim.guidance,
            seed: claim.seed,
            prompt_sha256: hex(&claim.prompt_sha256),
            prompt: claim.prompt.clone(),
            width: claim.width,
            height: claim.height,
        }
    }
}

/// The manifest definition (title and claim generator) for
/// `c2pa::Builder::with_definition`.
pub fn definition(title: &str) -> Value {
    json!({
        "title": title,
        "claim_generator_info": [{
            "name": CLAIM_GENERATOR,
            "version": env!("CARGO_PKG_VERSION"),
        }],
    })
}

/// The single `c2pa.created` action, naming mmgen as the software agent.
pub fn created_action() -> Value {
    json!({
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {
            "name": CLAIM_GENERATOR,
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The soft-binding assertion that points at the latent watermark. It is
/// JSON because the c2pa 0.90 `SoftBinding` type cannot be built outside
/// that crate.
pub fn soft_binding(claim: &GenerationClaim) -> Value {
    json!({
        "alg": WATERMARK_ALGORITHM,
        "blocks": [{ "scope": {}, "value": claim.watermark_payload }],
        "name": "mmgen latent watermark payload",
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
