//! Reading cert9.db / key4.db: read-only, with a busy timeout, each file
//! in one read transaction, columns discovered at run time, every value
//! fetched as bytes and bounded before it is copied.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{ffi, Connection, OpenFlags};

use crate::db::{RawMeta, RawRow, RawTable, MAX_COLUMNS, MAX_ROWS, MAX_TOTAL, MAX_VALUE};
use crate::error::Error;

/// How long to wait for a writer's commit (NSS writers retry for ~30 s).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Maps an SQLite error to ours, naming the file.
fn map_err(file: &Path, e: rusqlite::Error) -> Error {
    let file = file.to_path_buf();
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == ffi::SQLITE_READONLY_ROLLBACK {
            return Error::HotJournal { file };
        }
        match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return Error::Busy { file }
            }
            rusqlite::ErrorCode::NotADatabase => return Error::NotSqlite { file },
            _ => {
                return Error::Sqlite {
                    file,
                    message: msg.clone().unwrap_or_else(|| f.to_string()),
                };
            }
        }
    }
    Error::Sqlite {
        file,
        message: e.to_string(),
    }
}

/// Checks the file exists and starts like an SQLite 3 database.
fn check_header(file: &Path) -> Result<(), Error> {
    let mut f = std::fs::File::open(file).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: file.to_path_buf(),
        },
        _ => Error::Io {
            file: file.to_path_buf(),
            source,
        },
    })?;
    let mut header = [0u8; 16];
    match f.read_exact(&mut header) {
        Ok(()) if &header == SQLITE_MAGIC => Ok(()),
        Ok(()) => Err(Error::NotSqlite {
            file: file.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::NotSqlite {
            file: file.to_path_buf(),
        }),
        Err(source) => Err(Error::Io {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// Tracks the bytes read from one file against [`MAX_TOTAL`].
struct Budget<'a> {
    file: &'a Path,
    used: usize,
}

impl Budget<'_> {
    fn take(
        &mut self,
        value: ValueRef<'_>,
        what: &dyn Fn() -> String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let bytes: Vec<u8> = match value {
            ValueRef::Null => return Ok(None),
            ValueRef::Blob(b) | ValueRef::Text(b) => {
                if b.len() > MAX_VALUE {
                    return Err(Error::TooLarge {
                        file: self.file.to_path_buf(),
                        detail: format!("{} is over {MAX_VALUE} bytes", what()),
                    });
                }
                self.charge(b.len())?;
                b.to_vec()
            }
            // NSS reads every column with sqlite3_column_blob, which turns
            // numbers into their text.
            ValueRef::Integer(i) => i.to_string().into_bytes(),
            ValueRef::Real(r) => r.to_string().into_bytes(),
        };
        Ok(Some(bytes))
    }

    fn charge(&mut self, n: usize) -> Result<(), Error> {
        self.used = self.used.saturating_add(n);
        if self.used > MAX_TOTAL {
            return Err(Error::TooLarge {
                file: self.file.to_path_buf(),
                detail: format!("more than {MAX_TOTAL} bytes of values"),
            });
        }
        Ok(())
    }
}

/// Opens `file` read-only (never `immutable`/`nolock`, never changing the
/// journal mode) and runs `read` inside one read transaction.
fn with_snapshot<T>(
    file: &Path,
    read: impl FnOnce(&Connection, &mut Budget<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    check_header(file)?;
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| map_err(file, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| map_err(file, e))?;
    conn.execute_batch("BEGIN").map_err(|e| map_err(file, e))?;
    let mut budget = Budget { file, used: 0 };
    let result = read(&conn, &mut budget);
    // Ending a read transaction cannot lose anything; close regardless.
    let end = conn.execute_batch("COMMIT").map_err(|e| map_err(file, e));
    drop(conn);
    let value = result?;
    end?;
    Ok(value)
}

/// The column names of `table` (PRAGMA table_info), empty if it is missing.
fn columns(conn: &Connection, file: &Path, table: &str) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .map_err(|e| map_err(file, e))?;
    let mut rows = stmt.query([]).map_err(|e| map_err(file, e))?;
    let mut names = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map_err(file, e))? {
        let name = match row.get_ref(1).map_err(|e| map_err(file, e))? {
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => continue,
        };
        if names.len() > MAX_COLUMNS {
            return Err(Error::TooLarge {
                file: file.to_path_buf(),
                detail: format!("{table} has more than {MAX_COLUMNS} columns"),
            });
        }
        names.push(name);
    }
    Ok(names)
}

fn read_objects(
    conn: &Connection,
    budget: &mut Budget<'_>,
    table: &str,
) -> Result<RawTable, Error> {
    let file = budget.file;
    let all = columns(conn, file, table)?;
    if all.is_empty() {
        return Err(Error::Schema {
            file: file.to_path_buf(),
            detail: format!("no table {table}"),
        });
    }
    if !all.iter().any(|c| c.eq_ignore_ascii_case("id")) {
        return Err(Error::Schema {
            file: file.to_path_buf(),
            detail: format!("table {table} has no id column"),
        });
    }
    // Only attribute columns are selected; their names are "a" + hex
    // digits, so quoting them is safe.
    let attr_columns: Vec<String> = all
        .into_iter()
        .filter(|c| crate::attr::column_attribute(c).is_some())
        .collect();
    let mut select = String::from("SELECT id");
    for c in &attr_columns {
        select.push_str(", \"");
        select.push_str(c);
        select.push('"');
    }
    select.push_str(&format!(" FROM {table} ORDER BY id"));
    let mut stmt = conn.prepare(&select).map_err(|e| map_err(file, e))?;
    let mut rows = stmt.query([]).map_err(|e| map_err(file, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map_err(file, e))? {
        if out.len() >= MAX_ROWS {
            return Err(Error::TooLarge {
                file: file.to_path_buf(),
                detail: format!("{table} has more than {MAX_ROWS} rows"),
            });
        }
        let id = match row.get_ref(0).map_err(|e| map_err(file, e))? {
            ValueRef::Integer(i) => i,
            _ => {
                return Err(Error::Schema {
                    file: file.to_path_buf(),
                    detail: format!("{table} has a row whose id is not an integer"),
                })
            }
        };
        let mut values = Vec::with_capacity(attr_columns.len());
        for (i, name) in attr_columns.iter().enumerate() {
            let v = row.get_ref(i + 1).map_err(|e| map_err(file, e))?;
            values.push(budget.take(v, &|| format!("{table} row {id} column {name}"))?);
        }
        out.push(RawRow { id, values });
    }
    Ok(RawTable {
        columns: attr_columns,
        rows: out,
    })
}

fn read_meta(conn: &Connection, budget: &mut Budget<'_>) -> Result<Vec<RawMeta>, Error> {
    let file = budget.file;
    let cols = columns(conn, file, "metaData")?;
    for needed in ["id", "item1", "item2"] {
        if !cols.iter().any(|c| c.eq_ignore_ascii_case(needed)) {
            return Err(Error::Schema {
                file: file.to_path_buf(),
                detail: format!("table metaData has no column {needed}"),
            });
        }
    }
    let mut stmt = conn
        .prepare("SELECT id, item1, item2 FROM metaData")
        .map_err(|e| map_err(file, e))?;
    let mut rows = stmt.query([]).map_err(|e| map_err(file, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| map_err(file, e))? {
        if out.len() >= MAX_ROWS {
            return Err(Error::TooLarge {
                file: file.to_path_buf(),
                detail: format!("metaData has more than {MAX_ROWS} rows"),
            });
        }
        let mut get = |i: usize, what: &str| -> Result<Option<Vec<u8>>, Error> {
            let v = row.get_ref(i).map_err(|e| map_err(file, e))?;
            budget.take(v, &|| format!("metaData {what}"))
        };
        let id = get(0, "id")?.unwrap_or_default();
        let item1 = get(1, "item1")?;
        let item2 = get(2, "item2")?;
        out.push(RawMeta { id, item1, item2 });
    }
    Ok(out)
}

/// Reads cert9.db's `nssPublic`.
pub(crate) fn read_cert_db(file: &Path) -> Result<RawTable, Error> {
    with_snapshot(file, |conn, budget| read_objects(conn, budget, "nssPublic"))
}

/// Reads key4.db's `nssPrivate` and `metaData`.
pub(crate) fn read_key_db(file: &Path) -> Result<(RawTable, Vec<RawMeta>), Error> {
    with_snapshot(file, |conn, budget| {
        let objects = read_objects(conn, budget, "nssPrivate")?;
        let meta = read_meta(conn, budget)?;
        Ok((objects, meta))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.db");
        assert!(matches!(check_header(&f), Err(Error::NotFound { .. })));
        std::fs::write(&f, b"short").unwrap();
        assert!(matches!(check_header(&f), Err(Error::NotSqlite { .. })));
        std::fs::write(&f, [0u8; 100]).unwrap();
        assert!(matches!(check_header(&f), Err(Error::NotSqlite { .. })));
    }

    #[test]
    fn reads_a_hand_made_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key4.db");
        {
            let c = Connection::open(&f).unwrap();
            c.execute_batch(
                "CREATE TABLE nssPrivate (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a3, weird);
                 CREATE TABLE metaData (id PRIMARY KEY UNIQUE ON CONFLICT REPLACE, item1, item2);
                 INSERT INTO nssPrivate VALUES (7, X'00000003', 'text label', 1);
                 INSERT INTO nssPrivate VALUES (5, NULL, 42, NULL);
                 INSERT INTO metaData VALUES ('password', X'01', X'02');",
            )
            .unwrap();
        }
        let (t, m) = read_key_db(&f).unwrap();
        assert_eq!(t.columns, ["a0", "a3"]);
        assert_eq!(
            t.rows[0],
            RawRow {
                id: 5,
                values: vec![None, Some(b"42".to_vec())]
            }
        );
        assert_eq!(t.rows[1].values[1].as_deref(), Some(&b"text label"[..]));
        assert_eq!(
            m,
            [RawMeta {
                id: b"password".to_vec(),
                item1: Some(vec![1]),
                item2: Some(vec![2])
            }]
        );
        // No nssPublic table in this file.
        assert!(
            matches!(read_cert_db(&f), Err(Error::Schema { detail, .. }) if detail == "no table nssPublic")
        );
        // A hot journal.
        std::fs::write(
            dir.path().join("key4.db-journal"),
            [0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7, 0, 0, 0, 1],
        )
        .unwrap();
        let e = read_key_db(&f).unwrap_err();
        assert!(matches!(e, Error::HotJournal { .. }), "{e}");
    }
}
