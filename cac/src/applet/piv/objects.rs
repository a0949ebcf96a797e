//! The PIV data objects the card starts with: CCC, CHUID (FASC-N, GUID,
//! expiry), Discovery, Key History, Printed Information, Security Object
//! and one certificate container per filled key slot.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ber;
use super::options::{certificate_tag, PIV_AID};

/// Card Capability Container.
pub(crate) const CCC: [u8; 3] = [0x5F, 0xC1, 0x07];
/// Card Holder Unique Identifier.
pub(crate) const CHUID: [u8; 3] = [0x5F, 0xC1, 0x02];
/// Security Object.
pub(crate) const SECURITY_OBJECT: [u8; 3] = [0x5F, 0xC1, 0x06];
/// Printed Information.
pub(crate) const PRINTED_INFO: [u8; 3] = [0x5F, 0xC1, 0x09];
/// Key History.
pub(crate) const KEY_HISTORY: [u8; 3] = [0x5F, 0xC1, 0x0C];
/// Discovery Object.
pub(crate) const DISCOVERY: [u8; 1] = [0x7E];

/// True for every tag GET DATA / PUT DATA may name.
pub(crate) fn is_object_tag(tag: &[u8]) -> bool {
    match tag {
        [0x7E] | [0x7F, 0x61] => true,
        [0x5F, 0xC1, n] => (0x01..=0x23).contains(n),
        _ => false,
    }
}

/// Objects readable only after VERIFY: fingerprints, facial image,
/// printed information, iris images, pairing code.
pub(crate) fn needs_pin(tag: &[u8]) -> bool {
    matches!(tag, [0x5F, 0xC1, 0x03 | 0x08 | 0x09 | 0x21 | 0x23])
}

/// What the objects are made from.
pub(crate) struct Inputs<'a> {
    pub(crate) card_id: &'a [u8],
    /// `(slot, certificate DER)` per identity.
    pub(crate) certificates: Vec<(u8, &'a [u8])>,
    /// Cardholder name for Printed Information (the first certificate's CN).
    pub(crate) holder: String,
    /// Card expiry as `YYYYMMDD`.
    pub(crate) expiry: [u8; 8],
}

/// Builds the initial object table, keyed by GET DATA tag.
pub(crate) fn build(inputs: &Inputs<'_>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut objects = BTreeMap::new();
    objects.insert(CCC.to_vec(), ccc(inputs.card_id));
    objects.insert(CHUID.to_vec(), chuid(inputs.card_id, &inputs.expiry));
    objects.insert(DISCOVERY.to_vec(), discovery());
    objects.insert(PRINTED_INFO.to_vec(), printed_info(inputs));
    objects.insert(
        SECURITY_OBJECT.to_vec(),
        // Mapping and LDS signature left empty: the CA key is not on the card.
        wrap(&[0xBA, 0x00, 0xBB, 0x00, 0xFE, 0x00]),
    );
    let mut retired = 0u8;
    for (slot, cert) in &inputs.certificates {
        if let Some(tag) = certificate_tag(*slot) {
            objects.insert(tag.to_vec(), certificate_object(cert));
        }
    }
    // OpenSC reads the first n retired containers: count the run from 82.
    while inputs
        .certificates
        .iter()
        .any(|(s, _)| *s == 0x82 + retired)
        && retired < 20
    {
        retired += 1;
    }
    objects.insert(
        KEY_HISTORY.to_vec(),
        wrap(&[0xC1, 0x01, retired, 0xC2, 0x01, 0x00, 0xFE, 0x00]),
    );
    objects
}

/// `53 L value`.
pub(crate) fn wrap(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    ber::push(&mut out, &[0x53], value);
    out
}

/// `53 L { 70 L cert | 71 01 00 | FE 00 }`.
pub(crate) fn certificate_object(cert: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(cert.len() + 10);
    ber::push(&mut inner, &[0x70], cert);
    inner.extend_from_slice(&[0x71, 0x01, 0x00, 0xFE, 0x00]);
    wrap(&inner)
}

fn ccc(card_id: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(0x33);
    // Card Identifier: GSC-RID, manufacturer FF, card type 02, 14-byte ID.
    let mut f0 = vec![0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02];
    let digest = Sha256::new()
        .chain_update(b"vcac piv card id")
        .chain_update(card_id)
        .finalize();
    f0.extend_from_slice(digest.get(..14).unwrap_or_default());
    ber::push(&mut v, &[0xF0], &f0);
    v.extend_from_slice(&[
        0xF1, 0x01, 0x21, 0xF2, 0x01, 0x21, 0xF3, 0x00, 0xF4, 0x01, 0x00, 0xF5, 0x01, 0x10, 0xF6,
        0x00, 0xF7, 0x00, 0xFA, 0x00, 0xFB, 0x00, 0xFC, 0x00, 0xFD, 0x00, 0xFE, 0x00,
    ]);
    wrap(&v)
}

/// The card's GUID: derived from the card ID, RFC 4122 version 4 layout.
pub(crate) fn guid(card_id: &[u8]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"vcac piv guid")
        .chain_update(card_id)
        .finalize();
    let mut g = [0u8; 16];
    for (d, s) in g.iter_mut().zip(digest.iter()) {
        *d = *s;
    }
    g[6] = (g[6] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

fn chuid(card_id: &[u8], expiry: &[u8; 8]) -> Vec<u8> {
    // Agency 9999 (non-federal issuer), system 0000, a 6-digit credential
    // number from the card ID, series 0, issue 1, person 0000000001,
    // category 1, organisation 9999, association 1.
    let n = card_id
        .iter()
        .take(4)
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        % 1_000_000;
    let credential = format!("{n:06}");
    let fields: [&[u8]; 9] = [
        b"9999",
        b"0000",
        credential.as_bytes(),
        b"0",
        b"1",
        b"0000000001",
        b"1",
        b"9999",
        b"1",
    ];
    let mut v = Vec::with_capacity(0x3B);
    ber::push(&mut v, &[0x30], &fasc_n(&fields));
    ber::push(&mut v, &[0x34], &guid(card_id));
    ber::push(&mut v, &[0x35], expiry);
    // The issuer signature needs the CA key, which the card never holds.
    v.extend_from_slice(&[0x3E, 0x00, 0xFE, 0x00]);
    wrap(&v)
}

/// Encodes a FASC-N (25 bytes) from its nine numeric fields: agency (4),
/// system (4), credential (6), series (1), issue (1), person (10),
/// category (1), organisation (4), association (1). Characters are 4 data
/// bits least-significant first plus an odd-parity bit, packed MSB first;
/// sentinels SS `B`, FS `D`, ES `F`; the LRC XORs the 39 characters before.
pub(crate) fn fasc_n(fields: &[&[u8]; 9]) -> [u8; 25] {
    const SS: u8 = 0x0B;
    const FS: u8 = 0x0D;
    const ES: u8 = 0x0F;
    let digit = |c: &u8| c.wrapping_sub(b'0') & 0x0F;
    let mut chars = Vec::with_capacity(40);
    chars.push(SS);
    for (i, field) in fields.iter().enumerate() {
        chars.extend(field.iter().map(digit));
        // Fields 0–4 end with FS; person, category and organisation run together.
        if i < 5 {
            chars.push(FS);
        }
    }
    chars.push(ES);
    let lrc = chars.iter().fold(0u8, |a, c| a ^ c);
    chars.push(lrc);
    let mut out = [0u8; 25];
    let mut bit = 0usize;
    for c in chars.iter().take(40) {
        let ones = c.count_ones();
        let parity = u8::from(ones % 2 == 0);
        let bits = [c & 1, (c >> 1) & 1, (c >> 2) & 1, (c >> 3) & 1, parity];
        for b in bits {
            if b == 1 {
                if let Some(byte) = out.get_mut(bit / 8) {
                    *byte |= 0x80 >> (bit % 8);
                }
            }
            bit += 1;
        }
    }
    out
}

fn discovery() -> Vec<u8> {
    let mut v = Vec::with_capacity(0x14);
    ber::push(&mut v, &[0x4F], &PIV_AID);
    // PIN usage policy: the PIV application PIN only.
    ber::push(&mut v, &[0x5F, 0x2F], &[0x40, 0x00]);
    let mut out = Vec::with_capacity(0x14);
    ber::push(&mut out, &DISCOVERY, &v);
    out
}

fn printed_info(inputs: &Inputs<'_>) -> Vec<u8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV",
        b"DEC",
    ];
    let mut v = Vec::new();
    let name: Vec<u8> = inputs.holder.bytes().take(125).collect();
    ber::push(&mut v, &[0x01], &name);
    ber::push(&mut v, &[0x02], b"VCAC TEST");
    let e = &inputs.expiry;
    let month = usize::from((e[4].wrapping_sub(b'0')) * 10 + e[5].wrapping_sub(b'0'));
    let mut date = e[..4].to_vec();
    date.extend_from_slice(MONTHS.get(month.wrapping_sub(1)).map_or(b"DEC", |m| *m));
    date.extend_from_slice(&e[6..8]);
    ber::push(&mut v, &[0x04], &date);
    let serial: String = guid(inputs.card_id)
        .iter()
        .take(10)
        .map(|b| format!("{b:02X}"))
        .collect();
    ber::push(&mut v, &[0x05], serial.as_bytes());
    ber::push(&mut v, &[0x06], b"VCAC");
    v.extend_from_slice(&[0xFE, 0x00]);
    wrap(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn fasc_n_matches_the_known_good_encoding() {
        // 9999/0000/000001/0/1/0000000001/1/9999/1 from piv.md §5.4.
        let got = fasc_n(&[
            b"9999",
            b"0000",
            b"000001",
            b"0",
            b"1",
            b"0000000001",
            b"1",
            b"9999",
            b"1",
        ]);
        assert_eq!(
            got,
            hex!("D4E739D821086C1084218583685821084210843084E739C3E2")
        );
    }

    #[test]
    fn discovery_and_key_history_bytes() {
        assert_eq!(
            discovery(),
            hex!("7E12 4F0BA0000003080000100001 00 5F2F024000")
        );
        let objects = build(&Inputs {
            card_id: &[1; 10],
            certificates: vec![
                (0x9A, &[0x30, 0x00]),
                (0x82, &[0x30, 0x00]),
                (0x83, &[0x30, 0x00]),
            ],
            holder: "DOE".into(),
            expiry: *b"20341230",
        });
        assert_eq!(
            objects[&KEY_HISTORY.to_vec()],
            hex!("5308 C10102 C20100 FE00")
        );
        assert_eq!(
            objects[&[0x5F, 0xC1, 0x05][..].to_vec()],
            hex!("5309 70023000 710100 FE00")
        );
        assert_eq!(objects[&CCC.to_vec()].len(), 0x35);
        let chuid = &objects[&CHUID.to_vec()];
        assert_eq!(&chuid[..5], hex!("533B3019D4"));
        assert_eq!(chuid.len(), 61);
        assert!(objects[&PRINTED_INFO.to_vec()]
            .windows(11)
            .any(|w| w == hex!("04 09 32303334444543 3330")));
    }
}
