//! The two PIV objects an issuer signs (SP 800-73-4, FIPS 201): the
//! CHUID's Issuer Asymmetric Signature (`3E`) and the Security Object
//! (`BA` mapping, `BB` signed LDS object).
//!
//! The card never holds the signing key. The issuer (`vcac provision`)
//! reads the objects the card builds, signs them, and stores the signed
//! objects in the card directory, where they load like objects written
//! with PUT DATA. These helpers do the byte work on both sides; the CMS
//! signatures themselves come from the issuer (`certs-fixtures`).
//!
//! ```text
//!  card objects ─► chuid_signed_content ─► CMS (detached) ─► chuid_with_signature
//!               ─► object_contents (CCC, CHUID, …) ─► LDS + CMS ─► security_object
//! ```
//!
//! When the card itself changes a covered object later (PUT DATA), the
//! Security Object is kept as it was: without the issuer's key it cannot
//! be re-signed, so its hash for that object no longer matches — as on a
//! real card written after issuance. A rewritten CHUID carries whatever
//! signature the writer put in it.

use super::ber;

/// The objects the Security Object covers: `(data group number, GET DATA
/// tag, legacy container ID)`. Certificates are signed by their CA and
/// are not covered (nor changed by key generation or import).
pub const SECURITY_OBJECT_GROUPS: [(u8, &[u8], u16); 5] = [
    (1, &[0x5F, 0xC1, 0x07], 0xDB00), // Card Capability Container
    (2, &[0x5F, 0xC1, 0x02], 0x3000), // CHUID
    (3, &[0x5F, 0xC1, 0x09], 0x3001), // Printed Information
    (4, &[0x7E], 0x6050),             // Discovery Object
    (5, &[0x5F, 0xC1, 0x0C], 0x6060), // Key History Object
];

/// GET DATA tag of the CHUID.
pub const CHUID_TAG: [u8; 3] = [0x5F, 0xC1, 0x02];
/// GET DATA tag of the Security Object.
pub const SECURITY_OBJECT_TAG: [u8; 3] = [0x5F, 0xC1, 0x06];

/// The contents of an object as GET DATA returns it (`53 L …` or `7E L
/// …`): the container's TLVs, which the Security Object hashes. `None`
/// when it is not one well-formed TLV.
pub fn object_contents(object: &[u8]) -> Option<&[u8]> {
    match ber::split(object)? {
        ([0x53] | [0x7E], value, []) => Some(value),
        _ => None,
    }
}

/// One element of an object: `(tag, value, the whole TLV)`.
type Element<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// The `(data group number, container ID)` pairs of a Security Object's
/// `BA` mapping.
pub type DataGroupMap = Vec<(u8, u16)>;

/// The TLVs of a CHUID object (`53 L …`) in order, or `None` when it is
/// malformed.
fn chuid_elements(chuid: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut rest = ber::only(chuid, &[0x53])?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (tag, value, more) = ber::split(rest)?;
        let whole = rest.get(..rest.len() - more.len())?;
        out.push((tag, value, whole));
        rest = more;
    }
    Some(out)
}

/// What the CHUID's signature covers: its TLVs concatenated, without the
/// Buffer Length (`EE`), the signature (`3E`) and the Error Detection
/// Code (`FE`). `None` when the object is malformed.
pub fn chuid_signed_content(chuid: &[u8]) -> Option<Vec<u8>> {
    let elements = chuid_elements(chuid)?;
    let mut out = Vec::with_capacity(chuid.len());
    for (tag, _, whole) in elements {
        if !matches!(tag, [0xEE] | [0x3E] | [0xFE]) {
            out.extend_from_slice(whole);
        }
    }
    Some(out)
}

/// The CHUID's signature (`3E` value), empty when unsigned; `None` when
/// the object is malformed or has no `3E`.
pub fn chuid_signature(chuid: &[u8]) -> Option<&[u8]> {
    chuid_elements(chuid)?
        .into_iter()
        .find(|(tag, _, _)| *tag == [0x3E])
        .map(|(_, value, _)| value)
}

/// The CHUID with `signature` as its Issuer Asymmetric Signature: the
/// signed TLVs, then `3E L signature`, then `FE 00`. `None` when the
/// object is malformed or the result would not fit a BER length.
pub fn chuid_with_signature(chuid: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let mut inner = chuid_signed_content(chuid)?;
    ber::push(&mut inner, &[0x3E], signature);
    inner.extend_from_slice(&[0xFE, 0x00]);
    wrap_checked(&inner)
}

/// The Security Object `53 { BA mapping, BB signed LDS, FE 00 }`:
/// `mapping` holds `(data group number, container ID)`, three bytes each;
/// `signed_lds` is the CMS SignedData over the LDS security object.
/// `None` when it would not fit a BER length.
pub fn security_object(mapping: &[(u8, u16)], signed_lds: &[u8]) -> Option<Vec<u8>> {
    let mut map = Vec::with_capacity(mapping.len() * 3);
    for (group, container) in mapping {
        map.push(*group);
        map.extend_from_slice(&container.to_be_bytes());
    }
    if map.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut inner = Vec::with_capacity(map.len() + signed_lds.len() + 12);
    ber::push(&mut inner, &[0xBA], &map);
    ber::push(&mut inner, &[0xBB], signed_lds);
    inner.extend_from_slice(&[0xFE, 0x00]);
    wrap_checked(&inner)
}

/// The parts of a Security Object: the `(data group, container ID)`
/// mapping and the `BB` value. `None` when malformed.
pub fn parse_security_object(object: &[u8]) -> Option<(DataGroupMap, &[u8])> {
    let inner = ber::only(object, &[0x53])?;
    let (tag, map, rest) = ber::split(inner)?;
    let (tag2, lds, rest) = ber::split(rest)?;
    if tag != [0xBA] || tag2 != [0xBB] || rest != [0xFE, 0x00] || map.len() % 3 != 0 {
        return None;
    }
    let mapping = map
        .chunks_exact(3)
        .map(|c| match c {
            [g, hi, lo] => Some((*g, u16::from_be_bytes([*hi, *lo]))),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((mapping, lds))
}

/// `53 L value`, if `value` fits a two-byte BER length.
fn wrap_checked(value: &[u8]) -> Option<Vec<u8>> {
    (value.len() <= usize::from(u16::MAX)).then(|| super::objects::wrap(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    const UNSIGNED: [u8; 24] = hex!("5316 3002 1122 3402 3344 3508 3230333031323331 3E00 FE00");

    #[test]
    fn chuid_signed_content_and_signature_round_trip() {
        assert_eq!(
            chuid_signed_content(&UNSIGNED).unwrap(),
            hex!("3002 1122 3402 3344 3508 3230333031323331")
        );
        assert_eq!(chuid_signature(&UNSIGNED), Some(&[][..]));
        let signature = vec![0xAB; 300];
        let signed = chuid_with_signature(&UNSIGNED, &signature).unwrap();
        assert_eq!(&signed[..4], hex!("53 82 01 44"));
        assert_eq!(signed.len(), 4 + 0x144);
        assert_eq!(&signed[4..22], &UNSIGNED[2..20]);
        assert_eq!(&signed[22..26], hex!("3E 82 01 2C"));
        assert_eq!(&signed[signed.len() - 2..], hex!("FE 00"));
        assert_eq!(chuid_signature(&signed), Some(&signature[..]));
        // The signed content does not move when the signature changes.
        assert_eq!(
            chuid_signed_content(&signed),
            chuid_signed_content(&UNSIGNED)
        );
        // EE (buffer length) is not signed either.
        let with_ee = hex!("5308 EE02 0010 3002 1122");
        assert_eq!(chuid_signed_content(&with_ee).unwrap(), hex!("3002 1122"));
    }

    #[test]
    fn malformed_objects_are_refused() {
        for bad in [
            &hex!("")[..],
            &hex!("53")[..],
            &hex!("5304 3002 11")[..],
            &hex!("5302 3000 00")[..],
            &hex!("5402 3000")[..],
        ] {
            assert_eq!(chuid_signed_content(bad), None, "{bad:02X?}");
            assert_eq!(chuid_with_signature(bad, &[1]), None);
        }
        assert_eq!(chuid_signature(&hex!("5302 3000")), None);
        assert_eq!(chuid_with_signature(&UNSIGNED, &vec![0; 0x10000]), None);
        assert_eq!(object_contents(&hex!("7E02 4F00")), Some(&hex!("4F00")[..]));
        assert_eq!(object_contents(&hex!("5302 4F00 00")), None);
        assert_eq!(object_contents(&hex!("7002 4F00")), None);
    }

    #[test]
    fn security_object_bytes_and_parse() {
        let so = security_object(&[(1, 0xDB00), (2, 0x3000)], &hex!("3000")).unwrap();
        assert_eq!(so, hex!("530E BA06 01DB00 023000 BB02 3000 FE00"));
        let (mapping, lds) = parse_security_object(&so).unwrap();
        assert_eq!(mapping, [(1, 0xDB00), (2, 0x3000)]);
        assert_eq!(lds, hex!("3000"));
        for bad in [
            &hex!("5308 BA00 BB02 3000 FE00 00")[..],
            &hex!("5306 BA01 01 BB00 FE00")[..],
            &hex!("5306 BB00 BA00 FE00")[..],
            &hex!("5304 BA00 BB00")[..],
        ] {
            assert_eq!(parse_security_object(bad), None, "{bad:02X?}");
        }
    }
}
