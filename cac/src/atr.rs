//! Answer To Reset (ISO 7816-3 §8), validated on construction.

use core::fmt;

/// The default ATR: a real DoD CAC's (`3B 7A 18 00 00 73 66 74 65 20 63 64
/// 31 34 34`). It has no TD1, so hosts pick T=0.
pub const DEFAULT_ATR: [u8; 15] = [
    0x3B, 0x7A, 0x18, 0x00, 0x00, 0x73, 0x66, 0x74, 0x65, 0x20, 0x63, 0x64, 0x31, 0x34, 0x34,
];

/// Why bytes are not an ATR.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtrError {
    /// Shorter than 2 or longer than 33 bytes.
    Length(usize),
    /// TS is neither `3B` (direct) nor `3F` (inverse).
    InitialByte(u8),
    /// The interface or historical bytes announced by T0/TDi run past the end.
    Truncated,
    /// Bytes left over after the historical bytes and TCK.
    TrailingBytes(usize),
    /// TCK does not make the XOR of T0..TCK zero.
    Checksum {
        /// TCK present.
        found: u8,
        /// TCK that would be right.
        expected: u8,
    },
}

impl fmt::Display for AtrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtrError::Length(n) => write!(f, "an ATR has 2 to 33 bytes, got {n}"),
            AtrError::InitialByte(b) => write!(f, "ATR must start with 3B or 3F, got {b:02X}"),
            AtrError::Truncated => write!(f, "ATR interface or historical bytes are truncated"),
            AtrError::TrailingBytes(n) => write!(f, "ATR has {n} unexpected trailing bytes"),
            AtrError::Checksum { found, expected } => {
                write!(f, "ATR check byte is {found:02X}, expected {expected:02X}")
            }
        }
    }
}

impl std::error::Error for AtrError {}

/// A validated ATR.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Atr {
    bytes: Vec<u8>,
    protocols: u16,
    historical: core::ops::Range<usize>,
    ta1: Option<u8>,
}

impl Atr {
    /// Parses and validates an ATR.
    pub fn new(bytes: &[u8]) -> Result<Atr, AtrError> {
        if !(2..=33).contains(&bytes.len()) {
            return Err(AtrError::Length(bytes.len()));
        }
        let ts = bytes.first().copied().unwrap_or_default();
        if ts != 0x3B && ts != 0x3F {
            return Err(AtrError::InitialByte(ts));
        }
        let t0 = bytes.get(1).copied().unwrap_or_default();
        let historical_len = usize::from(t0 & 0x0F);
        let mut y = t0 >> 4;
        let mut pos = 2;
        let mut protocols = 0u16;
        let mut explicit = false;
        let mut ta1 = None;
        let mut level = 1;
        loop {
            for bit in 0..3 {
                if y & (1 << bit) != 0 {
                    if bit == 0 && level == 1 {
                        ta1 = bytes.get(pos).copied();
                    }
                    pos += 1;
                }
            }
            if y & 0x08 == 0 {
                break;
            }
            let td = *bytes.get(pos).ok_or(AtrError::Truncated)?;
            pos += 1;
            protocols |= 1 << (td & 0x0F);
            explicit = true;
            y = td >> 4;
            level += 1;
        }
        if pos > bytes.len() {
            return Err(AtrError::Truncated);
        }
        if !explicit {
            protocols = 1; // T=0 implicit
        }
        let historical = pos..pos + historical_len;
        if historical.end > bytes.len() {
            return Err(AtrError::Truncated);
        }
        let needs_tck = protocols & !1 != 0;
        let expected_len = historical.end + usize::from(needs_tck);
        if bytes.len() < expected_len {
            return Err(AtrError::Truncated);
        }
        if bytes.len() > expected_len {
            return Err(AtrError::TrailingBytes(bytes.len() - expected_len));
        }
        if needs_tck {
            let xor = bytes.iter().skip(1).fold(0u8, |a, b| a ^ b);
            if xor != 0 {
                let found = bytes.last().copied().unwrap_or_default();
                return Err(AtrError::Checksum {
                    found,
                    expected: found ^ xor,
                });
            }
        }
        Ok(Atr {
            bytes: bytes.to_vec(),
            protocols,
            historical,
            ta1,
        })
    }

    /// The ATR bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when the ATR offers protocol T=`t` (0..=15).
    pub fn offers(&self, t: u8) -> bool {
        t < 16 && self.protocols & (1 << t) != 0
    }

    /// The historical bytes.
    pub fn historical_bytes(&self) -> &[u8] {
        self.bytes.get(self.historical.clone()).unwrap_or_default()
    }

    /// TA1 (Fi/Di), if present.
    pub fn ta1(&self) -> Option<u8> {
        self.ta1
    }
}

impl Default for Atr {
    fn default() -> Atr {
        Atr {
            bytes: DEFAULT_ATR.to_vec(),
            protocols: 1,
            historical: 5..15,
            ta1: Some(0x18),
        }
    }
}

impl fmt::Debug for Atr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Atr(")?;
        for b in &self.bytes {
            write!(f, "{b:02X}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn default_is_the_parsed_cac_atr() {
        let parsed = Atr::new(&DEFAULT_ATR).unwrap();
        assert_eq!(parsed, Atr::default());
        assert!(parsed.offers(0));
        assert!(!parsed.offers(1));
        assert_eq!(parsed.historical_bytes(), hex!("73667465206364313434"));
        assert_eq!(parsed.ta1(), Some(0x18));
    }

    #[test]
    fn t1_atr_needs_a_correct_tck() {
        let t1 = Atr::new(&hex!("3B800181")).unwrap();
        assert!(t1.offers(1) && !t1.offers(0));
        assert_eq!(
            Atr::new(&hex!("3B800180")),
            Err(AtrError::Checksum {
                found: 0x80,
                expected: 0x81
            })
        );
        assert_eq!(Atr::new(&hex!("3B8001")), Err(AtrError::Truncated));
        // TD1=80 (T=0, TD2 follows), TD2=01 (T=1), TCK.
        let a = Atr::new(&hex!("3B80800101")).unwrap();
        assert!(a.offers(0) && a.offers(1));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Atr::new(&hex!("3B")), Err(AtrError::Length(1)));
        assert_eq!(Atr::new(&hex!("3C00")), Err(AtrError::InitialByte(0x3C)));
        assert_eq!(Atr::new(&hex!("3B0201")), Err(AtrError::Truncated));
        assert_eq!(Atr::new(&hex!("3B000000")), Err(AtrError::TrailingBytes(2)));
        assert_eq!(Atr::new(&[0x3B; 34]), Err(AtrError::Length(34)));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = Atr::new(&bytes);
        }
    }
}
