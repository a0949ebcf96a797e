//! What the `ccid` integration tests share: a card, an APDU it answers,
//! and the process's memory.
#![allow(dead_code, clippy::unwrap_used)]

/// SELECT of the CCC (case 3: T=0 hosts get `61 0D`).
pub(crate) const SELECT_CCC: [u8; 12] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
];

/// The embedded default card.
pub(crate) fn card() -> cac::Card {
    vcac_sources::embedded::default_card(
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap()
}

/// Resident set size of this process, in bytes.
pub(crate) fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
