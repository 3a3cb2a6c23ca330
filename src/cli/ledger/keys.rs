//! The checkpoint signer and verifier of a home, and verifier keys given
//! on the command line.

use std::path::Path;

use anyhow::Context as _;
use mmgen::keys::KeySet;
use mmgen::ledger::checkpoint::default_origin;
use mmgen::ledger::{CheckpointSigner, CheckpointVerifier, Ledger};

use crate::cli::Context;

/// Builds the checkpoint signer of the home's ledger: the origin stored in
/// the ledger, else `[ledger] origin` from config.toml, else
/// `<host name>/mmgen-ledger/<key digest>`.
pub fn checkpoint_signer(
    ctx: &Context,
    keys: &KeySet,
    ledger: &Ledger,
) -> anyhow::Result<CheckpointSigner> {
    let origin = match ledger.origin()? {
        Some(origin) => origin,
        None => configured_origin(ctx)?
            .unwrap_or_else(|| default_origin(&host_name(), &keys.checkpoint_key.verifying_key())),
    };
    Ok(CheckpointSigner::new(&origin, keys.checkpoint_key.clone())?)
}

/// Builds the verifier of the home's own ledger from its checkpoint key.
pub fn home_verifier(ctx: &Context, ledger: &Ledger) -> anyhow::Result<CheckpointVerifier> {
    let Some(keys) = ctx.load_keys_if_present()? else {
        anyhow::bail!(
            "the home {} has no keys, so its checkpoint key is unknown; \
             pass --key with the log's verifier key",
            ctx.home.root().display()
        );
    };
    Ok(checkpoint_signer(ctx, &keys, ledger)?.verifier())
}

/// Reads a verifier key given as text (`NAME+KEYID+KEY`) or as the path of
/// a file that contains it.
pub fn verifier_from_arg(arg: &str) -> anyhow::Result<CheckpointVerifier> {
    let path = Path::new(arg);
    let text = if !arg.contains('+') && path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the verifier key file {}", path.display()))?
    } else {
        arg.to_string()
    };
    CheckpointVerifier::from_text(&text).with_context(|| {
        format!("--key {arg:?} is neither a verifier key NAME+KEYID+KEY nor a file with one")
    })
}

/// Reads `[ledger] origin` from the home's config.toml, if both exist.
fn configured_origin(ctx: &Context) -> anyhow::Result<Option<String>> {
    let path = ctx.home.config_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let origin = table
        .get("ledger")
        .and_then(|ledger| ledger.get("origin"))
        .map(|value| {
            value
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("[ledger] origin in {} must be a string", path.display()))
        })
        .transpose()?;
    Ok(origin)
}

/// The machine's host name, or "localhost" when it cannot be read or is
/// not usable in an origin.
fn host_name() -> String {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let name = read("/proc/sys/kernel/hostname")
        .or_else(|| read("/etc/hostname"))
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    if mmgen::ledger::checkpoint::note::check_name(&name).is_ok() && !name.contains('/') {
        name
    } else {
        "localhost".into()
    }
}
