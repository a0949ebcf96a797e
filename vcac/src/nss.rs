//! `--nssdb DIR --cert NICK…` of `vcac serve` and `vcac passthru`: the
//! identities of an NSS `sql:` database as one CAC card, libcacard's soft
//! mode (read by [`vcac_sources::nss`], no NSS library).

use std::sync::Arc;

use cac::keys::KeyBackend;
use vcac_sources::nss::NssDb;

/// NSS-database options of `vcac serve` and `vcac passthru`.
#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct NssArgs {
    /// Serve the certificates of this NSS database (`sql:DIR` or DIR, with
    /// cert9.db and key4.db) as one CAC, one PKI applet per --cert, as
    /// libcacard's soft mode does. The PIN is the database password (an
    /// empty-password database accepts any PIN).
    #[arg(long, value_name = "DIR", requires = "certs")]
    pub(crate) nssdb: Option<String>,
    /// With --nssdb: the nickname of a certificate to put on the card
    /// (its private key is the one with the same CKA_ID); repeat for more,
    /// in applet order. Nicknames the database lacks are skipped.
    #[arg(long = "cert", value_name = "NICK", requires = "nssdb")]
    pub(crate) certs: Vec<String>,
}

impl NssArgs {
    /// True when --nssdb was given.
    pub(crate) fn any(&self) -> bool {
        self.nssdb.is_some()
    }
}

/// The card of `--nssdb`, if given: its label, the card, and how to log
/// in. Prints (to `out`) which nicknames were found and which skipped;
/// fails when none is found.
pub(crate) fn load(
    args: &NssArgs,
    backend: Arc<dyn KeyBackend>,
    out: &mut dyn std::io::Write,
) -> Result<Option<(String, cac::Card, String)>, String> {
    let Some(spec) = &args.nssdb else {
        return Ok(None);
    };
    if args.certs.is_empty() {
        return Err(format!("--nssdb {spec}: name at least one --cert NICK"));
    }
    let db = NssDb::open(spec).map_err(|e| format!("--nssdb {spec}: {e}"))?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for nick in &args.certs {
        match db.certificate(nick) {
            Ok(Some(_)) => found.push(nick.as_str()),
            Ok(None) => skipped.push(nick.as_str()),
            Err(e) => return Err(format!("--nssdb {spec}: {e}")),
        }
    }
    let _ = writeln!(
        out,
        "vcac: NSS database {spec}: found {}; skipped {}",
        list(&found),
        list(&skipped)
    );
    let card = db
        .card(&found, backend, rand_core::UnwrapErr(getrandom::SysRng))
        .map_err(|e| format!("--nssdb {spec}: {e}"))?
        .ok_or_else(|| {
            format!(
                "--nssdb {spec}: none of the certificates {} is in the database",
                list(&skipped)
            )
        })?;
    let pin = if db.needs_login() {
        "the database password"
    } else {
        "any (empty-password database)"
    };
    Ok(Some((
        format!("NSS database {spec} ({})", found.join(", ")),
        card,
        pin.to_owned(),
    )))
}

fn list(nicks: &[&str]) -> String {
    if nicks.is_empty() {
        "none".into()
    } else {
        nicks.join(", ")
    }
}
