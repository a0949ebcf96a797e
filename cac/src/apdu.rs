//! ISO 7816-4 command APDUs, parsed into borrowed views.
//!
//! [`CommandView`] accepts every case of ISO 7816-3 §12.1.3 in one place:
//!
//! | case | bytes after the header          |
//! |------|---------------------------------|
//! | 1    | nothing                         |
//! | 2S   | `Le`                            |
//! | 3S   | `Lc data`                       |
//! | 4S   | `Lc data Le`                    |
//! | 2E   | `00 Le1 Le2`                    |
//! | 3E   | `00 Lc1 Lc2 data`               |
//! | 4E   | `00 Lc1 Lc2 data Le1 Le2`       |
//!
//! Anything else (trailing bytes, a length that does not match) is a
//! [`ParseError`], which the card answers with `67 00`.

use core::fmt;

/// The class byte, decoded per ISO 7816-4 §5.4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cla(pub u8);

impl Cla {
    /// True for the proprietary class (`8x`, `9x`, `Ax`, ...: bit 8 set).
    pub const fn is_proprietary(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// The logical channel number (0..=19), or `None` when the class is not
    /// one that carries a channel (for example `FF` or `2x`).
    pub const fn channel(self) -> Option<u8> {
        match self.0 & 0xE0 {
            // First interindustry encoding (also used by proprietary 8x).
            0x00 | 0x80 => Some(self.0 & 0x03),
            // Further interindustry encoding: channels 4..=19.
            0x40 | 0x60 | 0xC0 | 0xE0 if self.0 != 0xFF => Some(4 + (self.0 & 0x0F)),
            _ => None,
        }
    }

    /// Command chaining bit (`10`).
    pub const fn chaining(self) -> bool {
        match self.0 & 0xE0 {
            0x00 | 0x80 => self.0 & 0x10 != 0,
            0x40 | 0x60 | 0xC0 | 0xE0 => self.0 & 0x10 != 0,
            _ => false,
        }
    }

    /// Secure messaging indication.
    pub const fn secure_messaging(self) -> bool {
        match self.0 & 0xE0 {
            0x00 | 0x80 => self.0 & 0x0C != 0,
            0x40 | 0x60 | 0xC0 | 0xE0 => self.0 & 0x20 != 0,
            _ => false,
        }
    }
}

impl fmt::Display for Cla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

/// Why a byte string is not a command APDU.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than the four header bytes.
    TooShort(usize),
    /// The body's length bytes do not match the number of bytes present.
    LengthMismatch {
        /// Total length of the APDU.
        total: usize,
    },
    /// Extended Lc of zero (`00 00 00` followed by more bytes).
    ZeroExtendedLc,
    /// CLA `FF` is reserved for PPS and never a command.
    InvalidClass(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort(n) => write!(f, "APDU of {n} bytes is shorter than its header"),
            ParseError::LengthMismatch { total } => {
                write!(f, "APDU of {total} bytes: Lc/Le do not match the body")
            }
            ParseError::ZeroExtendedLc => write!(f, "extended Lc of zero"),
            ParseError::InvalidClass(c) => write!(f, "invalid class byte {c:02X}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A parsed command APDU borrowing its data from the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandView<'a> {
    header: [u8; 4],
    data: &'a [u8],
    le: Option<usize>,
    extended: bool,
}

impl<'a> CommandView<'a> {
    /// CLA.
    pub const fn cla(&self) -> Cla {
        Cla(self.header[0])
    }
    /// INS.
    pub const fn ins(&self) -> u8 {
        self.header[1]
    }
    /// P1.
    pub const fn p1(&self) -> u8 {
        self.header[2]
    }
    /// P2.
    pub const fn p2(&self) -> u8 {
        self.header[3]
    }
    /// The command data field (empty for cases 1 and 2).
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Ne, the maximum number of response bytes expected: `None` when the
    /// APDU has no Le field. A short Le of `00` is 256; an extended Le of
    /// `00 00` is 65536.
    pub const fn le(&self) -> Option<usize> {
        self.le
    }
    /// True when Lc/Le used the extended (3-byte / 2-byte) encoding.
    pub const fn is_extended(&self) -> bool {
        self.extended
    }
    /// The four header bytes.
    pub const fn header(&self) -> [u8; 4] {
        self.header
    }

    /// The same command with another data field (the concatenation of a
    /// CLA-chained command's parts); the class byte loses its chaining bit.
    pub(crate) fn with_data<'b>(&self, data: &'b [u8]) -> CommandView<'b> {
        let mut header = self.header;
        header[0] &= !0x10;
        CommandView {
            header,
            data,
            le: self.le,
            extended: self.extended || data.len() > 255,
        }
    }
}

impl<'a> TryFrom<&'a [u8]> for CommandView<'a> {
    type Error = ParseError;

    fn try_from(apdu: &'a [u8]) -> Result<Self, ParseError> {
        let (header, body) = match apdu.split_first_chunk::<4>() {
            Some((h, b)) => (*h, b),
            None => return Err(ParseError::TooShort(apdu.len())),
        };
        if header[0] == 0xFF {
            return Err(ParseError::InvalidClass(0xFF));
        }
        let total = apdu.len();
        let mismatch = ParseError::LengthMismatch { total };
        let view = |data, le, extended| CommandView {
            header,
            data,
            le,
            extended,
        };
        match body {
            // Case 1.
            [] => Ok(view(&[], None, false)),
            // Case 2S.
            [le] => Ok(view(&[], Some(short_le(*le)), false)),
            // Extended cases start with a zero byte and have at least 3 bytes.
            [0, rest @ ..] if rest.len() >= 2 => {
                let Some((len_bytes, rest)) = rest.split_first_chunk::<2>() else {
                    return Err(mismatch);
                };
                let n = usize::from(u16::from_be_bytes(*len_bytes));
                if rest.is_empty() {
                    // Case 2E.
                    return Ok(view(&[], Some(extended_le(n)), true));
                }
                if n == 0 {
                    return Err(ParseError::ZeroExtendedLc);
                }
                match rest.len().checked_sub(n) {
                    // Case 3E.
                    Some(0) => Ok(view(rest, None, true)),
                    // Case 4E.
                    Some(2) => match rest.split_last_chunk::<2>() {
                        Some((data, le)) => Ok(view(
                            data,
                            Some(extended_le(usize::from(u16::from_be_bytes(*le)))),
                            true,
                        )),
                        None => Err(mismatch),
                    },
                    _ => Err(mismatch),
                }
            }
            [lc, rest @ ..] => {
                let n = usize::from(*lc);
                if n == 0 {
                    // `00` followed by fewer than two bytes: neither short nor extended.
                    return Err(mismatch);
                }
                match rest.len().checked_sub(n) {
                    // Case 3S.
                    Some(0) => Ok(view(rest, None, false)),
                    // Case 4S.
                    Some(1) => {
                        let (data, le) = rest.split_at(n);
                        Ok(view(data, le.first().map(|b| short_le(*b)), false))
                    }
                    _ => Err(mismatch),
                }
            }
        }
    }
}

const fn short_le(b: u8) -> usize {
    if b == 0 {
        256
    } else {
        b as usize
    }
}

const fn extended_le(n: usize) -> usize {
    if n == 0 {
        65536
    } else {
        n
    }
}

/// Builds a command APDU in its shortest encoding: short when `data` fits in
/// 255 bytes and `le` in 256, extended otherwise. Handy for tests and hosts.
pub fn build_command(header: [u8; 4], data: &[u8], le: Option<usize>) -> Vec<u8> {
    let extended = data.len() > 255 || le.is_some_and(|n| n > 256);
    let mut out = Vec::with_capacity(4 + 3 + data.len() + 2);
    out.extend_from_slice(&header);
    if extended {
        out.push(0);
        if !data.is_empty() {
            let n = u16::try_from(data.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(data);
        }
        if let Some(le) = le {
            let le = if le >= 65536 { 0 } else { le as u16 };
            out.extend_from_slice(&le.to_be_bytes());
        }
    } else {
        if !data.is_empty() {
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        if let Some(le) = le {
            out.push(if le >= 256 { 0 } else { le as u8 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn parse(b: &[u8]) -> Result<CommandView<'_>, ParseError> {
        CommandView::try_from(b)
    }

    #[test]
    fn case_1() {
        let c = parse(&hex!("00A40400")).unwrap();
        assert_eq!((c.ins(), c.p1(), c.p2()), (0xA4, 0x04, 0x00));
        assert!(c.data().is_empty());
        assert_eq!(c.le(), None);
    }

    #[test]
    fn case_2_short_and_le_zero_is_256() {
        assert_eq!(parse(&hex!("00C0000008")).unwrap().le(), Some(8));
        assert_eq!(parse(&hex!("00C0000000")).unwrap().le(), Some(256));
    }

    #[test]
    fn case_3_short() {
        let c = parse(&hex!("00A4040C07A000000116DB00")).unwrap();
        assert_eq!(c.data(), hex!("A000000116DB00"));
        assert_eq!(c.le(), None);
        assert!(!c.is_extended());
    }

    #[test]
    fn case_4_short() {
        let c = parse(&hex!("0052000002010202")).unwrap();
        assert_eq!(c.data(), hex!("0102"));
        assert_eq!(c.le(), Some(2));
    }

    #[test]
    fn case_2_extended() {
        let c = parse(&hex!("00C00000000100")).unwrap();
        assert_eq!(c.le(), Some(256));
        assert!(c.is_extended());
        assert_eq!(parse(&hex!("00C00000000000")).unwrap().le(), Some(65536));
    }

    #[test]
    fn case_3_and_4_extended() {
        let mut apdu = hex!("00420000000100").to_vec();
        apdu.extend(std::iter::repeat_n(0xAB, 256));
        let c = parse(&apdu).unwrap();
        assert_eq!(c.data().len(), 256);
        assert_eq!(c.le(), None);
        apdu.extend_from_slice(&[0x01, 0x00]);
        let c = parse(&apdu).unwrap();
        assert_eq!(c.data().len(), 256);
        assert_eq!(c.le(), Some(256));
    }

    #[test]
    fn malformed_lengths() {
        assert_eq!(parse(&hex!("00A404")), Err(ParseError::TooShort(3)));
        // Lc says 7, 6 present.
        assert!(matches!(
            parse(&hex!("00A4040007A000000116DB")),
            Err(ParseError::LengthMismatch { .. })
        ));
        // Two bytes too many after data.
        assert!(parse(&hex!("00A4040001AA0000")).is_err());
        // `00` then one byte: neither short nor extended.
        assert!(parse(&hex!("0020000000FF")).is_err());
        // Extended Lc zero with a body.
        assert_eq!(
            parse(&hex!("0042000000000001")),
            Err(ParseError::ZeroExtendedLc)
        );
        assert_eq!(
            parse(&hex!("FFA40400")),
            Err(ParseError::InvalidClass(0xFF))
        );
    }

    #[test]
    fn class_byte() {
        assert_eq!(Cla(0x00).channel(), Some(0));
        assert_eq!(Cla(0x03).channel(), Some(3));
        assert_eq!(Cla(0x80).channel(), Some(0));
        assert_eq!(Cla(0x81).channel(), Some(1));
        assert_eq!(Cla(0x40).channel(), Some(4));
        assert_eq!(Cla(0x4F).channel(), Some(19));
        assert_eq!(Cla(0x20).channel(), None);
        assert!(Cla(0x10).chaining());
        assert!(Cla(0x0C).secure_messaging());
        assert!(Cla(0x80).is_proprietary());
        assert!(!Cla(0x00).is_proprietary());
    }

    #[test]
    fn build_round_trips() {
        for (data_len, le) in [
            (0, None),
            (0, Some(8)),
            (5, None),
            (5, Some(256)),
            (300, Some(65536)),
            (0, Some(1000)),
        ] {
            let data = vec![0x5A; data_len];
            let apdu = build_command([0x80, 0x42, 0x00, 0x00], &data, le);
            let c = parse(&apdu).unwrap();
            assert_eq!(c.data(), &data[..]);
            assert_eq!(c.le(), le);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn build_then_parse(data in proptest::collection::vec(proptest::num::u8::ANY, 0..700),
                            le in proptest::option::of(1usize..=65536)) {
            let apdu = build_command([0x00, 0xB0, 0x01, 0x02], &data, le);
            let c = parse(&apdu).unwrap();
            proptest::prop_assert_eq!(c.data(), &data[..]);
            proptest::prop_assert_eq!(c.le(), le);
        }
    }
}
