//! Certificate profiles and issuance, and the CRL.

use der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, Uint, UtcTime,
    Utf8StringRef,
};
use der::oid::AssociatedOid;
use der::{DateTime, Encode, Length, Writer};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use sha1::{Digest, Sha1};
use signature::{Keypair, Signer};
use spki::{
    DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use std::time::Duration;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{Rfc5280, TbsCertificate};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName, OtherName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, CrlNumber, KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Criticality, Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::error::{crypto, Error};
use crate::keys::SigningKey;
use crate::spec::{IdentitySpec, Role};

/// id-kp-clientAuth (RFC 5280).
const EKU_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// id-kp-emailProtection (RFC 5280).
const EKU_EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
/// Microsoft Smart Card Logon (szOID_KP_SMARTCARD_LOGON).
const EKU_SMARTCARD_LOGON: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.2");
/// Microsoft User Principal Name otherName (szOID_NT_PRINCIPAL_NAME).
/// id-pkinit-KPClientAuth (RFC 4556).
const EKU_PKINIT_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.2.3.4");
/// id-PIV-cardAuth (FIPS 201).
const EKU_PIV_CARD_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.8");
/// id-PIV-content-signing (FIPS 201): signs the CHUID and Security Object.
const EKU_PIV_CONTENT_SIGNING: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.7");
const ON_MS_UPN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3");
/// id-ad-ocsp (RFC 5280).
const AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers (RFC 5280).
const AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

/// extendedKeyUsage, non-critical as on real CAC certificates
/// (x509-cert's own type is always critical).
struct ExtendedKeyUsage(Vec<ObjectIdentifier>);

impl AssociatedOid for ExtendedKeyUsage {
    const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
}

impl Encode for ExtendedKeyUsage {
    fn encoded_len(&self) -> der::Result<Length> {
        self.0.encoded_len()
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl Criticality for ExtendedKeyUsage {
    fn criticality(&self, _subject: &Name, _extensions: &[Extension]) -> bool {
        false
    }
}

/// The builder profile of a certificate whose subject, issuer and every
/// extension this crate chooses: x509-cert adds nothing.
struct Manual<'a> {
    subject: &'a Name,
    issuer: &'a Name,
}

impl BuilderProfile for Manual<'_> {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(Vec::new())
    }
}

/// Seconds in a day.
const DAY: u64 = 86_400;

/// An X.509 time for `unix_secs`: UTCTime before 2050, GeneralizedTime
/// from 2050 on (RFC 5280 4.1.2.5).
pub(crate) fn time_at(unix_secs: u64) -> Result<Time, Error> {
    let when = DateTime::from_unix_duration(Duration::from_secs(unix_secs))
        .map_err(|e| Error::InvalidOption(format!("time {unix_secs}: {e}")))?;
    let time = if when.year() < 2050 {
        UtcTime::from_date_time(when).map(Time::UtcTime)
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(when)))
    };
    time.map_err(|e| Error::InvalidOption(format!("time {unix_secs}: {e}")))
}

/// The validity window `[from, from + days)`.
pub(crate) fn validity(from: u64, days: u32) -> Result<Validity, Error> {
    let until = u64::from(days)
        .checked_mul(DAY)
        .and_then(|d| d.checked_add(from))
        .ok_or_else(|| Error::InvalidOption(format!("validity {from} + {days} days overflows")))?;
    Ok(Validity::new(time_at(from)?, time_at(until)?))
}

/// A random positive serial number of 16 bytes (first byte 0x40..=0x7F, so
/// exactly 16 content bytes and never negative), drawn from `rng`.
pub(crate) fn random_serial(rng: &mut ChaCha20Rng) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    bytes
}

/// Key identifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)).
pub(crate) fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// Optional URLs put in the identity certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Urls {
    pub(crate) crl: Option<String>,
    pub(crate) ca_issuers: Option<String>,
    pub(crate) ocsp: Option<String>,
}

/// Everything that goes into one certificate, extensions included (in the
/// order they are encoded).
pub(crate) struct CertPlan {
    pub(crate) serial: [u8; 16],
    pub(crate) validity: Validity,
    pub(crate) subject: Name,
    pub(crate) issuer: Name,
    pub(crate) spki: SubjectPublicKeyInfoOwned,
    ski: SubjectKeyIdentifier,
    aki: Option<AuthorityKeyIdentifier>,
    basic: BasicConstraints,
    key_usage: KeyUsage,
    eku: Option<ExtendedKeyUsage>,
    san: Option<SubjectAltName>,
    cdp: Option<CrlDistributionPoints>,
    aia: Option<AuthorityInfoAccessSyntax>,
}

/// The parts every certificate needs besides its extensions.
pub(crate) struct CertBase {
    pub(crate) serial: [u8; 16],
    pub(crate) validity: Validity,
    pub(crate) subject: Name,
    pub(crate) issuer: Name,
    pub(crate) spki: SubjectPublicKeyInfoOwned,
    /// The key identifier of the issuer, `None` for a self-signed root.
    pub(crate) issuer_key_id: Option<Vec<u8>>,
}

fn octets(what: &str, bytes: Vec<u8>) -> Result<OctetString, Error> {
    OctetString::new(bytes).map_err(|e| crypto(what, e))
}

fn ia5(what: &str, text: &str) -> Result<Ia5String, Error> {
    Ia5String::new(text).map_err(|e| Error::InvalidOption(format!("{what} {text:?}: {e}")))
}

fn key_usage(flags: &[KeyUsages]) -> KeyUsage {
    let mut usage = KeyUsage(Default::default());
    for flag in flags {
        usage.0 |= *flag;
    }
    usage
}

fn aki(
    what: &str,
    issuer_key_id: Option<&Vec<u8>>,
) -> Result<Option<AuthorityKeyIdentifier>, Error> {
    issuer_key_id
        .map(|id| {
            Ok(AuthorityKeyIdentifier {
                key_identifier: Some(octets(what, id.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            })
        })
        .transpose()
}

impl CertPlan {
    /// A CA certificate: basicConstraints CA:TRUE (critical, with
    /// `path_len` when given), keyUsage keyCertSign + cRLSign (critical),
    /// SKI, and AKI unless self-signed.
    pub(crate) fn ca(base: CertBase, path_len: Option<u8>, what: &str) -> Result<Self, Error> {
        Ok(CertPlan {
            ski: SubjectKeyIdentifier(octets(what, key_id(&base.spki))?),
            aki: aki(what, base.issuer_key_id.as_ref())?,
            basic: BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
            key_usage: key_usage(&[KeyUsages::KeyCertSign, KeyUsages::CRLSign]),
            eku: None,
            san: None,
            cdp: None,
            aia: None,
            serial: base.serial,
            validity: base.validity,
            subject: base.subject,
            issuer: base.issuer,
            spki: base.spki,
        })
    }

    /// The PIV content signer (FIPS 201): basicConstraints CA:FALSE,
    /// keyUsage digitalSignature (critical), extendedKeyUsage
    /// id-PIV-content-signing only, SKI and AKI.
    pub(crate) fn content_signer(base: CertBase, what: &str) -> Result<Self, Error> {
        Ok(CertPlan {
            ski: SubjectKeyIdentifier(octets(what, key_id(&base.spki))?),
            aki: aki(what, base.issuer_key_id.as_ref())?,
            basic: BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            key_usage: key_usage(&[KeyUsages::DigitalSignature]),
            eku: Some(ExtendedKeyUsage(vec![EKU_PIV_CONTENT_SIGNING])),
            san: None,
            cdp: None,
            aia: None,
            serial: base.serial,
            validity: base.validity,
            subject: base.subject,
            issuer: base.issuer,
            spki: base.spki,
        })
    }

    /// An identity certificate with the profile of `spec.role()`.
    pub(crate) fn identity(
        base: CertBase,
        spec: &IdentitySpec,
        urls: &Urls,
        what: &str,
    ) -> Result<Self, Error> {
        let rsa = spec.key_type().is_rsa();
        let (usages, ekus): (Vec<KeyUsages>, Vec<ObjectIdentifier>) = match spec.role() {
            Role::Authentication => (
                if rsa {
                    vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment]
                } else {
                    vec![KeyUsages::DigitalSignature]
                },
                vec![EKU_CLIENT_AUTH, EKU_SMARTCARD_LOGON],
            ),
            Role::Signature => (
                vec![KeyUsages::DigitalSignature, KeyUsages::NonRepudiation],
                vec![EKU_EMAIL_PROTECTION, EKU_CLIENT_AUTH],
            ),
            Role::Encryption => (
                if rsa {
                    vec![KeyUsages::KeyEncipherment, KeyUsages::DataEncipherment]
                } else {
                    vec![KeyUsages::KeyAgreement]
                },
                vec![EKU_EMAIL_PROTECTION],
            ),
            Role::PivAuthentication => (
                if rsa {
                    vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment]
                } else {
                    vec![KeyUsages::DigitalSignature]
                },
                vec![EKU_CLIENT_AUTH, EKU_SMARTCARD_LOGON, EKU_PKINIT_CLIENT_AUTH],
            ),
            Role::CardAuthentication => {
                (vec![KeyUsages::DigitalSignature], vec![EKU_PIV_CARD_AUTH])
            }
            Role::Generic => (
                if rsa {
                    vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment]
                } else {
                    vec![KeyUsages::DigitalSignature]
                },
                vec![EKU_CLIENT_AUTH, EKU_EMAIL_PROTECTION],
            ),
        };

        let mut names = Vec::new();
        if let Some(email) = spec.email() {
            names.push(GeneralName::Rfc822Name(ia5("e-mail address", email)?));
        }
        if let Some(upn) = spec.upn() {
            let value = Any::encode_from(
                &Utf8StringRef::new(upn)
                    .map_err(|e| Error::InvalidOption(format!("UPN {upn:?}: {e}")))?,
            )
            .map_err(|e| crypto(what, e))?;
            names.push(GeneralName::OtherName(OtherName {
                type_id: ON_MS_UPN,
                value,
            }));
        }
        let san = (!names.is_empty()).then_some(SubjectAltName(names));

        let cdp = urls
            .crl
            .as_deref()
            .map(|url| {
                Ok::<_, Error>(CrlDistributionPoints(vec![DistributionPoint {
                    distribution_point: Some(DistributionPointName::FullName(vec![
                        GeneralName::UniformResourceIdentifier(ia5("CRL URL", url)?),
                    ])),
                    reasons: None,
                    crl_issuer: None,
                }]))
            })
            .transpose()?;

        let mut access = Vec::new();
        if let Some(url) = urls.ca_issuers.as_deref() {
            access.push(AccessDescription {
                access_method: AD_CA_ISSUERS,
                access_location: GeneralName::UniformResourceIdentifier(ia5("caIssuers URL", url)?),
            });
        }
        if let Some(url) = urls.ocsp.as_deref() {
            access.push(AccessDescription {
                access_method: AD_OCSP,
                access_location: GeneralName::UniformResourceIdentifier(ia5("OCSP URL", url)?),
            });
        }
        let aia = (!access.is_empty()).then_some(AuthorityInfoAccessSyntax(access));

        Ok(CertPlan {
            ski: SubjectKeyIdentifier(octets(what, key_id(&base.spki))?),
            aki: aki(what, base.issuer_key_id.as_ref())?,
            basic: BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            key_usage: key_usage(&usages),
            eku: Some(ExtendedKeyUsage(ekus)),
            san,
            cdp,
            aia,
            serial: base.serial,
            validity: base.validity,
            subject: base.subject,
            issuer: base.issuer,
            spki: base.spki,
        })
    }

    /// Signs the certificate with `issuer` and returns its DER.
    pub(crate) fn issue(&self, issuer: &SigningKey, what: &str) -> Result<Vec<u8>, Error> {
        let cert = match issuer {
            SigningKey::Rsa(key) => self.build_with::<_, rsa::pkcs1v15::Signature>(&**key),
            SigningKey::P256(key) => self.build_with::<_, p256::ecdsa::DerSignature>(key),
            SigningKey::P384(key) => self.build_with::<_, p384::ecdsa::DerSignature>(key),
        }
        .map_err(|e| crypto(what, e))?;
        cert.to_der().map_err(|e| crypto(what, e))
    }

    fn build_with<S, Sig>(&self, signer: &S) -> Result<Certificate, x509_cert::builder::Error>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        S::VerifyingKey: EncodePublicKey,
        Sig: SignatureBitStringEncoding,
    {
        let serial = SerialNumber::new(&self.serial)?;
        let mut builder = CertificateBuilder::new(
            Manual {
                subject: &self.subject,
                issuer: &self.issuer,
            },
            serial,
            self.validity,
            self.spki.clone(),
        )?;
        builder.add_extension(&self.ski)?;
        if let Some(aki) = &self.aki {
            builder.add_extension(aki)?;
        }
        builder.add_extension(&self.basic)?;
        builder.add_extension(&self.key_usage)?;
        if let Some(eku) = &self.eku {
            builder.add_extension(eku)?;
        }
        if let Some(san) = &self.san {
            builder.add_extension(san)?;
        }
        if let Some(cdp) = &self.cdp {
            builder.add_extension(cdp)?;
        }
        if let Some(aia) = &self.aia {
            builder.add_extension(aia)?;
        }
        builder.build::<S, Sig>(signer)
    }
}

/// Issues a v2 CRL: thisUpdate / nextUpdate as given, the revoked serials
/// (revocation date = thisUpdate), and the extensions AKI and cRLNumber.
pub(crate) fn issue_crl(
    issuer: &Name,
    issuer_key: &SigningKey,
    issuer_key_id: &[u8],
    this_update: Time,
    next_update: Time,
    crl_number: u64,
    revoked: &[Vec<u8>],
) -> Result<Vec<u8>, Error> {
    let what = "crl";
    let revoked_certificates = revoked
        .iter()
        .map(|serial| {
            Ok(RevokedCert {
                serial_number: SerialNumber::<Rfc5280>::new(serial).map_err(|e| {
                    Error::InvalidOption(format!("revoked serial {serial:02x?}: {e}"))
                })?,
                revocation_date: this_update,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let number = Uint::new(&crl_number.to_be_bytes()).map_err(|e| crypto(what, e))?;
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(octets(what, issuer_key_id.to_vec())?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let extensions = vec![
        (&aki)
            .to_extension(issuer, &[])
            .map_err(|e| crypto(what, e))?,
        (&CrlNumber(number))
            .to_extension(issuer, &[])
            .map_err(|e| crypto(what, e))?,
    ];
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: issuer_key.algorithm().map_err(|e| crypto(what, e))?,
        issuer: issuer.clone(),
        this_update,
        next_update: Some(next_update),
        revoked_certificates: (!revoked_certificates.is_empty()).then_some(revoked_certificates),
        crl_extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(|e| crypto(what, e))?;
    let signature: BitString = issuer_key.sign(&tbs_der)?;
    let crl = CertificateList {
        signature_algorithm: tbs.signature.clone(),
        tbs_cert_list: tbs,
        signature,
    };
    crl.to_der().map_err(|e| crypto(what, e))
}
