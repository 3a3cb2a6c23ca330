//! `mmgen keys`: create, show and rotate the local key set.

use std::process::ExitCode;

use clap::Subcommand;
use mmgen::keys::{KeyOptions, KeyStore, SIGNER_LIFETIME};
use mmgen::watermark::WatermarkKey;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the local key set: an Ed25519 CA, a C2PA signing certificate,
    /// a watermark key and a checkpoint key. Never overwrites keys.
    Init {
        /// Organisation named in both certificates (O=), which C2PA readers
        /// show as the signer. Default: "mmgen local signer (untrusted)".
        #[arg(long, value_name = "NAME")]
        organization: Option<String>,
    },
    /// Issue a new C2PA signing certificate from the same CA and retire the
    /// old one to keys/retired/. Manifests signed earlier still read
    /// Invalid once their own certificate expires.
    Rotate {
        /// Lifetime of the new signing certificate in days. Default: 1095
        /// (3 years).
        #[arg(long, value_name = "DAYS")]
        lifetime_days: Option<u32>,
    },
    /// Show the public parts of the key set (no private key material).
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: KeysCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Init { organization } => init(ctx, organization),
        KeysCommand::Rotate { lifetime_days } => rotate(ctx, lifetime_days),
        KeysCommand::Show { json } => show(ctx, json),
    }
}

fn init(ctx: &Context, organization: Option<String>) -> anyhow::Result<ExitCode> {
    let _lock = ctx.lock_keys()?;
    let store = KeyStore::new(&ctx.home.keys_dir());
    if store.exists() {
        anyhow::bail!(
            "a key set already exists in {}; mmgen never overwrites keys (use `mmgen keys show` to see it)",
            ctx.home.keys_dir().display()
        );
    }
    store.init_with(&KeyOptions { organization })?;
    outln!("{}", super::created_message(&ctx.home))?;
    Ok(ExitCode::SUCCESS)
}

fn rotate(ctx: &Context, lifetime_days: Option<u32>) -> anyhow::Result<ExitCode> {
    let lifetime = match lifetime_days {
        Some(0) => anyhow::bail!("--lifetime-days 0 is out of range; use at least 1"),
        Some(days) => time::Duration::days(i64::from(days)),
        None => SIGNER_LIFETIME,
    };
    let store = KeyStore::new(&ctx.home.keys_dir());
    let _lock = ctx.lock_keys()?;
    let rotation = store.rotate(lifetime)?;
    let info = rotation.keys.info();
    outln!(
        "issued a new C2PA signing certificate, valid until {} ({} days)",
        info.signer_not_after,
        info.signer_days_left
    )?;
    outln!(
        "the old signing key and certificate are in {}",
        rotation.retired_dir.display()
    )?;
    outln!(
        "manifests signed before the rotation stay valid only until their own certificate expires"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let store = KeyStore::new(&ctx.home.keys_dir());
    let lock = ctx.lock_keys_shared();
    let keys = store.load()?;
    drop(lock);
    let info = keys.info();
    let watermark_id = mmgen::generation::hex(&WatermarkKey::new(keys.watermark_secret).id());
    let mut value = serde_json::to_value(&info)?;
    value["watermark_key_id"] = serde_json::Value::String(watermark_id);
    if json {
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(fields) = value.as_object() {
        for (name, field) in fields {
            let text = field
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| field.to_string());
            outln!("{:<22} {text}", name.replace('_', " "))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
