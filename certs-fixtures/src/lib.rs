//! Deterministic test PKI for virtual CAC cards, and the embedded default
//! card.
//!
//! [`PkiBuilder`] makes a root CA, an optional intermediate CA, any number
//! of identities (RSA-2048/3072/4096 or P-256 keys) and an optional CRL.
//! Every random choice comes from ChaCha20 streams derived from a `u64`
//! seed, one stream per object, and both signature schemes are
//! deterministic (RSA PKCS#1 v1.5 / SHA-256, ECDSA P-256 with RFC 6979
//! nonces): the same seed and options give byte-identical output on every
//! machine. Nothing reads the clock or the network.
//!
//! ```text
//!  seed ──SHA-256(seed, "key/id0")──▶ ChaCha20 ──▶ key ─┐
//!       ──SHA-256(seed, "serial/id0")▶ ChaCha20 ──▶ serial ─┤
//!  IdentitySpec (role, key type, CN, e-mail, UPN) ─────────┤
//!                                                          ▼
//!  root CA ──signs──▶ [intermediate CA] ──signs──▶ idN certificates, CRL
//!                                                          │
//!              Pki ──card_files()──▶ ca.pem idN.pem idN.key card.toml
//!                  ──write_card_dir()──▶ the same, on disk (keys 0600)
//! ```
//!
//! # Certificate profiles
//!
//! * **CA** (root and intermediate): basicConstraints CA:TRUE (critical;
//!   pathLen 0 on the intermediate), keyUsage keyCertSign + cRLSign
//!   (critical), subjectKeyIdentifier, authorityKeyIdentifier on the
//!   intermediate.
//! * **PIV content signer** (only with [`PkiBuilder::piv_content_signer`]):
//!   P-256, issued by the identities' CA, basicConstraints CA:FALSE,
//!   keyUsage digitalSignature (critical), extendedKeyUsage
//!   id-PIV-content-signing only (FIPS 201). [`Pki::sign_chuid`] and
//!   [`Pki::sign_security_object`] make the CMS SignedData of a PIV
//!   card's CHUID (`3E`) and Security Object (`BB`) with it.
//! * **Every identity**: DoD-style subject (`C=US, O=U.S. Government,
//!   OU=DoD, OU=PKI, OU=CONTRACTOR, CN=DOE.JOHN.Q.1234567890` by default),
//!   random positive 16-byte serial number, basicConstraints CA:FALSE,
//!   subject and authority key identifiers (SHA-1 of the public key),
//!   subjectAltName with the e-mail address (rfc822Name) and the Microsoft
//!   UPN (otherName 1.3.6.1.4.1.311.20.2.3) when given, and optional CRL
//!   distribution point and authorityInfoAccess (caIssuers, OCSP) URLs.
//! * Per [`Role`]:
//!
//! | role | keyUsage (critical) | extendedKeyUsage |
//! |---|---|---|
//! | [`Role::Authentication`] (id0) | digitalSignature (+ keyEncipherment for RSA) | clientAuth, MS smartcardLogon |
//! | [`Role::Signature`] (id1) | digitalSignature, nonRepudiation | emailProtection, clientAuth |
//! | [`Role::Encryption`] (id2) | RSA: keyEncipherment, dataEncipherment; P-256: keyAgreement | emailProtection |
//! | [`Role::Generic`] | digitalSignature (+ keyEncipherment for RSA) | clientAuth, emailProtection |
//!
//! The CRL (v2, with authorityKeyIdentifier and cRLNumber) is signed by the
//! CA that issued the identities; its thisUpdate / nextUpdate are the start
//! and end of the certificates' validity.
//!
//! # Card directory
//!
//! [`Pki::card_files`] gives, and [`Pki::write_card_dir`] writes, the layout
//! the `cac` crate loads: `ca.pem`, `intermediate.pem` (if any),
//! `content-signer.pem` (if any), `id0.pem`,
//! `id0.key`, ... (certificates PEM, keys PKCS#8 PEM), `ca.crl` (if any,
//! PEM) and `card.toml`, rendered from [`CardOptions`] by
//! [`Pki::card_toml`].
//!
//! The committed [`default_card`] is `PkiBuilder::cac_triple(1)`.
//!
//! # Example
//!
//! ```
//! use certs_fixtures::{CardOptions, IdentitySpec, KeyType, PkiBuilder, Role};
//!
//! # fn main() -> Result<(), certs_fixtures::Error> {
//! let pki = PkiBuilder::new(7)
//!     .ca_key(KeyType::P256)
//!     .valid_from(1_735_689_600) // 2025-01-01T00:00:00Z
//!     .days(365)
//!     .identity(
//!         IdentitySpec::new(Role::Authentication, KeyType::P256, "DOE.JANE.1111111111")
//!             .with_upn("1111111111@mil"),
//!     )
//!     .identity(
//!         IdentitySpec::new(Role::Signature, KeyType::P256, "DOE.JANE.1111111111")
//!             .with_email("jane.doe@example.mil"),
//!     )
//!     .crl_url("http://crl.example.invalid/ca.crl")
//!     .revoke_identity(1)
//!     .build()?;
//!
//! let id0 = pki.identities()[0].credential();
//! assert!(id0.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
//! assert!(id0.key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
//! assert!(pki.crl_der().is_some());
//!
//! let files = pki.card_files(&CardOptions::default().pin("246810").puk("13579135", 5))?;
//! let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
//! assert_eq!(
//!     names,
//!     ["ca.pem", "id0.pem", "id0.key", "id1.pem", "id1.key", "ca.crl", "card.toml"]
//! );
//! let toml = pki.card_toml(&CardOptions::default())?;
//! assert!(toml.contains("[[identity]]\ncert = \"id1.pem\"\nkey = \"id1.key\"\n"));
//!
//! // Same seed, same key.
//! // Identity streams are independent: a PKI with only the first identity,
//! // no URLs and no CRL still gets the same id0 key.
//! let again = PkiBuilder::new(7)
//!     .ca_key(KeyType::P256)
//!     .days(365)
//!     .identity(
//!         IdentitySpec::new(Role::Authentication, KeyType::P256, "DOE.JANE.1111111111")
//!             .with_upn("1111111111@mil"),
//!     )
//!     .build()?;
//! assert_eq!(again.identities()[0].credential().key_der(), id0.key_der());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod card;
mod cert;
mod cms;
pub mod default_card;
mod error;
mod keys;
mod name;
mod pki;
mod prime;
mod rng;
mod spec;

pub use card::CardOptions;
pub use error::Error;
pub use pki::{Credential, Identity, Pki, PkiBuilder};
pub use spec::{IdentitySpec, KeyType, Role};
