//! nssdb's own SQLite file reader against SQLite itself (the system
//! libsqlite3 through rusqlite, and the `sqlite3` shell for reserved
//! bytes): databases with NSS's schema, many rows, overflow payloads,
//! multi-level B-trees, every page size from 512 to 65536, vacuumed and
//! not, must read identically; a concurrent writer is never blocked and
//! its commits are never seen half-done; WAL files and writers mid-commit
//! are handled as documented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nssdb::raw::{parse_cert_db, parse_key_db};
use nssdb::{Database, Error};
use proptest::prelude::*;
use rusqlite::{params, Connection};

mod oracle;

/// One stored value.
#[derive(Debug, Clone)]
enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl rusqlite::ToSql for V {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(ToSqlOutput::Owned(match self {
            V::Null => Value::Null,
            V::Int(i) => Value::Integer(*i),
            V::Real(r) => Value::Real(*r),
            V::Text(t) => Value::Text(t.clone()),
            V::Blob(b) => Value::Blob(b.clone()),
        }))
    }
}

/// NSS's schema, cut down: the `id` column, attribute columns, a column
/// that is no attribute, and the indexes NSS makes.
const SCHEMA: &str = "
    CREATE TABLE nssPublic (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a3, a11, other, a102);
    CREATE INDEX label ON nssPublic (a3);
    CREATE TABLE nssPrivate (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a3, a11, other, a102);
    CREATE INDEX ckaid ON nssPrivate (a102);
    CREATE TABLE metaData (id PRIMARY KEY UNIQUE ON CONFLICT REPLACE, item1, item2);";

/// How a test database is made.
#[derive(Debug, Clone)]
struct Spec {
    page_size: u32,
    rows: Vec<[V; 5]>,
    /// Rows deleted afterwards (every n-th), leaving free pages.
    delete_every: usize,
    vacuum: bool,
}

/// Makes `dir/cert9.db` and `dir/key4.db` from `spec` (the same rows in
/// both object tables, the first values also as metaData).
fn make(dir: &Path, spec: &Spec) {
    for name in ["cert9.db", "key4.db"] {
        let c = Connection::open(dir.join(name)).unwrap();
        c.execute_batch(&format!(
            "PRAGMA page_size = {}; PRAGMA synchronous = OFF;",
            spec.page_size
        ))
        .unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch("BEGIN").unwrap();
        let half = spec.rows.len() / 2;
        for (i, row) in spec.rows.iter().enumerate() {
            if i == half {
                // Rows written before the column existed read it as NULL.
                c.execute_batch(
                    "ALTER TABLE nssPublic ADD COLUMN a181; ALTER TABLE nssPrivate ADD COLUMN a181;",
                )
                .unwrap();
            }
            let id = 0x1000_0000 + (i as i64 * 7919) % 100_003;
            for table in ["nssPublic", "nssPrivate"] {
                let sql = if i >= half {
                    format!("INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?2)")
                } else {
                    format!("INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                };
                c.prepare(&sql)
                    .unwrap()
                    .execute(params![id, row[0], row[1], row[2], row[3], row[4]])
                    .unwrap();
            }
            c.prepare("INSERT INTO metaData VALUES (?1, ?2, ?3)")
                .unwrap()
                .execute(params![format!("sig_key_{i:08x}"), row[2], row[4]])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
        if spec.delete_every > 0 {
            for table in ["nssPublic", "nssPrivate", "metaData"] {
                c.execute(
                    &format!("DELETE FROM {table} WHERE rowid % ?1 = 0"),
                    [spec.delete_every as i64],
                )
                .unwrap();
            }
        }
        if spec.vacuum {
            c.execute_batch("VACUUM").unwrap();
        }
    }
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        2 => Just(V::Null),
        2 => any::<i64>().prop_map(V::Int),
        1 => (-1e300f64..1e300).prop_map(V::Real),
        2 => "[ -~]{0,300}".prop_map(V::Text),
        4 => proptest::collection::vec(any::<u8>(), 0..600).prop_map(V::Blob),
        // Overflow chains of several pages.
        1 => (0usize..70_000, any::<u8>()).prop_map(|(n, b)| V::Blob((0..n).map(|i| b ^ (i as u8)).collect())),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![
            Just(512u32),
            Just(1024),
            Just(2048),
            Just(4096),
            Just(8192),
            Just(16384),
            Just(32768),
            Just(65536)
        ],
        proptest::collection::vec(
            (value(), value(), value(), value(), value())
                .prop_map(|(a, b, c, d, e)| [a, b, c, d, e]),
            0..40,
        ),
        prop_oneof![Just(0usize), 2usize..6],
        any::<bool>(),
    )
        .prop_map(|(page_size, rows, delete_every, vacuum)| Spec {
            page_size,
            rows,
            delete_every,
            vacuum,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever SQLite wrote, nssdb reads what SQLite reads.
    #[test]
    fn reads_what_sqlite_reads(spec in spec()) {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), &spec);
        oracle::reads_like_sqlite(dir.path());
    }
}

fn blob(n: usize, seed: u8) -> V {
    V::Blob((0..n).map(|i| seed.wrapping_add(i as u8)).collect())
}

/// Many rows: table B-trees three and more levels deep at 512-byte pages.
#[test]
fn multi_level_btrees_every_page_size() {
    let rows: Vec<[V; 5]> = (0..3000)
        .map(|i| {
            [
                V::Int(i),
                V::Text(format!("cert{i}")),
                blob(
                    if i % 97 == 0 {
                        20_000
                    } else {
                        40 + (i as usize % 200)
                    },
                    i as u8,
                ),
                V::Null,
                blob(20, 7),
            ]
        })
        .collect();
    for page_size in [512u32, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
        for vacuum in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            make(
                dir.path(),
                &Spec {
                    page_size,
                    rows: rows.clone(),
                    delete_every: 3,
                    vacuum,
                },
            );
            oracle::reads_like_sqlite(dir.path());
            let key4 = dir.path().join("key4.db");
            let (t, m) = parse_key_db(&key4, &std::fs::read(&key4).unwrap()).unwrap();
            assert_eq!(t.rows.len(), 2000, "3000 rows less every third");
            assert_eq!(m.len(), 2000);
            assert_eq!(t.columns, ["a0", "a3", "a11", "a102", "a181"]);
        }
    }
}

/// Reserved bytes at the end of every page (set with the sqlite3 shell).
#[test]
fn reserved_bytes_per_page() {
    let sqlite3 = Command::new("sh")
        .args(["-c", "command -v sqlite3"])
        .output()
        .unwrap();
    assert!(
        sqlite3.status.success(),
        "sqlite3 not found: apt-get install sqlite3"
    );
    let rows: Vec<[V; 5]> = (0..300)
        .map(|i| {
            [
                V::Int(i),
                V::Null,
                blob(if i % 10 == 0 { 3000 } else { 100 }, 3),
                V::Null,
                V::Null,
            ]
        })
        .collect();
    for (page_size, reserve) in [(512u32, 32u8), (1024, 255), (4096, 40), (65536, 1)] {
        let dir = tempfile::tempdir().unwrap();
        make(
            dir.path(),
            &Spec {
                page_size,
                rows: rows.clone(),
                delete_every: 0,
                vacuum: false,
            },
        );
        for name in ["cert9.db", "key4.db"] {
            let f = dir.path().join(name);
            let out = Command::new("sqlite3")
                .arg(&f)
                .arg(format!(".filectrl reserve_bytes {reserve}"))
                .arg("VACUUM;")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(std::fs::read(&f).unwrap()[20], reserve, "{name}");
        }
        oracle::reads_like_sqlite(dir.path());
    }
}

/// A hand-written table with a rowid alias, quoted names, comments and
/// a column with a type: values as SQLite gives them.
#[test]
fn schema_text_variants() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cert9.db", "key4.db"] {
        let c = Connection::open(dir.path().join(name)).unwrap();
        c.execute_batch(
            "CREATE TABLE \"nssPublic\" ( -- a comment
                 id INTEGER PRIMARY KEY, [a0] BLOB NOT NULL DEFAULT x'00', `a3` /* c */ ,
                 \"a11\" VARCHAR(10, 2), a102 CHECK (length(a102) > 0), UNIQUE (a0, a3));
             CREATE TABLE NSSPRIVATE (a0, ID, a3, PRIMARY KEY (id));
             CREATE TABLE metaData (id PRIMARY KEY UNIQUE ON CONFLICT REPLACE, item1, item2);
             INSERT INTO nssPublic VALUES (5, x'01', 'x', 1.5, x'aa');
             INSERT INTO nssPublic (a0, a3, a102) VALUES (x'02', NULL, 'z');
             INSERT INTO nssPrivate VALUES (x'03', 9, 'y');
             INSERT INTO metaData VALUES ('password', x'01', NULL);",
        )
        .unwrap();
    }
    oracle::reads_like_sqlite(dir.path());
    let f = dir.path().join("cert9.db");
    let t = parse_cert_db(&f, &std::fs::read(&f).unwrap()).unwrap();
    assert_eq!(t.columns, ["a0", "a3", "a11", "a102"]);
    // The rowid alias: id 6 was given by SQLite.
    assert_eq!(t.rows[1].id, 6);
    assert_eq!(t.rows[0].values[2].as_deref(), Some(&b"1.5"[..]));
}

/// A WAL database is refused, saying so.
#[test]
fn wal_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    make(
        dir.path(),
        &Spec {
            page_size: 4096,
            rows: vec![[V::Int(1), V::Null, V::Null, V::Null, V::Null]],
            delete_every: 0,
            vacuum: false,
        },
    );
    let c = Connection::open(dir.path().join("cert9.db")).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(c);
    match Database::open(&dir.path().display().to_string()) {
        Err(e @ Error::Wal { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("cert9.db") && msg.contains("WAL"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

fn nss_like(dir: &Path, rows: usize) {
    let rows: Vec<[V; 5]> = (0..rows)
        .map(|i| {
            [
                V::Blob(vec![0, 0, 0, 0]),
                V::Null,
                blob(300, i as u8),
                V::Null,
                V::Null,
            ]
        })
        .collect();
    make(
        dir,
        &Spec {
            page_size: 1024,
            rows,
            delete_every: 0,
            vacuum: false,
        },
    );
}

/// A writer that holds RESERVED (mid-transaction, journal written, file
/// untouched) does not stop a read, which sees the committed state; one
/// that holds EXCLUSIVE makes the read wait until it commits.
#[test]
fn live_writers_reserved_and_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    nss_like(dir.path(), 50);
    let spec = dir.path().display().to_string();
    let key4 = dir.path().join("key4.db");
    let before = oracle::objects(&key4, "nssPrivate");

    let w = Connection::open(&key4).unwrap();
    w.execute_batch("BEGIN IMMEDIATE; UPDATE nssPrivate SET a11 = x'ee';")
        .unwrap();
    assert!(dir.path().join("key4.db-journal").exists());
    Database::open(&spec).unwrap();
    let (t, _) = parse_key_db(&key4, &nssdb::raw::snapshot(&key4).unwrap()).unwrap();
    assert_eq!(t, before, "the uncommitted update is not seen");
    w.execute_batch("COMMIT").unwrap();

    // EXCLUSIVE: the reader waits, then reads the committed state.
    let w = std::thread::spawn(move || {
        w.execute_batch("BEGIN EXCLUSIVE; UPDATE nssPrivate SET a3 = x'01';")
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        w.execute_batch("COMMIT").unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let bytes = nssdb::raw::snapshot(&key4).unwrap();
    let waited = start.elapsed();
    w.join().unwrap();
    assert!(
        waited >= Duration::from_millis(150),
        "did not wait: {waited:?}"
    );
    let (t, _) = parse_key_db(&key4, &bytes).unwrap();
    assert_eq!(t, oracle::objects(&key4, "nssPrivate"));
    assert!(t
        .rows
        .iter()
        .all(|r| r.values[2].as_deref() == Some(&[0xee][..])
            && r.values[1].as_deref() == Some(&[1][..])));
}

/// A writer with no busy timeout commits again and again while nssdb
/// reads in a loop: it never gets SQLITE_BUSY (nssdb takes no lock), and
/// every read is one committed state, never half of one.
#[test]
fn concurrent_writer_is_never_blocked_nor_seen_half_done() {
    let dir = tempfile::tempdir().unwrap();
    nss_like(dir.path(), 400);
    let key4 = dir.path().join("key4.db");
    // Generation 0: every row and item alike.
    Connection::open(&key4)
        .unwrap()
        .execute_batch(
            "UPDATE nssPrivate SET a0 = x'00000000'; UPDATE metaData SET item1 = x'00000000';",
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let key4 = key4.clone();
        std::thread::spawn(move || {
            let c = Connection::open(&key4).unwrap();
            c.busy_timeout(Duration::ZERO).unwrap();
            // Commits as fast as SQLite can (no fsync), then a pause a
            // reader can fall into: NSS writes far less often than this.
            c.execute_batch("PRAGMA synchronous = OFF").unwrap();
            let mut generation: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                // Every row and every metaData item gets the generation,
                // in one transaction spanning many pages.
                let g = generation.to_be_bytes().to_vec();
                c.execute_batch("BEGIN IMMEDIATE").unwrap();
                c.execute("UPDATE nssPrivate SET a0 = ?1", [&g]).unwrap();
                c.execute("UPDATE metaData SET item1 = ?1", [&g]).unwrap();
                c.execute_batch("COMMIT").unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            generation
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reads = 0;
    let mut seen = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        let bytes = nssdb::raw::snapshot(&key4).unwrap();
        let (t, m) = parse_key_db(&key4, &bytes).unwrap();
        let g = t.rows[0].values[0].clone();
        assert!(t.rows.iter().all(|r| r.values[0] == g), "a torn read");
        assert!(m.iter().all(|r| r.item1 == g), "a torn read");
        seen.insert(g);
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let generations = writer.join().unwrap();
    assert!(generations > 10, "{generations} commits");
    assert!(
        reads > 10 && seen.len() > 1,
        "{reads} reads, {} states",
        seen.len()
    );
}
