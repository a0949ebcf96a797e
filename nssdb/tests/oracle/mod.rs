//! The test oracle: what SQLite itself (the system libsqlite3, through
//! rusqlite) reads from a database, in the shape `nssdb::raw` returns.
#![allow(dead_code)]

use std::path::Path;

use nssdb::raw::{column_attribute, RawMeta, RawRow, RawTable};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// A value as NSS's `sqlite3_column_blob` sees it: numbers as their text.
fn bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(r) => Some(r.to_string().into_bytes()),
    }
}

fn open(file: &Path) -> Connection {
    Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// `table`'s attribute columns and rows, `ORDER BY id`.
pub(crate) fn objects(file: &Path, table: &str) -> RawTable {
    let c = open(file);
    let mut stmt = c.prepare(&format!("PRAGMA table_info({table})")).unwrap();
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .map(Result::unwrap)
        .filter(|c| column_attribute(c).is_some())
        .collect();
    let mut select = String::from("SELECT id");
    for col in &columns {
        select.push_str(&format!(", \"{col}\""));
    }
    select.push_str(&format!(" FROM {table} ORDER BY id"));
    let mut stmt = c.prepare(&select).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let id = row.get::<_, i64>(0).unwrap();
        let values = (0..columns.len())
            .map(|i| bytes(row.get_ref(i + 1).unwrap()))
            .collect();
        out.push(RawRow { id, values });
    }
    RawTable { columns, rows: out }
}

/// `metaData` in table order.
pub(crate) fn meta(file: &Path) -> Vec<RawMeta> {
    let c = open(file);
    let mut stmt = c.prepare("SELECT id, item1, item2 FROM metaData").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(RawMeta {
            id: bytes(row.get_ref(0).unwrap()).unwrap_or_default(),
            item1: bytes(row.get_ref(1).unwrap()),
            item2: bytes(row.get_ref(2).unwrap()),
        });
    }
    out
}

/// Checks that nssdb's own reader sees in cert9.db and key4.db of `dir`
/// exactly what SQLite does.
pub(crate) fn reads_like_sqlite(dir: &Path) {
    let cert9 = dir.join("cert9.db");
    let key4 = dir.join("key4.db");
    let public = nssdb::raw::parse_cert_db(&cert9, &std::fs::read(&cert9).unwrap()).unwrap();
    assert_eq!(public, objects(&cert9, "nssPublic"), "{}", cert9.display());
    let (private, m) = nssdb::raw::parse_key_db(&key4, &std::fs::read(&key4).unwrap()).unwrap();
    assert_eq!(private, objects(&key4, "nssPrivate"), "{}", key4.display());
    assert_eq!(m, meta(&key4), "{}", key4.display());
}
