//! Rewrites the embedded default card, `certs-fixtures/data/default/`, from
//! its seed (or writes it into the directory given as the only argument).
//!
//! ```text
//! cargo run -p certs-fixtures --release --example regenerate_default [DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use certs_fixtures::{default_card, CardOptions, PkiBuilder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/default"),
    };
    let start = Instant::now();
    let pki = PkiBuilder::cac_triple(default_card::SEED).build()?;
    let elapsed = start.elapsed();
    let written = pki.write_card_dir(&dir, &CardOptions::default().pin(default_card::PIN), true)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "generated CA + 3 RSA-2048 identities (seed {}) in {:.2} s",
        default_card::SEED,
        elapsed.as_secs_f64()
    );
    Ok(())
}
