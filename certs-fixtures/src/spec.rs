//! What the caller asks for: key types, roles and identity specifications.

use std::fmt;

/// The key algorithm (and size) of a CA or an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA with a 2048-bit modulus and e = 65537.
    Rsa2048,
    /// RSA with a 3072-bit modulus and e = 65537.
    Rsa3072,
    /// RSA with a 4096-bit modulus and e = 65537 (slow to generate: seconds
    /// in a release build, avoid it in debug-build tests).
    Rsa4096,
    /// ECDSA / ECDH on NIST P-256 (secp256r1).
    P256,
    /// ECDSA / ECDH on NIST P-384 (secp384r1).
    P384,
}

impl KeyType {
    /// The RSA modulus size in bits, or `None` for an elliptic-curve key.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyType::Rsa2048 => Some(2048),
            KeyType::Rsa3072 => Some(3072),
            KeyType::Rsa4096 => Some(4096),
            KeyType::P256 | KeyType::P384 => None,
        }
    }

    /// `true` for the RSA key types.
    pub fn is_rsa(self) -> bool {
        self.rsa_bits().is_some()
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa2048 => "RSA-2048",
            KeyType::Rsa3072 => "RSA-3072",
            KeyType::Rsa4096 => "RSA-4096",
            KeyType::P256 => "P-256",
            KeyType::P384 => "P-384",
        })
    }
}

/// The certificate profile of an identity: which key usages, extended key
/// usages and subject alternative names it carries.
///
/// A CAC puts its identity certificate in PKI applet 0 (`id0`), the e-mail
/// signature certificate in applet 1 and the e-mail encryption certificate
/// in applet 2; further applets hold [`Role::Generic`] certificates. The
/// role does not choose the file name: identities are numbered in the order
/// they were added to the [`PkiBuilder`](crate::PkiBuilder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// PIV/CAC authentication ("CAC ID Certificate"): keyUsage
    /// digitalSignature (+ keyEncipherment for RSA), EKU clientAuth and
    /// Microsoft smartcardLogon.
    Authentication,
    /// E-mail signature: keyUsage digitalSignature + nonRepudiation, EKU
    /// emailProtection and clientAuth.
    Signature,
    /// E-mail encryption: keyUsage keyEncipherment + dataEncipherment for
    /// RSA, keyAgreement for P-256; EKU emailProtection.
    Encryption,
    /// Any further certificate: keyUsage digitalSignature (+ keyEncipherment
    /// for RSA), EKU clientAuth and emailProtection.
    Generic,
    /// PIV Authentication (slot 9A): keyUsage digitalSignature (+
    /// keyEncipherment for RSA), EKU clientAuth, Microsoft smartcardLogon
    /// and id-pkinit-KPClientAuth (Kerberos PKINIT logins).
    PivAuthentication,
    /// PIV Card Authentication (slot 9E): keyUsage digitalSignature, EKU
    /// id-PIV-cardAuth (2.16.840.1.101.3.6.8).
    CardAuthentication,
}

/// One identity (certificate + private key) to issue.
///
/// The subject is the builder's identity subject base followed by
/// `CN=<common name>`. The subjectAltName carries the e-mail address as an
/// rfc822Name and the UPN as a Microsoft UPN otherName, each only when set;
/// without either, the certificate has no subjectAltName.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySpec {
    role: Role,
    key_type: KeyType,
    common_name: String,
    email: Option<String>,
    upn: Option<String>,
}

impl IdentitySpec {
    /// An identity with the given role, key type and common name, without
    /// e-mail address or UPN.
    pub fn new(role: Role, key_type: KeyType, common_name: impl Into<String>) -> Self {
        IdentitySpec {
            role,
            key_type,
            common_name: common_name.into(),
            email: None,
            upn: None,
        }
    }

    /// Sets the e-mail address put in the subjectAltName (rfc822Name).
    #[must_use]
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the Microsoft user principal name put in the subjectAltName
    /// (otherName 1.3.6.1.4.1.311.20.2.3, UTF8String), e.g. `1234567890@mil`.
    #[must_use]
    pub fn with_upn(mut self, upn: impl Into<String>) -> Self {
        self.upn = Some(upn.into());
        self
    }

    /// The certificate profile.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The key algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The subject common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The e-mail address, if any.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The user principal name, if any.
    pub fn upn(&self) -> Option<&str> {
        self.upn.as_deref()
    }
}
