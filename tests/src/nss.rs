//! NSS `sql:` databases made by NSS's own tools (`certutil`, `pk12util`;
//! Debian package libnss3-tools) from `certs-fixtures` identities, for the
//! tests that judge our NSS reader against them (libcacard's C ABI tests,
//! QEMU's `ccid-card-emulated,backend=certificates`).

use std::path::Path;
use std::process::Command;

use certs_fixtures::{IdentitySpec, KeyType, Pki, PkiBuilder, Role};

use crate::check;

/// Three RSA-2048 identities from `seed`, with distinct subjects
/// (CN=cert1..cert3): NSS gives all certificates of one subject a single
/// nickname.
pub fn three_identities(seed: u64) -> Pki {
    PkiBuilder::new(seed)
        .identity(IdentitySpec::new(
            Role::Authentication,
            KeyType::Rsa2048,
            "cert1",
        ))
        .identity(IdentitySpec::new(
            Role::Signature,
            KeyType::Rsa2048,
            "cert2",
        ))
        .identity(IdentitySpec::new(
            Role::Encryption,
            KeyType::Rsa2048,
            "cert3",
        ))
        .build()
        .unwrap()
}

/// A new NSS `sql:` database at `db` (`certutil -N`, with `password` or
/// an empty one) holding `pki`'s identities as `cert1`, `cert2`, …:
/// PKCS#12 files made by `openssl pkcs12 -export`, imported with
/// `pk12util -i`. `work` holds the files on the way.
pub fn make_nssdb(work: &Path, db: &Path, password: Option<&str>, pki: &Pki) {
    std::fs::create_dir(db).unwrap();
    let spec = format!("sql:{}", db.display());
    let pwfile = work.join("db-password");
    std::fs::write(&pwfile, format!("{}\n", password.unwrap_or(""))).unwrap();
    let mut init = Command::new("certutil");
    init.args(["-N", "-d", &spec]);
    match password {
        Some(_) => init.arg("-f").arg(&pwfile),
        None => init.arg("--empty-password"),
    };
    check(&mut init);
    for (i, id) in pki.identities().iter().enumerate() {
        let c = id.credential();
        let (pem, key, p12) = (
            work.join("id.pem"),
            work.join("id.key"),
            work.join("id.p12"),
        );
        std::fs::write(&pem, c.cert_pem()).unwrap();
        std::fs::write(&key, c.key_pem()).unwrap();
        check(
            Command::new("openssl")
                .args(["pkcs12", "-export", "-passout", "pass:p12"])
                .arg("-name")
                .arg(format!("cert{}", i + 1))
                .arg("-in")
                .arg(&pem)
                .arg("-inkey")
                .arg(&key)
                .arg("-out")
                .arg(&p12),
        );
        check(
            Command::new("pk12util")
                .arg("-i")
                .arg(&p12)
                .args(["-d", &spec, "-W", "p12", "-k"])
                .arg(&pwfile),
        );
    }
}
