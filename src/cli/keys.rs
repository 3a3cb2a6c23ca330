//! `mmgen keys`: create and show the local key set.

use std::process::ExitCode;

use clap::Subcommand;
use mmgen::keys::KeyStore;
use mmgen::watermark::WatermarkKey;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the local key set: an Ed25519 CA, a C2PA signing certificate,
    /// a watermark key and a checkpoint key. Never overwrites keys.
    Init,
    /// Show the public parts of the key set (no private key material).
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: KeysCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Init => init(ctx),
        KeysCommand::Show { json } => show(ctx, json),
    }
}

fn init(ctx: &Context) -> anyhow::Result<ExitCode> {
    ctx.home.ensure()?;
    let store = KeyStore::new(&ctx.home.keys_dir());
    if store.exists() {
        anyhow::bail!(
            "a key set already exists in {}; mmgen never overwrites keys (use `mmgen keys show` to see it)",
            ctx.home.keys_dir().display()
        );
    }
    store.init()?;
    outln!("{}", super::created_message(&ctx.home))?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let store = KeyStore::new(&ctx.home.keys_dir());
    let keys = store.load()?;
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
