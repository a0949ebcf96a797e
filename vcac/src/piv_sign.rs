//! `vcac provision --profile piv|dual`: the issuer signs the card's CHUID
//! and Security Object with the PIV content signer the directory's CA
//! issued, and stores the signed objects in the card directory.
//!
//! ```text
//!  card files (in memory) ─► Card ─GET DATA─► CHUID, CCC, Printed Info, Discovery, Key History
//!    CHUID TLVs ─► Pki::sign_chuid ─► CHUID with 3E
//!    contents of the 5 objects ─► Pki::sign_security_object ─► 53 { BA, BB, FE }
//!  ─► piv-obj-5FC102.bin, piv-obj-5FC106.bin (loaded on top of card.toml, like PUT DATA)
//! ```
//!
//! The objects are read from the card itself, so the signatures cover
//! exactly the bytes `vcac serve` sends; serving needs no key of the
//! issuer.

use std::path::{Path, PathBuf};

use cac::piv::{
    chuid_signed_content, chuid_with_signature, object_contents, security_object, CHUID_TAG,
    SECURITY_OBJECT_GROUPS, SECURITY_OBJECT_TAG,
};
use cac::{Card, Status};
use certs_fixtures::Pki;

/// The card-directory file of an object the card loads on top of
/// `card.toml` (`vcac_sources::persist`'s naming).
pub(crate) fn object_file(tag: &[u8]) -> String {
    let hex: String = tag.iter().map(|b| format!("{b:02X}")).collect();
    format!("piv-obj-{hex}.bin")
}

/// The files [`write()`] writes.
pub(crate) fn file_names() -> Vec<String> {
    vec![object_file(&CHUID_TAG), object_file(&SECURITY_OBJECT_TAG)]
}

/// One GET DATA of `tag`, following `61 xx`.
fn get_data(card: &mut Card, tag: &[u8]) -> Result<Vec<u8>, String> {
    let mut cmd = vec![0x00, 0xCB, 0x3F, 0xFF, tag.len() as u8 + 2, 0x5C];
    cmd.push(tag.len() as u8);
    cmd.extend_from_slice(tag);
    cmd.push(0x00);
    let mut data = Vec::new();
    let mut reply = card.transmit_vec(&cmd);
    // An object is at most 64 KiB: 257 GET RESPONSEs of 256 bytes.
    for _ in 0..=257 {
        let split = reply.len().checked_sub(2).ok_or("empty card reply")?;
        let (body, sw) = reply.split_at(split);
        data.extend_from_slice(body);
        let sw = match sw {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            _ => return Err("short card reply".into()),
        };
        match Status::from_sw(sw) {
            Status::Success => return Ok(data),
            Status::BytesRemaining(_) => reply = card.transmit_vec(&[0x00, 0xC0, 0x00, 0x00, 0x00]),
            other => return Err(format!("GET DATA {tag:02X?}: {other:?}")),
        }
    }
    Err(format!("GET DATA {tag:02X?}: reply too long"))
}

/// The signed CHUID and Security Object of the card `files` describe, as
/// `(file name, object)`.
pub(crate) fn sign(
    pki: &Pki,
    files: &[(String, Vec<u8>)],
    pin: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| format!("{name}: not in the card files"))
    };
    let toml = read("card.toml")?;
    let toml = String::from_utf8(toml).map_err(|_| "card.toml: not UTF-8".to_owned())?;
    let mut card = cac::config::load_card(
        &toml,
        &mut read,
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .map_err(|e| e.to_string())?;
    card.power_on();
    let select = [
        0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
    ];
    if !card.transmit_vec(&select).ends_with(&[0x90, 0x00]) {
        return Err("the card has no PIV applet".into());
    }
    // Printed Information is behind the PIN.
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    verify.extend(pin.bytes().chain(std::iter::repeat(0xFF)).take(8));
    if card.transmit_vec(&verify) != [0x90, 0x00] {
        return Err("the PIV PIN does not verify".into());
    }

    let chuid = get_data(&mut card, &CHUID_TAG)?;
    let content = chuid_signed_content(&chuid).ok_or("the card's CHUID is malformed")?;
    let signature = pki.sign_chuid(&content).map_err(|e| e.to_string())?;
    let chuid = chuid_with_signature(&chuid, &signature).ok_or("the signed CHUID is too long")?;

    let mut objects = Vec::with_capacity(SECURITY_OBJECT_GROUPS.len());
    for (group, tag, _) in SECURITY_OBJECT_GROUPS {
        let object = if tag == CHUID_TAG {
            chuid.clone()
        } else {
            get_data(&mut card, tag)?
        };
        objects.push((group, object));
    }
    let mut groups = Vec::with_capacity(objects.len());
    for (group, object) in &objects {
        let contents = object_contents(object)
            .ok_or_else(|| format!("data group {group}: malformed object"))?;
        groups.push((*group, contents));
    }
    let signed_lds = pki
        .sign_security_object(&groups)
        .map_err(|e| e.to_string())?;
    let mapping: Vec<(u8, u16)> = SECURITY_OBJECT_GROUPS
        .iter()
        .map(|(group, _, container)| (*group, *container))
        .collect();
    let so = security_object(&mapping, &signed_lds).ok_or("the Security Object is too long")?;
    Ok(vec![
        (object_file(&CHUID_TAG), chuid),
        (object_file(&SECURITY_OBJECT_TAG), so),
    ])
}

/// Writes the signed objects into `dir` (atomically, mode 0644).
pub(crate) fn write(dir: &Path, objects: &[(String, Vec<u8>)]) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::with_capacity(objects.len());
    for (name, bytes) in objects {
        vcac_sources::persist::write_atomic(dir, name, bytes, false)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        written.push(dir.join(name));
    }
    Ok(written)
}
