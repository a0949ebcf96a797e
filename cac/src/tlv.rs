//! SimpleTLV (ISO 7816-4 §5.2.1 "simple-TLV"), as GSC-IS and CAC use it.
//!
//! A tag is one byte (`01`..=`FE`); a length is one byte when below `FF`,
//! else `FF lo hi` (little-endian, as CAC cards and OpenSC read it).
//!
//! CAC containers split a TLV list into a *T-buffer* (tags and lengths) and
//! a *V-buffer* (the values); [`split_tl_v`] builds both from one list.

use core::fmt;

/// Why bytes are not a well-formed SimpleTLV element.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlvError {
    /// The input ended inside a tag or length.
    Truncated,
    /// Tag `00` or `FF` is not a SimpleTLV tag.
    InvalidTag(u8),
    /// The length runs past the end of the input.
    ValueOverrun {
        /// Declared value length.
        len: usize,
        /// Bytes remaining.
        available: usize,
    },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlvError::Truncated => write!(f, "SimpleTLV truncated inside a tag or length"),
            TlvError::InvalidTag(t) => write!(f, "invalid SimpleTLV tag {t:02X}"),
            TlvError::ValueOverrun { len, available } => {
                write!(
                    f,
                    "SimpleTLV value of {len} bytes but only {available} remain"
                )
            }
        }
    }
}

impl std::error::Error for TlvError {}

/// Number of bytes the tag and length of a value of `len` bytes take.
pub const fn header_len(len: usize) -> usize {
    if len < 0xFF {
        2
    } else {
        4
    }
}

/// Appends a tag and the SimpleTLV encoding of `len`.
///
/// Lengths above `u16::MAX` are clamped (no CAC buffer can hold them; the
/// card never builds one).
pub fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    push_len(out, len);
}

/// Appends the SimpleTLV encoding of `len` (no tag).
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0xFF {
        out.push(len as u8);
    } else {
        let n = u16::try_from(len).unwrap_or(u16::MAX);
        out.push(0xFF);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Appends a whole element.
pub fn push(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    push_header(out, tag, value.len());
    out.extend_from_slice(value);
}

/// Reads a tag and length from the front of `input`; returns
/// `(tag, len, header_bytes)`.
pub fn read_header(input: &[u8]) -> Result<(u8, usize, usize), TlvError> {
    match input {
        [] | [_] => Err(TlvError::Truncated),
        [tag, ..] if *tag == 0x00 || *tag == 0xFF => Err(TlvError::InvalidTag(*tag)),
        [tag, 0xFF, lo, hi, ..] => Ok((*tag, usize::from(u16::from_le_bytes([*lo, *hi])), 4)),
        [_, 0xFF, ..] => Err(TlvError::Truncated),
        [tag, len, ..] => Ok((*tag, usize::from(*len), 2)),
    }
}

/// An iterator over the elements of a SimpleTLV list.
///
/// It yields `Err` once on malformed input and then stops: it never loops
/// and never reads out of bounds.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates over the `(tag, value)` elements of `input`.
pub fn iter(input: &[u8]) -> Iter<'_> {
    Iter {
        rest: input,
        failed: false,
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<(u8, &'a [u8]), TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let step = read_header(self.rest).and_then(|(tag, len, hl)| {
            let body = self.rest.get(hl..).unwrap_or_default();
            match (body.get(..len), body.get(len..)) {
                (Some(value), Some(rest)) => Ok((tag, value, rest)),
                _ => Err(TlvError::ValueOverrun {
                    len,
                    available: body.len(),
                }),
            }
        });
        match step {
            Ok((tag, value, rest)) => {
                self.rest = rest;
                Some(Ok((tag, value)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds a CAC T-buffer and V-buffer from `(tag, value)` elements, each
/// *without* the 2-byte length prefix.
pub fn split_tl_v<'v>(elements: impl IntoIterator<Item = (u8, &'v [u8])>) -> (Vec<u8>, Vec<u8>) {
    let mut t = Vec::new();
    let mut v = Vec::new();
    for (tag, value) in elements {
        push_header(&mut t, tag, value.len());
        v.extend_from_slice(value);
    }
    (t, v)
}

/// Walks a T-buffer alongside its V-buffer, yielding `(tag, value)`.
///
/// Stops with `Err` on a malformed T-buffer or a value that runs past the
/// end of the V-buffer.
pub fn join_tl_v<'a>(
    t: &'a [u8],
    v: &'a [u8],
) -> impl Iterator<Item = Result<(u8, &'a [u8]), TlvError>> + 'a {
    let mut t_rest = t;
    let mut v_rest = v;
    let mut failed = false;
    core::iter::from_fn(move || {
        if t_rest.is_empty() || failed {
            return None;
        }
        let item = read_header(t_rest).and_then(|(tag, len, hl)| {
            let value = v_rest.get(..len).ok_or(TlvError::ValueOverrun {
                len,
                available: v_rest.len(),
            })?;
            t_rest = t_rest.get(hl..).unwrap_or_default();
            v_rest = v_rest.get(len..).unwrap_or_default();
            Ok((tag, value))
        });
        failed = item.is_err();
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn short_and_long_lengths() {
        let mut out = Vec::new();
        push(&mut out, 0x71, &[0x00]);
        push_header(&mut out, 0x70, 0x0311);
        assert_eq!(out, hex!("710100 70FF1103"));
        assert_eq!(read_header(&hex!("70FF1103")), Ok((0x70, 0x0311, 4)));
        assert_eq!(read_header(&hex!("F015")), Ok((0xF0, 0x15, 2)));
        assert_eq!(header_len(0xFE), 2);
        assert_eq!(header_len(0xFF), 4);
    }

    #[test]
    fn iterates_and_stops_on_garbage() {
        let items: Vec<_> = iter(&hex!("0105 1002060203 400101")).collect();
        assert_eq!(
            items,
            vec![
                Ok((0x01, &hex!("1002060203")[..])),
                Ok((0x40, &hex!("01")[..]))
            ]
        );
        let items: Vec<_> = iter(&hex!("0105 1002")).collect();
        assert_eq!(
            items,
            vec![Err(TlvError::ValueOverrun {
                len: 5,
                available: 2
            })]
        );
        let items: Vec<_> = iter(&hex!("00 01")).collect();
        assert_eq!(items, vec![Err(TlvError::InvalidTag(0))]);
        let items: Vec<_> = iter(&hex!("70FF11")).collect();
        assert_eq!(items, vec![Err(TlvError::Truncated)]);
    }

    #[test]
    fn split_and_join() {
        let cert = vec![0x30; 300];
        let (t, v) = split_tl_v([
            (0x71, &[0x00][..]),
            (0x70, &cert[..]),
            (0x72, &[][..]),
            (0xFE, &[][..]),
        ]);
        assert_eq!(t, hex!("7101 70FF2C01 7200 FE00"));
        assert_eq!(v.len(), 301);
        let joined: Vec<_> = join_tl_v(&t, &v).map(Result::unwrap).collect();
        assert_eq!(joined.len(), 4);
        assert_eq!(joined[1], (0x70, &cert[..]));
        // A V-buffer that is too short is reported, not read past.
        let bad: Vec<_> = join_tl_v(&t, &v[..10]).collect();
        assert!(bad[1].is_err());
        assert_eq!(bad.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_terminates(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let n = iter(&bytes).count();
            proptest::prop_assert!(n <= bytes.len());
            let half = bytes.len() / 2;
            let m = join_tl_v(&bytes[..half], &bytes[half..]).count();
            proptest::prop_assert!(m <= half);
        }

        #[test]
        fn encode_then_iterate(values in proptest::collection::vec(
            (1u8..=0xFE, proptest::collection::vec(proptest::num::u8::ANY, 0..400)), 0..6)) {
            let mut out = Vec::new();
            for (tag, value) in &values {
                push(&mut out, *tag, value);
            }
            let back: Vec<_> = iter(&out).map(Result::unwrap).map(|(t, v)| (t, v.to_vec())).collect();
            proptest::prop_assert_eq!(back, values);
        }
    }
}
