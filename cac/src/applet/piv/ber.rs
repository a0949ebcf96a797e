//! BER-TLV as PIV uses it: tags of one or more bytes (`5F C1 05`, `7F 49`),
//! lengths `00`–`7F`, `81 xx`, `82 xx xx`.

/// Appends a BER length.
pub(crate) fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        let n = u16::try_from(len).unwrap_or(u16::MAX);
        out.push(0x82);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends `tag`, the length of `value`, and `value`.
pub(crate) fn push(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    out.extend_from_slice(tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// One element: `(tag, value, rest)`, or `None` when malformed.
pub(crate) fn split(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first = *input.first()?;
    let mut tag_len = 1;
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(tag_len)?;
            tag_len += 1;
            if b & 0x80 == 0 || tag_len > 3 {
                break;
            }
        }
    }
    let (tag, rest) = input.split_at_checked(tag_len)?;
    let (len, rest) = match rest.split_first()? {
        (n, rest) if *n < 0x80 => (usize::from(*n), rest),
        (0x81, [n, rest @ ..]) if *n >= 0x80 => (usize::from(*n), rest),
        (0x82, [hi, lo, rest @ ..]) => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
        _ => return None,
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

/// The value of the single element `input` holds, if its tag is `tag`
/// and nothing follows it.
pub(crate) fn only<'a>(input: &'a [u8], tag: &[u8]) -> Option<&'a [u8]> {
    match split(input)? {
        (t, value, []) if t == tag => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3000] {
            let value = vec![0xAB; len];
            let mut out = Vec::new();
            push(&mut out, &[0x5F, 0xC1, 0x05], &value);
            let (tag, v, rest) = split(&out).unwrap();
            assert_eq!(tag, [0x5F, 0xC1, 0x05]);
            assert_eq!(v.len(), len);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn malformed() {
        assert!(split(&[]).is_none());
        assert!(split(&[0x53]).is_none());
        assert!(split(&[0x53, 0x02, 0x00]).is_none());
        assert!(split(&[0x53, 0x81, 0x10]).is_none()); // 81 with a short length
        assert!(split(&[0x53, 0x83, 0, 0, 1]).is_none());
        assert!(split(&[0x5F, 0xC1]).is_none());
        assert_eq!(only(&[0x7C, 0x00, 0x00], &[0x7C]), None);
        assert_eq!(only(&[0x7C, 0x01, 0x05], &[0x7C]), Some(&[0x05][..]));
    }
}
