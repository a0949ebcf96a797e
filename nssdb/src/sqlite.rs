//! Reading cert9.db / key4.db: the whole file read into memory without
//! taking any lock (so a concurrent NSS writer is never blocked), checked
//! for a consistent snapshot, then parsed by [`crate::sqlfile`]; columns
//! come from the `CREATE TABLE` text, every value is bounded before it is
//! copied.
//!
//! # Consistency without a lock
//!
//! NSS keeps its files in rollback-journal mode, where a writer changes
//! the database file only while it holds SQLite's PENDING or EXCLUSIVE
//! lock (POSIX record locks on bytes `0x40000000..0x40000200`), and every
//! commit rewrites page 1 with an incremented file change counter. One
//! attempt is:
//!
//! 1. no PENDING/EXCLUSIVE lock held (asked with `F_OFD_GETLK`, which
//!    takes no lock) and no hot journal;
//! 2. the header read: change counter `c0`;
//! 3. again no PENDING/EXCLUSIVE lock (a commit that began before step 2
//!    is then finished, or seen here);
//! 4. the whole file read;
//! 5. the counter in that copy and in a fresh read of the header equal
//!    `c0`, and still no PENDING/EXCLUSIVE lock and no hot journal.
//!
//! A commit overlapping step 4 writes page 1 (its first write) after step
//! 3 and so changes the counter read in step 5. A failed attempt is
//! retried with a growing pause for up to [`BUSY_TIMEOUT`], then
//! [`Error::Busy`]. (Not covered: a writer that spills its cache to the
//! file in the middle of a transaction during step 4 and then rolls back;
//! NSS's transactions are far smaller than SQLite's page cache.)
//!
//! A journal (`FILE-journal`) that is non-empty, starts with a non-zero
//! byte and has no writer holding a lock is hot: a writer crashed mid
//! transaction. (SQLite deletes the journal of a commit before it drops
//! its lock, so a live writer looks like that only for an instant.) It is
//! reported as [`Error::HotJournal`] once seen in [`HOT_CONFIRMATIONS`]
//! attempts in a row, never rolled back.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::db::{RawMeta, RawRow, RawTable, MAX_COLUMNS, MAX_ROWS, MAX_TOTAL, MAX_VALUE};
use crate::error::Error;
use crate::sqlfile::{self, Field, SchemaTable, SqlError, Value, HEADER_LEN};

/// How long to wait for a writer's commit (NSS writers retry for ~30 s).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// A journal is reported hot once seen so in this many attempts in a row,
/// [`HOT_PAUSE`] apart: a live writer cannot look like that for ~20 ms.
const HOT_CONFIRMATIONS: u32 = 5;
const HOT_PAUSE: Duration = Duration::from_millis(5);
/// SQLite's lock bytes (unix VFS): PENDING, RESERVED, then the SHARED range.
const PENDING_BYTE: i64 = 0x4000_0000;
const SHARED_FIRST: i64 = PENDING_BYTE + 2;
const SHARED_SIZE: i64 = 510;

/// Maps a format error to ours, naming the file.
fn to_error(file: &Path, e: SqlError) -> Error {
    let file = file.to_path_buf();
    match e {
        SqlError::NotSqlite => Error::NotSqlite { file },
        SqlError::Wal => Error::Wal { file },
        SqlError::Unsupported(detail) => Error::UnsupportedSqlite { file, detail },
        SqlError::Malformed(detail) => Error::Malformed { file, detail },
        SqlError::Schema(detail) => Error::Schema { file, detail },
        SqlError::TooLarge(detail) => Error::TooLarge { file, detail },
    }
}

fn io_error(file: &Path, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: file.to_path_buf(),
        },
        _ => Error::Io {
            file: file.to_path_buf(),
            source,
        },
    }
}

/// What other connections are doing with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// No write lock.
    None,
    /// RESERVED only: a write transaction that has not touched the file.
    Reserved,
    /// PENDING or EXCLUSIVE: a commit (or cache spill) in progress.
    Committing,
}

/// Whether another connection holds a write lock on `len` bytes at
/// `start`. `F_OFD_GETLK` asks without taking a lock, and, unlike
/// `F_GETLK`, also sees the POSIX locks of this process's other
/// connections. A file system without record locks counts as unlocked.
fn write_locked(f: &File, start: i64, len: i64) -> std::io::Result<bool> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mut lock = libc::flock {
        l_type: libc::F_RDLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let arg = nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let arg = nix::fcntl::FcntlArg::F_GETLK(&mut lock);
    match nix::fcntl::fcntl(f.as_raw_fd(), arg) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOLCK) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

fn writer(f: &File) -> std::io::Result<Writer> {
    if !write_locked(f, PENDING_BYTE, 2 + SHARED_SIZE)? {
        return Ok(Writer::None);
    }
    if write_locked(f, PENDING_BYTE, 1)? || write_locked(f, SHARED_FIRST, SHARED_SIZE)? {
        Ok(Writer::Committing)
    } else {
        Ok(Writer::Reserved)
    }
}

/// Whether `FILE-journal` holds a journal: non-empty, non-zero first byte
/// (SQLite's rule; a zeroed or truncated journal is finished).
fn journal_present(file: &Path) -> std::io::Result<bool> {
    let mut name = file.as_os_str().to_owned();
    name.push("-journal");
    let mut j = match File::open(PathBuf::from(name)) {
        Ok(j) => j,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut first = [0u8; 1];
    match j.read(&mut first) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(first[0] != 0),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Safe to read (no writer, or one that has not touched the file).
    Clear,
    /// A commit in progress.
    Committing,
    /// A journal without a writer: hot, unless it is gone by the next look.
    Hot,
}

fn state(f: &File, file: &Path) -> std::io::Result<State> {
    if writer(f)? == Writer::Committing {
        return Ok(State::Committing);
    }
    if !journal_present(file)? {
        return Ok(State::Clear);
    }
    // Asked again after seeing the journal: a writer that started in
    // between holds its lock now; one that just committed has deleted the
    // journal (before unlocking).
    Ok(match writer(f)? {
        Writer::None if journal_present(file)? => State::Hot,
        Writer::None | Writer::Reserved => State::Clear,
        Writer::Committing => State::Committing,
    })
}

enum Attempt {
    Done,
    Retry,
    Hot,
}

fn counter(header: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(header.get(24..28)?.try_into().ok()?))
}

/// One attempt at a consistent copy of `file` in `buf` (see the module
/// documentation).
fn attempt(f: &mut File, file: &Path, buf: &mut Vec<u8>) -> Result<Attempt, Error> {
    let io = |e| io_error(file, e);
    match state(f, file).map_err(io)? {
        State::Clear => {}
        State::Committing => return Ok(Attempt::Retry),
        State::Hot => return Ok(Attempt::Hot),
    }
    let mut head = [0u8; HEADER_LEN];
    match f.read_exact_at(&mut head, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::NotSqlite {
                file: file.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    }
    sqlfile::Header::parse(&head).map_err(|e| to_error(file, e))?;
    let c0 = counter(&head);
    if writer(f).map_err(io)? == Writer::Committing {
        return Ok(Attempt::Retry);
    }
    let len = f.metadata().map_err(io)?.len();
    if len > MAX_TOTAL as u64 {
        return Err(too_big(file));
    }
    // The whole file, read into reserved (not zero-filled) room.
    buf.clear();
    buf.reserve_exact(len as usize);
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.by_ref().take(len).read_to_end(buf).map_err(io)?;
    if (buf.len() as u64) < len {
        // It shrank since: a writer is at work.
        return Ok(Attempt::Retry);
    }
    f.read_exact_at(&mut head, 0).map_err(io)?;
    if counter(buf) != c0 || counter(&head) != c0 {
        return Ok(Attempt::Retry);
    }
    Ok(match state(f, file).map_err(io)? {
        State::Clear => Attempt::Done,
        State::Committing => Attempt::Retry,
        State::Hot => Attempt::Hot,
    })
}

fn too_big(file: &Path) -> Error {
    Error::TooLarge {
        file: file.to_path_buf(),
        detail: format!("the file is over {MAX_TOTAL} bytes"),
    }
}

/// A consistent copy of the whole of `file`, read without a lock.
pub(crate) fn snapshot(file: &Path) -> Result<Vec<u8>, Error> {
    let mut f = File::open(file).map_err(|e| io_error(file, e))?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let mut buf = Vec::new();
    // Consecutive attempts that saw a hot journal.
    let mut hot_seen = 0;
    loop {
        match attempt(&mut f, file, &mut buf)? {
            Attempt::Done => return Ok(buf),
            Attempt::Hot if hot_seen + 1 >= HOT_CONFIRMATIONS => {
                return Err(Error::HotJournal {
                    file: file.to_path_buf(),
                })
            }
            Attempt::Hot => hot_seen += 1,
            Attempt::Retry => hot_seen = 0,
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy {
                file: file.to_path_buf(),
            });
        }
        std::thread::sleep(if hot_seen > 0 { HOT_PAUSE } else { pause });
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Tracks the bytes of values taken from one file against [`MAX_TOTAL`].
struct Budget {
    used: usize,
}

impl Budget {
    fn take(
        &mut self,
        value: Value<'_>,
        what: &dyn Fn() -> String,
    ) -> Result<Option<Vec<u8>>, SqlError> {
        let bytes: Vec<u8> = match value {
            Value::Null => return Ok(None),
            Value::Blob(b) | Value::Text(b) => {
                if b.len() > MAX_VALUE {
                    return Err(SqlError::TooLarge(format!(
                        "{} is over {MAX_VALUE} bytes",
                        what()
                    )));
                }
                self.used = self.used.saturating_add(b.len());
                if self.used > MAX_TOTAL {
                    return Err(SqlError::TooLarge(format!(
                        "more than {MAX_TOTAL} bytes of values"
                    )));
                }
                b.to_vec()
            }
            // NSS reads every column with sqlite3_column_blob, which turns
            // numbers into their text.
            Value::Integer(i) => i.to_string().into_bytes(),
            Value::Real(r) => r.to_string().into_bytes(),
        };
        Ok(Some(bytes))
    }
}

/// The columns of `table`, from its `CREATE TABLE`.
fn columns<'s>(
    schema: &'s [SchemaTable],
    table: &str,
) -> Result<(u32, Vec<sqlfile::Column<'s>>), SqlError> {
    let t = schema
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(table))
        .ok_or_else(|| SqlError::Schema(format!("no table {table}")))?;
    let columns = sqlfile::parse_create_table(&t.sql, MAX_COLUMNS).map_err(|e| match e {
        SqlError::TooLarge(d) => SqlError::TooLarge(format!("{table} has {d}")),
        other => other,
    })?;
    Ok((t.root, columns))
}

/// Column `i` of a row: the rowid for an `INTEGER PRIMARY KEY`, NULL
/// for a column added after the row was written.
fn column_value<'p>(
    columns: &[sqlfile::Column<'_>],
    i: usize,
    fields: &[Field],
    rowid: i64,
    payload: &'p [u8],
) -> Result<Value<'p>, SqlError> {
    let Some(c) = columns.get(i) else {
        return Ok(Value::Null);
    };
    if c.rowid_alias {
        return Ok(Value::Integer(rowid));
    }
    match fields.get(i) {
        Some(f) => Ok(f.value(payload)),
        None if c.has_default => Err(SqlError::Unsupported(format!(
            "a row written before column {} and its DEFAULT were added",
            c.name
        ))),
        None => Ok(Value::Null),
    }
}

/// Which attribute columns to keep: all of them, or only those
/// [`crate::db::USED_ATTRIBUTES`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    All,
    Used,
}

impl Keep {
    fn column(self, name: &str) -> bool {
        match crate::attr::column_attribute(name) {
            None => false,
            Some(_) if self == Keep::All => true,
            Some(t) => crate::db::USED_ATTRIBUTES.contains(&t),
        }
    }
}

fn read_objects(
    db: &mut sqlfile::File<'_>,
    schema: &[SchemaTable],
    budget: &mut Budget,
    table: &str,
    keep: Keep,
) -> Result<RawTable, SqlError> {
    let (root, all) = columns(schema, table)?;
    let id_column = all
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case("id"))
        .ok_or_else(|| SqlError::Schema(format!("table {table} has no id column")))?;
    // Only attribute columns are kept: "a" + hex digits.
    let attr: Vec<usize> = (0..all.len())
        .filter(|&i| all.get(i).is_some_and(|c| keep.column(&c.name)))
        .collect();
    // Values past the last column kept are not looked at.
    let wanted = attr.iter().copied().chain([id_column]).max().unwrap_or(0) + 1;
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    db.scan_table(root, &mut |rowid, payload| {
        if rows.len() >= MAX_ROWS {
            return Err(SqlError::TooLarge(format!(
                "{table} has more than {MAX_ROWS} rows"
            )));
        }
        sqlfile::decode_record_prefix(&payload, MAX_COLUMNS + 1, wanted, &mut fields)?;
        let id = match column_value(&all, id_column, &fields, rowid, &payload)? {
            Value::Integer(i) => i,
            _ => {
                return Err(SqlError::Schema(format!(
                    "{table} has a row whose id is not an integer"
                )))
            }
        };
        let mut values = Vec::with_capacity(attr.len());
        for &i in &attr {
            let v = column_value(&all, i, &fields, rowid, &payload)?;
            let name = all.get(i).map_or("", |c| &*c.name);
            values.push(budget.take(v, &|| format!("{table} row {id} column {name}"))?);
        }
        rows.push(RawRow { id, values });
        Ok(())
    })?;
    // As `ORDER BY id` (ids are unique by schema; ties keep rowid order).
    rows.sort_by_key(|r| r.id);
    let columns = attr
        .iter()
        .filter_map(|&i| all.get(i).map(|c| c.name.clone().into_owned()))
        .collect();
    Ok(RawTable { columns, rows })
}

fn read_meta(
    db: &mut sqlfile::File<'_>,
    schema: &[SchemaTable],
    budget: &mut Budget,
) -> Result<Vec<RawMeta>, SqlError> {
    let (root, cols) = columns(schema, "metaData")?;
    let mut at = [0usize; 3];
    for (slot, needed) in at.iter_mut().zip(["id", "item1", "item2"]) {
        *slot = cols
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(needed))
            .ok_or_else(|| SqlError::Schema(format!("table metaData has no column {needed}")))?;
    }
    let mut out = Vec::new();
    let mut fields = Vec::new();
    db.scan_table(root, &mut |rowid, payload| {
        if out.len() >= MAX_ROWS {
            return Err(SqlError::TooLarge(format!(
                "metaData has more than {MAX_ROWS} rows"
            )));
        }
        sqlfile::decode_record(&payload, MAX_COLUMNS + 1, &mut fields)?;
        let mut get = |i: usize, what: &str| -> Result<Option<Vec<u8>>, SqlError> {
            let v = column_value(&cols, i, &fields, rowid, &payload)?;
            budget.take(v, &|| format!("metaData {what}"))
        };
        let [id, item1, item2] = at;
        let id = get(id, "id")?.unwrap_or_default();
        let item1 = get(item1, "item1")?;
        let item2 = get(item2, "item2")?;
        out.push(RawMeta { id, item1, item2 });
        Ok(())
    })?;
    Ok(out)
}

/// Parses the bytes of a cert9.db: its `nssPublic`.
pub(crate) fn parse_cert_db(file: &Path, data: &[u8]) -> Result<RawTable, Error> {
    parse_cert(file, data, Keep::All)
}

/// Parses the bytes of a key4.db: its `nssPrivate` and `metaData`.
pub(crate) fn parse_key_db(file: &Path, data: &[u8]) -> Result<(RawTable, Vec<RawMeta>), Error> {
    parse_key(file, data, Keep::All)
}

fn parse_cert(file: &Path, data: &[u8], keep: Keep) -> Result<RawTable, Error> {
    let run = || {
        let mut db = sqlfile::File::new(data)?;
        let schema = db.schema()?;
        read_objects(&mut db, &schema, &mut Budget { used: 0 }, "nssPublic", keep)
    };
    run().map_err(|e| to_error(file, e))
}

fn parse_key(file: &Path, data: &[u8], keep: Keep) -> Result<(RawTable, Vec<RawMeta>), Error> {
    let run = || {
        let mut db = sqlfile::File::new(data)?;
        let schema = db.schema()?;
        let mut budget = Budget { used: 0 };
        let objects = read_objects(&mut db, &schema, &mut budget, "nssPrivate", keep)?;
        let meta = read_meta(&mut db, &schema, &mut budget)?;
        Ok((objects, meta))
    };
    run().map_err(|e| to_error(file, e))
}

/// Reads cert9.db's `nssPublic`, keeping the attributes the crate uses.
pub(crate) fn read_cert_db(file: &Path) -> Result<RawTable, Error> {
    parse_cert(file, &snapshot(file)?, Keep::Used)
}

/// Reads key4.db's `nssPrivate` and `metaData`, keeping the attributes
/// the crate uses.
pub(crate) fn read_key_db(file: &Path) -> Result<(RawTable, Vec<RawMeta>), Error> {
    parse_key(file, &snapshot(file)?, Keep::Used)
}
