//! Just enough X.509 to choose among certificates sharing a nickname and
//! to match a private key: validity and SubjectPublicKeyInfo.

use crate::asn1::{Reader, SEQUENCE};
use crate::error::DecodeError;

const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// What this crate reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo<'a> {
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The DER SubjectPublicKeyInfo.
    pub spki: &'a [u8],
}

impl<'a> CertInfo<'a> {
    /// Parses a DER certificate far enough to reach the SPKI.
    pub fn parse(der: &'a [u8]) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(der);
        let mut cert = outer.sequence()?;
        outer.finish()?;
        let mut tbs = cert.sequence()?;
        if tbs.peek_tag() == Some(0xA0) {
            tbs.any()?; // [0] version
        }
        tbs.read(crate::asn1::INTEGER)?; // serialNumber
        tbs.read(SEQUENCE)?; // signature
        tbs.read(SEQUENCE)?; // issuer
        let mut validity = tbs.sequence()?;
        let not_before = parse_time(&mut validity)?;
        let not_after = parse_time(&mut validity)?;
        validity.finish()?;
        tbs.read(SEQUENCE)?; // subject
        let spki = tbs.tlv(SEQUENCE)?.raw;
        Ok(Self {
            not_before,
            not_after,
            spki,
        })
    }
}

fn parse_time(r: &mut Reader<'_>) -> Result<i64, DecodeError> {
    let tlv = r.any()?;
    let (year, rest) = match tlv.tag {
        UTC_TIME => {
            let (yy, rest) = tlv
                .content
                .split_at_checked(2)
                .ok_or(DecodeError::Truncated)?;
            let yy = digits(yy)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        GENERALIZED_TIME => {
            let (yyyy, rest) = tlv
                .content
                .split_at_checked(4)
                .ok_or(DecodeError::Truncated)?;
            (digits(yyyy)?, rest)
        }
        found => {
            return Err(DecodeError::UnexpectedTag {
                expected: UTC_TIME,
                found,
            })
        }
    };
    // MMDDHHMMSSZ; DER requires seconds and "Z".
    if rest.len() != 11 || rest.last() != Some(&b'Z') {
        return Err(DecodeError::BadValue("certificate time not in DER form"));
    }
    let field = |i: usize| {
        rest.get(i..i + 2)
            .ok_or(DecodeError::Truncated)
            .and_then(digits)
    };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DecodeError::BadValue("certificate time out of range"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(bytes: &[u8]) -> Result<i64, DecodeError> {
    bytes.iter().try_fold(0i64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + i64::from(b - b'0'))
        } else {
            Err(DecodeError::BadValue("non-digit in certificate time"))
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn time(tag: u8, s: &str) -> Result<i64, DecodeError> {
        let mut der = vec![tag, s.len() as u8];
        der.extend_from_slice(s.as_bytes());
        parse_time(&mut Reader::new(&der))
    }

    #[test]
    fn times() {
        assert_eq!(time(UTC_TIME, "700101000000Z").unwrap(), 0);
        assert_eq!(time(UTC_TIME, "000229235959Z").unwrap(), 951_868_799);
        assert_eq!(time(UTC_TIME, "500101000000Z").unwrap(), -631_152_000);
        assert_eq!(
            time(GENERALIZED_TIME, "20380119031408Z").unwrap(),
            2_147_483_648
        );
        assert_eq!(
            time(GENERALIZED_TIME, "99991231235959Z").unwrap(),
            253_402_300_799
        );
        assert!(time(UTC_TIME, "7001010000Z").is_err());
        assert!(time(UTC_TIME, "700101000000+0100").is_err());
        assert!(time(UTC_TIME, "701301000000Z").is_err());
        assert!(time(UTC_TIME, "70010100000aZ").is_err());
        assert!(time(0x04, "700101000000Z").is_err());
        assert!(time(GENERALIZED_TIME, "201").is_err());
    }

    fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        crate::asn1::secret_tlv(tag, parts).to_vec()
    }

    fn skeleton(not_after: &[u8]) -> Vec<u8> {
        let validity = tlv(SEQUENCE, &[&tlv(UTC_TIME, &[b"700101000000Z"]), not_after]);
        let spki = hex!("30 02 05 00");
        let tbs = tlv(
            SEQUENCE,
            &[
                &hex!("A0 03 02 01 02 02 01 01 30 00 30 00"),
                &validity,
                &hex!("30 00"),
                &spki,
            ],
        );
        tlv(SEQUENCE, &[&tbs, &hex!("30 00 03 01 00")])
    }

    #[test]
    fn parses_a_certificate_skeleton() {
        let der = skeleton(&tlv(GENERALIZED_TIME, &[b"20380119031408Z"]));
        let info = CertInfo::parse(&der).unwrap();
        assert_eq!((info.not_before, info.not_after), (0, 2_147_483_648));
        assert_eq!(info.spki, &hex!("30 02 05 00"));
        for cut in 0..der.len() {
            assert!(CertInfo::parse(&der[..cut]).is_err());
        }
        // A time without "Z" is refused.
        assert!(CertInfo::parse(&skeleton(&tlv(GENERALIZED_TIME, &[b"20380119031408"]))).is_err());
    }
}
