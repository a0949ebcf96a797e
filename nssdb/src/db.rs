//! The in-memory snapshot: rows as read from the SQLite files, interpreted into
//! certificates, private-key objects and `metaData` items, and the
//! look-ups and key decryption on top. No I/O here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::attr::{self, CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKA_VALUE};
use crate::error::{DecodeError, Error};
use crate::key::{Curve, EcKey, PublicKey, RsaParts};
use crate::mac::{mac_row_id, MacTable, Pbmac1, FALLBACK_ID_BITS};
use crate::pbe::{EncryptedValue, PassKey, DEFAULT_MAX_ITERATIONS};
use crate::x509::CertInfo;

/// The most rows read from one table.
pub const MAX_ROWS: usize = 100_000;
/// The largest value accepted in one column.
pub const MAX_VALUE: usize = 1 << 20;
/// The most columns accepted in one table.
pub const MAX_COLUMNS: usize = 4096;
/// The most bytes read from one file in all.
pub const MAX_TOTAL: usize = 64 << 20;

const PASSWORD_CHECK: &[u8] = b"password-check";
/// Token names under which PK11_FindCertFromNickname finds the
/// internal certificate database (normal and FIPS mode).
const CERT_TOKENS: [&str; 2] = ["NSS Certificate DB", "NSS FIPS 140-2 Certificate DB"];
/// The internal crypto token, which exists but holds no certificates.
const CRYPTO_TOKENS: [&str; 2] = [
    "NSS Generic Crypto Services",
    "NSS FIPS 140-2 Generic Crypto Services",
];

/// One table as read: its attribute-column names and its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTable {
    /// Column names other than `id`, in the order of [`RawRow::values`].
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<RawRow>,
}

/// One row of `nssPublic` / `nssPrivate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    /// The `id` column (the object handle).
    pub id: i64,
    /// One value per column (`None` = SQL NULL), as bytes.
    pub values: Vec<Option<Vec<u8>>>,
}

/// One row of `metaData`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMeta {
    /// `id` (TEXT in NSS), as bytes.
    pub id: Vec<u8>,
    /// `item1`.
    pub item1: Option<Vec<u8>>,
    /// `item2`.
    pub item2: Option<Vec<u8>>,
}

/// Every attribute this crate reads from an object (with [`Object::get`]).
/// [`crate::Database::open`] keeps only these columns of a file's rows: a
/// row of NSS 3.87 has 119 attribute columns, and copying the others was
/// most of the cost of opening a database.
pub(crate) const USED_ATTRIBUTES: [u32; 15] = [
    CKA_CLASS,
    CKA_LABEL,
    CKA_VALUE,
    attr::CKA_CERTIFICATE_TYPE,
    CKA_KEY_TYPE,
    CKA_ID,
    attr::CKA_MODULUS,
    attr::CKA_PUBLIC_EXPONENT,
    attr::CKA_PRIVATE_EXPONENT,
    attr::CKA_PRIME_1,
    attr::CKA_PRIME_2,
    attr::CKA_EXPONENT_1,
    attr::CKA_EXPONENT_2,
    attr::CKA_COEFFICIENT,
    attr::CKA_EC_PARAMS,
];

#[derive(Debug, Clone)]
struct Object {
    id: u32,
    /// Sorted by attribute type, each type once.
    attrs: Vec<(u32, Vec<u8>)>,
}

impl Object {
    fn get(&self, attribute: u32) -> Option<&[u8]> {
        debug_assert!(
            USED_ATTRIBUTES.contains(&attribute),
            "attribute {attribute:#x} is read but not in USED_ATTRIBUTES"
        );
        let i = self.attrs.binary_search_by_key(&attribute, |a| a.0).ok()?;
        self.attrs.get(i).map(|a| a.1.as_slice())
    }

    fn ulong(&self, attribute: u32) -> Option<u32> {
        self.get(attribute).and_then(attr::decode_ulong)
    }
}

#[derive(Debug, Clone)]
struct MetaItem {
    item1: Option<Vec<u8>>,
    item2: Option<Vec<u8>>,
}

/// A certificate object of cert9.db.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Certificate {
    /// CKA_LABEL, the nickname (lossily decoded if not UTF-8).
    pub nickname: String,
    /// CKA_VALUE, the certificate DER, exactly as stored.
    pub der: Vec<u8>,
    /// CKA_ID, which the private key shares.
    pub cka_id: Vec<u8>,
    /// The object id in cert9.db.
    pub object_id: u32,
    /// notBefore (Unix seconds), if the DER could be parsed.
    pub not_before: Option<i64>,
    /// notAfter (Unix seconds), if the DER could be parsed.
    pub not_after: Option<i64>,
    label: Vec<u8>,
    spki: Option<Vec<u8>>,
}

impl Certificate {
    fn is_valid_at(&self, now: i64) -> bool {
        matches!((self.not_before, self.not_after), (Some(b), Some(a)) if b <= now && now <= a)
    }
}

/// An NSS `sql:` database, read whole into memory.
///
/// Opening reads cert9.db and key4.db, each as one consistent snapshot
/// taken without a lock, and closes them: later changes to the files are
/// not seen.
pub struct Database {
    cert_file: PathBuf,
    key_file: PathBuf,
    certs: Vec<Certificate>,
    keys: Vec<Object>,
    meta: BTreeMap<Vec<u8>, MetaItem>,
    max_iterations: u32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("certificates", &self.certs.len())
            .field("private_keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn interpret_table(file: &Path, table: &str, raw: RawTable) -> Result<Vec<Object>, Error> {
    let schema = |detail: String| Error::Schema {
        file: file.to_path_buf(),
        detail,
    };
    if raw.columns.len() > MAX_COLUMNS {
        return Err(Error::TooLarge {
            file: file.to_path_buf(),
            detail: format!("{table} has more than {MAX_COLUMNS} columns"),
        });
    }
    if raw.rows.len() > MAX_ROWS {
        return Err(Error::TooLarge {
            file: file.to_path_buf(),
            detail: format!("{table} has more than {MAX_ROWS} rows"),
        });
    }
    let types: Vec<Option<u32>> = raw
        .columns
        .iter()
        .map(|name| attr::column_attribute(name))
        .collect();
    let mut sorted: Vec<u32> = types.iter().flatten().copied().collect();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
        let t = w.first().copied().unwrap_or_default();
        return Err(schema(format!(
            "{table} has two columns for attribute {t:#x}"
        )));
    }
    let mut objects: BTreeMap<u32, Object> = BTreeMap::new();
    for row in raw.rows {
        let id = u32::try_from(row.id)
            .map_err(|_| schema(format!("{table} row id {} out of range", row.id)))?;
        if row.values.len() != types.len() {
            return Err(schema(format!(
                "{table} row {id:#x} has the wrong number of values"
            )));
        }
        let mut attrs = Vec::new();
        for (t, v) in types.iter().zip(row.values) {
            let (Some(t), Some(v)) = (t, v) else { continue };
            if v.len() > MAX_VALUE {
                return Err(Error::TooLarge {
                    file: file.to_path_buf(),
                    detail: format!(
                        "{table} object {id:#x} attribute {t:#x} is over {MAX_VALUE} bytes"
                    ),
                });
            }
            let v = if v == attr::EXPLICIT_EMPTY {
                Vec::new()
            } else {
                v
            };
            attrs.push((*t, v));
        }
        // Column types are distinct (checked above).
        attrs.sort_unstable_by_key(|a| a.0);
        if objects.insert(id, Object { id, attrs }).is_some() {
            return Err(schema(format!("{table} has two rows with id {id:#x}")));
        }
    }
    Ok(objects.into_values().collect())
}

fn certificate_from(obj: &Object) -> Option<Certificate> {
    if obj.ulong(CKA_CLASS) != Some(attr::CKO_CERTIFICATE) {
        return None;
    }
    if obj
        .get(attr::CKA_CERTIFICATE_TYPE)
        .is_some_and(|t| attr::decode_ulong(t) != Some(attr::CKC_X_509))
    {
        return None;
    }
    let der = obj.get(CKA_VALUE)?.to_vec();
    let label = obj.get(CKA_LABEL).unwrap_or_default().to_vec();
    let info = CertInfo::parse(&der).ok();
    Some(Certificate {
        nickname: String::from_utf8_lossy(&label).into_owned(),
        cka_id: obj.get(CKA_ID).unwrap_or_default().to_vec(),
        object_id: obj.id,
        not_before: info.as_ref().map(|i| i.not_before),
        not_after: info.as_ref().map(|i| i.not_after),
        spki: info.map(|i| i.spki.to_vec()),
        label,
        der,
    })
}

fn location(object: u32, attribute: u32) -> String {
    format!("object {object:#010x} attribute {attribute:#x}")
}

enum MacCheck {
    Missing,
    Bad,
    Good,
}

impl Database {
    /// Builds a database from rows as read from cert9.db (`nssPublic`) and
    /// key4.db (`nssPrivate`, `metaData`). The file names only label
    /// errors. This is what [`Database::open`] does after reading; it does
    /// no I/O, so fuzzers and tests can drive it directly.
    pub fn from_raw(
        cert_file: PathBuf,
        key_file: PathBuf,
        public: RawTable,
        private: RawTable,
        meta: Vec<RawMeta>,
    ) -> Result<Self, Error> {
        let public = interpret_table(&cert_file, "nssPublic", public)?;
        let private = interpret_table(&key_file, "nssPrivate", private)?;
        if meta.len() > MAX_ROWS {
            return Err(Error::TooLarge {
                file: key_file,
                detail: format!("metaData has more than {MAX_ROWS} rows"),
            });
        }
        let mut items = BTreeMap::new();
        for m in meta {
            let too_big = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(|v| v.len() > MAX_VALUE);
            if m.id.len() > MAX_VALUE || too_big(&m.item1) || too_big(&m.item2) {
                return Err(Error::TooLarge {
                    file: key_file,
                    detail: format!("a metaData value is over {MAX_VALUE} bytes"),
                });
            }
            let id_text = String::from_utf8_lossy(&m.id).into_owned();
            if items
                .insert(
                    m.id,
                    MetaItem {
                        item1: m.item1,
                        item2: m.item2,
                    },
                )
                .is_some()
            {
                return Err(Error::Schema {
                    file: key_file,
                    detail: format!("metaData has two rows with id \"{id_text}\""),
                });
            }
        }
        let certs = public.iter().filter_map(certificate_from).collect();
        let keys = private
            .into_iter()
            .filter(|o| o.ulong(CKA_CLASS) == Some(attr::CKO_PRIVATE_KEY))
            .collect();
        Ok(Self {
            cert_file,
            key_file,
            certs,
            keys,
            meta: items,
            max_iterations: DEFAULT_MAX_ITERATIONS,
        })
    }

    /// Sets the largest PBKDF2 / PBE iteration count accepted (default
    /// 10 000 000); values above it are refused without being computed.
    pub fn with_max_iterations(mut self, max: u32) -> Self {
        self.max_iterations = max;
        self
    }

    /// The cert9.db path (as given to [`Database::open`]).
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The key4.db path (as given to [`Database::open`]).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// Every certificate object, in object-id order.
    pub fn certificates(&self) -> Vec<Certificate> {
        self.certs.clone()
    }

    /// Finds a certificate by nickname the way `PK11_FindCertFromNickname`
    /// does, choosing among certificates that share the nickname by the
    /// current system time (see [`Database::find_certificate_at`]).
    pub fn find_certificate(&self, nickname: &str) -> Result<Option<Certificate>, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.find_certificate_at(nickname, now)
    }

    /// Finds a certificate by nickname: `token:nickname` names a token (the
    /// internal `NSS Certificate DB`, or its FIPS name); without a colon the
    /// internal token is meant. Among certificates with that label, one
    /// valid at `now` (Unix seconds) wins, then the latest notBefore, then
    /// the highest object id. `Ok(None)` if none has the label.
    pub fn find_certificate_at(
        &self,
        nickname: &str,
        now: i64,
    ) -> Result<Option<Certificate>, Error> {
        let label = match nickname.split_once(':') {
            None => nickname,
            Some((token, rest)) if CERT_TOKENS.contains(&token) => rest,
            Some((token, _)) if CRYPTO_TOKENS.contains(&token) => return Ok(None),
            Some((token, _)) => {
                return Err(Error::UnknownToken {
                    token: token.to_string(),
                })
            }
        };
        let best = self
            .certs
            .iter()
            .filter(|c| c.label == label.as_bytes())
            .max_by_key(|c| {
                (
                    c.is_valid_at(now),
                    c.not_before.unwrap_or(i64::MIN),
                    c.object_id,
                )
            });
        Ok(best.cloned())
    }

    /// Whether a password is needed: false only when the password record
    /// has iteration count 1 and the empty password opens it (NSS's "no
    /// login needed"), or when there is no password record at all.
    pub fn needs_login(&self) -> bool {
        let Some(rec) = self.meta.get(b"password".as_slice()) else {
            return false;
        };
        let (Some(salt), Some(check)) = (&rec.item1, &rec.item2) else {
            return true;
        };
        match EncryptedValue::parse(check, self.max_iterations) {
            Ok(v) if v.iterations() == 1 => {
                let pk = PassKey::derive(salt, b"");
                !v.decrypt(&pk)
                    .is_ok_and(|p| bool::from(p.as_slice().ct_eq(PASSWORD_CHECK)))
            }
            _ => true,
        }
    }

    /// Checks a password against the password record.
    pub fn check_password(&self, password: &[u8]) -> Result<(), Error> {
        self.pass_key(password).map(drop)
    }

    fn corrupt(&self, location: String, source: DecodeError) -> Error {
        Error::Corrupt {
            file: self.key_file.clone(),
            location,
            source,
        }
    }

    fn pass_key(&self, password: &[u8]) -> Result<PassKey, Error> {
        let rec = self
            .meta
            .get(b"password".as_slice())
            .ok_or_else(|| Error::NoPasswordRecord {
                file: self.key_file.clone(),
            })?;
        let here = || "metaData password record".to_string();
        let salt = rec
            .item1
            .as_deref()
            .ok_or_else(|| self.corrupt(here(), DecodeError::BadValue("no global salt")))?;
        let check = rec
            .item2
            .as_deref()
            .ok_or_else(|| self.corrupt(here(), DecodeError::BadValue("no check value")))?;
        let value = EncryptedValue::parse(check, self.max_iterations)
            .map_err(|e| self.corrupt(here(), e))?;
        let pk = PassKey::derive(salt, password);
        match value.decrypt(&pk) {
            Ok(plain) if bool::from(plain.as_slice().ct_eq(PASSWORD_CHECK)) => Ok(pk),
            Ok(_) | Err(DecodeError::BadPadding) => Err(Error::WrongPassword {
                file: self.key_file.clone(),
            }),
            Err(e) => Err(self.corrupt(here(), e)),
        }
    }

    fn check_mac_row(
        &self,
        pk: &PassKey,
        row_object: u32,
        attribute: u32,
        mac_object: u32,
        value: &[u8],
    ) -> Result<MacCheck, Error> {
        let id = mac_row_id(MacTable::Key, row_object, attribute);
        let Some(item) = self.meta.get(id.as_bytes()) else {
            return Ok(MacCheck::Missing);
        };
        let Some(bytes) = item.item1.as_deref() else {
            return Ok(MacCheck::Bad);
        };
        let mac = Pbmac1::parse(bytes, self.max_iterations)
            .map_err(|e| self.corrupt(format!("metaData {id}"), e))?;
        Ok(if mac.verify(pk, mac_object, attribute, value) {
            MacCheck::Good
        } else {
            MacCheck::Bad
        })
    }

    /// Verifies the MAC of `attribute` of key object `object`, at its row
    /// or the 0xC0000000 fallback row. `mac_object` is the id in the MAC
    /// input (0 for private attributes).
    fn verify_mac(
        &self,
        pk: &PassKey,
        object: u32,
        attribute: u32,
        mac_object: u32,
        value: &[u8],
        required: bool,
    ) -> Result<(), Error> {
        let primary = self.check_mac_row(pk, object, attribute, mac_object, value)?;
        if let MacCheck::Good = primary {
            return Ok(());
        }
        let fallback = if object & FALLBACK_ID_BITS == 0 {
            self.check_mac_row(pk, object | FALLBACK_ID_BITS, attribute, mac_object, value)?
        } else {
            MacCheck::Missing
        };
        match (primary, fallback) {
            (_, MacCheck::Good) => Ok(()),
            (MacCheck::Missing, MacCheck::Missing) if !required => Ok(()),
            (MacCheck::Missing, MacCheck::Missing) => Err(Error::MacMissing {
                file: self.key_file.clone(),
                object,
                attribute,
            }),
            _ => Err(Error::MacMismatch {
                file: self.key_file.clone(),
                object,
                attribute,
            }),
        }
    }

    /// A plain attribute NSS authenticates (modulus, public exponent),
    /// MAC-checked with the object's real id.
    fn authenticated<'a>(
        &self,
        pk: &PassKey,
        key: &'a Object,
        attribute: u32,
    ) -> Result<&'a [u8], Error> {
        let value = key.get(attribute).ok_or_else(|| {
            self.corrupt(
                location(key.id, attribute),
                DecodeError::BadValue("attribute missing"),
            )
        })?;
        self.verify_mac(pk, key.id, attribute, key.id, value, true)?;
        Ok(value)
    }

    /// A private attribute, decrypted and MAC-checked with object id 0.
    /// PBES2 values must have a MAC; legacy 3DES values have none (one is
    /// checked if present).
    fn decrypt_attribute(
        &self,
        pk: &PassKey,
        key: &Object,
        attribute: u32,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let here = || location(key.id, attribute);
        let stored = key
            .get(attribute)
            .ok_or_else(|| self.corrupt(here(), DecodeError::BadValue("attribute missing")))?;
        let value = EncryptedValue::parse(stored, self.max_iterations)
            .map_err(|e| self.corrupt(here(), e))?;
        let plain = value.decrypt(pk).map_err(|e| self.corrupt(here(), e))?;
        self.verify_mac(pk, key.id, attribute, 0, &plain, !value.is_legacy())?;
        Ok(plain)
    }

    /// Decrypts the private key of `cert` (the key object with the same
    /// CKA_ID whose public part matches the certificate), verifying every
    /// MAC NSS would, and returns it as PKCS #8 DER. RSA and EC P-256 /
    /// P-384 keys are supported.
    pub fn private_key_pkcs8(
        &self,
        cert: &Certificate,
        password: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let pk = self.pass_key(password)?;
        let spki = cert.spki.as_deref().ok_or_else(|| Error::Corrupt {
            file: self.cert_file.clone(),
            location: format!("certificate \"{}\"", cert.nickname),
            source: DecodeError::BadValue("certificate DER does not parse"),
        })?;
        let public = PublicKey::from_spki(spki).map_err(|e| Error::Corrupt {
            file: self.cert_file.clone(),
            location: format!("certificate \"{}\" public key", cert.nickname),
            source: e,
        })?;
        let candidates: Vec<&Object> = self
            .keys
            .iter()
            .filter(|k| k.get(CKA_ID) == Some(cert.cka_id.as_slice()))
            .collect();
        if candidates.is_empty() {
            return Err(Error::NoPrivateKey {
                file: self.key_file.clone(),
                nickname: cert.nickname.clone(),
            });
        }
        let mut unsupported = None;
        for key in candidates {
            let result = match (key.ulong(CKA_KEY_TYPE), &public) {
                (Some(attr::CKK_RSA), PublicKey::Rsa { .. }) => self.rsa_key(&pk, key, &public)?,
                (Some(attr::CKK_EC), PublicKey::Ec { .. }) => self.ec_key(&pk, key, &public)?,
                (Some(attr::CKK_RSA | attr::CKK_EC), _) => None,
                (t, _) => {
                    unsupported = Some(match t {
                        Some(t) => format!("key type {t:#x}"),
                        None => "no key type".to_string(),
                    });
                    None
                }
            };
            if let Some(der) = result {
                return Ok(der);
            }
        }
        match (unsupported, &public) {
            (_, PublicKey::Other(oid)) => Err(Error::UnsupportedKey {
                file: self.key_file.clone(),
                detail: format!(
                    "certificate \"{}\" has public key algorithm {oid}",
                    cert.nickname
                ),
            }),
            (Some(detail), _) => Err(Error::UnsupportedKey {
                file: self.key_file.clone(),
                detail,
            }),
            (None, _) => Err(Error::KeyMismatch {
                file: self.key_file.clone(),
                nickname: cert.nickname.clone(),
            }),
        }
    }

    fn rsa_key(
        &self,
        pk: &PassKey,
        key: &Object,
        public: &PublicKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let n = self.authenticated(pk, key, attr::CKA_MODULUS)?;
        let e = self.authenticated(pk, key, attr::CKA_PUBLIC_EXPONENT)?;
        let d = self.decrypt_attribute(pk, key, attr::CKA_PRIVATE_EXPONENT)?;
        let p = self.decrypt_attribute(pk, key, attr::CKA_PRIME_1)?;
        let q = self.decrypt_attribute(pk, key, attr::CKA_PRIME_2)?;
        let dp = self.decrypt_attribute(pk, key, attr::CKA_EXPONENT_1)?;
        let dq = self.decrypt_attribute(pk, key, attr::CKA_EXPONENT_2)?;
        let qinv = self.decrypt_attribute(pk, key, attr::CKA_COEFFICIENT)?;
        let parts = RsaParts {
            n,
            e,
            d: &d,
            p: &p,
            q: &q,
            dp: &dp,
            dq: &dq,
            qinv: &qinv,
        };
        if !parts.matches(public) {
            return Ok(None);
        }
        parts
            .check_consistent()
            .map_err(|e| self.corrupt(format!("RSA key object {:#010x}", key.id), e))?;
        Ok(Some(parts.to_pkcs8()))
    }

    fn ec_key(
        &self,
        pk: &PassKey,
        key: &Object,
        public: &PublicKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let params = key.get(attr::CKA_EC_PARAMS).unwrap_or_default();
        let curve = Curve::from_params(params).ok_or_else(|| Error::UnsupportedKey {
            file: self.key_file.clone(),
            detail: format!("EC key object {:#010x} is not on P-256 or P-384", key.id),
        })?;
        let value = self.decrypt_attribute(pk, key, CKA_VALUE)?;
        let ec =
            EcKey::new(curve, &value).map_err(|e| self.corrupt(location(key.id, CKA_VALUE), e))?;
        Ok(ec.matches(public).then(|| ec.to_pkcs8()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asn1::{secret_tlv, OCTET_STRING, SEQUENCE};
    use crate::key::P256_PARAMS;
    use crate::mac::tests::make_mac;
    use crate::pbe::tests::{encrypt_legacy, encrypt_pbes2};
    use hex_literal::hex;

    const SALT: [u8; 20] = [0x11; 20];
    const CKA_ID_BYTES: [u8; 2] = [1, 2];
    const KEY_ID: u32 = 5;
    const G: [u8; 65] = hex!(
        "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
    );

    fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        secret_tlv(tag, parts).to_vec()
    }

    /// A certificate skeleton with an EC P-256 key (the generator point:
    /// private scalar 1).
    fn cert_der(not_before: &str, not_after: &str, point: &[u8]) -> Vec<u8> {
        let validity = tlv(
            SEQUENCE,
            &[
                &tlv(0x17, &[not_before.as_bytes()]),
                &tlv(0x17, &[not_after.as_bytes()]),
            ],
        );
        let alg = tlv(SEQUENCE, &[&hex!("06 07 2A8648CE3D0201"), P256_PARAMS]);
        let spki = tlv(SEQUENCE, &[&alg, &tlv(0x03, &[&[0], point])]);
        let tbs = tlv(
            SEQUENCE,
            &[
                &hex!("02 01 01 30 00 30 00"),
                &validity,
                &hex!("30 00"),
                &spki,
            ],
        );
        tlv(SEQUENCE, &[&tbs, &hex!("30 00 03 01 00")])
    }

    fn row(id: i64, values: &[Option<&[u8]>]) -> RawRow {
        RawRow {
            id,
            values: values.iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
        }
    }

    fn public() -> RawTable {
        let cols = ["a0", "a3", "a11", "a102"].map(String::from).to_vec();
        let c1 = cert_der("000101000000Z", "300101000000Z", &G);
        let c2 = cert_der("400101000000Z", "491231000000Z", &G);
        let c3 = cert_der("000101000000Z", "300101000000Z", &G[..64]);
        let class = [0, 0, 0, 1];
        RawTable {
            columns: cols,
            rows: vec![
                row(
                    2,
                    &[Some(&class), Some(b"c"), Some(&c2), Some(&CKA_ID_BYTES)],
                ),
                row(
                    1,
                    &[Some(&class), Some(b"c"), Some(&c1), Some(&CKA_ID_BYTES)],
                ),
                row(
                    3,
                    &[
                        Some(&class),
                        Some(b"bad point"),
                        Some(&c3),
                        Some(&CKA_ID_BYTES),
                    ],
                ),
                row(
                    4,
                    &[Some(&[0xCE, 0x53, 0x43, 0x53]), Some(b"c"), None, None],
                ),
                row(
                    6,
                    &[
                        Some(&class),
                        Some(&[0xA5, 0x00, 0x5A]),
                        Some(&c1),
                        Some(&[9]),
                    ],
                ),
            ],
        }
    }

    struct Fixture {
        public: RawTable,
        private: RawTable,
        meta: Vec<RawMeta>,
    }

    impl Fixture {
        fn new(password: &[u8], iterations: u32) -> Self {
            let pk = PassKey::derive(&SALT, password);
            let mut scalar = [0u8; 32];
            scalar[31] = 1;
            let value = encrypt_pbes2(&pk, &[0x22; 32], iterations, [0x33; 14], &scalar);
            let private = RawTable {
                columns: ["a0", "a100", "a102", "a180", "a11"]
                    .map(String::from)
                    .to_vec(),
                rows: vec![row(
                    i64::from(KEY_ID),
                    &[
                        Some(&[0, 0, 0, 3]),
                        Some(&[0, 0, 0, 3]),
                        Some(&CKA_ID_BYTES),
                        Some(P256_PARAMS),
                        Some(&value),
                    ],
                )],
            };
            let meta = vec![
                RawMeta {
                    id: b"password".to_vec(),
                    item1: Some(SALT.to_vec()),
                    item2: Some(encrypt_pbes2(
                        &pk,
                        &[0x44; 32],
                        iterations,
                        [0x55; 14],
                        b"password-check",
                    )),
                },
                RawMeta {
                    id: mac_row_id(MacTable::Key, KEY_ID, CKA_VALUE).into_bytes(),
                    item1: Some(make_mac(
                        &pk,
                        &[0x66; 32],
                        iterations,
                        0,
                        CKA_VALUE,
                        &scalar,
                    )),
                    item2: None,
                },
            ];
            Self {
                public: public(),
                private,
                meta,
            }
        }

        fn db(self) -> Result<Database, Error> {
            Database::from_raw(
                "cert9.db".into(),
                "key4.db".into(),
                self.public,
                self.private,
                self.meta,
            )
        }
    }

    fn expected_key() -> Vec<u8> {
        let mut scalar = [0u8; 32];
        scalar[31] = 1;
        EcKey::new(Curve::P256, &scalar)
            .unwrap()
            .to_pkcs8()
            .to_vec()
    }

    const Y2020: i64 = 1_577_836_800;
    const Y2045: i64 = 2_366_841_600;
    const Y2060: i64 = 2_840_140_800;

    #[test]
    fn certificates_and_nickname_choice() {
        let db = Fixture::new(b"", 1).db().unwrap();
        let ids: Vec<u32> = db.certificates().iter().map(|c| c.object_id).collect();
        assert_eq!(
            ids,
            [1, 2, 3, 6],
            "trust objects are not certificates; id order"
        );
        assert_eq!(db.certificates()[3].nickname, "", "explicit empty label");
        let at = |nick: &str, now| {
            db.find_certificate_at(nick, now)
                .unwrap()
                .map(|c| c.object_id)
        };
        assert_eq!(at("c", Y2020), Some(1), "the valid one");
        assert_eq!(at("c", Y2045), Some(2), "the valid one");
        assert_eq!(at("c", Y2060), Some(2), "none valid: the latest notBefore");
        assert_eq!(at("NSS Certificate DB:c", Y2020), Some(1));
        assert_eq!(at("NSS FIPS 140-2 Certificate DB:c", Y2020), Some(1));
        assert_eq!(at("NSS Generic Crypto Services:c", Y2020), None);
        assert_eq!(at("C", Y2020), None, "labels compare as bytes");
        assert_eq!(at("nothing", Y2020), None);
        assert!(
            matches!(db.find_certificate_at("Foo:c", Y2020), Err(Error::UnknownToken { token }) if token == "Foo")
        );
        let c = db.find_certificate_at("c", Y2020).unwrap().unwrap();
        assert_eq!(
            (c.not_before, c.not_after),
            (Some(946_684_800), Some(1_893_456_000))
        );
        assert!(format!("{db:?}").contains("certificates: 4"));
    }

    #[test]
    fn empty_password_needs_no_login() {
        let db = Fixture::new(b"", 1).db().unwrap();
        assert!(!db.needs_login());
        db.check_password(b"").unwrap();
        assert!(matches!(
            db.check_password(b"x"),
            Err(Error::WrongPassword { .. })
        ));
        let cert = db.find_certificate_at("c", Y2020).unwrap().unwrap();
        assert_eq!(
            db.private_key_pkcs8(&cert, b"").unwrap().as_slice(),
            expected_key()
        );
    }

    #[test]
    fn password_needs_login() {
        let db = Fixture::new(b"pw", 1).db().unwrap();
        assert!(db.needs_login());
        let db = Fixture::new(b"", 2).db().unwrap();
        assert!(db.needs_login(), "iteration count above 1");
        let cert = db.find_certificate_at("c", Y2020).unwrap().unwrap();
        assert_eq!(
            db.private_key_pkcs8(&cert, b"").unwrap().as_slice(),
            expected_key()
        );
        assert!(matches!(
            db.private_key_pkcs8(&cert, b"no"),
            Err(Error::WrongPassword { .. })
        ));
        let db = Fixture::new(b"", 2).db().unwrap().with_max_iterations(1);
        assert!(matches!(
            db.check_password(b""),
            Err(Error::Corrupt {
                source: DecodeError::IterationCount { .. },
                ..
            })
        ));
    }

    #[test]
    fn key_refusals() {
        let db = Fixture::new(b"", 1).db().unwrap();
        let bad_point = db.find_certificate_at("bad point", Y2020).unwrap().unwrap();
        assert!(matches!(
            db.private_key_pkcs8(&bad_point, b""),
            Err(Error::KeyMismatch { .. })
        ));
        let no_key = db.certificates().pop().unwrap();
        assert!(matches!(
            db.private_key_pkcs8(&no_key, b""),
            Err(Error::NoPrivateKey { .. })
        ));
        let mut f = Fixture::new(b"", 1);
        f.meta.retain(|m| m.id != b"password");
        let db = f.db().unwrap();
        assert!(!db.needs_login());
        assert!(matches!(
            db.check_password(b""),
            Err(Error::NoPasswordRecord { .. })
        ));
    }

    #[test]
    fn macs() {
        let cert = |db: &Database| db.find_certificate_at("c", Y2020).unwrap().unwrap();
        let sig = mac_row_id(MacTable::Key, KEY_ID, CKA_VALUE).into_bytes();
        // Altered MAC.
        let mut f = Fixture::new(b"", 1);
        let item = f.meta.iter_mut().find(|m| m.id == sig).unwrap();
        *item.item1.as_mut().unwrap().last_mut().unwrap() ^= 0x80;
        let db = f.db().unwrap();
        assert!(matches!(
            db.private_key_pkcs8(&cert(&db), b""),
            Err(Error::MacMismatch {
                object: KEY_ID,
                attribute: CKA_VALUE,
                ..
            })
        ));
        // Missing MAC.
        let mut f = Fixture::new(b"", 1);
        f.meta.retain(|m| m.id != sig);
        let db = f.db().unwrap();
        assert!(matches!(
            db.private_key_pkcs8(&cert(&db), b""),
            Err(Error::MacMissing { .. })
        ));
        // Only the 0xC0000000 fallback row.
        let mut f = Fixture::new(b"", 1);
        f.meta.iter_mut().find(|m| m.id == sig).unwrap().id =
            mac_row_id(MacTable::Key, KEY_ID | FALLBACK_ID_BITS, CKA_VALUE).into_bytes();
        let db = f.db().unwrap();
        assert_eq!(
            db.private_key_pkcs8(&cert(&db), b"").unwrap().as_slice(),
            expected_key()
        );
        // A malformed MAC row.
        let mut f = Fixture::new(b"", 1);
        f.meta.iter_mut().find(|m| m.id == sig).unwrap().item1 = Some(vec![0x30, 0x00]);
        let db = f.db().unwrap();
        assert!(matches!(
            db.private_key_pkcs8(&cert(&db), b""),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn legacy_values_need_no_mac() {
        let mut f = Fixture::new(b"pw", 1);
        let pk = PassKey::derive(&SALT, b"pw");
        let mut scalar = [0u8; 32];
        scalar[31] = 1;
        f.private.rows[0].values[4] = Some(encrypt_legacy(&pk, &[0x77; 20], 1, &scalar));
        f.meta[0].item2 = Some(encrypt_legacy(&pk, &[0x78; 20], 1, b"password-check"));
        f.meta.truncate(1);
        let db = f.db().unwrap();
        db.check_password(b"pw").unwrap();
        assert!(matches!(
            db.check_password(b"pX"),
            Err(Error::WrongPassword { .. })
        ));
        let cert = db.find_certificate_at("c", Y2020).unwrap().unwrap();
        assert_eq!(
            db.private_key_pkcs8(&cert, b"pw").unwrap().as_slice(),
            expected_key()
        );
        // A garbage value is reported with its location.
        let mut f = Fixture::new(b"", 1);
        f.private.rows[0].values[4] = Some(tlv(OCTET_STRING, &[b"x"]));
        let db = f.db().unwrap();
        let e = db.private_key_pkcs8(&cert, b"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("key4.db: object 0x00000005 attribute 0x11:"),
            "{e}"
        );
    }

    #[test]
    fn row_interpretation_errors() {
        let build = |f: Fixture| f.db().map(drop).unwrap_err();
        let mut f = Fixture::new(b"", 1);
        f.public.rows[1].id = 2;
        assert!(
            matches!(build(f), Error::Schema { detail, .. } if detail.contains("two rows with id 0x2"))
        );
        let mut f = Fixture::new(b"", 1);
        f.public.rows[0].values.pop();
        assert!(matches!(build(f), Error::Schema { .. }));
        let mut f = Fixture::new(b"", 1);
        f.private.rows[0].id = -1;
        assert!(matches!(build(f), Error::Schema { file, .. } if file == Path::new("key4.db")));
        let mut f = Fixture::new(b"", 1);
        f.private.rows[0].id = 1 << 32;
        assert!(matches!(build(f), Error::Schema { .. }));
        let mut f = Fixture::new(b"", 1);
        f.public.columns[0] = "A3".into();
        assert!(matches!(build(f), Error::Schema { detail, .. } if detail.contains("two columns")));
        let mut f = Fixture::new(b"", 1);
        let dup = f.meta[0].clone();
        f.meta.push(dup);
        assert!(
            matches!(build(f), Error::Schema { detail, .. } if detail.contains("\"password\""))
        );
        let mut f = Fixture::new(b"", 1);
        f.public.rows[0].values[2] = Some(vec![0; MAX_VALUE + 1]);
        assert!(matches!(build(f), Error::TooLarge { .. }));
        let mut f = Fixture::new(b"", 1);
        f.meta[0].item1 = Some(vec![0; MAX_VALUE + 1]);
        assert!(matches!(build(f), Error::TooLarge { .. }));
        let mut f = Fixture::new(b"", 1);
        f.public.columns = vec!["a1".into(); MAX_COLUMNS + 1];
        assert!(matches!(build(f), Error::TooLarge { .. }));
        let mut f = Fixture::new(b"", 1);
        f.private.rows = vec![RawRow::default(); MAX_ROWS + 1];
        assert!(matches!(build(f), Error::TooLarge { .. }));
        // Columns that are not attributes are ignored.
        let mut f = Fixture::new(b"", 1);
        f.public.columns[3] = "comment".into();
        let db = f.db().unwrap();
        assert!(db.certificates().iter().all(|c| c.cka_id.is_empty()));
    }
}
