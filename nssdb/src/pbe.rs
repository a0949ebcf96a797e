//! The password-derived keys and NSS's encrypted values: PBES2
//! (PBKDF2 + AES-256-CBC, with NSS's IV quirk) and the legacy PKCS #12
//! PBE with SHA-1 and 3-key triple DES that migrated databases keep.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha384, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::asn1::{self, Reader, OCTET_STRING, OID};
use crate::error::DecodeError;

/// The largest iteration count accepted by default. NSS writes 1 (empty
/// password) or 10 000; anything above this is refused, not computed.
pub const DEFAULT_MAX_ITERATIONS: u32 = 10_000_000;

const MAX_SALT: usize = 1024;

pub(crate) const OID_PBES2: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0D];
pub(crate) const OID_PBKDF2: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0C];
pub(crate) const OID_PBMAC1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0E];
const OID_HMAC_SHA1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x07];
const OID_HMAC_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x09];
const OID_HMAC_SHA384: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x0A];
const OID_HMAC_SHA512: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x0B];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];
/// 1.2.840.113549.1.12.5.1.3: NSS's PKCS #12 PBE with SHA-1 and 3DES.
pub(crate) const OID_LEGACY_SHA1_3DES: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0C, 0x05, 0x01, 0x03,
];

/// The key every encryption and MAC key is derived from:
/// SHA-1(globalSalt ‖ password), or SHA-384 when the global salt is 48
/// bytes long (NSS 3.118+). Wiped on drop.
pub struct PassKey(Zeroizing<Vec<u8>>);

impl PassKey {
    /// Derives the pass key from the password record's global salt
    /// (`metaData` `password` `item1`) and the password as typed.
    pub fn derive(global_salt: &[u8], password: &[u8]) -> Self {
        let bytes = if global_salt.len() == 48 {
            let mut h = Sha384::new();
            h.update(global_salt);
            h.update(password);
            Zeroizing::new(h.finalize().to_vec())
        } else {
            let mut h = Sha1::new();
            h.update(global_salt);
            h.update(password);
            Zeroizing::new(h.finalize().to_vec())
        };
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassKey(..)")
    }
}

/// A PBKDF2 / HMAC hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prf {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Prf {
    /// Parses an HMAC AlgorithmIdentifier (parameters absent or NULL).
    pub(crate) fn parse(alg: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let oid = alg.read(OID)?;
        if alg.peek_tag() == Some(asn1::NULL) && !alg.read(asn1::NULL)?.is_empty() {
            return Err(DecodeError::BadValue("NULL with content"));
        }
        alg.finish()?;
        match oid {
            OID_HMAC_SHA1 => Ok(Self::Sha1),
            OID_HMAC_SHA256 => Ok(Self::Sha256),
            OID_HMAC_SHA384 => Ok(Self::Sha384),
            OID_HMAC_SHA512 => Ok(Self::Sha512),
            other => Err(DecodeError::UnsupportedAlgorithm(asn1::oid_to_string(
                other,
            ))),
        }
    }

    pub(crate) fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn pbkdf2(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        match self {
            Self::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, rounds, out),
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, out),
            Self::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, rounds, out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, out),
        }
    }

    /// Checks HMAC(key, parts…) against `tag` in constant time.
    pub(crate) fn verify_hmac(self, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
            let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
                return false;
            };
            for p in parts {
                mac.update(p);
            }
            mac.verify_slice(tag).is_ok()
        }
        match self {
            Self::Sha1 => run::<Hmac<Sha1>>(key, parts, tag),
            Self::Sha256 => run::<Hmac<Sha256>>(key, parts, tag),
            Self::Sha384 => run::<Hmac<Sha384>>(key, parts, tag),
            Self::Sha512 => run::<Hmac<Sha512>>(key, parts, tag),
        }
    }
}

/// PBKDF2-params with the salt borrowed from the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pbkdf2Params<'a> {
    pub(crate) salt: &'a [u8],
    pub(crate) iterations: u32,
    pub(crate) key_len: Option<usize>,
    pub(crate) prf: Prf,
}

impl<'a> Pbkdf2Params<'a> {
    /// Parses `SEQUENCE { OID PBKDF2, PBKDF2-params }` (the content of the
    /// keyDerivationFunc AlgorithmIdentifier is passed in `alg`).
    pub(crate) fn parse(alg: &mut Reader<'a>, max_iterations: u32) -> Result<Self, DecodeError> {
        let oid = alg.read(OID)?;
        if oid != OID_PBKDF2 {
            return Err(DecodeError::UnsupportedAlgorithm(asn1::oid_to_string(oid)));
        }
        let mut params = alg.sequence()?;
        alg.finish()?;
        let salt = params.read(OCTET_STRING)?;
        if salt.len() > MAX_SALT {
            return Err(DecodeError::BadValue("PBKDF2 salt longer than 1024 bytes"));
        }
        let iterations = check_iterations(params.small_uint()?, max_iterations)?;
        let key_len = if params.peek_tag() == Some(asn1::INTEGER) {
            let n = params.small_uint()?;
            if n == 0 || n > 64 {
                return Err(DecodeError::BadValue("PBKDF2 key length outside 1..=64"));
            }
            usize::try_from(n).ok()
        } else {
            None
        };
        let prf = if params.is_empty() {
            Prf::Sha1
        } else {
            Prf::parse(&mut params.sequence()?)?
        };
        params.finish()?;
        Ok(Self {
            salt,
            iterations,
            key_len,
            prf,
        })
    }

    /// Derives `len` bytes from the pass key.
    pub(crate) fn derive(&self, pass_key: &PassKey, len: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        self.prf
            .pbkdf2(pass_key.bytes(), self.salt, self.iterations, &mut out);
        out
    }
}

fn check_iterations(count: u64, max: u32) -> Result<u32, DecodeError> {
    match u32::try_from(count) {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(DecodeError::IterationCount { count, max }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Scheme<'a> {
    /// PBKDF2 + AES-256-CBC; IV = the first 16 bytes of the raw
    /// parameter TLV (NSS's quirk).
    Pbes2 { kdf: Pbkdf2Params<'a>, iv: [u8; 16] },
    /// PKCS #12 PBE with SHA-1 and 3DES, NSS's derivation.
    LegacySha1TripleDes { salt: &'a [u8], iterations: u32 },
}

/// An encrypted attribute or password-check value, parsed but not yet
/// decrypted (so its iteration count can be inspected first).
#[derive(Debug, Clone, Copy)]
pub struct EncryptedValue<'a> {
    scheme: Scheme<'a>,
    ciphertext: &'a [u8],
}

impl<'a> EncryptedValue<'a> {
    /// Parses `SEQUENCE { AlgorithmIdentifier, OCTET STRING ciphertext }`,
    /// refusing iteration counts above `max_iterations`.
    pub fn parse(bytes: &'a [u8], max_iterations: u32) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(asn1::single(bytes, asn1::SEQUENCE)?.content);
        let mut alg = outer.sequence()?;
        let ciphertext = outer.read(OCTET_STRING)?;
        outer.finish()?;
        let oid = alg.read(OID)?;
        let scheme = match oid {
            OID_PBES2 => {
                let mut params = alg.sequence()?;
                alg.finish()?;
                let kdf = Pbkdf2Params::parse(&mut params.sequence()?, max_iterations)?;
                let mut enc = params.sequence()?;
                params.finish()?;
                let enc_oid = enc.read(OID)?;
                if enc_oid != OID_AES256_CBC {
                    return Err(DecodeError::UnsupportedAlgorithm(asn1::oid_to_string(
                        enc_oid,
                    )));
                }
                let iv_tlv = enc.any()?;
                enc.finish()?;
                let iv = iv_tlv
                    .raw
                    .get(..16)
                    .and_then(|s| <[u8; 16]>::try_from(s).ok())
                    .ok_or(DecodeError::BadValue(
                        "AES-CBC parameter shorter than 16 bytes",
                    ))?;
                if kdf.key_len.is_some_and(|n| n != 32) {
                    return Err(DecodeError::BadValue(
                        "PBKDF2 key length is not 32 for AES-256",
                    ));
                }
                if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
                    return Err(DecodeError::BadValue(
                        "AES ciphertext not a multiple of 16 bytes",
                    ));
                }
                Scheme::Pbes2 { kdf, iv }
            }
            OID_LEGACY_SHA1_3DES => {
                let mut params = alg.sequence()?;
                alg.finish()?;
                let salt = params.read(OCTET_STRING)?;
                if salt.len() > 64 {
                    return Err(DecodeError::BadValue("PBE salt longer than 64 bytes"));
                }
                let iterations = check_iterations(params.small_uint()?, max_iterations)?;
                params.finish()?;
                if ciphertext.is_empty() || ciphertext.len() % 8 != 0 {
                    return Err(DecodeError::BadValue(
                        "3DES ciphertext not a multiple of 8 bytes",
                    ));
                }
                Scheme::LegacySha1TripleDes { salt, iterations }
            }
            other => {
                return Err(DecodeError::UnsupportedAlgorithm(asn1::oid_to_string(
                    other,
                )))
            }
        };
        Ok(Self { scheme, ciphertext })
    }

    /// The iteration count of its key derivation.
    pub fn iterations(&self) -> u32 {
        match self.scheme {
            Scheme::Pbes2 { kdf, .. } => kdf.iterations,
            Scheme::LegacySha1TripleDes { iterations, .. } => iterations,
        }
    }

    /// Whether it uses the legacy PKCS #12 SHA-1 + 3DES PBE, which NSS
    /// protects with no MAC.
    pub fn is_legacy(&self) -> bool {
        matches!(self.scheme, Scheme::LegacySha1TripleDes { .. })
    }

    /// Decrypts with keys derived from `pass_key`. A wrong pass key shows
    /// as [`DecodeError::BadPadding`] (or, by chance, as garbage).
    pub fn decrypt(&self, pass_key: &PassKey) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
        let mut buf = Zeroizing::new(self.ciphertext.to_vec());
        let len = match self.scheme {
            Scheme::Pbes2 { kdf, iv } => {
                let key = kdf.derive(pass_key, 32);
                let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
                    .map_err(|_| DecodeError::BadValue("AES key or IV length"))?;
                dec.decrypt_padded::<Pkcs7>(&mut buf)
                    .map_err(|_| DecodeError::BadPadding)?
                    .len()
            }
            Scheme::LegacySha1TripleDes { salt, iterations } => {
                let mut km = legacy_key_material(pass_key.bytes(), salt, iterations);
                let result = match (km.get(..24), km.get(32..40)) {
                    (Some(key), Some(iv)) => {
                        cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv)
                            .map_err(|_| DecodeError::BadValue("3DES key or IV length"))
                            .and_then(|dec| {
                                dec.decrypt_padded::<Pkcs7>(&mut buf)
                                    .map(|p| p.len())
                                    .map_err(|_| DecodeError::BadPadding)
                            })
                    }
                    _ => Err(DecodeError::BadValue("3DES key material")),
                };
                km.zeroize();
                result?
            }
        };
        buf.truncate(len);
        Ok(buf)
    }
}

/// NSS's key and IV derivation for the PKCS #12 SHA-1 + 3DES PBE:
/// `H = SHA-1(passKey ‖ salt)` hashed `iterations − 1` more times; with
/// `S` = the salt zero-padded (or cut) to 20 bytes,
/// `T1 = HMAC(H, S ‖ salt)`, `S' = HMAC(H, S)`, `T2 = HMAC(H, S' ‖ salt)`;
/// returns `T1 ‖ T2` (key = bytes 0..24, IV = bytes 32..40).
fn legacy_key_material(pass_key: &[u8], salt: &[u8], iterations: u32) -> [u8; 40] {
    let mut h = Zeroizing::new([0u8; 20]);
    let mut d = Sha1::new();
    d.update(pass_key);
    d.update(salt);
    h.copy_from_slice(&d.finalize());
    for _ in 1..iterations {
        let next = Sha1::digest(&h[..]);
        h.copy_from_slice(&next);
    }
    let mut s = [0u8; 20];
    let n = salt.len().min(20);
    if let (Some(dst), Some(src)) = (s.get_mut(..n), salt.get(..n)) {
        dst.copy_from_slice(src);
    }
    let hmac = |parts: &[&[u8]]| -> [u8; 20] {
        let mut out = [0u8; 20];
        if let Ok(mut m) = <Hmac<Sha1> as hmac::digest::KeyInit>::new_from_slice(&h[..]) {
            for p in parts {
                m.update(p);
            }
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    };
    let mut t1 = hmac(&[&s, salt]);
    let mut s2 = hmac(&[&s]);
    let mut t2 = hmac(&[&s2, salt]);
    let mut out = [0u8; 40];
    let (first, second) = out.split_at_mut(20);
    first.copy_from_slice(&t1);
    second.copy_from_slice(&t2);
    t1.zeroize();
    s2.zeroize();
    t2.zeroize();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cbc::cipher::BlockModeEncrypt;
    use hex_literal::hex;

    fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        asn1::secret_tlv(tag, parts).to_vec()
    }

    /// PBKDF2-params AlgorithmIdentifier content as NSS writes it.
    pub(crate) fn pbkdf2_alg(salt: &[u8], iterations: u32, key_len: Option<u8>) -> Vec<u8> {
        let mut params = tlv(OCTET_STRING, &[salt]);
        let mut iter = Vec::new();
        asn1::write_uint(&mut iter, &iterations.to_be_bytes());
        params.extend(iter);
        if let Some(k) = key_len {
            params.extend(tlv(asn1::INTEGER, &[&[k]]));
        }
        params.extend(tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_HMAC_SHA256])]));
        tlv(
            asn1::SEQUENCE,
            &[&tlv(OID, &[OID_PBKDF2]), &tlv(asn1::SEQUENCE, &[&params])],
        )
    }

    /// Encrypts like NSS: 14 random bytes DER-wrapped, the 16 wrapped
    /// bytes used as IV.
    pub(crate) fn encrypt_pbes2(
        pk: &PassKey,
        salt: &[u8],
        iter: u32,
        iv14: [u8; 14],
        plain: &[u8],
    ) -> Vec<u8> {
        let iv_tlv = tlv(OCTET_STRING, &[&iv14]);
        let kdf = Pbkdf2Params {
            salt,
            iterations: iter,
            key_len: Some(32),
            prf: Prf::Sha256,
        };
        let key = kdf.derive(pk, 32);
        let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv_tlv)
            .unwrap()
            .encrypt_padded_vec::<Pkcs7>(plain);
        let enc = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_AES256_CBC]), &iv_tlv]);
        let params = tlv(asn1::SEQUENCE, &[&pbkdf2_alg(salt, iter, Some(32)), &enc]);
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBES2]), &params]);
        tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&ct])])
    }

    pub(crate) fn encrypt_legacy(pk: &PassKey, salt: &[u8], iter: u32, plain: &[u8]) -> Vec<u8> {
        let km = legacy_key_material(pk.bytes(), salt, iter);
        let ct = cbc::Encryptor::<des::TdesEde3>::new_from_slices(&km[..24], &km[32..40])
            .unwrap()
            .encrypt_padded_vec::<Pkcs7>(plain);
        let mut params = tlv(OCTET_STRING, &[salt]);
        asn1::write_uint(&mut params, &iter.to_be_bytes());
        let alg = tlv(
            asn1::SEQUENCE,
            &[
                &tlv(OID, &[OID_LEGACY_SHA1_3DES]),
                &tlv(asn1::SEQUENCE, &[&params]),
            ],
        );
        tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&ct])])
    }

    #[test]
    fn pass_key_hashes() {
        let pk = PassKey::derive(&[0u8; 20], b"");
        assert_eq!(pk.bytes(), &Sha1::digest([0u8; 20])[..]);
        let pk = PassKey::derive(&[1u8; 48], b"pw");
        assert_eq!(pk.bytes().len(), 48);
        let mut cat = vec![1u8; 48];
        cat.extend_from_slice(b"pw");
        assert_eq!(pk.bytes(), &Sha384::digest(&cat)[..]);
        assert_eq!(format!("{pk:?}"), "PassKey(..)");
    }

    #[test]
    fn pbes2_round_trip_with_iv_quirk() {
        let pk = PassKey::derive(b"0123456789abcdefghij", b"secret123");
        let ev = encrypt_pbes2(&pk, &[7; 32], 10000, [9; 14], b"password-check");
        // The structure NSS writes: 30 81 82 30 6E 06 09 PBES2 …
        assert_eq!(&ev[..7], &hex!("30 81 82 30 6E 06 09"));
        let v = EncryptedValue::parse(&ev, 10000).unwrap();
        assert_eq!(v.iterations(), 10000);
        assert!(!v.is_legacy());
        assert_eq!(v.decrypt(&pk).unwrap().as_slice(), b"password-check");
        let wrong = PassKey::derive(b"0123456789abcdefghij", b"secret124");
        assert!(matches!(
            v.decrypt(&wrong),
            Err(DecodeError::BadPadding) | Ok(_)
        ));
        assert_ne!(
            v.decrypt(&wrong).ok().as_deref().map(|v| v.as_slice()),
            Some(&b"password-check"[..])
        );
    }

    #[test]
    fn legacy_round_trip() {
        let pk = PassKey::derive(&[3; 20], b"pw");
        let ev = encrypt_legacy(&pk, &[5; 20], 1, b"password-check");
        // 30 3C 30 28 06 0B <legacy OID> as in a migrated password record.
        assert_eq!(&ev[..6], &hex!("30 3C 30 28 06 0B"));
        let v = EncryptedValue::parse(&ev, 10).unwrap();
        assert!(v.is_legacy());
        assert_eq!(v.iterations(), 1);
        assert_eq!(v.decrypt(&pk).unwrap().as_slice(), b"password-check");
        let ev = encrypt_legacy(&pk, &[5; 8], 4, &[0xAB; 256]);
        assert_eq!(
            EncryptedValue::parse(&ev, 10)
                .unwrap()
                .decrypt(&pk)
                .unwrap()
                .as_slice(),
            &[0xAB; 256]
        );
    }

    #[test]
    fn refuses_bad_iteration_counts() {
        let pk = PassKey::derive(&[0; 20], b"");
        let ev = encrypt_pbes2(&pk, &[7; 32], 11, [9; 14], b"x");
        assert_eq!(
            EncryptedValue::parse(&ev, 10).unwrap_err(),
            DecodeError::IterationCount { count: 11, max: 10 }
        );
        let mut zero = encrypt_legacy(&pk, &[5; 20], 1, b"x");
        // The iteration INTEGER 02 01 01 → 02 01 00.
        let pos = zero.windows(3).position(|w| w == [2, 1, 1]).unwrap();
        zero[pos + 2] = 0;
        assert_eq!(
            EncryptedValue::parse(&zero, 10).unwrap_err(),
            DecodeError::IterationCount { count: 0, max: 10 }
        );
    }

    #[test]
    fn refuses_malformed_values() {
        let pk = PassKey::derive(&[0; 20], b"");
        let good = encrypt_pbes2(&pk, &[7; 32], 1, [9; 14], b"x");
        for cut in 0..good.len() {
            assert!(
                EncryptedValue::parse(&good[..cut], 10).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            EncryptedValue::parse(&trailing, 10).unwrap_err(),
            DecodeError::TrailingData
        );
        // Another cipher OID (aes128-CBC) is refused by name.
        let mut other = good.clone();
        let pos = other
            .windows(OID_AES256_CBC.len())
            .position(|w| w == OID_AES256_CBC)
            .unwrap();
        other[pos + 8] = 0x02;
        assert_eq!(
            EncryptedValue::parse(&other, 10).unwrap_err(),
            DecodeError::UnsupportedAlgorithm("2.16.840.1.101.3.4.1.2".into())
        );
        // An unknown outer scheme (PKCS #12 pbeWithSHAAnd40BitRC2-CBC).
        let mut p12 = encrypt_legacy(&pk, &[5; 20], 1, b"x");
        let pos = p12
            .windows(11)
            .position(|w| w == OID_LEGACY_SHA1_3DES)
            .unwrap();
        p12[pos + 8] = 0x01;
        p12[pos + 10] = 0x06;
        assert!(
            matches!(EncryptedValue::parse(&p12, 10), Err(DecodeError::UnsupportedAlgorithm(s)) if s == "1.2.840.113549.1.12.1.1.6")
        );
        // An IV parameter shorter than 16 bytes.
        let enc = tlv(
            asn1::SEQUENCE,
            &[
                &tlv(OID, &[OID_AES256_CBC]),
                &tlv(OCTET_STRING, &[&[0; 13]]),
            ],
        );
        let params = tlv(asn1::SEQUENCE, &[&pbkdf2_alg(&[1], 1, Some(32)), &enc]);
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBES2]), &params]);
        let short_iv = tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&[0; 16]])]);
        assert_eq!(
            EncryptedValue::parse(&short_iv, 10).unwrap_err(),
            DecodeError::BadValue("AES-CBC parameter shorter than 16 bytes")
        );
        // Ciphertext not a whole number of blocks.
        let enc = tlv(
            asn1::SEQUENCE,
            &[
                &tlv(OID, &[OID_AES256_CBC]),
                &tlv(OCTET_STRING, &[&[0; 14]]),
            ],
        );
        let params = tlv(asn1::SEQUENCE, &[&pbkdf2_alg(&[1], 1, Some(32)), &enc]);
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBES2]), &params]);
        let ragged = tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&[0; 15]])]);
        assert_eq!(
            EncryptedValue::parse(&ragged, 10).unwrap_err(),
            DecodeError::BadValue("AES ciphertext not a multiple of 16 bytes")
        );
        // A 16-byte key length for AES-256.
        let params = tlv(asn1::SEQUENCE, &[&pbkdf2_alg(&[1], 1, Some(16)), &enc]);
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBES2]), &params]);
        let short_key = tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&[0; 16]])]);
        assert!(EncryptedValue::parse(&short_key, 10).is_err());
        // Wrong padding after decryption.
        let enc = tlv(
            asn1::SEQUENCE,
            &[
                &tlv(OID, &[OID_AES256_CBC]),
                &tlv(OCTET_STRING, &[&[0; 14]]),
            ],
        );
        let params = tlv(asn1::SEQUENCE, &[&pbkdf2_alg(&[1], 1, Some(32)), &enc]);
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBES2]), &params]);
        let garbage = tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&[0x55; 32]])]);
        let v = EncryptedValue::parse(&garbage, 10).unwrap();
        assert!(v.decrypt(&pk).map(|p| p.len()).unwrap_or(0) < 32);
    }

    #[test]
    fn pbkdf2_params_defaults_and_errors() {
        // No key length, no PRF: HMAC-SHA1 default.
        let alg = hex!("06 09 2A864886F70D01050C 30 06 04 01 AA 02 01 02");
        let p = Pbkdf2Params::parse(&mut Reader::new(&alg), 5).unwrap();
        assert_eq!(
            (p.salt, p.iterations, p.key_len, p.prf),
            (&[0xAA][..], 2, None, Prf::Sha1)
        );
        // PRF with NULL parameters is accepted too.
        let alg = hex!("06 09 2A864886F70D01050C 30 17 04 01 AA 02 01 02 02 01 20 30 0C 06 08 2A864886F70D020B 05 00");
        let p = Pbkdf2Params::parse(&mut Reader::new(&alg), 5).unwrap();
        assert_eq!((p.key_len, p.prf), (Some(32), Prf::Sha512));
        let alg = hex!("06 09 2A864886F70D01050C 30 09 04 01 AA 02 01 02 02 01 00");
        assert!(Pbkdf2Params::parse(&mut Reader::new(&alg), 5).is_err());
        let alg = hex!("06 09 2A864886F70D01050D 30 06 04 01 AA 02 01 02");
        assert!(matches!(
            Pbkdf2Params::parse(&mut Reader::new(&alg), 5),
            Err(DecodeError::UnsupportedAlgorithm(_))
        ));
        let alg = hex!("06 09 2A864886F70D01050C 30 10 04 01 AA 02 01 02 30 08 06 06 2A864886F70D");
        assert!(matches!(
            Pbkdf2Params::parse(&mut Reader::new(&alg), 5),
            Err(DecodeError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn legacy_material_known_answer() {
        // Two independent runs of the derivation agree and differ by salt.
        let a = legacy_key_material(&[1; 20], &[2; 20], 1);
        let b = legacy_key_material(&[1; 20], &[2; 20], 1);
        let c = legacy_key_material(&[1; 20], &[3; 20], 1);
        let d = legacy_key_material(&[1; 20], &[2; 20], 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // T1 by the written-out formula.
        let h = Sha1::digest([[1u8; 20], [2u8; 20]].concat());
        let mut m = <Hmac<Sha1> as hmac::digest::KeyInit>::new_from_slice(&h).unwrap();
        m.update(&[2; 20]);
        m.update(&[2; 20]);
        assert_eq!(&a[..20], &m.finalize().into_bytes()[..]);
    }
}
