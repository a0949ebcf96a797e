//! The embedded default card: `PkiBuilder::cac_triple(1)` with the default
//! [`CardOptions`] (PIN `12345678`, 3 tries), committed under
//! `certs-fixtures/data/default/`.
//!
//! Regenerate the files after a change to the generator with
//!
//! ```text
//! cargo run -p certs-fixtures --release --example regenerate_default
//! ```
//!
//! The crate's test suite rebuilds the card in memory from [`SEED`] and
//! checks that every committed byte is still what the generator makes.

use crate::{CardOptions, Error, PkiBuilder};

/// The seed the default card is generated from.
pub const SEED: u64 = 1;

/// The default card's PIN.
pub const PIN: &str = "12345678";

/// Root CA certificate, PEM (`ca.pem`).
pub const CA_PEM: &[u8] = include_bytes!("../data/default/ca.pem");
/// Authentication certificate (PKI applet 0), PEM (`id0.pem`).
pub const ID0_PEM: &[u8] = include_bytes!("../data/default/id0.pem");
/// Authentication key, RSA-2048 PKCS#8 PEM (`id0.key`).
pub const ID0_KEY: &[u8] = include_bytes!("../data/default/id0.key");
/// E-mail signature certificate (PKI applet 1), PEM (`id1.pem`).
pub const ID1_PEM: &[u8] = include_bytes!("../data/default/id1.pem");
/// E-mail signature key, RSA-2048 PKCS#8 PEM (`id1.key`).
pub const ID1_KEY: &[u8] = include_bytes!("../data/default/id1.key");
/// E-mail encryption certificate (PKI applet 2), PEM (`id2.pem`).
pub const ID2_PEM: &[u8] = include_bytes!("../data/default/id2.pem");
/// E-mail encryption key, RSA-2048 PKCS#8 PEM (`id2.key`).
pub const ID2_KEY: &[u8] = include_bytes!("../data/default/id2.key");
/// The card profile (`card.toml`) naming the files above.
pub const CARD_TOML: &str = include_str!("../data/default/card.toml");

/// All files of the card directory, (name, bytes), in the order
/// [`Pki::card_files`](crate::Pki::card_files) gives them.
pub fn files() -> [(&'static str, &'static [u8]); 8] {
    [
        ("ca.pem", CA_PEM),
        ("id0.pem", ID0_PEM),
        ("id0.key", ID0_KEY),
        ("id1.pem", ID1_PEM),
        ("id1.key", ID1_KEY),
        ("id2.pem", ID2_PEM),
        ("id2.key", ID2_KEY),
        ("card.toml", CARD_TOML.as_bytes()),
    ]
}

/// Generates the default card's files afresh (about 1–3 s of RSA key
/// generation in a release build): what [`files`] should hold.
pub fn regenerate() -> Result<Vec<(String, Vec<u8>)>, Error> {
    PkiBuilder::cac_triple(SEED)
        .build()?
        .card_files(&CardOptions::default().pin(PIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when the generator changed without `regenerate_default` being
    /// run (or when the committed files were edited by hand).
    #[test]
    fn committed_files_match_the_generator() {
        let fresh = regenerate().unwrap();
        let committed = files();
        assert_eq!(fresh.len(), committed.len());
        for ((name, bytes), (want_name, want)) in fresh.iter().zip(committed) {
            assert_eq!(name, want_name);
            assert!(
                bytes.as_slice() == want,
                "data/default/{name} differs from the generator's output; run \
                 `cargo run -p certs-fixtures --release --example regenerate_default`"
            );
        }
    }

    #[test]
    fn card_toml_has_the_documented_shape() {
        assert_eq!(
            CARD_TOML,
            "# vcac card profile, written by certs-fixtures (seed 1)\n\
             [card]\n\
             atr = \"3B7A18000073667465206364313434\"\n\
             \n\
             [pin]\n\
             pin = \"12345678\"\n\
             max_tries = 3\n\
             \n\
             [[identity]]\n\
             cert = \"id0.pem\"\n\
             key = \"id0.key\"\n\
             \n\
             [[identity]]\n\
             cert = \"id1.pem\"\n\
             key = \"id1.key\"\n\
             \n\
             [[identity]]\n\
             cert = \"id2.pem\"\n\
             key = \"id2.key\"\n"
        );
    }
}
