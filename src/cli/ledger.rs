//! `mmgen ledger`: list, show, prove and verify ledger records.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// List records.
    List,
}

pub fn run(command: LedgerCommand, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::List => anyhow::bail!("mmgen ledger list is not implemented yet"),
    }
}
