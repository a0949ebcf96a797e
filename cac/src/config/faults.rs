//! `[faults]`: deterministic client-robustness faults.
//!
//! ```toml
//! [faults]
//! latency_ms = 20           # delay before every response
//! remove_after = 40         # the card is taken out after 40 APDUs
//! [[faults.status]]         # the 3rd GENERAL AUTHENTICATE answers 6F 00
//! ins = "2A"
//! nth = 3
//! sw = "6F00"
//! ```
//!
//! The card does not apply them (it reads no clock): a card source wraps
//! the card (`vcac_sources::faults`). Parsing here only checks the shape.

use serde::Deserialize;

/// `[faults]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// Milliseconds to wait before answering each APDU.
    pub latency_ms: Option<u64>,
    /// `[[faults.status]]`: a status word for the Nth command of an INS.
    #[serde(default)]
    pub status: Vec<StatusFault>,
    /// The card is removed after this many APDUs.
    pub remove_after: Option<u64>,
}

/// `[[faults.status]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusFault {
    /// The instruction byte, hex (`"2A"`).
    pub ins: String,
    /// Which command with that INS (1 = the first) gets the status word.
    pub nth: u64,
    /// The status word returned instead of the card's answer, hex (`"6F00"`).
    pub sw: String,
}
