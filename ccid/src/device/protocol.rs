//! What the reader needs to know about the card's transmission protocol:
//! the ATR's interface bytes, the CCID protocol data structures
//! (`abProtocolDataStructure`), T=0 TPDUs and PPS requests.

use super::wire::SlotError;

/// The interface bytes of an ATR that matter to a reader. Built from any
/// bytes; a malformed ATR yields the defaults (T=0, Fi/Di 11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AtrInfo {
    /// Bit `t` set when T=`t` is offered (T=0 when no TD is present).
    pub(crate) protocols: u16,
    /// The first protocol offered (TD1's), the default.
    pub(crate) first: u8,
    pub(crate) ta1: Option<u8>,
    pub(crate) tc1: Option<u8>,
    /// TC2 for T=0 (the waiting integer WI).
    pub(crate) tc2: Option<u8>,
    /// First TA / TB / TC after a TD announcing T=1 (IFSC, BWI/CWI, EDC).
    pub(crate) t1_ta: Option<u8>,
    pub(crate) t1_tb: Option<u8>,
    pub(crate) t1_tc: Option<u8>,
    /// TS = 3F.
    pub(crate) inverse: bool,
}

impl AtrInfo {
    pub(crate) fn parse(atr: &[u8]) -> AtrInfo {
        let mut info = AtrInfo {
            protocols: 1,
            ..AtrInfo::default()
        };
        let Some((&ts, rest)) = atr.split_first() else {
            return info;
        };
        info.inverse = ts == 0x3F;
        let mut bytes = rest.iter().copied();
        let Some(t0) = bytes.next() else {
            return info;
        };
        let mut y = t0 >> 4;
        // Interface level i (1-based) and the protocol its bytes belong to.
        let mut level = 1u8;
        let mut current_t: Option<u8> = None;
        let mut explicit = 0u16;
        let mut first = None;
        loop {
            let mut ta = None;
            let mut tb = None;
            let mut tc = None;
            if y & 0x1 != 0 {
                ta = bytes.next();
            }
            if y & 0x2 != 0 {
                tb = bytes.next();
            }
            if y & 0x4 != 0 {
                tc = bytes.next();
            }
            match level {
                1 => {
                    info.ta1 = ta;
                    info.tc1 = tc;
                }
                2 if current_t == Some(0) => info.tc2 = tc,
                _ if level >= 3 && current_t == Some(1) => {
                    info.t1_ta = info.t1_ta.or(ta);
                    info.t1_tb = info.t1_tb.or(tb);
                    info.t1_tc = info.t1_tc.or(tc);
                }
                _ => {}
            }
            if y & 0x8 == 0 {
                break;
            }
            let Some(td) = bytes.next() else {
                break;
            };
            let t = td & 0x0F;
            explicit |= 1 << t;
            first.get_or_insert(t);
            current_t = Some(t);
            y = td >> 4;
            level = level.saturating_add(1);
            if level > 15 {
                break;
            }
        }
        if explicit != 0 {
            info.protocols = explicit;
        }
        info.first = first.unwrap_or(0);
        info
    }

    pub(crate) fn offers(&self, t: u8) -> bool {
        t < 16 && self.protocols & (1 << t) != 0
    }

    /// The protocol a reader starts with: the first offered of T=0, T=1.
    pub(crate) fn default_protocol(&self) -> u8 {
        if self.first <= 1 && self.offers(self.first) {
            self.first
        } else if self.offers(0) {
            0
        } else {
            1
        }
    }
}

/// A protocol and its CCID data structure (5 bytes for T=0, 7 for T=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) protocol: u8,
    pub(crate) data: [u8; 7],
}

/// `bmTCCKST1` bit for CRC (we only do LRC).
const TCCKS_CRC: u8 = 0x01;

impl Params {
    /// T=0 with ISO defaults (no card).
    pub(crate) fn default_t0() -> Params {
        Params {
            protocol: 0,
            data: [0x11, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00],
        }
    }

    /// The parameters a reader derives from an ATR for protocol `t`
    /// (`fidi` overrides TA1, after a PPS).
    pub(crate) fn from_atr(info: &AtrInfo, t: u8, fidi: Option<u8>) -> Params {
        let fidi = fidi.or(info.ta1).unwrap_or(0x11);
        let convention = if info.inverse { 0x02 } else { 0x00 };
        let guard = info.tc1.unwrap_or(0);
        if t == 1 {
            Params {
                protocol: 1,
                data: [
                    fidi,
                    0x10 | convention,
                    guard,
                    info.t1_tb.unwrap_or(0x4D),
                    0x00,
                    info.t1_ta.unwrap_or(0x20),
                    0x00,
                ],
            }
        } else {
            Params {
                protocol: 0,
                data: [
                    fidi,
                    convention,
                    guard,
                    info.tc2.unwrap_or(0x0A),
                    0x00,
                    0x00,
                    0x00,
                ],
            }
        }
    }

    /// The bytes of `abProtocolDataStructure`.
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = if self.protocol == 1 { 7 } else { 5 };
        self.data.get(..len).unwrap_or(&self.data)
    }

    /// Validates a SetParameters payload for `protocol`; the error is the
    /// offset of the bad field (abData starts at offset 10).
    pub(crate) fn set(protocol: u8, data: &[u8]) -> Result<Params, SlotError> {
        let mut p = Params {
            protocol,
            data: [0; 7],
        };
        let want = if protocol == 1 { 7 } else { 5 };
        if data.len() != want {
            return Err(SlotError::bad_field(super::wire::ERR_OFFSET_LENGTH));
        }
        for (d, s) in p.data.iter_mut().zip(data) {
            *d = *s;
        }
        let [fidi, tccks, _guard, _wi, clock_stop, ifsc, _nad] = p.data;
        // Fi index 7, 8 and 0xE/0xF and Di index 0, 0xA..=0xF are RFU.
        let fi = fidi >> 4;
        let di = fidi & 0x0F;
        if matches!(fi, 0x07 | 0x08 | 0x0E | 0x0F) || di == 0 || di >= 0x0A {
            return Err(SlotError::bad_field(10));
        }
        let tccks_ok = if protocol == 1 {
            // 10/12: LRC, direct/inverse; CRC is not offered.
            tccks & !0x02 == 0x10 && tccks & TCCKS_CRC == 0
        } else {
            tccks & !0x02 == 0x00
        };
        if !tccks_ok {
            return Err(SlotError::bad_field(11));
        }
        if clock_stop > 0x03 {
            return Err(SlotError::bad_field(14));
        }
        if protocol == 1 && (ifsc == 0 || ifsc == 0xFF) {
            return Err(SlotError::bad_field(15));
        }
        Ok(p)
    }
}

/// A T=0 TPDU as the card would see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum T0Tpdu<'a> {
    /// A PPS request (first byte `FF`).
    Pps(&'a [u8]),
    /// A command for the card: 4 or 5 header bytes, or a header with
    /// `P3` data bytes (and, leniently, one trailing `Le` byte).
    Command(&'a [u8]),
}

/// Splits a T=0 XfrBlock payload. A TPDU shorter than 4 bytes or with
/// fewer data bytes than P3 leaves the card waiting (ICC mute); more
/// bytes than P3 + 1 is an overrun.
pub(crate) fn classify_t0(tpdu: &[u8]) -> Result<T0Tpdu<'_>, SlotError> {
    if tpdu.first() == Some(&0xFF) {
        return Ok(T0Tpdu::Pps(tpdu));
    }
    match tpdu.len() {
        0..=3 => Err(SlotError::IccMute),
        4 | 5 => Ok(T0Tpdu::Command(tpdu)),
        n => {
            let p3 = usize::from(tpdu.get(4).copied().unwrap_or(0));
            let body = n - 5;
            if p3 == 0 || body > p3 + 1 {
                Err(SlotError::XfrOverrun)
            } else if body < p3 {
                Err(SlotError::IccMute)
            } else {
                Ok(T0Tpdu::Command(tpdu))
            }
        }
    }
}

/// Checks a PPS request (`FF PPS0 [PPS1] [PPS2] [PPS3] PCK`) against the
/// card's ATR. A card confirms a request it accepts by echoing it; it
/// does not answer one it cannot parse. Returns the protocol and PPS1.
pub(crate) fn check_pps(request: &[u8], atr: &AtrInfo) -> Option<(u8, Option<u8>)> {
    let (&pps0, rest) = request.split_first()?.1.split_first()?;
    let optional =
        usize::from((pps0 >> 4) & 1) + usize::from((pps0 >> 5) & 1) + usize::from((pps0 >> 6) & 1);
    if pps0 & 0x80 != 0 || rest.len() != optional + 1 {
        return None;
    }
    if request.iter().fold(0u8, |a, b| a ^ b) != 0 {
        return None;
    }
    let t = pps0 & 0x0F;
    if t > 1 || !atr.offers(t) {
        return None;
    }
    let pps1 = if pps0 & 0x10 != 0 {
        rest.first().copied()
    } else {
        None
    };
    if let Some(fidi) = pps1 {
        // The card accepts at most what its TA1 offers.
        let max = atr.ta1.unwrap_or(0x11);
        if fidi >> 4 != max >> 4 || fidi & 0x0F == 0 || fidi & 0x0F > max & 0x0F {
            return None;
        }
    }
    Some((t, pps1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn atr_interface_bytes() {
        let cac = AtrInfo::parse(&cac::DEFAULT_ATR);
        assert_eq!(cac.protocols, 0b01);
        assert_eq!(cac.default_protocol(), 0);
        assert_eq!(cac.ta1, Some(0x18));
        assert_eq!(cac.tc1, Some(0x00));
        let t1 = AtrInfo::parse(&hex!("3B800181"));
        assert_eq!(t1.protocols, 0b10);
        assert_eq!(t1.default_protocol(), 1);
        assert_eq!(t1.ta1, None);
        // T=0 and T=1, TA3 = FE (IFSC), TB3 = 45, TC3 absent.
        let both = AtrInfo::parse(&hex!("3B98 18 80 B1 FE 45 1F 07 0000000000000000 00"));
        assert!(both.offers(0) && both.offers(1));
        assert_eq!(both.default_protocol(), 0);
        assert_eq!(both.t1_ta, Some(0xFE));
        assert_eq!(both.t1_tb, Some(0x45));
        // Garbage never panics and means T=0.
        for junk in [&[][..], &[0x3B], &[0x3B, 0xFF], &[0x3F, 0xF0, 0xFF]] {
            let i = AtrInfo::parse(junk);
            assert!(i.offers(0) || i.protocols != 0);
        }
        assert!(AtrInfo::parse(&[0x3F, 0x00]).inverse);
    }

    #[test]
    fn params_from_atr() {
        let cac = AtrInfo::parse(&cac::DEFAULT_ATR);
        assert_eq!(Params::from_atr(&cac, 0, None).bytes(), hex!("1800000A00"));
        assert_eq!(
            Params::from_atr(&cac, 0, Some(0x11)).bytes(),
            hex!("1100000A00")
        );
        let t1 = AtrInfo::parse(&hex!("3B800181"));
        assert_eq!(
            Params::from_atr(&t1, 1, None).bytes(),
            hex!("11 10 00 4D 00 20 00")
        );
    }

    #[test]
    fn set_parameters_validation() {
        assert_eq!(
            Params::set(0, &hex!("1800000A00")).unwrap().bytes(),
            hex!("1800000A00")
        );
        assert_eq!(
            Params::set(0, &hex!("1800000A")),
            Err(SlotError::bad_field(1))
        );
        assert_eq!(
            Params::set(1, &hex!("1800000A00")),
            Err(SlotError::bad_field(1))
        );
        assert_eq!(
            Params::set(0, &hex!("7100000A00")),
            Err(SlotError::bad_field(10))
        );
        assert_eq!(
            Params::set(0, &hex!("1101000A00")),
            Err(SlotError::bad_field(11))
        );
        assert_eq!(
            Params::set(1, &hex!("11 11 00 4D 00 20 00")),
            Err(SlotError::bad_field(11))
        );
        assert_eq!(
            Params::set(0, &hex!("1100000A04")),
            Err(SlotError::bad_field(14))
        );
        assert_eq!(
            Params::set(1, &hex!("11 10 00 4D 00 00 00")),
            Err(SlotError::bad_field(15))
        );
        assert!(Params::set(1, &hex!("11 10 00 4D 00 FE 00")).is_ok());
    }

    #[test]
    fn t0_tpdus() {
        use T0Tpdu::*;
        let ok = classify_t0;
        assert_eq!(ok(&hex!("00A40400")), Ok(Command(&hex!("00A40400"))));
        assert_eq!(ok(&hex!("00C0000010")), Ok(Command(&hex!("00C0000010"))));
        assert_eq!(
            ok(&hex!("00A4040002 3F00")),
            Ok(Command(&hex!("00A40400023F00")))
        );
        // Case 4 with an Le byte: passed on.
        assert_eq!(
            ok(&hex!("00A4040002 3F00 00")),
            Ok(Command(&hex!("00A40400023F0000")))
        );
        assert_eq!(ok(&hex!("00A4")), Err(SlotError::IccMute));
        assert_eq!(ok(&hex!("00A4040003 3F00")), Err(SlotError::IccMute));
        assert_eq!(ok(&hex!("00A4040001 3F00 00")), Err(SlotError::XfrOverrun));
        assert_eq!(ok(&hex!("00A4040000 3F")), Err(SlotError::XfrOverrun));
        assert_eq!(ok(&hex!("FF1018F7")), Ok(Pps(&hex!("FF1018F7"))));
    }

    #[test]
    fn pps() {
        let cac = AtrInfo::parse(&cac::DEFAULT_ATR);
        assert_eq!(check_pps(&hex!("FF1018F7"), &cac), Some((0, Some(0x18))));
        assert_eq!(check_pps(&hex!("FF1011FE"), &cac), Some((0, Some(0x11))));
        assert_eq!(check_pps(&hex!("FF00FF"), &cac), Some((0, None)));
        // Bad PCK, T=1 not offered, faster than TA1, truncated, PPS0 b8.
        assert_eq!(check_pps(&hex!("FF1018F6"), &cac), None);
        assert_eq!(check_pps(&hex!("FF01FE"), &cac), None);
        assert_eq!(check_pps(&hex!("FF1019F6"), &cac), None);
        assert_eq!(check_pps(&hex!("FF10EF"), &cac), None);
        assert_eq!(check_pps(&hex!("FF807F"), &cac), None);
        assert_eq!(check_pps(&hex!("FF"), &cac), None);
        let t1 = AtrInfo::parse(&hex!("3B800181"));
        assert_eq!(check_pps(&hex!("FF01FE"), &t1), Some((1, None)));
    }
}
