//! `vcac inspect DIR`: a short human summary of a card directory.

use std::path::Path;

use cac::config::{certificate_der, CardConfig};
use cac::keys::{load_private_key, RustCrypto};
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

fn eku_name(oid: &der::asn1::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.6.1.5.5.7.3.1" => "serverAuth".into(),
        "1.3.6.1.5.5.7.3.2" => "clientAuth".into(),
        "1.3.6.1.5.5.7.3.4" => "emailProtection".into(),
        "1.3.6.1.4.1.311.20.2.2" => "smartcardLogon".into(),
        other => other.to_owned(),
    }
}

fn key_usage_names(ku: &KeyUsage) -> Vec<&'static str> {
    use x509_cert::ext::pkix::KeyUsages as K;
    [
        (K::DigitalSignature, "digitalSignature"),
        (K::NonRepudiation, "nonRepudiation"),
        (K::KeyEncipherment, "keyEncipherment"),
        (K::DataEncipherment, "dataEncipherment"),
        (K::KeyAgreement, "keyAgreement"),
        (K::KeyCertSign, "keyCertSign"),
        (K::CRLSign, "cRLSign"),
    ]
    .into_iter()
    .filter(|(k, _)| ku.0.contains(*k))
    .map(|(_, n)| n)
    .collect()
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

pub(crate) fn run(dir: &Path) -> Result<(), String> {
    let toml_path = dir.join("card.toml");
    let text =
        std::fs::read_to_string(&toml_path).map_err(|e| format!("{}: {e}", toml_path.display()))?;
    let config = CardConfig::parse(&text).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("card directory {}", dir.display());
    println!(
        "  PIN {} ({} tries{})",
        config.pin.pin,
        config.pin.max_tries.unwrap_or(3),
        if config.pin.puk.is_some() {
            ", PUK set"
        } else {
            ""
        }
    );
    if let Some(atr) = &config.card.atr {
        println!("  ATR {atr}");
    }
    let profile = config.card.profile.as_deref().unwrap_or("cac");
    let piv = matches!(profile, "piv" | "dual");
    println!("  profile {profile}");
    if piv {
        let section = config.piv.clone().unwrap_or_default();
        println!(
            "  PIV PIN {} ({} tries), PUK {}, management key {}",
            section.pin.as_deref().unwrap_or(cac::piv::DEFAULT_PIV_PIN),
            section.max_tries.unwrap_or(3),
            section.puk.as_deref().unwrap_or(cac::piv::DEFAULT_PIV_PUK),
            section
                .management_key_algorithm
                .as_deref()
                .unwrap_or("3des"),
        );
        if let Ok(text) = std::fs::read_to_string(dir.join(vcac_sources::persist::CREDENTIALS)) {
            let left: Vec<&str> = text.lines().filter(|l| l.contains("tries_left")).collect();
            println!("  PIV state written by the card: {}", left.join(", "));
        }
    }
    for (i, id) in config.identities.iter().enumerate() {
        let der =
            certificate_der(&read(dir, &id.cert)?).map_err(|e| format!("{}: {e}", id.cert))?;
        let cert = Certificate::from_der(&der).map_err(|e| format!("{}: {e}", id.cert))?;
        let tbs = cert.tbs_certificate();
        let key = match &id.key {
            Some(k) => {
                let handle = load_private_key(&RustCrypto, &read(dir, k)?)
                    .map_err(|e| format!("{k}: {e}"))?;
                let spki = tbs
                    .subject_public_key_info()
                    .to_der()
                    .map_err(|e| e.to_string())?;
                let matches = if spki == handle.public_key_der() {
                    ""
                } else {
                    " (DOES NOT MATCH the certificate)"
                };
                format!("{}{matches}", handle.algorithm())
            }
            None => "no private key".into(),
        };
        println!("  id{i}: {}  [{}]", id.cert, key);
        if piv {
            let slot = match &id.piv_slot {
                Some(s) => s.to_ascii_uppercase(),
                None => format!("{:02X}", cac::piv::default_slot(i)),
            };
            let generated = dir.join(format!("piv-{slot}.key")).exists();
            println!(
                "    PIV slot {slot}{}",
                if generated {
                    format!(" (key generated on the card: piv-{slot}.key)")
                } else {
                    String::new()
                }
            );
        }
        println!("    subject  {}", tbs.subject());
        println!("    issuer   {}", tbs.issuer());
        println!("    expires  {}", tbs.validity().not_after);
        let mut ekus = Vec::new();
        let mut kus = Vec::new();
        let mut sans = Vec::new();
        for ext in tbs.extensions().iter().flat_map(|e| e.iter()) {
            let value = ext.extn_value.as_bytes();
            match ext.extn_id.to_string().as_str() {
                "2.5.29.37" => {
                    if let Ok(e) = ExtendedKeyUsage::from_der(value) {
                        ekus.extend(e.0.iter().map(eku_name));
                    }
                }
                "2.5.29.15" => {
                    if let Ok(k) = KeyUsage::from_der(value) {
                        kus.extend(key_usage_names(&k));
                    }
                }
                "2.5.29.17" => {
                    if let Ok(s) = SubjectAltName::from_der(value) {
                        for n in s.0 {
                            match n {
                                GeneralName::Rfc822Name(m) => {
                                    sans.push(format!("email:{}", m.as_str()))
                                }
                                GeneralName::OtherName(o)
                                    if o.type_id.to_string() == "1.3.6.1.4.1.311.20.2.3" =>
                                {
                                    let upn = der::asn1::Utf8StringRef::try_from(&o.value)
                                        .map(|s| s.as_str().to_owned())
                                        .unwrap_or_else(|_| "?".into());
                                    sans.push(format!("UPN:{upn}"));
                                }
                                other => sans.push(format!("{other:?}")),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !kus.is_empty() {
            println!("    usage    {}", kus.join(", "));
        }
        if !ekus.is_empty() {
            println!("    EKU      {}", ekus.join(", "));
        }
        if !sans.is_empty() {
            println!("    altName  {}", sans.join(", "));
        }
        if id.compress {
            println!("    stored compressed");
        }
    }
    if piv {
        let mut written: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("piv-obj-") || (n.starts_with("piv-") && n.ends_with(".key")))
            .collect();
        written.sort();
        if !written.is_empty() {
            println!(
                "  PIV objects and keys on top of card.toml (signed at provisioning or written by the card): {}",
                written.join(", ")
            );
        }
        let chuid = std::fs::read(dir.join(crate::piv_sign::object_file(&cac::piv::CHUID_TAG)));
        let signed = chuid
            .ok()
            .and_then(|c| cac::piv::chuid_signature(&c).map(|s| s.len()))
            .unwrap_or(0);
        if signed > 0 {
            println!("  CHUID signed by the issuer ({signed}-byte CMS; signer content-signer.pem)");
        }
    }
    Ok(())
}
