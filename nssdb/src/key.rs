//! Assembling PKCS #8 private keys from NSS's attributes, and checking
//! them against a certificate's SubjectPublicKeyInfo.
//!
//! The encoding is the one OpenSSL gives the same key (`openssl pkcs8
//! -topk8 -nocrypt -outform DER`): RSA as PKCS #1 RSAPrivateKey with
//! rsaEncryption + NULL; EC as SEC 1 ECPrivateKey (version 1, fixed-width
//! scalar, no `[0]` parameters, `[1]` uncompressed public point) with
//! id-ecPublicKey + the named-curve OID.

use p256::elliptic_curve::sec1::ToSec1Point;
use zeroize::{Zeroize, Zeroizing};

use crate::asn1::{self, Reader, BIT_STRING, INTEGER, OCTET_STRING, OID, SEQUENCE};
use crate::error::DecodeError;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// The CKA_EC_PARAMS / SPKI parameters of P-256 (an OID TLV).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// The CKA_EC_PARAMS / SPKI parameters of P-384 (an OID TLV).
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];

/// The largest RSA modulus accepted: 16384 bits.
const MAX_RSA_BYTES: usize = 2048;

/// A named curve this crate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

impl Curve {
    /// The curve named by a CKA_EC_PARAMS value (named-curve OID TLV).
    pub fn from_params(params: &[u8]) -> Option<Self> {
        match params {
            P256_PARAMS => Some(Self::P256),
            P384_PARAMS => Some(Self::P384),
            _ => None,
        }
    }

    fn params(self) -> &'static [u8] {
        match self {
            Self::P256 => P256_PARAMS,
            Self::P384 => P384_PARAMS,
        }
    }

    fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

/// The public key in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and public exponent, leading zeros stripped.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// EC: the parameters TLV and the encoded point.
    Ec {
        /// The parameters element as it appears (named-curve OID TLV).
        params: Vec<u8>,
        /// The SEC 1 encoded point.
        point: Vec<u8>,
    },
    /// Another algorithm (dotted OID).
    Other(String),
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki(spki: &[u8]) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(asn1::single(spki, SEQUENCE)?.content);
        let mut alg = outer.sequence()?;
        let bits = outer.read(BIT_STRING)?;
        outer.finish()?;
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => {
                return Err(DecodeError::BadValue(
                    "public key BIT STRING with unused bits",
                ))
            }
        };
        let oid = alg.read(OID)?;
        match oid {
            OID_RSA_ENCRYPTION => {
                let mut rsa = Reader::new(asn1::single(key, SEQUENCE)?.content);
                let n = rsa.read(INTEGER)?;
                let e = rsa.read(INTEGER)?;
                rsa.finish()?;
                Ok(Self::Rsa {
                    n: asn1::strip_leading_zeros(n).to_vec(),
                    e: asn1::strip_leading_zeros(e).to_vec(),
                })
            }
            OID_EC_PUBLIC_KEY => {
                let params = alg.any()?.raw.to_vec();
                alg.finish()?;
                Ok(Self::Ec {
                    params,
                    point: key.to_vec(),
                })
            }
            other => Ok(Self::Other(asn1::oid_to_string(other))),
        }
    }
}

/// The numbers of an RSA private key, unsigned big-endian (leading zeros
/// allowed, as NSS stores them fixed-width).
#[derive(Clone, Copy)]
pub struct RsaParts<'a> {
    /// CKA_MODULUS.
    pub n: &'a [u8],
    /// CKA_PUBLIC_EXPONENT.
    pub e: &'a [u8],
    /// CKA_PRIVATE_EXPONENT.
    pub d: &'a [u8],
    /// CKA_PRIME_1.
    pub p: &'a [u8],
    /// CKA_PRIME_2.
    pub q: &'a [u8],
    /// CKA_EXPONENT_1 (d mod p−1).
    pub dp: &'a [u8],
    /// CKA_EXPONENT_2 (d mod q−1).
    pub dq: &'a [u8],
    /// CKA_COEFFICIENT (q⁻¹ mod p).
    pub qinv: &'a [u8],
}

impl std::fmt::Debug for RsaParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaParts(..)")
    }
}

impl RsaParts<'_> {
    fn all(&self) -> [&[u8]; 8] {
        [
            self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv,
        ]
    }

    /// Checks the numbers form one RSA key: n = p·q, e·d ≡ 1 mod p−1 and
    /// q−1, dp = d mod p−1, dq = d mod q−1, qinv·q ≡ 1 mod p.
    pub fn check_consistent(&self) -> Result<(), DecodeError> {
        use num_bigint_dig::BigUint;
        if self
            .all()
            .iter()
            .any(|v| asn1::strip_leading_zeros(v).len() > MAX_RSA_BYTES)
        {
            return Err(DecodeError::BadValue("RSA number above 16384 bits"));
        }
        let big = |v: &[u8]| BigUint::from_bytes_be(v);
        let one = BigUint::from(1u32);
        let (n, e) = (big(self.n), big(self.e));
        let (mut p, mut q) = (big(self.p), big(self.q));
        if p <= one || q <= one || e <= one {
            p.zeroize();
            q.zeroize();
            return Err(DecodeError::BadValue("RSA prime or exponent too small"));
        }
        let (mut d, mut dp, mut dq, mut qinv) =
            (big(self.d), big(self.dp), big(self.dq), big(self.qinv));
        let mut p1 = &p - &one;
        let mut q1 = &q - &one;
        let mut ed = &e * &d;
        let ok = &p * &q == n
            && &ed % &p1 == one
            && &ed % &q1 == one
            && &d % &p1 == dp
            && &d % &q1 == dq
            && (&qinv * &q) % &p == one;
        for secret in [
            &mut d, &mut p, &mut q, &mut dp, &mut dq, &mut qinv, &mut p1, &mut q1, &mut ed,
        ] {
            secret.zeroize();
        }
        if ok {
            Ok(())
        } else {
            Err(DecodeError::BadValue("RSA numbers do not form one key"))
        }
    }

    /// Whether the modulus and exponent equal the certificate's.
    pub fn matches(&self, public: &PublicKey) -> bool {
        match public {
            PublicKey::Rsa { n, e } => {
                asn1::strip_leading_zeros(self.n) == n.as_slice()
                    && asn1::strip_leading_zeros(self.e) == e.as_slice()
            }
            _ => false,
        }
    }

    /// The PKCS #8 PrivateKeyInfo.
    pub fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        let all = self.all();
        let content_len = 3 + all
            .iter()
            .map(|v| asn1::tlv_len(asn1::uint_content_len(v)))
            .sum::<usize>();
        let mut rsa_key = Zeroizing::new(Vec::with_capacity(asn1::tlv_len(content_len)));
        asn1::write_header(&mut rsa_key, SEQUENCE, content_len);
        asn1::write_uint(&mut rsa_key, &[0]);
        for v in all {
            asn1::write_uint(&mut rsa_key, v);
        }
        let alg = [
            &[0x30, 0x0D, 0x06, 0x09][..],
            OID_RSA_ENCRYPTION,
            &[0x05, 0x00],
        ]
        .concat();
        let wrapped = asn1::secret_tlv(OCTET_STRING, &[&rsa_key]);
        asn1::secret_tlv(SEQUENCE, &[&[0x02, 0x01, 0x00], &alg, &wrapped])
    }
}

/// An EC private key: the curve and the fixed-width scalar.
pub struct EcKey {
    curve: Curve,
    scalar: Zeroizing<Vec<u8>>,
    point: Vec<u8>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcKey")
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

impl EcKey {
    /// Checks the scalar (CKA_VALUE, any width with leading zeros) and
    /// computes the public point.
    pub fn new(curve: Curve, value: &[u8]) -> Result<Self, DecodeError> {
        let width = curve.scalar_len();
        let digits = asn1::strip_leading_zeros(value);
        let mut scalar = Zeroizing::new(vec![0u8; width]);
        let start = width
            .checked_sub(digits.len())
            .ok_or(DecodeError::BadValue("EC scalar too long"))?;
        scalar
            .get_mut(start..)
            .ok_or(DecodeError::BadValue("EC scalar"))?
            .copy_from_slice(digits);
        let bad = |_| DecodeError::BadValue("EC scalar zero or not below the group order");
        let point = match curve {
            Curve::P256 => p256::SecretKey::from_slice(&scalar)
                .map_err(bad)?
                .public_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
            Curve::P384 => p384::SecretKey::from_slice(&scalar)
                .map_err(bad)?
                .public_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
        };
        Ok(Self {
            curve,
            scalar,
            point,
        })
    }

    /// The uncompressed public point.
    pub fn public_point(&self) -> &[u8] {
        &self.point
    }

    /// Whether the certificate holds this key's public point on this curve.
    pub fn matches(&self, public: &PublicKey) -> bool {
        match public {
            PublicKey::Ec { params, point } => {
                params.as_slice() == self.curve.params() && self.point_matches(point)
            }
            _ => false,
        }
    }

    fn point_matches(&self, cert_point: &[u8]) -> bool {
        match cert_point.first() {
            Some(0x04) => cert_point == self.point.as_slice(),
            Some(&prefix @ (0x02 | 0x03)) => {
                // Compressed: x must match and the prefix give y's parity.
                let x_len = self.curve.scalar_len();
                let (Some(x), Some(y_last)) = (self.point.get(1..=x_len), self.point.last()) else {
                    return false;
                };
                cert_point.get(1..) == Some(x) && prefix == 0x02 | (y_last & 1)
            }
            _ => false,
        }
    }

    /// The PKCS #8 PrivateKeyInfo.
    pub fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        let d = asn1::secret_tlv(OCTET_STRING, &[&self.scalar]);
        let mut bits = Vec::with_capacity(self.point.len() + 1);
        bits.push(0);
        bits.extend_from_slice(&self.point);
        let bits = asn1::secret_tlv(BIT_STRING, &[&bits]);
        let public = asn1::secret_tlv(asn1::CONTEXT_1, &[&bits]);
        let ec_key = asn1::secret_tlv(SEQUENCE, &[&[0x02, 0x01, 0x01], &d, &public]);
        let oid = asn1::secret_tlv(OID, &[OID_EC_PUBLIC_KEY]);
        let alg = asn1::secret_tlv(SEQUENCE, &[&oid, self.curve.params()]);
        let wrapped = asn1::secret_tlv(OCTET_STRING, &[&ec_key]);
        asn1::secret_tlv(SEQUENCE, &[&[0x02, 0x01, 0x00], &alg, &wrapped])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // A toy RSA key: p = 61, q = 53, n = 3233, e = 17, d = 413 (λ-based).
    const TOY: RsaParts<'static> = RsaParts {
        n: &[0x0C, 0xA1],
        e: &[0x11],
        d: &[0x00, 0x01, 0x9D],
        p: &[0x3D],
        q: &[0x35],
        dp: &[0x35],
        dq: &[0x31],
        qinv: &[0x26],
    };

    #[test]
    fn toy_rsa_is_consistent_and_encodes() {
        TOY.check_consistent().unwrap();
        let der = TOY.to_pkcs8();
        assert_eq!(
            der.as_slice(),
            &hex!(
                "30 33 02 01 00 30 0D 06 09 2A864886F70D010101 05 00"
                "04 1F 30 1D 02 01 00 02 02 0CA1 02 01 11 02 02 019D"
                "02 01 3D 02 01 35 02 01 35 02 01 31 02 01 26"
            )
        );
        assert_eq!(der.len(), der.capacity());
        assert_eq!(format!("{TOY:?}"), "RsaParts(..)");
    }

    #[test]
    fn inconsistent_rsa_is_refused() {
        let mut bad = TOY;
        bad.qinv = &[0x27];
        assert!(bad.check_consistent().is_err());
        bad = TOY;
        bad.d = &[0x01, 0x9E];
        assert!(bad.check_consistent().is_err());
        bad = TOY;
        bad.p = &[0x01];
        assert!(bad.check_consistent().is_err());
        let huge = vec![0xFF; 2049];
        bad = TOY;
        bad.n = &huge;
        assert!(bad.check_consistent().is_err());
    }

    #[test]
    fn rsa_matches_spki() {
        let spki = hex!(
            "30 1C 30 0D 06 09 2A864886F70D010101 05 00 03 0B 00 30 08 02 03 00 0C A1 02 01 11"
        );
        let public = PublicKey::from_spki(&spki).unwrap();
        assert_eq!(
            public,
            PublicKey::Rsa {
                n: vec![0x0C, 0xA1],
                e: vec![0x11]
            }
        );
        assert!(TOY.matches(&public));
        let mut other = TOY;
        other.e = &[0x03];
        assert!(!other.matches(&public));
        assert!(!TOY.matches(&PublicKey::Other("1.2".into())));
    }

    #[test]
    fn spki_errors() {
        assert!(PublicKey::from_spki(&[]).is_err());
        let unused_bits = hex!("30 0F 30 09 06 07 2A8648CE3D0201 03 02 01 00");
        assert!(PublicKey::from_spki(&unused_bits).is_err());
        let ed25519 = hex!("30 0B 30 05 06 03 2B6570 03 02 00 00");
        assert_eq!(
            PublicKey::from_spki(&ed25519).unwrap(),
            PublicKey::Other("1.3.101.112".into())
        );
        let bad_rsa = hex!("30 14 30 0D 06 09 2A864886F70D010101 05 00 03 03 00 30 00");
        assert!(PublicKey::from_spki(&bad_rsa).is_err());
    }

    #[test]
    fn ec_key_p256() {
        // Scalar 1: the public point is the generator.
        let mut one = [0u8; 33];
        one[32] = 1;
        let key = EcKey::new(Curve::P256, &one).unwrap();
        let g = hex!(
            "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
            "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
        );
        assert_eq!(key.public_point(), &g);
        let spki = PublicKey::Ec {
            params: P256_PARAMS.to_vec(),
            point: g.to_vec(),
        };
        assert!(key.matches(&spki));
        let mut compressed = vec![0x03];
        compressed.extend_from_slice(&g[1..33]);
        assert!(key.matches(&PublicKey::Ec {
            params: P256_PARAMS.to_vec(),
            point: compressed.clone()
        }));
        compressed[0] = 0x02;
        assert!(!key.matches(&PublicKey::Ec {
            params: P256_PARAMS.to_vec(),
            point: compressed
        }));
        assert!(!key.matches(&PublicKey::Ec {
            params: P384_PARAMS.to_vec(),
            point: g.to_vec()
        }));
        let der = key.to_pkcs8();
        assert_eq!(der.len(), 138);
        assert_eq!(
            &der[..29],
            &hex!("30 81 87 02 01 00 30 13 06 07 2A8648CE3D0201 06 08 2A8648CE3D030107 04 6D")
        );
        assert_eq!(&der[29..38], &hex!("30 6B 02 01 01 04 20 00 00"));
        assert_eq!(&der[67..72], &hex!("01 A1 44 03 42"));
        assert!(format!("{key:?}").contains("P256"));
    }

    #[test]
    fn ec_key_errors() {
        assert!(EcKey::new(Curve::P256, &[0; 32]).is_err());
        assert!(EcKey::new(Curve::P256, &[0xFF; 32]).is_err());
        assert!(EcKey::new(Curve::P256, &[1; 33]).is_err());
        assert!(EcKey::new(Curve::P384, &[1; 48]).is_ok());
        assert_eq!(Curve::from_params(P384_PARAMS), Some(Curve::P384));
        assert_eq!(Curve::from_params(&hex!("06 05 2B81040023")), None);
    }
}
