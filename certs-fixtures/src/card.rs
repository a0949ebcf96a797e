//! The card directory: `card.toml` and the PEM files it names.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::pki::Pki;

/// Most PKI applets a CAC has (`A0 00 00 00 79 01 00` .. `01 0F`).
const MAX_IDENTITIES: usize = 16;

/// The card-level settings written to `card.toml`: PIN, optional PUK, ATR,
/// card ID (CUID) and certificate compression.
///
/// The default is PIN `12345678` with 3 tries, no PUK, the DoD CAC ATR
/// [`DEFAULT_ATR`](Self::DEFAULT_ATR), no card ID (the card derives one)
/// and uncompressed certificates. The limits checked here are those of the
/// `cac` crate's `card.toml` reader.
#[derive(Clone, PartialEq, Eq)]
pub struct CardOptions {
    pin: String,
    max_tries: u8,
    puk: Option<(String, u8)>,
    atr: Vec<u8>,
    card_id: Option<Vec<u8>>,
    compress: bool,
    /// `piv` or `dual` with the PIV PIN and PUK; `None` = a CAC.
    piv: Option<(&'static str, String, String)>,
}

impl Default for CardOptions {
    fn default() -> Self {
        CardOptions {
            pin: Self::DEFAULT_PIN.to_owned(),
            max_tries: Self::DEFAULT_MAX_TRIES,
            puk: None,
            atr: Self::DEFAULT_ATR.to_vec(),
            card_id: None,
            compress: false,
            piv: None,
        }
    }
}

impl std::fmt::Debug for CardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardOptions")
            .field("pin", &"<redacted>")
            .field("max_tries", &self.max_tries)
            .field(
                "puk",
                &self.puk.as_ref().map(|(_, tries)| ("<redacted>", tries)),
            )
            .field("atr", &hex_upper(&self.atr))
            .field("card_id", &self.card_id.as_deref().map(hex_upper))
            .field("compress", &self.compress)
            .finish()
    }
}

impl CardOptions {
    /// The default PIN.
    pub const DEFAULT_PIN: &'static str = "12345678";
    /// The default number of PIN tries.
    pub const DEFAULT_MAX_TRIES: u8 = 3;
    /// A real DoD CAC ATR, `3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34`
    /// (T=0 only).
    pub const DEFAULT_ATR: &'static [u8] = &[
        0x3b, 0x7a, 0x18, 0x00, 0x00, 0x73, 0x66, 0x74, 0x65, 0x20, 0x63, 0x64, 0x31, 0x34, 0x34,
    ];

    /// Sets the PIN: 6 to 8 ASCII digits (VERIFY pads it to 8 bytes with
    /// `FF`).
    #[must_use]
    pub fn pin(mut self, pin: impl Into<String>) -> Self {
        self.pin = pin.into();
        self
    }

    /// Sets the number of wrong PIN tries before the PIN blocks (1 to 15).
    #[must_use]
    pub fn max_tries(mut self, tries: u8) -> Self {
        self.max_tries = tries;
        self
    }

    /// Adds a PUK (same rules as the PIN) that unblocks the PIN, with its
    /// own try counter (1 to 15).
    #[must_use]
    pub fn puk(mut self, puk: impl Into<String>, max_tries: u8) -> Self {
        self.puk = Some((puk.into(), max_tries));
        self
    }

    /// Sets the ATR (2 to 33 bytes, starting with `3B` or `3F`).
    #[must_use]
    pub fn atr(mut self, atr: impl Into<Vec<u8>>) -> Self {
        self.atr = atr.into();
        self
    }

    /// Sets the card ID, the CUID in the CCC `F0` tag that OpenSC derives
    /// the card serial from (8 to 16 bytes, written as `card_id = "hex"`),
    /// instead of letting the card derive one from all its certificates.
    #[must_use]
    pub fn card_id(mut self, card_id: impl Into<Vec<u8>>) -> Self {
        self.card_id = Some(card_id.into());
        self
    }

    /// The T=1 ATR of PIV and dual cards (`vcac`'s `PIV_ATR`): yubico-piv-tool
    /// connects with T=1 only.
    pub const PIV_ATR: &'static [u8] = &[
        0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45, b'V', b'C', b'A', b'C', b'P', b'I',
        b'V', b'1', 0x89,
    ];

    /// Makes a PIV card (`dual = false`) or a dual CAC + PIV card with this
    /// PIV PIN and PUK (6 to 8 digits each); switches to
    /// [`PIV_ATR`](Self::PIV_ATR) and gives identity `i` the PIV slot
    /// 9A, 9C, 9D, 9E, 82, … in order.
    #[must_use]
    pub fn piv(mut self, dual: bool, pin: impl Into<String>, puk: impl Into<String>) -> Self {
        self.piv = Some((if dual { "dual" } else { "piv" }, pin.into(), puk.into()));
        self.atr = Self::PIV_ATR.to_vec();
        self
    }

    /// Asks the card to serve every certificate compressed (CertInfo `01`),
    /// as real CACs do.
    #[must_use]
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    fn check(&self) -> Result<(), Error> {
        check_secret("PIN", &self.pin)?;
        check_tries("max_tries", self.max_tries)?;
        if let Some((puk, tries)) = &self.puk {
            check_secret("PUK", puk)?;
            check_tries("puk_max_tries", *tries)?;
        }
        if let Some((_, pin, puk)) = &self.piv {
            check_secret("PIV PIN", pin)?;
            check_secret("PIV PUK", puk)?;
        }
        let atr_ok = (2..=33).contains(&self.atr.len())
            && matches!(self.atr.first(), Some(0x3b) | Some(0x3f));
        if !atr_ok {
            return Err(Error::InvalidOption(format!(
                "ATR {} must be 2 to 33 bytes starting with 3B or 3F",
                hex_upper(&self.atr)
            )));
        }
        if let Some(card_id) = &self.card_id {
            if !(8..=16).contains(&card_id.len()) {
                return Err(Error::InvalidOption(format!(
                    "card ID must be 8 to 16 bytes, not {}",
                    card_id.len()
                )));
            }
        }
        Ok(())
    }
}

fn check_secret(what: &str, value: &str) -> Result<(), Error> {
    if (6..=8).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::InvalidOption(format!(
            "{what} must be 6 to 8 ASCII digits"
        )))
    }
}

fn check_tries(what: &str, tries: u8) -> Result<(), Error> {
    if (1..=15).contains(&tries) {
        Ok(())
    } else {
        Err(Error::InvalidOption(format!(
            "{what} must be 1 to 15, not {tries}"
        )))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

impl Pki {
    /// Renders `card.toml` for this PKI: `[card]` (ATR, optional card ID),
    /// `[pin]` (PIN, tries, optional PUK) and one `[[identity]]` per
    /// identity naming `idN.pem` / `idN.key`. Does no I/O.
    ///
    /// Fails with [`Error::InvalidOption`] if an option is out of range or
    /// there are more than 16 identities (a CAC has 16 PKI applets).
    pub fn card_toml(&self, card: &CardOptions) -> Result<String, Error> {
        card.check()?;
        if self.identities.len() > MAX_IDENTITIES {
            return Err(Error::InvalidOption(format!(
                "a card holds at most {MAX_IDENTITIES} identities, not {}",
                self.identities.len()
            )));
        }
        let mut out = format!(
            "# vcac card profile, written by certs-fixtures (seed {})\n[card]\natr = \"{}\"\n",
            self.seed,
            hex_upper(&card.atr)
        );
        if let Some(card_id) = &card.card_id {
            let _ = writeln!(out, "card_id = \"{}\"", hex_upper(card_id));
        }
        if let Some((profile, _, _)) = &card.piv {
            let _ = writeln!(out, "profile = \"{profile}\"");
        }
        let _ = write!(
            out,
            "\n[pin]\npin = \"{}\"\nmax_tries = {}\n",
            card.pin, card.max_tries
        );
        if let Some((puk, tries)) = &card.puk {
            let _ = write!(out, "puk = \"{puk}\"\npuk_max_tries = {tries}\n");
        }
        if let Some((_, pin, puk)) = &card.piv {
            let _ = write!(out, "\n[piv]\npin = \"{pin}\"\npuk = \"{puk}\"\n");
        }
        for index in 0..self.identities.len() {
            let _ = write!(
                out,
                "\n[[identity]]\ncert = \"id{index}.pem\"\nkey = \"id{index}.key\"\n"
            );
            if card.piv.is_some() {
                let slot = match index {
                    0 => 0x9A,
                    1 => 0x9C,
                    2 => 0x9D,
                    3 => 0x9E,
                    n => 0x82 + n - 4,
                };
                let _ = writeln!(out, "piv_slot = \"{slot:02X}\"");
            }
            if card.compress {
                out.push_str("compress = true\n");
            }
        }
        Ok(out)
    }

    /// Every file of the card directory as `(file name, contents)`, without
    /// touching the file system, in this order: `ca.pem`,
    /// `intermediate.pem` (if any), `content-signer.pem` (the PIV content
    /// signer's certificate, if any), `id0.pem`, `id0.key`, `id1.pem`, ...,
    /// `ca.crl` (if any, PEM `X509 CRL`), `card.toml`.
    ///
    /// Certificates are PEM `CERTIFICATE`, keys PKCS#8 PEM `PRIVATE KEY`.
    pub fn card_files(&self, card: &CardOptions) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let toml = self.card_toml(card)?;
        let mut files = vec![("ca.pem".to_owned(), self.ca.cert_pem().as_bytes().to_vec())];
        if let Some(intermediate) = &self.intermediate {
            files.push((
                "intermediate.pem".to_owned(),
                intermediate.cert_pem().as_bytes().to_vec(),
            ));
        }
        if let Some(signer) = &self.content_signer {
            files.push((
                "content-signer.pem".to_owned(),
                signer.cert_pem().as_bytes().to_vec(),
            ));
        }
        for (index, identity) in self.identities.iter().enumerate() {
            let credential = identity.credential();
            files.push((
                format!("id{index}.pem"),
                credential.cert_pem().as_bytes().to_vec(),
            ));
            files.push((
                format!("id{index}.key"),
                credential.key_pem().as_bytes().to_vec(),
            ));
        }
        if let Some(crl) = self.crl_pem() {
            files.push(("ca.crl".to_owned(), crl.as_bytes().to_vec()));
        }
        files.push(("card.toml".to_owned(), toml.into_bytes()));
        Ok(files)
    }

    /// Writes [`card_files`](Self::card_files) into `dir` (created if
    /// missing) and returns the paths written.
    ///
    /// Keys (`*.key`) get mode 0600, other files 0644. Unless `force` is
    /// set, nothing is written if any of the files already exists
    /// ([`Error::Exists`] names the first one). With `force`, existing files
    /// are overwritten; files of an earlier, larger card are left alone.
    pub fn write_card_dir(
        &self,
        dir: impl AsRef<Path>,
        card: &CardOptions,
        force: bool,
    ) -> Result<Vec<PathBuf>, Error> {
        let dir = dir.as_ref();
        let files = self.card_files(card)?;
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        if !force {
            if let Some(path) = files
                .iter()
                .map(|(name, _)| dir.join(name))
                .find(|path| path.symlink_metadata().is_ok())
            {
                return Err(Error::Exists(path));
            }
        }
        let mut written = Vec::with_capacity(files.len());
        for (name, contents) in &files {
            let path = dir.join(name);
            write_file(&path, contents, name.ends_with(".key"), force)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Writes one file; `secret` files are created with mode 0600 (and set to
/// it when an existing file is overwritten).
fn write_file(path: &Path, contents: &[u8], secret: bool, force: bool) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if secret { 0o600 } else { 0o644 });
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        if secret {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(contents).map_err(io)
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        let mut file = options.open(path).map_err(io)?;
        file.write_all(contents).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let ok = CardOptions::default();
        assert!(ok.check().is_ok());
        for bad in [
            ok.clone().pin(""),
            ok.clone().pin("12345"),
            ok.clone().pin("123456789"),
            ok.clone().pin("1234567a"),
            ok.clone().max_tries(0),
            ok.clone().max_tries(16),
            ok.clone().puk("", 3),
            ok.clone().puk("12345678", 0),
            ok.clone().atr(vec![0x3b]),
            ok.clone().atr(vec![0x12, 0x34]),
            ok.clone().card_id(vec![1; 7]),
            ok.clone().card_id(vec![1; 17]),
        ] {
            assert!(
                matches!(bad.check(), Err(Error::InvalidOption(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let text = format!(
            "{:?}",
            CardOptions::default().pin("424242").puk("777777", 5)
        );
        assert!(!text.contains("4242") && !text.contains("7777"), "{text}");
    }
}
