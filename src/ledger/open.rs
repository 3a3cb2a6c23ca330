//! Opening a ledger file: creation, identification and schema version.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tracing::debug;

use super::schema::{self, Contents, SCHEMA_VERSION};
use super::{DEFAULT_BUSY_TIMEOUT, Ledger, LedgerError, Location, map_sql_error};

/// Whether `open_file` may create a missing file and an empty schema.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Existing,
    ReadOnly,
}

impl Ledger {
    /// Opens the ledger at `path`, creating the file and its schema if
    /// missing.
    ///
    /// The database uses WAL journaling, `synchronous = FULL` and a busy
    /// timeout of [`DEFAULT_BUSY_TIMEOUT`]. A file that is not a ledger, or
    /// one with a newer schema version, gives an error and stays unchanged.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        open_file(path, Mode::Create)
    }

    /// Opens an existing ledger for commands that only read; a missing file
    /// gives [`LedgerError::NotFound`] and nothing is created.
    pub fn open_existing(path: &Path) -> Result<Self, LedgerError> {
        match path.try_exists() {
            Ok(true) => open_file(path, Mode::Existing),
            _ => Err(LedgerError::NotFound {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Opens an existing ledger read-only, such as the copy in an export
    /// bundle: nothing is written, not even a schema upgrade, so a schema 1
    /// ledger gives [`LedgerError::NotALedger`].
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        match path.try_exists() {
            Ok(true) => open_file(path, Mode::ReadOnly),
            _ => Err(LedgerError::NotFound {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Sets how long a write waits for another connection's lock.
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<(), LedgerError> {
        self.conn
            .busy_timeout(timeout)
            .map_err(|source| self.sql_error("set busy timeout", source))?;
        self.at.busy_timeout = timeout;
        Ok(())
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.at.path
    }
}

fn open_file(path: &Path, mode: Mode) -> Result<Ledger, LedgerError> {
    check_directory(path)?;
    if mode == Mode::Create && !path.exists() {
        create_atomically(path)?;
    }

    let mut flags = match mode {
        Mode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Mode::Create | Mode::Existing => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if mode == Mode::Create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let fail = |operation, source| map_sql_error(path, DEFAULT_BUSY_TIMEOUT, operation, source);
    let mut conn =
        Connection::open_with_flags(sqlite_path(path), flags).map_err(|e| fail("open", e))?;
    conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)
        .map_err(|e| fail("set busy timeout", e))?;

    // Identify the file before anything writes to it, so that a foreign or
    // newer database is left exactly as it was.
    let mut contents = schema::inspect(&conn).map_err(|e| fail("read schema", e))?;
    if contents == Contents::Empty && mode == Mode::Create {
        contents = create_schema(&mut conn).map_err(|e| fail("create schema", e))?;
    }
    let at = Location {
        path: path.to_path_buf(),
        busy_timeout: DEFAULT_BUSY_TIMEOUT,
    };
    if contents == Contents::Ledger(1) && mode != Mode::ReadOnly {
        contents = super::upgrade::upgrade(&mut conn, &at)?;
    }
    check_contents(path, contents)?;

    if mode == Mode::ReadOnly {
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(|e| fail("set pragmas", e))?;
        debug!(path = %path.display(), "opened ledger read-only");
        return Ok(Ledger { conn, at });
    }
    // Journal mode is persistent, so this writes only on the first open.
    // FULL makes each commit durable before it returns, which a record
    // must be before its output file is released (docs/ledger.md).
    let journal: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| fail("enable WAL", e))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(|e| fail("set pragmas", e))?;
    debug!(path = %path.display(), journal, "opened ledger");

    Ok(Ledger { conn, at })
}

/// Returns `path` made absolute, for SQLite. This build of SQLite reads a
/// file name that starts with `file:` as a URI, so a relative path such
/// as `file:home/ledger.sqlite` would name another file.
pub(crate) fn sqlite_path(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Rejects a path whose parent directory does not exist, because SQLite's
/// own message for it ("unable to open database file") names no fix.
fn check_directory(path: &Path) -> Result<(), LedgerError> {
    let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if directory.is_dir() {
        return Ok(());
    }
    Err(LedgerError::MissingDirectory {
        path: path.to_path_buf(),
        directory: directory.to_path_buf(),
    })
}

/// Creates a new ledger with its schema under a temporary name beside
/// `path`, then links it into place, so that no process ever sees `path`
/// empty or half created, even when this one is killed. When another
/// process created `path` first, its file is kept.
fn create_atomically(path: &Path) -> Result<(), LedgerError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let staged = tempfile::Builder::new()
        .prefix(".ledger-")
        .suffix(".sqlite.part")
        .tempfile_in(directory)
        .map_err(io)?
        .into_temp_path();
    let fail = |operation, source| map_sql_error(path, DEFAULT_BUSY_TIMEOUT, operation, source);
    let mut conn = Connection::open(&staged).map_err(|e| fail("create ledger", e))?;
    create_schema(&mut conn).map_err(|e| fail("create schema", e))?;
    let _journal: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| fail("enable WAL", e))?;
    conn.close().map_err(|(_, e)| fail("create ledger", e))?;
    std::fs::File::open(&staged)
        .and_then(|file| file.sync_all())
        .map_err(io)?;
    match std::fs::hard_link(&staged, path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    debug!(path = %path.display(), "created ledger");
    Ok(())
}

/// Creates the schema unless another process did so first. The check is
/// repeated under the write lock because two processes may open the same
/// new file at once.
fn create_schema(conn: &mut Connection) -> rusqlite::Result<Contents> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let contents = schema::inspect(&tx)?;
    if contents != Contents::Empty {
        return Ok(contents);
    }
    schema::create(&tx)?;
    tx.commit()?;
    debug!(version = SCHEMA_VERSION, "created ledger schema");
    Ok(Contents::Ledger(SCHEMA_VERSION))
}

fn check_contents(path: &Path, contents: Contents) -> Result<(), LedgerError> {
    let not_a_ledger = |reason: String| LedgerError::NotALedger {
        path: path.to_path_buf(),
        reason,
    };
    match contents {
        Contents::Ledger(SCHEMA_VERSION) => Ok(()),
        Contents::Ledger(found) if found > SCHEMA_VERSION => Err(LedgerError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Contents::Ledger(found) => Err(not_a_ledger(format!("unknown schema version {found}"))),
        Contents::Empty => Err(not_a_ledger("the database is empty".into())),
        Contents::Foreign(reason) => Err(not_a_ledger(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::{fill, temp_ledger};

    fn pragma_text(conn: &Connection, name: &str) -> String {
        conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|value| format!("{value:?}"))
            .expect("read pragma")
    }

    #[test]
    fn open_creates_identified_wal_database() {
        let (_dir, path, _ledger) = temp_ledger();
        let conn = Connection::open(&path).expect("open with rusqlite");

        assert_eq!(pragma_text(&conn, "journal_mode"), "Text(\"wal\")");
        assert_eq!(pragma_text(&conn, "user_version"), "Integer(2)");
        let application_id: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .expect("read application_id");
        assert_eq!(application_id, schema::APPLICATION_ID);
    }

    #[test]
    fn reopen_keeps_records() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 3);
        drop(ledger);

        let reopened = Ledger::open_existing(&path).expect("reopen ledger");
        assert_eq!(reopened.len().expect("count"), 3);
        let again = Ledger::open(&path).expect("open again");
        assert_eq!(again.len().expect("count"), 3);
    }

    #[test]
    fn open_existing_missing_file_is_not_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");

        let error = Ledger::open_existing(&path).expect_err("missing file must fail");
        assert!(matches!(error, LedgerError::NotFound { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("no ledger at {}", path.display()))
        );
        assert!(!path.exists(), "open_existing must not create the file");
    }

    #[test]
    fn open_missing_directory_names_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("no-such-home");
        let path = missing.join("ledger.sqlite");

        let error = Ledger::open(&path).expect_err("missing directory must fail");
        assert!(
            matches!(error, LedgerError::MissingDirectory { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(&missing.display().to_string()));
        assert!(!missing.exists());
    }

    #[test]
    fn open_text_file_is_not_sqlite_and_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        let content =
            b"this is a text file, long enough to fill an SQLite header page.\n".repeat(20);
        std::fs::write(&path, &content).expect("write text file");

        for result in [Ledger::open(&path), Ledger::open_existing(&path)] {
            let error = result.expect_err("text file must fail");
            assert!(matches!(error, LedgerError::NotSqlite { .. }), "{error:?}");
            assert!(error.to_string().contains(&path.display().to_string()));
        }
        assert_eq!(std::fs::read(&path).expect("read back"), content);
    }

    #[test]
    fn open_foreign_database_is_rejected_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        let conn = Connection::open(&path).expect("create foreign database");
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);")
            .expect("create table");
        drop(conn);
        let before = std::fs::read(&path).expect("read foreign file");

        let error = Ledger::open(&path).expect_err("foreign database must fail");
        assert!(matches!(error, LedgerError::NotALedger { .. }), "{error:?}");
        assert!(error.to_string().contains("not an mmgen ledger"));
        assert_eq!(std::fs::read(&path).expect("read back"), before);
        assert!(!dir.path().join("ledger.sqlite-wal").exists());
    }

    #[test]
    fn open_newer_schema_is_rejected() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        drop(ledger);
        let conn = Connection::open(&path).expect("open with rusqlite");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump version");
        drop(conn);

        let error = Ledger::open(&path).expect_err("newer schema must fail");
        match error {
            LedgerError::NewerSchema {
                found, supported, ..
            } => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        let conn = Connection::open(&path).expect("reopen with rusqlite");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
            .expect("count rows");
        assert_eq!(count, 1);
    }

    #[test]
    fn open_empty_file_existing_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        std::fs::write(&path, b"").expect("create empty file");

        let error = Ledger::open_existing(&path).expect_err("empty file must fail");
        assert!(matches!(error, LedgerError::NotALedger { .. }), "{error:?}");
        let created = Ledger::open(&path).expect("open creates the schema");
        assert_eq!(created.len().expect("count"), 0);
    }

    #[test]
    fn concurrent_first_opens_share_one_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");

        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Ledger::open(&path).map(|_| ()))
            })
            .collect();
        for handle in handles {
            let result = handle.join().expect("thread panicked");
            assert!(result.is_ok(), "{result:?}");
        }
        assert!(Ledger::open_existing(&path).is_ok());
    }
}
