//! Client-robustness faults: a `vreader::VirtualCard` wrapper that
//! applies `card.toml`'s `[faults]` section — a delay before every
//! response, a status word for the Nth command of an INS, the card gone
//! after N APDUs.
//!
//! ```text
//!   transport ──► FaultyCard ──(sleep latency_ms)──► nth INS? ──yes──► SW
//!                                                        │ no
//!                                                        ▼
//!                                                   inner card
//!   after remove_after APDUs: every operation fails ("card removed"),
//!   which vpcd and VSCard report to the host as a removal.
//! ```
//!
//! Deterministic: counts start at insertion and are kept across power
//! cycles; nothing random. The card itself reads no clock, so the delay
//! lives here.

use std::time::Duration;

use cac::config::FaultsSection;
use vreader::{CardFault, VirtualCard};

/// The faults of one card, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Delay before every response.
    pub latency: Duration,
    /// `(INS, n, SW)`: the nth command (1-based) with INS gets SW.
    pub status: Vec<(u8, u64, [u8; 2])>,
    /// The card is removed after this many APDUs.
    pub remove_after: Option<u64>,
}

fn hex_bytes(field: &str, text: &str, len: usize) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bad = || format!("{field}: expected {len} hex byte(s), got \"{text}\"");
    if digits.len() != 2 * len {
        return Err(bad());
    }
    digits
        .chunks_exact(2)
        .map(|p| {
            let s = core::str::from_utf8(p).map_err(|_| bad())?;
            u8::from_str_radix(s, 16).map_err(|_| bad())
        })
        .collect()
}

impl Faults {
    /// Validates `[faults]`; `Ok(None)` when it configures nothing.
    pub fn from_config(section: &FaultsSection) -> Result<Option<Faults>, String> {
        let mut status = Vec::with_capacity(section.status.len());
        for (i, s) in section.status.iter().enumerate() {
            let ins = hex_bytes(&format!("faults.status[{i}].ins"), &s.ins, 1)?;
            let sw = hex_bytes(&format!("faults.status[{i}].sw"), &s.sw, 2)?;
            if s.nth == 0 {
                return Err(format!("faults.status[{i}].nth: counts from 1"));
            }
            match (ins.as_slice(), sw.as_slice()) {
                ([ins], [a, b]) => status.push((*ins, s.nth, [*a, *b])),
                _ => return Err(format!("faults.status[{i}]: bad INS or SW")),
            }
        }
        if section.latency_ms.is_some_and(|ms| ms > 60_000) {
            return Err("faults.latency_ms: at most 60000".into());
        }
        let faults = Faults {
            latency: Duration::from_millis(section.latency_ms.unwrap_or(0)),
            status,
            remove_after: section.remove_after,
        };
        Ok((!faults.latency.is_zero()
            || !faults.status.is_empty()
            || faults.remove_after.is_some())
        .then_some(faults))
    }
}

/// A card with [`Faults`] applied.
pub struct FaultyCard {
    inner: Box<dyn VirtualCard>,
    faults: Faults,
    /// Commands seen per INS.
    per_ins: Box<[u64; 256]>,
    /// APDUs answered.
    apdus: u64,
}

impl FaultyCard {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn VirtualCard>, faults: Faults) -> FaultyCard {
        FaultyCard {
            inner,
            faults,
            per_ins: Box::new([0; 256]),
            apdus: 0,
        }
    }

    fn removed(&self) -> bool {
        self.faults.remove_after.is_some_and(|n| self.apdus >= n)
    }

    fn gone(&self) -> CardFault {
        CardFault(format!(
            "card removed after {} APDUs ([faults] remove_after)",
            self.apdus
        ))
    }
}

impl VirtualCard for FaultyCard {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        if self.removed() {
            return Err(self.gone());
        }
        self.inner.atr()
    }
    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        if self.removed() {
            return Err(self.gone());
        }
        self.inner.power_on()
    }
    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        if self.removed() {
            return Err(self.gone());
        }
        self.inner.reset()
    }
    fn power_off(&mut self) {
        self.inner.power_off();
    }
    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault> {
        if self.removed() {
            return Err(self.gone());
        }
        if !self.faults.latency.is_zero() {
            std::thread::sleep(self.faults.latency);
        }
        self.apdus += 1;
        let injected = command.get(1).and_then(|&ins| {
            let seen = self.per_ins.get_mut(usize::from(ins))?;
            *seen += 1;
            let n = *seen;
            self.faults
                .status
                .iter()
                .find(|(i, nth, _)| *i == ins && *nth == n)
                .map(|(_, _, sw)| *sw)
        });
        match injected {
            Some(sw) => {
                log::info!(
                    "[faults]: answering {:02X}{:02X} to APDU {}",
                    sw[0],
                    sw[1],
                    self.apdus
                );
                response.extend_from_slice(&sw);
                Ok(())
            }
            None => self.inner.transmit(command, response),
        }
    }
}

/// Wraps `card` with the faults of `card.toml` text, if it has any.
pub fn wrap_from_toml(
    card: Box<dyn VirtualCard>,
    card_toml: &str,
) -> Result<Box<dyn VirtualCard>, String> {
    let config = cac::config::CardConfig::parse(card_toml).map_err(|e| e.to_string())?;
    match config
        .faults
        .as_ref()
        .map(Faults::from_config)
        .transpose()?
        .flatten()
    {
        Some(f) => Ok(Box::new(FaultyCard::new(card, f))),
        None => Ok(card),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cac::config::StatusFault;

    fn card() -> Box<dyn VirtualCard> {
        Box::new(
            crate::embedded::default_card(
                &cac::keys::RustCrypto,
                rand_core::UnwrapErr(getrandom::SysRng),
            )
            .unwrap(),
        )
    }

    const SELECT_CCC: [u8; 12] = [
        0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
    ];

    fn send(c: &mut dyn VirtualCard, apdu: &[u8]) -> Result<Vec<u8>, CardFault> {
        let mut r = Vec::new();
        c.transmit(apdu, &mut r).map(|()| r)
    }

    #[test]
    fn nth_ins_gets_the_status_word_and_removal_follows() {
        let section = FaultsSection {
            latency_ms: None,
            status: vec![StatusFault {
                ins: "a4".into(),
                nth: 2,
                sw: "6F 00".into(),
            }],
            remove_after: Some(4),
        };
        let faults = Faults::from_config(&section).unwrap().unwrap();
        assert_eq!(faults.status, [(0xA4, 2, [0x6F, 0x00])]);
        let mut c = FaultyCard::new(card(), faults);
        c.power_on().unwrap();
        assert_eq!(send(&mut c, &SELECT_CCC).unwrap(), [0x61, 0x0D]);
        assert_eq!(send(&mut c, &SELECT_CCC).unwrap(), [0x6F, 0x00]);
        assert_eq!(send(&mut c, &SELECT_CCC).unwrap(), [0x61, 0x0D]);
        // Counts survive a power cycle.
        c.power_off();
        c.power_on().unwrap();
        assert_eq!(send(&mut c, &SELECT_CCC).unwrap(), [0x61, 0x0D]);
        let e = send(&mut c, &SELECT_CCC).unwrap_err();
        assert_eq!(e.0, "card removed after 4 APDUs ([faults] remove_after)");
        assert!(c.atr().is_err());
        assert!(c.power_on().is_err());
    }

    #[test]
    fn latency_is_waited() {
        let section = FaultsSection {
            latency_ms: Some(30),
            ..FaultsSection::default()
        };
        let mut c = FaultyCard::new(card(), Faults::from_config(&section).unwrap().unwrap());
        c.power_on().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(send(&mut c, &SELECT_CCC).unwrap(), [0x61, 0x0D]);
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn bad_sections_name_the_field() {
        assert_eq!(
            Faults::from_config(&FaultsSection::default()).unwrap(),
            None
        );
        let bad = |ins: &str, nth: u64, sw: &str| {
            Faults::from_config(&FaultsSection {
                status: vec![StatusFault {
                    ins: ins.into(),
                    nth,
                    sw: sw.into(),
                }],
                ..FaultsSection::default()
            })
            .unwrap_err()
        };
        assert!(bad("2A2A", 1, "6F00").starts_with("faults.status[0].ins"));
        assert!(bad("2A", 1, "6F").starts_with("faults.status[0].sw"));
        assert!(bad("2A", 0, "6F00").starts_with("faults.status[0].nth"));
        assert!(bad("ZZ", 1, "6F00").starts_with("faults.status[0].ins"));
        let toml = "[pin]\npin = \"12345678\"\n[[identity]]\ncert = \"a\"\n[faults]\nlatency_ms = 1\nbogus = 2\n";
        assert!(wrap_from_toml(card(), toml).unwrap_err().contains("bogus"));
    }
}
