//! Databases made at test time by Debian's real NSS tools (certutil,
//! pk12util; package libnss3-tools) and OpenSSL are the judges: every
//! certificate must equal `certutil -L -r`, every key the one `pk12util -o`
//! exports (compared as PKCS #8 DER bytes), and signatures made with the
//! keys must verify with OpenSSL. A missing tool fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nssdb::{Database, Error};

mod oracle;

fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` not found: install the Debian package {package} (apt-get install {package})");
}

fn run(program: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {:?} failed ({}):\n{}\n{}",
        program.display(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn certutil(args: &[&str]) -> Vec<u8> {
    run(&tool("certutil", "libnss3-tools"), args)
}

fn pk12util(args: &[&str]) -> Vec<u8> {
    run(&tool("pk12util", "libnss3-tools"), args)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    run(&tool("openssl", "openssl"), args)
}

/// A temporary NSS database directory and its password ("" = none).
struct Nss {
    tmp: tempfile::TempDir,
    password: String,
}

impl Nss {
    fn dir(&self) -> PathBuf {
        self.tmp.path().join("db")
    }

    fn sql(&self) -> String {
        format!("sql:{}", self.dir().display())
    }

    fn file(&self, name: &str) -> String {
        self.tmp.path().join(name).display().to_string()
    }

    fn pwfile(&self) -> String {
        let f = self.file("pw.txt");
        std::fs::write(&f, format!("{}\n", self.password)).unwrap();
        f
    }

    fn noise(&self) -> String {
        let f = self.file("noise.bin");
        let mut buf = vec![0u8; 2048];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        std::fs::write(&f, buf).unwrap();
        f
    }

    /// `certutil -N` in `spec_prefix:DIR` ("sql" or "dbm").
    fn create(password: &str, spec_prefix: &str) -> Nss {
        let nss = Nss {
            tmp: tempfile::tempdir().unwrap(),
            password: password.to_string(),
        };
        std::fs::create_dir(nss.dir()).unwrap();
        let spec = format!("{spec_prefix}:{}", nss.dir().display());
        if password.is_empty() {
            certutil(&["-N", "-d", &spec, "--empty-password"]);
        } else {
            certutil(&["-N", "-d", &spec, "-f", &nss.pwfile()]);
        }
        nss
    }

    /// A self-signed certificate and key made by certutil -S -x.
    fn self_signed(&self, spec: &str, nick: &str, key: &[&str]) {
        let subject = format!("CN={nick}");
        let noise = self.noise();
        let pw = self.pwfile();
        let mut args = vec![
            "-S", "-x", "-d", spec, "-n", nick, "-s", &subject, "-t", "CT,CT,CT", "-z", &noise,
        ];
        args.extend_from_slice(key);
        if !self.password.is_empty() {
            args.extend_from_slice(&["-f", &pw]);
        }
        certutil(&args);
    }

    fn cert_der(&self, nick: &str) -> Vec<u8> {
        certutil(&["-L", "-d", &self.sql(), "-n", nick, "-r"])
    }

    /// The key pk12util exports, as OpenSSL's PKCS #8 DER.
    fn exported_key(&self, nick: &str) -> Vec<u8> {
        let p12 = self.file(&format!("{nick}.p12"));
        pk12util(&[
            "-o",
            &p12,
            "-n",
            nick,
            "-d",
            &self.sql(),
            "-W",
            "p12pass",
            "-K",
            &self.password,
        ]);
        let pem = self.file(&format!("{nick}.key.pem"));
        openssl(&[
            "pkcs12",
            "-in",
            &p12,
            "-nocerts",
            "-nodes",
            "-passin",
            "pass:p12pass",
            "-out",
            &pem,
        ]);
        openssl(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER",
        ])
    }
}

/// Checks the certificate DER and the key bytes against NSS's own tools,
/// and that a signature made with the key (by OpenSSL) verifies with the
/// certificate; and that nssdb's file reader sees every row SQLite sees.
fn check_against_nss(nss: &Nss, db: &Database, nick: &str) -> (nssdb::Certificate, Vec<u8>) {
    // The files themselves read exactly as SQLite reads them.
    oracle::reads_like_sqlite(&nss.dir());
    let cert = db
        .find_certificate(nick)
        .unwrap()
        .unwrap_or_else(|| panic!("{nick} not found"));
    assert_eq!(cert.nickname, nick);
    assert_eq!(
        cert.der,
        nss.cert_der(nick),
        "{nick}: DER differs from certutil -L -r"
    );
    let key = db
        .private_key_pkcs8(&cert, nss.password.as_bytes())
        .unwrap();
    assert_eq!(
        key.as_slice(),
        nss.exported_key(nick).as_slice(),
        "{nick}: key differs from pk12util's"
    );
    openssl_signature_verifies(nss, &cert.der, &key, nick);
    (cert, key.to_vec())
}

fn openssl_signature_verifies(nss: &Nss, cert_der: &[u8], pkcs8: &[u8], tag: &str) {
    let key = nss.file(&format!("{tag}.sign.der"));
    let cert = nss.file(&format!("{tag}.cert.der"));
    let msg = nss.file(&format!("{tag}.msg"));
    let sig = nss.file(&format!("{tag}.sig"));
    let public = nss.file(&format!("{tag}.pub.pem"));
    std::fs::write(&key, pkcs8).unwrap();
    std::fs::write(&cert, cert_der).unwrap();
    std::fs::write(&msg, b"signed by a key read without NSS").unwrap();
    openssl(&[
        "dgst", "-sha256", "-sign", &key, "-keyform", "DER", "-out", &sig, &msg,
    ]);
    openssl_verify(&cert, &public, &sig, &msg);
}

fn openssl_verify(cert: &str, public: &str, sig: &str, msg: &str) {
    openssl(&[
        "x509", "-inform", "DER", "-in", cert, "-pubkey", "-noout", "-out", public,
    ]);
    let out = openssl(&["dgst", "-sha256", "-verify", public, "-signature", sig, msg]);
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
}

#[test]
fn empty_password_rsa_2048_and_ec_p256() {
    let nss = Nss::create("", "sql");
    nss.self_signed(&nss.sql(), "rsa1", &["-k", "rsa", "-g", "2048"]);
    nss.self_signed(&nss.sql(), "ec1", &["-k", "ec", "-q", "nistp256"]);
    let db = Database::open(&nss.sql()).unwrap();
    assert!(!db.needs_login());
    db.check_password(b"").unwrap();
    assert!(matches!(
        db.check_password(b"x"),
        Err(Error::WrongPassword { .. })
    ));
    let (rsa_cert, rsa_key) = check_against_nss(&nss, &db, "rsa1");
    let (ec_cert, ec_key) = check_against_nss(&nss, &db, "ec1");

    // A plain directory and the token prefix give the same certificate.
    let plain = Database::open(&nss.dir().display().to_string()).unwrap();
    assert_eq!(
        plain.find_certificate("NSS Certificate DB:rsa1").unwrap(),
        Some(rsa_cert.clone())
    );
    assert_eq!(
        db.find_certificate("NSS FIPS 140-2 Certificate DB:ec1")
            .unwrap(),
        Some(ec_cert.clone())
    );
    let all = db.certificates();
    assert_eq!(all.len(), 2);
    assert!(all[0].object_id < all[1].object_id);

    // Signatures made with the RustCrypto crates verify with OpenSSL.
    use rsa::pkcs8::DecodePrivateKey;
    use signature::{SignatureEncoding, Signer};
    let msg = b"signed in Rust";
    let rsa = rsa::PrivateKey::from_pkcs8_der(&rsa_key).unwrap();
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa)
        .sign(msg)
        .to_vec();
    let ec = p256::ecdsa::SigningKey::from_pkcs8_der(&ec_key).unwrap();
    let ec_sig: p256::ecdsa::Signature = ec.sign(msg);
    for (tag, cert, sig) in [
        ("r", &rsa_cert, sig),
        ("e", &ec_cert, ec_sig.to_der().to_vec()),
    ] {
        let (c, m, s) = (
            nss.file(&format!("{tag}.c")),
            nss.file(&format!("{tag}.m")),
            nss.file(&format!("{tag}.s")),
        );
        std::fs::write(&c, &cert.der).unwrap();
        std::fs::write(&m, msg).unwrap();
        std::fs::write(&s, sig).unwrap();
        openssl_verify(&c, &nss.file(&format!("{tag}.p")), &s, &m);
    }

    // Clean refusals.
    assert_eq!(db.find_certificate("nobody").unwrap(), None);
    assert_eq!(
        db.find_certificate("NSS Generic Crypto Services:rsa1")
            .unwrap(),
        None
    );
    match db.find_certificate("Some Token:rsa1") {
        Err(e @ Error::UnknownToken { .. }) => assert!(e.to_string().contains("Some Token")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn password_database() {
    let nss = Nss::create("secret123", "sql");
    nss.self_signed(&nss.sql(), "rsa1", &["-k", "rsa", "-g", "2048"]);
    nss.self_signed(&nss.sql(), "ec1", &["-k", "ec", "-q", "nistp256"]);
    let db = Database::open(&nss.sql()).unwrap();
    assert!(db.needs_login());
    db.check_password(b"secret123").unwrap();
    for wrong in [&b""[..], b"secret124", b"secret123\n"] {
        match db.check_password(wrong) {
            Err(e @ Error::WrongPassword { .. }) => assert!(e.to_string().contains("key4.db")),
            other => panic!("{other:?}"),
        }
    }
    check_against_nss(&nss, &db, "rsa1");
    check_against_nss(&nss, &db, "ec1");
    let cert = db.find_certificate("rsa1").unwrap().unwrap();
    assert!(matches!(
        db.private_key_pkcs8(&cert, b"wrong"),
        Err(Error::WrongPassword { .. })
    ));
}

#[test]
fn password_changed_with_certutil_w() {
    let mut nss = Nss::create("", "sql");
    nss.self_signed(&nss.sql(), "rsa1", &["-k", "rsa", "-g", "2048"]);
    nss.self_signed(&nss.sql(), "ec1", &["-k", "ec", "-q", "nistp256"]);
    let old = nss.file("old.txt");
    let new = nss.file("new.txt");
    std::fs::write(&old, "\n").unwrap();
    std::fs::write(&new, "changed-pw\n").unwrap();
    certutil(&["-W", "-d", &nss.sql(), "-f", &old, "-@", &new]);
    nss.password = "changed-pw".into();
    let db = Database::open(&nss.sql()).unwrap();
    assert!(db.needs_login());
    assert!(matches!(
        db.check_password(b""),
        Err(Error::WrongPassword { .. })
    ));
    check_against_nss(&nss, &db, "rsa1");
    check_against_nss(&nss, &db, "ec1");
}

#[test]
fn openssl_keys_imported_with_pk12util() {
    let nss = Nss::create("import-pw", "sql");
    for (nick, genpkey) in [
        (
            "imported-rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"][..],
        ),
        (
            "imported-ec",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
    ] {
        let key = nss.file(&format!("{nick}.pem"));
        let cert = nss.file(&format!("{nick}.crt"));
        let p12 = nss.file(&format!("{nick}.in.p12"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend_from_slice(&["-out", &key]);
        openssl(&args);
        let subj = format!("/CN={nick}");
        openssl(&[
            "req", "-x509", "-new", "-key", &key, "-subj", &subj, "-days", "30", "-out", &cert,
        ]);
        openssl(&[
            "pkcs12",
            "-export",
            "-inkey",
            &key,
            "-in",
            &cert,
            "-name",
            nick,
            "-passout",
            "pass:p12in",
            "-out",
            &p12,
        ]);
        pk12util(&[
            "-i",
            &p12,
            "-d",
            &nss.sql(),
            "-W",
            "p12in",
            "-K",
            "import-pw",
        ]);
        let db = Database::open(&nss.sql()).unwrap();
        let (found, key_der) = check_against_nss(&nss, &db, nick);
        // The key equals the original OpenSSL key, the certificate OpenSSL's.
        assert_eq!(
            key_der,
            openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER"])
        );
        assert_eq!(
            found.der,
            openssl(&["x509", "-in", &cert, "-outform", "DER"])
        );
    }
}

#[test]
fn libcacard_style_three_rsa_certs() {
    let nss = Nss::create("", "sql");
    for n in 1..=3 {
        nss.self_signed(
            &nss.sql(),
            &format!("cert{n}"),
            &["-k", "rsa", "-g", "2048"],
        );
    }
    let db = Database::open(&nss.sql()).unwrap();
    assert_eq!(db.certificates().len(), 3);
    for n in 1..=3 {
        let nick = format!("cert{n}");
        let (cert, key) = check_against_nss(&nss, &db, &nick);
        // A raw RSA private-key operation, as a card does, verifies too.
        use rsa::pkcs8::DecodePrivateKey;
        use signature::{SignatureEncoding, Signer};
        let rsa = rsa::PrivateKey::from_pkcs8_der(&key).unwrap();
        let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa)
            .sign(b"libcacard")
            .to_vec();
        let (c, m, s) = (nss.file("c.der"), nss.file("m.bin"), nss.file("s.bin"));
        std::fs::write(&c, &cert.der).unwrap();
        std::fs::write(&m, b"libcacard").unwrap();
        std::fs::write(&s, sig).unwrap();
        openssl_verify(&c, &nss.file("p.pem"), &s, &m);
    }
}

/// The metaData row `id` of key4.db, read with SQLite directly.
fn meta_item(dir: &Path, id: &str, column: &str) -> Option<Vec<u8>> {
    let c = rusqlite::Connection::open_with_flags(
        dir.join("key4.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        &format!("SELECT {column} FROM metaData WHERE id = ?1"),
        [id],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn legacy_dbm_migrated_to_sql_uses_3des() {
    let nss = Nss::create("legacy-pw", "dbm");
    let dbm = format!("dbm:{}", nss.dir().display());
    nss.self_signed(&dbm, "legacy-rsa", &["-k", "rsa", "-g", "2048"]);
    nss.self_signed(&dbm, "legacy-ec", &["-k", "ec", "-q", "nistp256"]);
    assert!(nss.dir().join("key3.db").exists());

    // Before migration: refused clearly, whatever the spec.
    for spec in [dbm.clone(), nss.sql(), nss.dir().display().to_string()] {
        match Database::open(&spec) {
            Err(e @ Error::LegacyDbm { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&nss.dir().display().to_string()) && msg.contains("certutil"),
                    "{msg}"
                );
            }
            other => panic!("{spec}: {other:?}"),
        }
    }

    // A read-write sql: open migrates to cert9.db / key4.db.
    certutil(&[
        "-M",
        "-d",
        &nss.sql(),
        "-n",
        "legacy-rsa",
        "-t",
        "CT,CT,CT",
        "-f",
        &nss.pwfile(),
    ]);
    assert!(nss.dir().join("key4.db").exists());
    let record = meta_item(&nss.dir(), "password", "item2").unwrap();
    let record = nssdb::raw::EncryptedValue::parse(&record, 10).unwrap();
    assert!(
        record.is_legacy(),
        "the migrated password record keeps the 3DES PBE"
    );
    let c = rusqlite::Connection::open_with_flags(
        nss.dir().join("key4.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let d: Vec<u8> = c
        .query_row(
            "SELECT a123 FROM nssPrivate WHERE a123 IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        nssdb::raw::EncryptedValue::parse(&d, 10)
            .unwrap()
            .is_legacy(),
        "migrated keys keep the 3DES PBE"
    );
    drop(c);
    // dbm: stays refused even with sql files present.
    assert!(matches!(Database::open(&dbm), Err(Error::LegacyDbm { .. })));

    let db = Database::open(&nss.sql()).unwrap();
    assert!(db.needs_login());
    assert!(matches!(
        db.check_password(b"legacy-px"),
        Err(Error::WrongPassword { .. })
    ));
    check_against_nss(&nss, &db, "legacy-rsa");
    check_against_nss(&nss, &db, "legacy-ec");
}

/// Rewrites one metaData or nssPrivate value of a copy of the database.
fn edit_key4(dir: &Path, sql: &str, params: &[&dyn rusqlite::ToSql]) {
    let c = rusqlite::Connection::open(dir.join("key4.db")).unwrap();
    assert_eq!(c.execute(sql, params).unwrap(), 1, "{sql}");
}

fn copy_db(nss: &Nss, name: &str) -> PathBuf {
    let to = nss.tmp.path().join(name);
    std::fs::create_dir(&to).unwrap();
    for f in ["cert9.db", "key4.db", "pkcs11.txt"] {
        std::fs::copy(nss.dir().join(f), to.join(f)).unwrap();
    }
    to
}

#[test]
fn tampered_macs_and_values_are_refused() {
    let nss = Nss::create("tamper-pw", "sql");
    nss.self_signed(&nss.sql(), "rsa1", &["-k", "rsa", "-g", "2048"]);
    let db = Database::open(&nss.sql()).unwrap();
    let cert = db.find_certificate("rsa1").unwrap().unwrap();
    db.private_key_pkcs8(&cert, b"tamper-pw").unwrap();

    let key_id: i64 = {
        let c = rusqlite::Connection::open(nss.dir().join("key4.db")).unwrap();
        c.query_row(
            "SELECT id FROM nssPrivate WHERE a102 = ?1",
            [&cert.cka_id],
            |r| r.get(0),
        )
        .unwrap()
    };
    let sig_d = format!("sig_key_{key_id:08x}_00000123");
    let open = |dir: &Path| Database::open(&dir.display().to_string()).unwrap();

    // A flipped bit in the MAC of CKA_PRIVATE_EXPONENT.
    let dir = copy_db(&nss, "flipped");
    let mut mac = meta_item(&dir, &sig_d, "item1").unwrap();
    *mac.last_mut().unwrap() ^= 1;
    edit_key4(
        &dir,
        "UPDATE metaData SET item1 = ?1 WHERE id = ?2",
        &[&mac, &sig_d],
    );
    match open(&dir).private_key_pkcs8(&cert, b"tamper-pw") {
        Err(
            e @ Error::MacMismatch {
                attribute: 0x123, ..
            },
        ) => assert!(e.to_string().contains("key4.db")),
        other => panic!("{other:?}"),
    }

    // The MAC row moved to the 0xC0000000 fallback id is still accepted.
    let dir = copy_db(&nss, "fallback");
    let moved = format!("sig_key_{:08x}_00000123", key_id | 0xC000_0000);
    edit_key4(
        &dir,
        "UPDATE metaData SET id = ?1 WHERE id = ?2",
        &[&moved, &sig_d],
    );
    open(&dir).private_key_pkcs8(&cert, b"tamper-pw").unwrap();

    // The MAC row deleted.
    let dir = copy_db(&nss, "deleted");
    edit_key4(&dir, "DELETE FROM metaData WHERE id = ?1", &[&sig_d]);
    assert!(matches!(
        open(&dir).private_key_pkcs8(&cert, b"tamper-pw"),
        Err(Error::MacMissing {
            attribute: 0x123,
            ..
        })
    ));

    // CKA_PUBLIC_EXPONENT changed (its MAC then fails).
    let dir = copy_db(&nss, "exponent");
    edit_key4(
        &dir,
        "UPDATE nssPrivate SET a122 = ?1 WHERE id = ?2",
        &[&vec![1u8, 0, 3], &key_id],
    );
    assert!(matches!(
        open(&dir).private_key_pkcs8(&cert, b"tamper-pw"),
        Err(Error::MacMismatch {
            attribute: 0x122,
            ..
        })
    ));

    // A key whose CKA_ID is gone.
    let dir = copy_db(&nss, "no-key");
    edit_key4(
        &dir,
        "UPDATE nssPrivate SET a102 = X'00' WHERE id = ?1",
        &[&key_id],
    );
    assert!(matches!(
        open(&dir).private_key_pkcs8(&cert, b"tamper-pw"),
        Err(Error::NoPrivateKey { .. })
    ));
}

#[test]
fn hot_journal_and_non_sqlite_files_are_refused() {
    let nss = Nss::create("", "sql");
    nss.self_signed(&nss.sql(), "ec1", &["-k", "ec", "-q", "nistp256"]);

    // A journal left by a writer that crashed mid-transaction: capture the
    // journal of an open write transaction, roll back, put it back.
    let dir = copy_db(&nss, "hot");
    let journal = dir.join("key4.db-journal");
    {
        let c = rusqlite::Connection::open(dir.join("key4.db")).unwrap();
        c.execute_batch(
            "PRAGMA cache_size = 1; BEGIN IMMEDIATE; UPDATE metaData SET item1 = zeroblob(5000);",
        )
        .unwrap();
        let saved = std::fs::read(&journal).unwrap();
        c.execute_batch("ROLLBACK").unwrap();
        drop(c);
        std::fs::write(&journal, saved).unwrap();
    }
    match Database::open(&dir.display().to_string()) {
        Err(e @ Error::HotJournal { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("key4.db-journal"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Files that are not SQLite.
    let dir = copy_db(&nss, "garbage");
    std::fs::write(dir.join("cert9.db"), vec![0x42; 4096]).unwrap();
    assert!(
        matches!(Database::open(&dir.display().to_string()), Err(Error::NotSqlite { file }) if file.ends_with("cert9.db"))
    );
    let dir = copy_db(&nss, "garbage-key");
    std::fs::write(
        dir.join("key4.db"),
        b"SQLite format 3\0 but then nonsense follows here, not a database",
    )
    .unwrap();
    let e = Database::open(&dir.display().to_string()).unwrap_err();
    assert!(
        matches!(e, Error::NotSqlite { .. } | Error::Malformed { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("key4.db"));
}

#[test]
fn dbm_initialised_then_migrated_before_any_key() {
    // The password record stays 3DES; keys made later are PBES2 + MACs.
    // The first sql: open (certutil -S, read-write) migrates the empty DB.
    let nss = Nss::create("late-pw", "dbm");
    nss.self_signed(&nss.sql(), "late-rsa", &["-k", "rsa", "-g", "2048"]);
    let record = meta_item(&nss.dir(), "password", "item2").unwrap();
    assert!(nssdb::raw::EncryptedValue::parse(&record, 10)
        .unwrap()
        .is_legacy());
    let db = Database::open(&nss.sql()).unwrap();
    assert!(matches!(
        db.check_password(b"late-px"),
        Err(Error::WrongPassword { .. })
    ));
    check_against_nss(&nss, &db, "late-rsa");
}
