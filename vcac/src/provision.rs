//! `vcac provision`.

use std::path::PathBuf;
use std::time::Instant;

use certs_fixtures::{CardOptions, IdentitySpec, KeyType, PkiBuilder, Role};
use clap::Args;
use rand_core::Rng;

/// Options of `vcac provision`.
#[derive(Args, Debug)]
pub(crate) struct ProvisionArgs {
    /// Directory to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of every random choice: the same seed and options give
    /// byte-identical files. Default: a fresh random seed (printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// The card PIN (6 to 8 digits). Default 12345678 for a CAC, 123456
    /// for piv and dual (PIV and CAC then share the value).
    #[arg(long)]
    pin: Option<String>,
    /// Applets: cac (default), piv, or dual (CAC and PIV, same identities).
    #[arg(long, value_name = "PROFILE", default_value = "cac")]
    profile: String,
    /// Wrong PINs before the PIN blocks (1-15).
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_tries: u8,
    /// A PUK that unblocks the PIN (RESET RETRY COUNTER), 6 to 8 digits.
    /// The PIV PUK of piv and dual cards (default 12345678).
    #[arg(long)]
    puk: Option<String>,
    /// Key type for every identity (rsa2048, rsa3072, rsa4096, p256), or
    /// for one identity as INDEX=TYPE (e.g. 2=rsa4096). Repeatable.
    #[arg(long = "key-type", value_name = "[INDEX=]TYPE")]
    key_types: Vec<String>,
    /// Key type of the issuing CA (rsa2048, rsa3072, rsa4096, p256).
    #[arg(long, value_name = "TYPE", default_value = "rsa2048")]
    ca_key_type: String,
    /// Number of identities (1-16; default 3, 4 for piv and dual): id0
    /// authentication (PIV 9A), id1 signature (9C), id2 encryption (9D),
    /// id3 card authentication on PIV (9E), further ones generic.
    #[arg(long, value_name = "N")]
    identities: Option<usize>,
    /// Common name of the card holder.
    #[arg(long, default_value = "DOE.JOHN.Q.1234567890")]
    name: String,
    /// E-mail address (subjectAltName of the signature and encryption certificates).
    #[arg(long, default_value = "john.q.doe.ctr@mail.mil")]
    email: String,
    /// Microsoft UPN (subjectAltName of the authentication certificate).
    #[arg(long, default_value = "1234567890@mil")]
    upn: String,
    /// Start of validity: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix seconds.
    #[arg(long, value_name = "WHEN", default_value = "2025-01-01")]
    valid_from: String,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = 3650)]
    days: u32,
    /// Store certificates compressed on the card (as real CACs do).
    #[arg(long)]
    compress: bool,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Also write idN.p12 (key, certificate and CA; AES-256, HMAC-SHA256
    /// MAC) for clients and browsers. Empty password unless
    /// --p12-password-env.
    #[arg(long)]
    export_p12: bool,
    /// Environment variable holding the password of the idN.p12 files.
    #[arg(long, value_name = "VAR", requires = "export_p12")]
    p12_password_env: Option<String>,
}

pub(crate) fn parse_key_type(s: &str) -> Result<KeyType, String> {
    match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "rsa2048" => Ok(KeyType::Rsa2048),
        "rsa3072" => Ok(KeyType::Rsa3072),
        "rsa4096" => Ok(KeyType::Rsa4096),
        "p256" | "ecp256" | "secp256r1" => Ok(KeyType::P256),
        "p384" | "ecp384" | "secp384r1" => Ok(KeyType::P384),
        _ => Err(format!(
            "--key-type {s}: unknown key type (expected rsa2048, rsa3072, rsa4096, p256 or p384)"
        )),
    }
}

/// Key type per identity from the `--key-type` options.
fn key_types(specs: &[String], count: usize, piv: bool) -> Result<Vec<KeyType>, String> {
    // PIV defaults: 9A RSA-2048, 9C P-256, 9D P-384, 9E P-256.
    let mut types: Vec<KeyType> = (0..count)
        .map(|i| match (piv, i) {
            (true, 1 | 3) => KeyType::P256,
            (true, 2) => KeyType::P384,
            _ => KeyType::Rsa2048,
        })
        .collect();
    for spec in specs {
        match spec.split_once('=') {
            Some((index, ty)) => {
                let i: usize = index
                    .trim_start_matches("id")
                    .parse()
                    .map_err(|_| format!("--key-type {spec}: bad identity index \"{index}\""))?;
                let slot = types.get_mut(i).ok_or_else(|| {
                    format!("--key-type {spec}: identity {i} does not exist (--identities {count})")
                })?;
                *slot = parse_key_type(ty)?;
            }
            None => {
                let ty = parse_key_type(spec)?;
                types.iter_mut().for_each(|t| *t = ty);
            }
        }
    }
    Ok(types)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `--valid-from`.
pub(crate) fn parse_when(s: &str) -> Result<u64, String> {
    let bad =
        || format!("--valid-from {s}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix seconds");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let hms: Vec<&str> = t.split(':').collect();
        let [h, mi, se] = hms.as_slice() else {
            return Err(bad());
        };
        let (h, mi, se): (i64, i64, i64) = (
            h.parse().map_err(|_| bad())?,
            mi.parse().map_err(|_| bad())?,
            se.parse().map_err(|_| bad())?,
        );
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
    }
    u64::try_from(secs).map_err(|_| bad())
}

pub(crate) fn run(args: ProvisionArgs) -> Result<(), String> {
    let (piv, dual) = match args.profile.as_str() {
        "cac" => (false, false),
        "piv" => (true, false),
        "dual" => (true, true),
        other => return Err(format!("--profile {other}: expected cac, piv or dual")),
    };
    let count = args.identities.unwrap_or(if piv { 4 } else { 3 });
    if !(1..=16).contains(&count) {
        return Err(format!(
            "--identities {count}: a card holds 1 to 16 identities"
        ));
    }
    let pin = args
        .pin
        .clone()
        .unwrap_or_else(|| if piv { "123456" } else { "12345678" }.to_owned());
    let types = key_types(&args.key_types, count, piv)?;
    let valid_from = parse_when(&args.valid_from)?;
    let seed = args
        .seed
        .unwrap_or_else(|| rand_core::UnwrapErr(getrandom::SysRng).next_u64());

    let ca_key =
        parse_key_type(&args.ca_key_type).map_err(|e| e.replace("--key-type", "--ca-key-type"))?;
    let mut builder = PkiBuilder::new(seed)
        .ca_key(ca_key)
        .valid_from(valid_from)
        .days(args.days);
    for (i, ty) in types.iter().enumerate() {
        let role = match (i, piv) {
            (0, false) => Role::Authentication,
            (0, true) => Role::PivAuthentication,
            (1, _) => Role::Signature,
            (2, _) => Role::Encryption,
            (3, true) => Role::CardAuthentication,
            _ => Role::Generic,
        };
        let mut spec = IdentitySpec::new(role, *ty, args.name.clone());
        spec = match role {
            Role::Authentication | Role::PivAuthentication => spec.with_upn(args.upn.clone()),
            Role::CardAuthentication => spec,
            _ => spec.with_email(args.email.clone()),
        };
        builder = builder.identity(spec);
    }
    if piv {
        // The issuer's PIV content signer signs the CHUID and Security Object.
        builder = builder.piv_content_signer(PkiBuilder::DEFAULT_CONTENT_SIGNER_SUBJECT);
    }
    let mut card = CardOptions::default()
        .pin(pin.clone())
        .max_tries(args.max_tries)
        .compress(args.compress);
    if let Some(puk) = &args.puk {
        card = card.puk(puk.clone(), 10);
    }
    if piv {
        let puk = args.puk.clone().unwrap_or_else(|| "12345678".to_owned());
        card = card.piv(dual, pin.clone(), puk);
    }

    let started = Instant::now();
    let p12_names: Vec<String> = (0..count).map(|i| format!("id{i}.p12")).collect();
    let p12_password = match (&args.p12_password_env, args.export_p12) {
        (Some(var), _) => Some(zeroize::Zeroizing::new(std::env::var(var).map_err(
            |_| format!("--p12-password-env {var}: the variable is not set (or not UTF-8)"),
        )?)),
        (None, true) => Some(zeroize::Zeroizing::new(String::new())),
        (None, false) => None,
    };
    if p12_password.is_some() && !args.force {
        crate::import::refuse_existing(&args.out, &p12_names)?;
    }
    if piv && !args.force {
        crate::import::refuse_existing(&args.out, &crate::piv_sign::file_names())?;
    }
    let pki = builder.build().map_err(|e| e.to_string())?;
    let signed = if piv {
        let files = pki.card_files(&card).map_err(|e| e.to_string())?;
        crate::piv_sign::sign(&pki, &files, &pin)?
    } else {
        Vec::new()
    };
    let mut written = pki
        .write_card_dir(&args.out, &card, args.force)
        .map_err(|e| e.to_string())?;
    written.extend(crate::piv_sign::write(&args.out, &signed)?);
    if let Some(password) = &p12_password {
        let mut chain: Vec<&[u8]> = Vec::new();
        if let Some(intermediate) = pki.intermediate() {
            chain.push(intermediate.cert_der());
        }
        chain.push(pki.ca().cert_der());
        for (id, name) in pki.identities().iter().zip(&p12_names) {
            let c = id.credential();
            let p12 = vcac_sources::p12::write(
                c.cert_der(),
                c.key_der(),
                &chain,
                name.trim_end_matches(".p12"),
                password,
            )
            .map_err(|e| format!("{name}: {e}"))?;
            let path = args.out.join(name);
            crate::import::write_file(&path, &p12, true, args.force)?;
            written.push(path);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "vcac: wrote {} files to {} in {:.2} s (seed {seed}; PIN {})",
        written.len(),
        args.out.display(),
        elapsed.as_secs_f64(),
        pin
    );
    for (i, ty) in types.iter().enumerate() {
        if piv {
            println!("  id{i}: {ty} (PIV slot {:02X})", cac::piv::default_slot(i));
        } else {
            println!("  id{i}: {ty}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_when("2025-01-01").unwrap(), 1_735_689_600);
        assert_eq!(parse_when("1970-01-01T00:00:01Z").unwrap(), 1);
        assert_eq!(parse_when("2000-03-01").unwrap(), 951_868_800);
        assert_eq!(parse_when("123").unwrap(), 123);
        assert!(parse_when("2025-13-01").is_err());
        assert!(parse_when("2025-01-01T00:00:00").is_err());
        assert!(parse_when("yesterday").is_err());
    }

    #[test]
    fn key_type_options() {
        assert_eq!(key_types(&[], 2, false).unwrap(), [KeyType::Rsa2048; 2]);
        assert_eq!(
            key_types(&["p256".into(), "1=rsa3072".into()], 3, false).unwrap(),
            [KeyType::P256, KeyType::Rsa3072, KeyType::P256]
        );
        assert!(key_types(&["5=rsa2048".into()], 3, false).is_err());
        assert!(key_types(&["rsa1024".into()], 3, false).is_err());
        assert_eq!(
            key_types(&[], 4, true).unwrap(),
            [
                KeyType::Rsa2048,
                KeyType::P256,
                KeyType::P384,
                KeyType::P256
            ]
        );
        assert_eq!(
            key_types(&["3=rsa2048".into()], 4, true).unwrap(),
            [
                KeyType::Rsa2048,
                KeyType::P256,
                KeyType::P384,
                KeyType::Rsa2048
            ]
        );
    }
}
