//! libcacard's options string (`vcard_emul_options`): any bytes parse or
//! fail without panicking, and whatever parses is well-formed — every
//! soft reader has a CAC or PASSTHRU type and at least one certificate,
//! and appending blanks keeps a string valid only where the grammar says
//! (`soft=(…)` tolerates them, other items do not).
#![no_main]

use cacard::options::{self, EmulType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The C string ends at the first NUL.
    let s = data.split(|b| *b == 0).next().unwrap_or_default();
    let Ok(o) = options::parse(s) else {
        return;
    };
    for r in &o.soft {
        assert!(r.card_type != EmulType::None);
        assert!(!r.certs.is_empty());
        assert!(!r.name.contains(',') && !r.name.contains(')'));
    }
    if o.db.is_some() {
        assert!(s.windows(4).any(|w| w == b"db=\""));
    }
    // Deterministic.
    assert_eq!(options::parse(s).ok(), Some(o));
});
