//! Builds a card with a P-256 CA and 16 P-256 identities (one per CAC PKI
//! applet), prints how long that took, and writes the card directory when
//! given one.
//!
//! ```text
//! cargo run -p certs-fixtures --release --example p256_card [DIR]
//! ```

use std::time::Instant;

use certs_fixtures::{CardOptions, IdentitySpec, KeyType, PkiBuilder, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut builder = PkiBuilder::new(16).ca_key(KeyType::P256);
    for i in 0..16u32 {
        let role = match i {
            0 => Role::Authentication,
            1 => Role::Signature,
            2 => Role::Encryption,
            _ => Role::Generic,
        };
        builder = builder.identity(
            IdentitySpec::new(role, KeyType::P256, format!("TEST.P256.{i}.1000000{i:03}"))
                .with_email(format!("p256.{i}@example.invalid")),
        );
    }
    let pki = builder.build()?;
    println!(
        "generated P-256 CA + 16 P-256 identities in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    if let Some(dir) = std::env::args_os().nth(1) {
        for path in pki.write_card_dir(dir, &CardOptions::default(), false)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
