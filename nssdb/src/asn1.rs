//! A minimal DER reader and writer: just what NSS's structures need, with
//! the raw TLV bytes kept (the AES IV quirk needs them) and every length
//! checked against the input.

use zeroize::Zeroizing;

use crate::error::DecodeError;

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const NULL: u8 = 0x05;
pub(crate) const OID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
/// `[1]` constructed, context-specific (ECPrivateKey's publicKey).
pub(crate) const CONTEXT_1: u8 = 0xA1;

/// One element: its tag, its whole encoding and its content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) raw: &'a [u8],
    pub(crate) content: &'a [u8],
}

/// Reads consecutive elements from a byte string.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next tag, if any bytes are left.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>, DecodeError> {
        let (&tag, after_tag) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        if tag & 0x1F == 0x1F {
            // High tag numbers never occur in the structures read here.
            return Err(DecodeError::BadValue("multi-byte DER tag"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DecodeError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 {
                return Err(DecodeError::BadLength);
            }
            let (len_bytes, rest) = after_len
                .split_at_checked(n)
                .ok_or(DecodeError::Truncated)?;
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (content, rest) = after_len
            .split_at_checked(len)
            .ok_or(DecodeError::Truncated)?;
        let header = self.rest.len() - after_len.len();
        let raw = self
            .rest
            .get(..header + len)
            .ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(Tlv { tag, raw, content })
    }

    /// Reads the next element and checks its tag.
    pub(crate) fn tlv(&mut self, tag: u8) -> Result<Tlv<'a>, DecodeError> {
        let found = self.peek_tag().unwrap_or(0);
        if found != tag {
            return Err(DecodeError::UnexpectedTag {
                expected: tag,
                found,
            });
        }
        self.any()
    }

    /// Reads the next element with `tag` and returns its content.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DecodeError> {
        Ok(self.tlv(tag)?.content)
    }

    /// Reads a SEQUENCE and returns a reader over its content.
    pub(crate) fn sequence(&mut self) -> Result<Reader<'a>, DecodeError> {
        Ok(Reader::new(self.read(SEQUENCE)?))
    }

    /// Reads a non-negative INTEGER that fits in a `u64`.
    pub(crate) fn small_uint(&mut self) -> Result<u64, DecodeError> {
        let content = self.read(INTEGER)?;
        match content.first() {
            None => return Err(DecodeError::BadValue("empty INTEGER")),
            Some(b) if b & 0x80 != 0 => return Err(DecodeError::BadValue("negative INTEGER")),
            Some(_) => {}
        }
        let digits = strip_leading_zeros(content);
        if digits.len() > 8 {
            return Err(DecodeError::BadValue("INTEGER too large"));
        }
        Ok(digits
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingData)
        }
    }
}

/// Parses `bytes` as exactly one element with `tag`.
pub(crate) fn single(bytes: &[u8], tag: u8) -> Result<Tlv<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let tlv = r.tlv(tag)?;
    r.finish()?;
    Ok(tlv)
}

/// `bytes` without its leading zero bytes.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// The dotted form of an OID's content octets, for messages.
pub(crate) fn oid_to_string(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in content {
        acc = (acc << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
        if acc > u64::MAX >> 8 {
            return format!("(malformed OID {})", hex(content));
        }
    }
    if arcs.is_empty() || content.last().is_some_and(|b| b & 0x80 != 0) {
        return format!("(malformed OID {})", hex(content));
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The size of a DER header for `len` content bytes.
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=0x7F => 2,
        0x80..=0xFF => 3,
        0x100..=0xFFFF => 4,
        0x1_0000..=0xFF_FFFF => 5,
        _ => 6,
    }
}

/// The size of a whole element with `len` content bytes.
pub(crate) fn tlv_len(len: usize) -> usize {
    header_len(len) + len
}

/// Appends a DER header.
pub(crate) fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let digits = strip_leading_zeros(&bytes);
        out.push(0x80 | digits.len() as u8);
        out.extend_from_slice(digits);
    }
}

/// The content length of an INTEGER holding the unsigned big-endian `value`.
pub(crate) fn uint_content_len(value: &[u8]) -> usize {
    let digits = strip_leading_zeros(value);
    match digits.first() {
        None => 1,
        Some(b) if b & 0x80 != 0 => digits.len() + 1,
        Some(_) => digits.len(),
    }
}

/// Appends an INTEGER holding the unsigned big-endian `value` (leading
/// zeros stripped, a zero byte added where the top bit is set).
pub(crate) fn write_uint(out: &mut Vec<u8>, value: &[u8]) {
    let digits = strip_leading_zeros(value);
    write_header(out, INTEGER, uint_content_len(value));
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// Builds a secret-bearing element in one exactly sized, zeroizing
/// allocation, so no reallocation leaves copies behind.
pub(crate) fn secret_tlv(tag: u8, parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(tlv_len(len)));
    write_header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn reads_nested_and_keeps_raw() {
        let der = hex!("30 06 04 01 AA 02 01 05");
        let mut r = Reader::new(&der);
        let mut seq = r.sequence().unwrap();
        r.finish().unwrap();
        let os = seq.tlv(OCTET_STRING).unwrap();
        assert_eq!(os.raw, &hex!("04 01 AA"));
        assert_eq!(os.content, &[0xAA]);
        assert_eq!(seq.small_uint().unwrap(), 5);
        assert!(seq.is_empty());
    }

    #[test]
    fn long_lengths() {
        let mut der = vec![0x04, 0x81, 0x80];
        der.extend_from_slice(&[7; 0x80]);
        assert_eq!(single(&der, OCTET_STRING).unwrap().content.len(), 0x80);
        let mut der = vec![0x04, 0x82, 0x01, 0x00];
        der.extend_from_slice(&[7; 0x100]);
        assert_eq!(single(&der, OCTET_STRING).unwrap().content.len(), 0x100);
    }

    #[test]
    fn malformed() {
        assert_eq!(Reader::new(&[]).any().unwrap_err(), DecodeError::Truncated);
        assert_eq!(
            Reader::new(&[0x04]).any().unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            Reader::new(&hex!("04 02 00")).any().unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            Reader::new(&hex!("04 80 00 00")).any().unwrap_err(),
            DecodeError::BadLength
        );
        assert_eq!(
            Reader::new(&hex!("04 85 00 00 00 00 01 00"))
                .any()
                .unwrap_err(),
            DecodeError::BadLength
        );
        assert_eq!(
            Reader::new(&hex!("04 84 FF FF FF FF")).any().unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            Reader::new(&hex!("1F 01 00")).any().unwrap_err(),
            DecodeError::BadValue("multi-byte DER tag")
        );
        assert_eq!(
            single(&hex!("04 00 00"), OCTET_STRING).unwrap_err(),
            DecodeError::TrailingData
        );
        assert_eq!(
            single(&hex!("02 01 00"), OCTET_STRING).unwrap_err(),
            DecodeError::UnexpectedTag {
                expected: 4,
                found: 2
            }
        );
        assert_eq!(
            Reader::new(&[]).tlv(OID).unwrap_err(),
            DecodeError::UnexpectedTag {
                expected: 6,
                found: 0
            }
        );
    }

    #[test]
    fn small_uints() {
        assert_eq!(
            Reader::new(&hex!("02 02 27 10")).small_uint().unwrap(),
            10000
        );
        assert_eq!(
            Reader::new(&hex!("02 03 00 80 00")).small_uint().unwrap(),
            0x8000
        );
        assert!(Reader::new(&hex!("02 00")).small_uint().is_err());
        assert!(Reader::new(&hex!("02 01 FF")).small_uint().is_err());
        assert!(Reader::new(&hex!("02 09 01 00 00 00 00 00 00 00 00"))
            .small_uint()
            .is_err());
    }

    #[test]
    fn writes_integers() {
        let mut out = Vec::new();
        write_uint(&mut out, &hex!("00 00 80 01"));
        write_uint(&mut out, &hex!("00 7F"));
        write_uint(&mut out, &[]);
        write_uint(&mut out, &[0, 0]);
        assert_eq!(out, hex!("02 03 00 80 01  02 01 7F  02 01 00  02 01 00"));
        assert_eq!(uint_content_len(&hex!("00 00 80 01")), 3);
    }

    #[test]
    fn writes_headers() {
        for len in [0usize, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000] {
            let mut out = Vec::new();
            write_header(&mut out, OCTET_STRING, len);
            assert_eq!(out.len(), header_len(len));
            out.resize(out.len() + len, 0);
            assert_eq!(single(&out, OCTET_STRING).unwrap().content.len(), len);
        }
        let t = secret_tlv(SEQUENCE, &[&[1, 2], &[3]]);
        assert_eq!(t.as_slice(), &hex!("30 03 01 02 03"));
        assert_eq!(t.capacity(), 5);
    }

    #[test]
    fn oid_strings() {
        assert_eq!(
            oid_to_string(&hex!("2A864886F70D01050D")),
            "1.2.840.113549.1.5.13"
        );
        assert_eq!(oid_to_string(&hex!("2B81040022")), "1.3.132.0.34");
        assert_eq!(
            oid_to_string(&hex!("60864801650304012A")),
            "2.16.840.1.101.3.4.1.42"
        );
        assert!(oid_to_string(&hex!("2A86")).starts_with("(malformed"));
        assert!(oid_to_string(&[]).starts_with("(malformed"));
        assert!(oid_to_string(&[0xFF; 20]).starts_with("(malformed"));
    }
}
