//! SoftHSM2 tokens made the way libcacard's hwtests make them: the token
//! initialised with `softhsm2-util`, RSA key pairs generated **in** the
//! token with `pkcs11-tool`, and for each a certificate issued by a
//! throw-away openssl test CA (a request signed by a temporary key, the
//! certificate given the token's public key) and written back next to its
//! key pair.
//!
//! The SoftHSM2 configuration is the caller's ([`crate::softhsm_conf`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{check, missing_peers, openssl};

/// SoftHSM2's PKCS#11 module.
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Validity of the CA and of every certificate, in days.
const DAYS: &str = "30";

/// Which slot `softhsm2-util --init-token` initialises.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    /// The first free slot (`--free`).
    Free,
    /// The slot with this index (`--slot N`).
    Index(u32),
}

/// One RSA key pair generated in the token, with its certificate.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// CKA_ID in hex, as `pkcs11-tool --id` takes it (`"01"`).
    pub id: String,
    /// CKA_LABEL of the key pair and of the certificate.
    pub label: String,
    /// Modulus size.
    pub bits: u32,
    /// The certificate's subject, as `openssl -subj` takes it.
    pub subject: String,
    /// The certificate's serial number.
    pub serial: u32,
}

/// A token to make: see [`TestToken::make`].
#[derive(Clone, Debug)]
pub struct TestToken<'a> {
    /// The token label.
    pub label: &'a str,
    /// The security officer's PIN.
    pub so_pin: &'a str,
    /// The user PIN.
    pub pin: &'a str,
    /// The slot to initialise.
    pub slot: Slot,
    /// The test CA's subject.
    pub ca_subject: &'a str,
    /// The key pairs, in this order.
    pub keys: Vec<KeySpec>,
    /// When set, the CA certificate is also written to the token (a
    /// certificate without a key pair) with this CKA_ID and label.
    pub ca_object: Option<(&'a str, &'a str)>,
}

/// A certificate written to the token.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// DER.
    pub der: PathBuf,
    /// PEM.
    pub pem: PathBuf,
}

/// What [`TestToken::make`] wrote.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The test CA's certificate, PEM.
    pub ca_pem: PathBuf,
    /// The test CA's certificate, DER.
    pub ca_der: PathBuf,
    /// The key pairs' certificates, in [`TestToken::keys`] order.
    pub certs: Vec<IssuedCert>,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl TestToken<'_> {
    /// Initialises the token in the SoftHSM2 configuration `conf`, makes
    /// the test CA, generates the key pairs and writes their certificates
    /// back. Every file (CA key and certificate, public keys, requests,
    /// certificates) goes to `files`, which is created; two tokens made
    /// with the same `files` overwrite each other's files. A missing
    /// peer fails the test.
    pub fn make(&self, conf: &Path, files: &Path) -> Issued {
        let missing = missing_peers(&["softhsm2-util", "pkcs11-tool", "openssl", SOFTHSM]);
        assert!(
            missing.is_empty(),
            "missing peer(s) {missing:?}: install them with `apt-get install softhsm2 opensc \
             openssl`"
        );
        std::fs::create_dir_all(files).unwrap();
        let mut init = Command::new("softhsm2-util");
        init.arg("--init-token");
        match self.slot {
            Slot::Free => init.arg("--free"),
            Slot::Index(n) => init.args(["--slot", &n.to_string()]),
        };
        init.args(["--label", self.label, "--so-pin", self.so_pin])
            .args(["--pin", self.pin]);
        check(init.env("SOFTHSM2_CONF", conf));
        let tool = |args: &[&str]| {
            check(
                Command::new("pkcs11-tool")
                    .args(["--module", SOFTHSM, "--token-label", self.label])
                    .args(args)
                    .env("SOFTHSM2_CONF", conf),
            );
        };
        let write_cert = |der: &Path, id: &str, label: &str| {
            tool(&[
                "--login",
                "--pin",
                self.pin,
                "--write-object",
                s(der),
                "--type",
                "cert",
                "--id",
                id,
                "--label",
                label,
            ]);
        };
        let d = |name: &str| files.join(name);
        let (ca_key, ca_pem, ca_der) = (d("ca.key"), d("ca.pem"), d("ca.der"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&ca_key),
            "-out",
            s(&ca_pem),
            "-subj",
            self.ca_subject,
            "-days",
            DAYS,
        ]);
        openssl(&[
            "x509",
            "-in",
            s(&ca_pem),
            "-outform",
            "DER",
            "-out",
            s(&ca_der),
        ]);
        let mut certs = Vec::new();
        for key in &self.keys {
            let id = key.id.as_str();
            tool(&[
                "--login",
                "--pin",
                self.pin,
                "--keypairgen",
                "--key-type",
                &format!("RSA:{}", key.bits),
                "--id",
                id,
                "--label",
                &key.label,
            ]);
            let (pub_der, pub_pem) = (d(&format!("pub{id}.der")), d(&format!("pub{id}.pem")));
            tool(&[
                "--read-object",
                "--type",
                "pubkey",
                "--id",
                id,
                "-o",
                s(&pub_der),
            ]);
            openssl(&[
                "pkey",
                "-pubin",
                "-inform",
                "DER",
                "-in",
                s(&pub_der),
                "-out",
                s(&pub_pem),
            ]);
            // The request is signed by a temporary key; the certificate
            // gets the token's public key instead.
            let (tmp_key, req) = (d(&format!("tmp{id}.key")), d(&format!("req{id}.pem")));
            openssl(&[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                s(&tmp_key),
                "-subj",
                &key.subject,
                "-out",
                s(&req),
            ]);
            let (der, pem) = (d(&format!("cert{id}.der")), d(&format!("cert{id}.pem")));
            openssl(&[
                "x509",
                "-req",
                "-in",
                s(&req),
                "-CA",
                s(&ca_pem),
                "-CAkey",
                s(&ca_key),
                "-force_pubkey",
                s(&pub_pem),
                "-set_serial",
                &format!("0x{:X}", key.serial),
                "-days",
                DAYS,
                "-outform",
                "DER",
                "-out",
                s(&der),
            ]);
            openssl(&["x509", "-inform", "DER", "-in", s(&der), "-out", s(&pem)]);
            write_cert(&der, id, &key.label);
            certs.push(IssuedCert { der, pem });
        }
        if let Some((id, label)) = self.ca_object {
            write_cert(&ca_der, id, label);
        }
        Issued {
            ca_pem,
            ca_der,
            certs,
        }
    }
}
