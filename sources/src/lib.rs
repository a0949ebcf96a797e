//! Where virtual cards come from.
//!
//! Every way of loading a card lives here, so the command-line tool, the
//! `libcacard.so.0` drop-in and the tests build cards the same way. The
//! card itself ([`cac`]) does no I/O: a source reads files (bounded in
//! size) and hands `cac` bytes.
//!
//! ```text
//!   DIR/card.toml + idN.pem/idN.key ──► dir::load ──────┐
//!   compiled-in fixture ─────────────► embedded ───────┼──► cac::Card
//!                                                       ┘
//! ```
//!
//! * [`dir`]: a card directory (`card.toml` and the files it names).
//! * [`embedded`] (feature `embedded`, default): the embedded default card.
//! * `pkcs11` (feature `pkcs11`): host PKCS#11 tokens mirrored as CACs, keys
//!   and PIN staying on the token, with a hot-plug watcher.
//! * `pcsc_relay` (feature `pcsc`): a real card in a pcscd reader relayed
//!   as a `vreader::VirtualCard`.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "embedded")] {
//! let mut card = vcac_sources::embedded::default_card(&cac::keys::RustCrypto, rand_core::UnwrapErr(getrandom::SysRng))?;
//! assert_eq!(card.power_on(), cac::DEFAULT_ATR);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod dir;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "faults")]
pub mod faults;
#[cfg(feature = "nss")]
pub mod nss;
#[cfg(feature = "p12")]
pub mod p12;
#[cfg(feature = "pcsc")]
pub mod pcsc_relay;
pub mod persist;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod recording;
