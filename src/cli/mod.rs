//! Argument parsing, dispatch, logging set-up and the mapping from errors
//! to exit statuses.
//!
//! Exit statuses shared by every subcommand: 0 success, 2 error (bad
//! arguments, unreadable files, a failed layer). `verify` adds its own
//! (see `verify.rs`). A closed stdout (for example `mmgen ledger list |
//! head`) is not an error.

/// Writes one line to stdout and returns the I/O result, so that a closed
/// pipe ends the command through `main` instead of panicking as `println!`
/// does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Writes one line to stderr and drops a failed write, because a closed
/// stderr leaves nowhere to report it, and `eprintln!` would panic.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod generate;
mod keys;
mod ledger;
mod paths;
mod stamp;
mod verify;
mod verify_print;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mmgen::engine::{Model, builtin};
use mmgen::home::Home;
use mmgen::keys::{KeySet, KeyStore, SignerExpiry};
use mmgen::ledger::Ledger;

/// Provenance for generated images: generate with a watermark, a C2PA
/// manifest and a ledger record; verify and trace any file.
#[derive(Debug, Parser)]
#[command(name = "mmgen", version, about, long_about = None)]
pub struct Cli {
    /// The mmgen home directory (ledger, keys, configuration).
    /// Defaults to the platform data directory, e.g. ~/.local/share/mmgen.
    #[arg(long, global = true, env = "MMGEN_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Log more: -v for decisions, -vv for per-step detail. RUST_LOG
    /// overrides this.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate images with a watermark, a ledger record and optionally a
    /// C2PA manifest.
    Generate(generate::GenerateArgs),
    /// Report the evidence of every provenance layer in image files.
    Verify(verify::VerifyArgs),
    /// Sign media that mmgen did not generate with Content Credentials
    /// (for publishers), optionally with a visible AI label.
    Stamp(stamp::StampArgs),
    /// Create, show or rotate the local signing and watermark keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Inspect, prove and audit the generation ledger.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
}

/// Values that every subcommand needs.
pub struct Context {
    /// The resolved mmgen home.
    pub home: Home,
}

impl Context {
    /// Loads the key set, creating it (and saying so on stderr) when the
    /// home has none. Concurrent first runs wait on a lock file, so only
    /// one of them creates the keys.
    pub fn load_or_init_keys(&self, quiet: bool) -> anyhow::Result<KeySet> {
        let lock = self.lock_keys()?;
        let store = KeyStore::new(&self.home.keys_dir());
        let (keys, created) = store.load_or_init()?;
        drop(lock);
        if created && !quiet {
            errln!("{}", created_message(&self.home));
        }
        Ok(keys)
    }

    /// Checks, before any work, that the signing certificate can still
    /// sign: an expired one is an error, and one that expires within
    /// [`mmgen::keys::RENEWAL_WARNING`] gets a warning on stderr.
    pub fn check_signer_expiry(&self, keys: &KeySet) -> anyhow::Result<()> {
        match keys.signer_expiry_at(time::OffsetDateTime::now_utc()) {
            SignerExpiry::Valid { .. } => Ok(()),
            SignerExpiry::Soon { days_left } => {
                errln!(
                    "mmgen: warning: the C2PA signing certificate expires in {days_left} days; \
                     manifests carry no time-stamp, so they read back invalid once it has \
                     expired. Run `mmgen keys rotate` for new outputs."
                );
                Ok(())
            }
            SignerExpiry::Expired { since } => anyhow::bail!(
                "the C2PA signing certificate expired at {}; run `mmgen keys rotate` to \
                 issue a new one",
                time_text(&since)
            ),
        }
    }

    /// Takes the home's key lock, creating the home when it is missing,
    /// and holds it until the returned file is dropped. Every command that
    /// creates, rotates or loads keys takes it, so that none of them reads
    /// a key set that another one is changing.
    pub fn lock_keys(&self) -> anyhow::Result<std::fs::File> {
        self.home.ensure()?;
        let lock_path = self.home.root().join("keys.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the key lock {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        Ok(lock)
    }

    /// Loads the key set if the home has one. It waits for a rotation in
    /// progress, unless the key lock cannot be opened (a read-only home),
    /// where it loads without the lock.
    pub fn load_keys_if_present(&self) -> anyhow::Result<Option<KeySet>> {
        let store = KeyStore::new(&self.home.keys_dir());
        let _lock = self.lock_keys_shared();
        if !store.exists() {
            return Ok(None);
        }
        Ok(Some(store.load()?))
    }

    /// Takes the key lock shared when the lock file can be opened, for
    /// commands that only read keys.
    pub fn lock_keys_shared(&self) -> Option<std::fs::File> {
        let lock = std::fs::File::open(self.home.root().join("keys.lock")).ok()?;
        lock.lock_shared().ok()?;
        Some(lock)
    }

    /// Opens the ledger, creating it if missing. An existing file of zero
    /// bytes is rejected: starting a new chain there would hand out serials
    /// that released watermarks already name.
    ///
    /// The check and the creation run under a lock file, so that no
    /// process checks the file while another one creates it.
    pub fn open_ledger(&self) -> anyhow::Result<Ledger> {
        self.home.ensure()?;
        let lock_path = self.home.root().join("ledger.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the ledger lock {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let path = self.home.ledger_path();
        let marker = self.home.watermark_used_path();
        if !path.exists() && marker.exists() {
            // A new ledger would hand out serials from 1 again, and with
            // the same key those serials' watermark patterns are already
            // in released outputs, which would then trace to new records.
            anyhow::bail!(
                "the ledger {} is missing, but the watermark key in {} has already marked \
                 outputs logged there; restore the ledger from a backup, or move {} away \
                 too so that a new ledger starts with a new key",
                path.display(),
                self.home.keys_dir().display(),
                self.home.keys_dir().display()
            );
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            anyhow::bail!(
                "the ledger {} is empty (0 bytes); restore it from a backup, or move it away to start a new ledger",
                path.display()
            );
        }
        Ok(Ledger::open(&path)?)
    }

    /// Opens the ledger if it exists.
    pub fn open_ledger_if_present(&self) -> anyhow::Result<Option<Ledger>> {
        let path = self.home.ledger_path();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Ledger::open_existing(&path)?))
    }

    /// Opens an existing ledger, for commands that only read it.
    pub fn open_existing_ledger(&self) -> anyhow::Result<Ledger> {
        Ok(Ledger::open_existing(&self.home.ledger_path())?)
    }

    /// Loads the built-in model on the CPU.
    pub fn load_model(&self) -> anyhow::Result<Model> {
        builtin::load(&candle_core::Device::Cpu).context("loading the built-in model")
    }
}

/// Returns the notice printed when a key set has just been created.
pub fn created_message(home: &Home) -> String {
    format!(
        "created a local key set in {}: an Ed25519 CA, a C2PA signing certificate issued by it, \
         a 256-bit watermark key and a ledger checkpoint key. The local CA is not trusted by anyone else; \
         share {} with those who should trust your manifests.",
        home.keys_dir().display(),
        home.keys_dir().join("ca.cert.pem").display()
    )
}

/// Parses arguments, runs one subcommand and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = Home::resolve(cli.home.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|home| run(cli.command, &Context { home }));
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            errln!("mmgen: {}", error_text(&err));
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Generate(args) => generate::run(args, ctx),
        Command::Verify(args) => verify::run(args, ctx),
        Command::Stamp(args) => stamp::run(args, ctx),
        Command::Keys { command } => keys::run(command, ctx),
        Command::Ledger { command } => ledger::run(command, ctx),
    }
}

/// Formats a UTC time as RFC 3339 to the second, for people. JSON output
/// keeps the full precision.
pub fn time_text(time: &time::OffsetDateTime) -> String {
    let seconds = time.replace_nanosecond(0).unwrap_or(*time);
    seconds
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // c2pa 0.90 warns on every read and sign that thumbnails are not
        // compiled in, even when they are switched off.
        0 => "warn,c2pa=error",
        1 => "mmgen=debug,warn,c2pa=error",
        _ => "mmgen=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A closed stderr drops the log lines; reporting that failure would
    // write to stderr again and panic.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}

/// Formats the error and its causes, adding each cause only when the text
/// so far does not already contain it, because many errors repeat their
/// source.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Replaces control characters (escape sequences, newlines) with their
/// escaped form, so that file names, prompts and manifest fields from
/// untrusted files cannot forge lines or recolour a terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let escaped = text
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    std::borrow::Cow::Owned(escaped)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
