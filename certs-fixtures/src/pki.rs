//! The PKI builder and what it builds.

use std::collections::BTreeSet;
use std::fmt;

use der::pem::LineEnding;
use x509_cert::name::Name;
use zeroize::Zeroizing;

use pkcs8::DecodePrivateKey;

use crate::cert::{self, CertBase, CertPlan, Urls};
use crate::cms;
use crate::error::{crypto, Error};
use crate::keys::{self, KeyPair, SigningKey};
use crate::name::{parse_dn, with_common_name};
use crate::rng::stream;
use crate::spec::{IdentitySpec, KeyType, Role};

/// Builds a deterministic test PKI: a root CA, an optional intermediate CA,
/// identities issued by the last CA of the chain, and an optional CRL.
///
/// Every random choice comes from ChaCha20 streams derived from the seed
/// and a per-object label, so the same options give byte-identical output,
/// and adding an identity leaves the keys and serial numbers of the others
/// unchanged. Nothing reads the clock: the validity window starts at
/// [`valid_from`](Self::valid_from).
///
/// All certificates (CA, intermediate, identities) share one validity
/// window; the CRL's thisUpdate is its start and nextUpdate its end.
#[derive(Clone, Debug)]
pub struct PkiBuilder {
    seed: u64,
    valid_from: u64,
    days: u32,
    ca_key: KeyType,
    ca_subject: String,
    intermediate: Option<(String, KeyType)>,
    identity_subject_base: String,
    identities: Vec<IdentitySpec>,
    urls: Urls,
    crl_number: Option<u64>,
    revoked_identities: Vec<usize>,
    revoked_serials: Vec<Vec<u8>>,
    content_signer: Option<String>,
}

impl PkiBuilder {
    /// 2025-01-01T00:00:00Z in Unix seconds: the default start of validity.
    pub const DEFAULT_VALID_FROM: u64 = 1_735_689_600;
    /// Default validity in days (3650, until 2034-12-30 with the default
    /// start).
    pub const DEFAULT_DAYS: u32 = 3650;
    /// Default subject of the root CA.
    pub const DEFAULT_CA_SUBJECT: &'static str =
        "C=US, O=U.S. Government, OU=DoD, OU=PKI, CN=VCAC TEST ROOT CA 1";
    /// Default subject of the intermediate CA.
    pub const DEFAULT_INTERMEDIATE_SUBJECT: &'static str =
        "C=US, O=U.S. Government, OU=DoD, OU=PKI, CN=VCAC TEST ID CA 1";
    /// Default subject of the PIV content signer.
    pub const DEFAULT_CONTENT_SIGNER_SUBJECT: &'static str =
        "C=US, O=U.S. Government, OU=DoD, OU=PKI, CN=VCAC TEST PIV CONTENT SIGNER";
    /// Default subject of the identities, before their `CN=`.
    pub const DEFAULT_IDENTITY_SUBJECT_BASE: &'static str =
        "C=US, O=U.S. Government, OU=DoD, OU=PKI, OU=CONTRACTOR";

    /// A builder with the given seed and the defaults: RSA-2048 root CA
    /// named [`DEFAULT_CA_SUBJECT`](Self::DEFAULT_CA_SUBJECT), no
    /// intermediate, no identity, no CRL, no URLs, validity
    /// [`DEFAULT_DAYS`](Self::DEFAULT_DAYS) days from
    /// [`DEFAULT_VALID_FROM`](Self::DEFAULT_VALID_FROM).
    pub fn new(seed: u64) -> Self {
        PkiBuilder {
            seed,
            valid_from: Self::DEFAULT_VALID_FROM,
            days: Self::DEFAULT_DAYS,
            ca_key: KeyType::Rsa2048,
            ca_subject: Self::DEFAULT_CA_SUBJECT.to_owned(),
            intermediate: None,
            identity_subject_base: Self::DEFAULT_IDENTITY_SUBJECT_BASE.to_owned(),
            identities: Vec::new(),
            urls: Urls::default(),
            crl_number: None,
            revoked_identities: Vec::new(),
            revoked_serials: Vec::new(),
            content_signer: None,
        }
    }

    /// The usual CAC layout: an RSA-2048 root CA and three RSA-2048
    /// identities of one person, `CN=DOE.JOHN.Q.1234567890`:
    ///
    /// | file | role | subjectAltName |
    /// |---|---|---|
    /// | `id0` | [`Role::Authentication`] | UPN `1234567890@mil` |
    /// | `id1` | [`Role::Signature`] | `john.q.doe.ctr@mail.mil` |
    /// | `id2` | [`Role::Encryption`] | `john.q.doe.ctr@mail.mil` |
    ///
    /// valid for 3650 days from 2025-01-01T00:00:00Z. The embedded
    /// [`default_card`](crate::default_card) is `cac_triple(1)`.
    pub fn cac_triple(seed: u64) -> Self {
        const CN: &str = "DOE.JOHN.Q.1234567890";
        const EMAIL: &str = "john.q.doe.ctr@mail.mil";
        Self::new(seed)
            .identity(
                IdentitySpec::new(Role::Authentication, KeyType::Rsa2048, CN)
                    .with_upn("1234567890@mil"),
            )
            .identity(IdentitySpec::new(Role::Signature, KeyType::Rsa2048, CN).with_email(EMAIL))
            .identity(IdentitySpec::new(Role::Encryption, KeyType::Rsa2048, CN).with_email(EMAIL))
    }

    /// Start of validity of every certificate, in seconds since the Unix
    /// epoch (UTC).
    #[must_use]
    pub fn valid_from(mut self, unix_secs: u64) -> Self {
        self.valid_from = unix_secs;
        self
    }

    /// Validity of every certificate, in days (at least 1).
    #[must_use]
    pub fn days(mut self, days: u32) -> Self {
        self.days = days;
        self
    }

    /// Key type of the root CA (RSA signs with PKCS#1 v1.5 / SHA-256, P-256
    /// with ECDSA / SHA-256).
    #[must_use]
    pub fn ca_key(mut self, key_type: KeyType) -> Self {
        self.ca_key = key_type;
        self
    }

    /// Subject of the root CA, e.g. `"C=US, O=Example, CN=Test Root"`
    /// (X.500 order, most general first; no `+`, escapes or commas inside
    /// values). C, ST, L, O, OU, CN, SERIALNUMBER and DC are understood.
    #[must_use]
    pub fn ca_subject(mut self, subject: impl Into<String>) -> Self {
        self.ca_subject = subject.into();
        self
    }

    /// Adds an intermediate CA (pathLenConstraint 0) signed by the root; it
    /// then issues the identities and the CRL.
    #[must_use]
    pub fn intermediate(mut self, subject: impl Into<String>, key_type: KeyType) -> Self {
        self.intermediate = Some((subject.into(), key_type));
        self
    }

    /// The identities' subject before `CN=<common name>`, in the syntax of
    /// [`ca_subject`](Self::ca_subject).
    #[must_use]
    pub fn identity_subject_base(mut self, base: impl Into<String>) -> Self {
        self.identity_subject_base = base.into();
        self
    }

    /// Issues a PIV content-signing certificate (FIPS 201: keyUsage
    /// digitalSignature, extendedKeyUsage id-PIV-content-signing) with a
    /// P-256 key, from the CA that issues the identities, with this
    /// subject (in the syntax of [`ca_subject`](Self::ca_subject)). Its
    /// key signs the CHUID and the Security Object
    /// ([`Pki::sign_chuid`], [`Pki::sign_security_object`]); it does not
    /// change any other key, serial number or certificate of the seed.
    #[must_use]
    pub fn piv_content_signer(mut self, subject: impl Into<String>) -> Self {
        self.content_signer = Some(subject.into());
        self
    }

    /// Appends an identity; identities are numbered `id0`, `id1`, ... in
    /// the order they are added.
    #[must_use]
    pub fn identity(mut self, spec: IdentitySpec) -> Self {
        self.identities.push(spec);
        self
    }

    /// Puts a CRL distribution point with this URL in every identity
    /// certificate.
    #[must_use]
    pub fn crl_url(mut self, url: impl Into<String>) -> Self {
        self.urls.crl = Some(url.into());
        self
    }

    /// Puts an authorityInfoAccess caIssuers URL in every identity
    /// certificate.
    #[must_use]
    pub fn ca_issuers_url(mut self, url: impl Into<String>) -> Self {
        self.urls.ca_issuers = Some(url.into());
        self
    }

    /// Puts an authorityInfoAccess OCSP URL in every identity certificate.
    #[must_use]
    pub fn ocsp_url(mut self, url: impl Into<String>) -> Self {
        self.urls.ocsp = Some(url.into());
        self
    }

    /// Issues a CRL with this cRLNumber, signed by the CA that issues the
    /// identities (the intermediate when there is one).
    #[must_use]
    pub fn crl(mut self, crl_number: u64) -> Self {
        self.crl_number = Some(crl_number);
        self
    }

    /// Lists identity number `index` as revoked in the CRL (and issues a
    /// CRL, number 1 unless [`crl`](Self::crl) says otherwise).
    #[must_use]
    pub fn revoke_identity(mut self, index: usize) -> Self {
        self.revoked_identities.push(index);
        self
    }

    /// Lists an arbitrary serial number (big-endian, positive, at most 20
    /// bytes) as revoked in the CRL (and issues a CRL, as
    /// [`revoke_identity`](Self::revoke_identity) does).
    #[must_use]
    pub fn revoke_serial(mut self, serial: impl Into<Vec<u8>>) -> Self {
        self.revoked_serials.push(serial.into());
        self
    }

    /// Generates every key, certificate and the CRL.
    ///
    /// Fails with [`Error::InvalidOption`] for a malformed name, e-mail
    /// address, UPN or URL, `days == 0`, or a revoked identity index out of
    /// range.
    pub fn build(&self) -> Result<Pki, Error> {
        if self.days == 0 {
            return Err(Error::InvalidOption("days must be at least 1".into()));
        }
        if let Some(&bad) = self
            .revoked_identities
            .iter()
            .find(|&&i| i >= self.identities.len())
        {
            return Err(Error::InvalidOption(format!(
                "revoked identity {bad} does not exist ({} identities)",
                self.identities.len()
            )));
        }
        let validity = cert::validity(self.valid_from, self.days)?;
        let mut serials = Serials::default();

        // Names first: a typo fails before any key is generated.
        let ca_subject = parse_dn(&self.ca_subject)?;
        let intermediate_subject = self
            .intermediate
            .as_ref()
            .map(|(subject, key_type)| Ok::<_, Error>((parse_dn(subject)?, *key_type)))
            .transpose()?;
        let identity_base = parse_dn(&self.identity_subject_base)?;
        let content_signer_subject = self.content_signer.as_deref().map(parse_dn).transpose()?;

        // Root CA, self-signed.
        let ca_key = self.key("ca", self.ca_key)?;
        let ca_key_id = cert::key_id(&ca_key.spki);
        let ca_base = CertBase {
            serial: serials.draw(self.seed, "ca")?,
            validity,
            subject: ca_subject.clone(),
            issuer: ca_subject.clone(),
            spki: ca_key.spki.clone(),
            issuer_key_id: None,
        };
        let ca_plan = CertPlan::ca(ca_base, None, "ca")?;
        let ca_cert = ca_plan.issue(&ca_key.signer, "ca")?;
        let ca = Credential::new(&ca_key, ca_plan.serial.to_vec(), ca_cert, "ca")?;

        // Optional intermediate, signed by the root.
        let mut issuer = Issuer {
            key: ca_key,
            name: ca_subject,
            key_id: ca_key_id,
        };
        let mut intermediate = None;
        if let Some((subject, key_type)) = intermediate_subject {
            let what = "intermediate";
            let key = self.key(what, key_type)?;
            let key_id = cert::key_id(&key.spki);
            let base = CertBase {
                serial: serials.draw(self.seed, what)?,
                validity,
                subject: subject.clone(),
                issuer: issuer.name.clone(),
                spki: key.spki.clone(),
                issuer_key_id: Some(issuer.key_id.clone()),
            };
            let plan = CertPlan::ca(base, Some(0), what)?;
            let der = plan.issue(&issuer.key.signer, what)?;
            intermediate = Some(Credential::new(&key, plan.serial.to_vec(), der, what)?);
            issuer = Issuer {
                key,
                name: subject,
                key_id,
            };
        }

        // Identities.
        let mut identities = Vec::with_capacity(self.identities.len());
        for (index, spec) in self.identities.iter().enumerate() {
            let what = format!("id{index}");
            let subject = with_common_name(&identity_base, spec.common_name())?;
            let key = self.key(&what, spec.key_type())?;
            let base = CertBase {
                serial: serials.draw(self.seed, &what)?,
                validity,
                subject,
                issuer: issuer.name.clone(),
                spki: key.spki.clone(),
                issuer_key_id: Some(issuer.key_id.clone()),
            };
            let plan = CertPlan::identity(base, spec, &self.urls, &what)?;
            let der = plan.issue(&issuer.key.signer, &what)?;
            identities.push(Identity {
                spec: spec.clone(),
                credential: Credential::new(&key, plan.serial.to_vec(), der, &what)?,
            });
        }

        // PIV content signer, from the identities' issuer.
        let content_signer = match content_signer_subject {
            Some(subject) => {
                let what = "content-signer";
                let key = self.key(what, KeyType::P256)?;
                let base = CertBase {
                    serial: serials.draw(self.seed, what)?,
                    validity,
                    subject,
                    issuer: issuer.name.clone(),
                    spki: key.spki.clone(),
                    issuer_key_id: Some(issuer.key_id.clone()),
                };
                let plan = CertPlan::content_signer(base, what)?;
                let der = plan.issue(&issuer.key.signer, what)?;
                Some(Credential::new(&key, plan.serial.to_vec(), der, what)?)
            }
            None => None,
        };

        // CRL.
        let wants_crl = self.crl_number.is_some()
            || !self.revoked_identities.is_empty()
            || !self.revoked_serials.is_empty();
        let crl = if wants_crl {
            let by_index = self
                .revoked_identities
                .iter()
                .filter_map(|&index| identities.get(index))
                .map(|identity| &identity.credential.serial);
            let mut revoked: Vec<Vec<u8>> = Vec::new();
            for serial in by_index.chain(&self.revoked_serials) {
                if !revoked.contains(serial) {
                    revoked.push(serial.clone());
                }
            }
            let der = cert::issue_crl(
                &issuer.name,
                &issuer.key.signer,
                &issuer.key_id,
                validity.not_before,
                validity.not_after,
                self.crl_number.unwrap_or(1),
                &revoked,
            )?;
            let pem = pem("X509 CRL", &der, "crl")?;
            Some((der, pem))
        } else {
            None
        };

        Ok(Pki {
            seed: self.seed,
            ca,
            intermediate,
            identities,
            crl,
            content_signer,
        })
    }

    fn key(&self, what: &str, key_type: KeyType) -> Result<KeyPair, Error> {
        keys::generate(
            key_type,
            &mut stream(self.seed, &format!("key/{what}")),
            what,
        )
    }
}

/// The CA that signs what comes next.
struct Issuer {
    key: KeyPair,
    name: Name,
    key_id: Vec<u8>,
}

/// Serial numbers handed out so far, to keep them unique.
#[derive(Default)]
struct Serials(BTreeSet<[u8; 16]>);

impl Serials {
    fn draw(&mut self, seed: u64, what: &str) -> Result<[u8; 16], Error> {
        let serial = cert::random_serial(&mut stream(seed, &format!("serial/{what}")));
        if self.0.insert(serial) {
            Ok(serial)
        } else {
            // 126 random bits: never happens, but never issue a duplicate.
            Err(Error::Crypto(format!(
                "{what}: serial number collision, pick another seed"
            )))
        }
    }
}

/// PEM with 64-column base64 and LF line endings.
pub(crate) fn pem(label: &'static str, der: &[u8], what: &str) -> Result<String, Error> {
    der::pem::encode_string(label, LineEnding::LF, der).map_err(|e| crypto(what, e))
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct Credential {
    key_type: KeyType,
    serial: Vec<u8>,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_der: Zeroizing<Vec<u8>>,
    key_pem: Zeroizing<String>,
}

impl Credential {
    fn new(key: &KeyPair, serial: Vec<u8>, cert_der: Vec<u8>, what: &str) -> Result<Self, Error> {
        let cert_pem = pem("CERTIFICATE", &cert_der, what)?;
        let key_pem = Zeroizing::new(pem("PRIVATE KEY", &key.pkcs8_der, what)?);
        Ok(Credential {
            key_type: key.key_type,
            serial,
            cert_der,
            cert_pem,
            key_der: key.pkcs8_der.clone(),
            key_pem,
        })
    }

    /// The key algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The certificate's serial number, big-endian, without sign byte.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`, LF line ends).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PKCS#8 `PrivateKeyInfo` DER (for P-256 the inner
    /// SEC1 `ECPrivateKey` carries the public key too).
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, LF line
    /// ends).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("key_type", &self.key_type)
            .field("serial", &format_args!("{:02x?}", self.serial))
            .field("cert_der", &format_args!("{} bytes", self.cert_der.len()))
            .field("key_der", &format_args!("<redacted>"))
            .finish()
    }
}

/// An issued identity: what was asked for and what was made.
#[derive(Clone, Debug)]
pub struct Identity {
    spec: IdentitySpec,
    credential: Credential,
}

impl Identity {
    /// The specification it was built from.
    pub fn spec(&self) -> &IdentitySpec {
        &self.spec
    }

    /// Its certificate and private key.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
}

/// A built PKI: root CA, optional intermediate, identities, optional CRL.
///
/// See [`card_files`](Self::card_files) and
/// [`write_card_dir`](Self::write_card_dir) for turning it into a card
/// directory.
#[derive(Clone, Debug)]
pub struct Pki {
    pub(crate) seed: u64,
    pub(crate) ca: Credential,
    pub(crate) intermediate: Option<Credential>,
    pub(crate) identities: Vec<Identity>,
    /// The CRL as DER and PEM.
    pub(crate) crl: Option<(Vec<u8>, String)>,
    pub(crate) content_signer: Option<Credential>,
}

impl Pki {
    /// The seed it was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The root CA (self-signed).
    pub fn ca(&self) -> &Credential {
        &self.ca
    }

    /// The intermediate CA, if one was asked for.
    pub fn intermediate(&self) -> Option<&Credential> {
        self.intermediate.as_ref()
    }

    /// The identities, in the order they were added (`id0`, `id1`, ...).
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// The PIV content signer, if one was asked for
    /// ([`PkiBuilder::piv_content_signer`]).
    pub fn content_signer(&self) -> Option<&Credential> {
        self.content_signer.as_ref()
    }

    fn cms_signer(&self) -> Result<(&Credential, SigningKey), Error> {
        let credential = self.content_signer.as_ref().ok_or_else(|| {
            Error::InvalidOption("no PIV content signer (PkiBuilder::piv_content_signer)".into())
        })?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(credential.key_der())
            .map_err(|e| crypto("content-signer", e))?;
        Ok((credential, SigningKey::P256(key)))
    }

    /// The CHUID's Issuer Asymmetric Signature (tag `3E`, SP 800-73-4): a
    /// CMS SignedData by the content signer over `signed_content` (the
    /// CHUID's TLVs without `3E` and `FE`), detached, eContentType
    /// id-PIV-CHUIDSecurityObject, signed attributes contentType,
    /// messageDigest (SHA-256) and pivSigner-DN, the signer's certificate
    /// included. Deterministic (ECDSA with RFC 6979 nonces).
    pub fn sign_chuid(&self, signed_content: &[u8]) -> Result<Vec<u8>, Error> {
        let (credential, key) = self.cms_signer()?;
        let signer = cms::Signer {
            cert_der: credential.cert_der(),
            key: &key,
        };
        cms::signed_data(
            &signer,
            cms::PIV_CHUID_SECURITY_OBJECT,
            signed_content,
            true,
        )
    }

    /// The Security Object's tag `BB` (SP 800-73-4): a CMS SignedData by
    /// the content signer whose eContent is an ICAO `LDSSecurityObject`
    /// (version 0, SHA-256) holding the hash of each `(data group number,
    /// container contents)`, 2 to 16 of them; signed attributes and
    /// certificate as in [`sign_chuid`](Self::sign_chuid).
    pub fn sign_security_object(&self, groups: &[(u8, &[u8])]) -> Result<Vec<u8>, Error> {
        let lds = cms::lds_security_object(groups)?;
        let (credential, key) = self.cms_signer()?;
        let signer = cms::Signer {
            cert_der: credential.cert_der(),
            key: &key,
        };
        cms::signed_data(&signer, cms::ICAO_LDS_SECURITY_OBJECT, &lds, false)
    }

    /// The CRL, DER, if one was asked for.
    pub fn crl_der(&self) -> Option<&[u8]> {
        self.crl.as_ref().map(|(der, _)| der.as_slice())
    }

    /// The CRL, PEM (`-----BEGIN X509 CRL-----`), if one was asked for.
    pub fn crl_pem(&self) -> Option<&str> {
        self.crl.as_ref().map(|(_, pem)| pem.as_str())
    }
}
