//! `mmgen keys`: create, show and rotate the local key set.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the local key set if it does not exist.
    Init,
}

pub fn run(command: KeysCommand, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Init => anyhow::bail!("mmgen keys init is not implemented yet"),
    }
}
