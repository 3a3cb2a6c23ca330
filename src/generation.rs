//! Generation with all three provenance layers, shared by the command line
//! and any other front end.
//!
//! For each image: reserve a ledger serial and sample the initial latent
//! from the watermark key and that serial. Then denoise, decode, encode the
//! file and sign a C2PA manifest over it (when a signer is given). Then
//! append the records of the whole batch with one signed checkpoint, in
//! one transaction, and only then write each file and move it into place.
//! A process that dies before the append leaves unused serials and no
//! file; one that dies after it leaves records whose files were never
//! released, never the reverse.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{EngineError, Model, SampleOptions};
use crate::keys::Signer;
use crate::ledger::{CheckpointSigner, Generation, Ledger, LedgerError, NewRecord, RecordDetails};
use crate::manifest::{self, GenerationClaim, ManifestError};
use crate::media::{self, MediaError, MediaFormat};
use crate::output::{self, parent_dir};
use crate::watermark::{self, Payload, WatermarkKey};

/// Errors of a generation run.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The request itself is invalid (count, steps, guidance, paths).
    #[error("{0}")]
    InvalidRequest(String),
    /// The output file exists and overwriting was not requested.
    #[error("{0} already exists; choose another output path or pass --force")]
    OutputExists(PathBuf),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The ledger failed; no file was released for this image.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Signing the manifest failed; no file was released for this image.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Encoding the image failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The text prompt.
    pub prompt: String,
    /// Number of images; they are denoised together as one batch.
    pub count: usize,
    /// Seed of the first image; image `i` uses `seed + i`. `None` draws one
    /// from the operating system.
    pub seed: Option<u64>,
    /// DDIM steps; `None` uses the model's default.
    pub steps: Option<usize>,
    /// Classifier-free guidance scale; `None` uses the model's default.
    pub guidance: Option<f64>,
    /// Output path. With `count > 1`, image `i` goes to `STEM-i.EXT`.
    /// `None` names each file `mmgen-SERIAL.EXT` in the current directory.
    pub output: Option<PathBuf>,
    /// File format of the outputs.
    pub format: MediaFormat,
    /// Whether an existing output file may be replaced.
    pub overwrite: bool,
    /// Whether the ledger keeps the prompt text (otherwise only its SHA-256).
    pub log_prompt: bool,
    /// Whether the C2PA manifest, which anyone holding the file can read,
    /// carries the prompt text. It always carries the prompt's SHA-256.
    pub prompt_in_manifest: bool,
}

/// The layers that every output gets: the watermark key and the ledger's
/// checkpoint signer always, a C2PA signer when signing is requested.
pub struct Provenance<'a> {
    /// Key of the latent watermark.
    pub watermark: &'a WatermarkKey,
    /// Signer of the C2PA manifest; `None` leaves outputs unsigned.
    pub signer: Option<&'a Signer>,
    /// Signer of the ledger checkpoint written with the records.
    pub checkpoint: &'a CheckpointSigner,
}

/// One released output.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedImage {
    /// Path of the written file.
    pub path: PathBuf,
    /// Its ledger serial.
    pub serial: u64,
    /// The watermark payload, as text.
    pub watermark_payload: String,
    /// The seed of its initial latent's magnitudes.
    pub seed: u64,
    /// SHA-256 of the released file, hex.
    pub sha256: String,
    /// Whether the file carries a signed C2PA manifest.
    pub signed: bool,
}

/// Generates `request.count` images with every layer and releases them.
/// `on_step` is called after each denoising step with (done, total).
pub fn generate(
    model: &Model,
    ledger: &mut Ledger,
    provenance: &Provenance,
    request: &GenerationRequest,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Vec<GeneratedImage>, GenerationError> {
    let config = model.config();
    let options = SampleOptions {
        steps: request.steps.unwrap_or(config.default_steps),
        guidance: request.guidance.unwrap_or(config.default_guidance),
        layout: true,
    };
    validate(request, &options)?;
    if let Some(output) = &request.output {
        check_free(&output_paths(output, request.count), request.overwrite)?;
    }

    // 1. Reserve the serials first: the watermark payload contains them.
    let first_seed = request.seed.unwrap_or_else(random_seed);
    let serials = ledger.reserve_serials(request.count)?;
    let paths = match &request.output {
        Some(output) => output_paths(output, request.count),
        None => {
            let extension = request.format.extension();
            let paths: Vec<PathBuf> = serials
                .iter()
                .map(|s| PathBuf::from(format!("mmgen-{s}.{extension}")))
                .collect();
            check_free(&paths, request.overwrite)?;
            paths
        }
    };
    let seeds: Vec<u64> = (0..request.count as u64)
        .map(|i| first_seed.wrapping_add(i))
        .collect();
    tracing::debug!(
        count = request.count,
        first_seed,
        steps = options.steps,
        guidance = options.guidance,
        "generating"
    );

    // 2. Sample the watermarked initial latents and denoise them as a batch.
    let latents = initial_latents(model, provenance.watermark, &serials, &seeds)?;
    let prompts = vec![request.prompt.as_str(); request.count];
    let total = options.steps;
    let clean = model.sample(&latents, &prompts, &options, &mut |done| {
        on_step(done, total)
    })?;
    let images = model.decode_latents(&clean)?;

    // 3. Encode and sign each image, log the batch, then release the files.
    let prompt_sha256: [u8; 32] = Sha256::digest(request.prompt.as_bytes()).into();
    let mut prepared = Vec::with_capacity(request.count);
    for (i, image) in images.iter().enumerate() {
        let payload = Payload {
            key_id: provenance.watermark.id(),
            serial: serials[i],
        };
        let output = Output {
            image,
            path: &paths[i],
            payload,
            seed: seeds[i],
            options,
            prompt_sha256,
        };
        prepared.push(prepare(model, provenance, request, &output)?);
    }
    let records = prepared.iter().map(|p| p.record.clone()).collect();
    ledger.append_batch(records, provenance.checkpoint)?;
    prepared
        .into_iter()
        .map(|p| release(p, request.overwrite))
        .collect()
}

/// One decoded image on its way out.
struct Output<'a> {
    image: &'a image::RgbImage,
    path: &'a Path,
    payload: Payload,
    seed: u64,
    options: SampleOptions,
    prompt_sha256: [u8; 32],
}

/// An encoded, signed output and its ledger record, not yet released.
struct Prepared {
    path: PathBuf,
    bytes: Vec<u8>,
    record: NewRecord,
}

fn prepare(
    model: &Model,
    provenance: &Provenance,
    request: &GenerationRequest,
    output: &Output,
) -> Result<Prepared, GenerationError> {
    let config = model.config();
    let encoded = media::encode(output.image, request.format, 95)?;
    let payload_text = output.payload.to_string();
    let (bytes, manifest) = match provenance.signer {
        Some(signer) => {
            let claim = GenerationClaim {
                model_name: config.name.clone(),
                weights_sha256: model.weights_sha256(),
                watermark_payload: payload_text.clone(),
                serial: output.payload.serial,
                steps: output.options.steps,
                guidance: output.options.guidance,
                seed: output.seed,
                prompt_sha256: output.prompt_sha256,
                prompt: request.prompt_in_manifest.then(|| request.prompt.clone()),
                width: output.image.width(),
                height: output.image.height(),
                title: file_name(output.path),
            };
            let signed = manifest::sign_generated(&encoded, request.format.mime(), &claim, signer)?;
            (signed.bytes, signed.manifest)
        }
        None => (encoded, Vec::new()),
    };
    let record = NewRecord {
        serial: output.payload.serial,
        created_at: time::OffsetDateTime::now_utc(),
        output_sha256: Sha256::digest(&bytes).into(),
        output_mime: request.format.mime().to_string(),
        manifest,
        details: RecordDetails::Generation(Generation {
            model_name: config.name.clone(),
            weights_sha256: model.weights_sha256(),
            prompt: request.log_prompt.then(|| request.prompt.clone()),
            prompt_sha256: output.prompt_sha256,
            seed: output.seed,
            steps: output.options.steps as u32,
            guidance: output.options.guidance,
            width: output.image.width(),
            height: output.image.height(),
            watermark_key_id: output.payload.key_id,
            watermark_payload: payload_text,
        }),
    };
    Ok(Prepared {
        path: output.path.to_path_buf(),
        bytes,
        record,
    })
}

/// Writes a logged output beside its destination, flushes it and renames
/// it into place.
fn release(prepared: Prepared, overwrite: bool) -> Result<GeneratedImage, GenerationError> {
    let Prepared {
        path,
        bytes,
        record,
    } = prepared;
    output::release(&path, &bytes, overwrite).map_err(|source| GenerationError::Write {
        path: path.clone(),
        source,
    })?;
    tracing::debug!(serial = record.serial, path = %path.display(), "released");
    let RecordDetails::Generation(generation) = record.details else {
        unreachable!("prepare builds generation records")
    };
    Ok(GeneratedImage {
        path,
        serial: record.serial,
        watermark_payload: generation.watermark_payload,
        seed: generation.seed,
        sha256: hex(&record.output_sha256),
        signed: !record.manifest.is_empty(),
    })
}

fn validate(request: &GenerationRequest, options: &SampleOptions) -> Result<(), GenerationError> {
    let invalid = |message: String| Err(GenerationError::InvalidRequest(message));
    if request.count == 0 || request.count > 64 {
        return invalid(format!(
            "count {} is out of range; use 1 to 64 images per run",
            request.count
        ));
    }
    if options.steps == 0 || options.steps > 1000 {
        return invalid(format!(
            "steps {} is out of range; use 1 to 1000",
            options.steps
        ));
    }
    if !options.guidance.is_finite() || options.guidance < 0.0 || options.guidance > 50.0 {
        return invalid(format!(
            "guidance {} is out of range; use 0 to 50",
            options.guidance
        ));
    }
    if let Some(output) = &request.output
        && output.file_name().is_none()
    {
        return invalid(format!("output path {} has no file name", output.display()));
    }
    if request.log_prompt && request.prompt.len() > MAX_LOGGED_PROMPT_BYTES {
        return invalid(format!(
            "the prompt has {} bytes but the ledger keeps at most {MAX_LOGGED_PROMPT_BYTES}; \
             shorten it or pass --redact-prompt to log only its SHA-256",
            request.prompt.len()
        ));
    }
    if request.prompt_in_manifest && !request.log_prompt {
        return invalid(
            "the prompt cannot be published in the manifest while the ledger keeps only its \
             SHA-256; drop --redact-prompt or --prompt-in-manifest"
                .to_string(),
        );
    }
    if let Some(seed) = request.seed
        && seed.checked_add(request.count as u64 - 1).is_none()
    {
        return invalid(format!(
            "seed {seed} leaves no room for {} consecutive seeds; use a smaller seed",
            request.count
        ));
    }
    Ok(())
}

/// Largest prompt the ledger stores as text.
const MAX_LOGGED_PROMPT_BYTES: usize = 65_536;

/// Checks, before any work, that every output can be written: its
/// directory exists, and the path is free or (with `overwrite`) a regular
/// file. Devices, directories and symbolic links are never replaced.
fn check_free(paths: &[PathBuf], overwrite: bool) -> Result<(), GenerationError> {
    let invalid = |message: String| Err(GenerationError::InvalidRequest(message));
    for path in paths {
        let dir = parent_dir(path);
        if !dir.is_dir() {
            return invalid(format!(
                "the output directory {} does not exist; create it first",
                dir.display()
            ));
        }
        let Ok(metadata) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if !metadata.file_type().is_file() {
            return invalid(format!(
                "{} exists and is not a regular file; mmgen replaces only regular files",
                path.display()
            ));
        }
        if !overwrite {
            return Err(GenerationError::OutputExists(path.clone()));
        }
    }
    Ok(())
}

/// Returns the output paths of a run: the path itself for one image, else
/// `STEM-1.EXT`, `STEM-2.EXT`, ...
pub fn output_paths(output: &Path, count: usize) -> Vec<PathBuf> {
    if count == 1 {
        return vec![output.to_path_buf()];
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..=count)
        .map(|i| output.with_file_name(format!("{stem}-{i}{extension}")))
        .collect()
}

fn initial_latents(
    model: &Model,
    key: &WatermarkKey,
    serials: &[u64],
    seeds: &[u64],
) -> Result<Tensor, EngineError> {
    let (channels, height, width) = model.config().latent_shape();
    let len = channels * height * width;
    let mut values = Vec::with_capacity(serials.len() * len);
    for (&serial, &seed) in serials.iter().zip(seeds) {
        values.extend(watermark::initial_latent(key, serial, seed, len));
    }
    Tensor::from_vec(
        values,
        (serials.len(), channels, height, width),
        model.device(),
    )
    .map_err(|source| EngineError::candle("building initial latents", source))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn random_seed() -> u64 {
    use rand_core::{OsRng, RngCore};
    // 53 bits, so that the seed survives JSON readers that parse numbers as doubles.
    OsRng.next_u64() >> 11
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::builtin;

    /// Renders the PNG bytes that a ledger record's (key, serial, seed)
    /// and default settings lead to.
    fn render(model: &Model, key: &WatermarkKey, serial: u64, seed: u64) -> Vec<u8> {
        let config = model.config();
        let options = SampleOptions {
            steps: config.default_steps,
            guidance: config.default_guidance,
            layout: true,
        };
        let latents = initial_latents(model, key, &[serial], &[seed]).unwrap();
        let clean = model
            .sample(&latents, &["a red circle"], &options, &mut |_| {})
            .unwrap();
        let image = &model.decode_latents(&clean).unwrap()[0];
        media::encode(image, MediaFormat::Png, 95).unwrap()
    }

    #[test]
    fn record_parameters_reproduce_output() {
        let model = builtin::load(&candle_core::Device::Cpu).unwrap();
        let key = WatermarkKey::new([3u8; 32]);
        let first = render(&model, &key, 5, 42);
        assert_eq!(
            first,
            render(&model, &key, 5, 42),
            "same record, different bytes"
        );
        assert_ne!(
            first,
            render(&model, &key, 6, 42),
            "another serial gave the same image"
        );
    }

    #[test]
    fn output_paths_number_each_image() {
        let paths = output_paths(Path::new("out/x.png"), 2);
        assert_eq!(
            paths,
            vec![PathBuf::from("out/x-1.png"), PathBuf::from("out/x-2.png")]
        );
        assert_eq!(
            output_paths(Path::new("x.png"), 1),
            vec![PathBuf::from("x.png")]
        );
    }
}
