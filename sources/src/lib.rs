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
