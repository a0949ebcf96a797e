//! The embedded default card: a CA and three RSA-2048 identities generated
//! by `certs-fixtures` from seed 1 and compiled into the binary, so
//! `vcac serve` works with no files at all.

use cac::config::{self, ConfigError};
use cac::keys::KeyBackend;
use cac::Card;

/// The default card's PIN.
pub const PIN: &str = certs_fixtures::default_card::PIN;

/// The embedded default card (three RSA-2048 identities, PIN
/// [`PIN`]), no files needed.
pub fn default_card(
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Card, ConfigError> {
    let files = certs_fixtures::default_card::files();
    let mut read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| "not in the embedded default card".to_owned())
    };
    config::load_card(
        certs_fixtures::default_card::CARD_TOML,
        &mut read,
        backend,
        rng,
    )
}
