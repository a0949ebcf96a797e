//! Host cards behind the virtual readers: PKCS#11 tokens mirrored as CACs
//! (`--pkcs11`) and a real card relayed from a pcscd reader
//! (`--pcsc-reader`), shared by `vcac serve` and `vcac passthru`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use vcac_sources::{pcsc_relay, pkcs11};
use vreader::{ReaderId, ReaderSet};

/// How long a PKCS#11 module may take to load and initialise.
const MODULE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the module's slots are rescanned for hot-plug.
const TOKEN_POLL: Duration = Duration::from_millis(500);

/// Host-card options of `vcac serve` and `vcac passthru`.
#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct HostArgs {
    /// Mirror the tokens of this PKCS#11 module as CACs (e.g.
    /// /usr/lib/softhsm/libsofthsm2.so): each certificate with a private
    /// key of the same CKA_ID becomes a PKI applet; signing and the PIN
    /// stay on the token. Tokens that come and go are inserted into and
    /// removed from the virtual reader(s).
    #[arg(long, value_name = "MODULE")]
    pkcs11: Option<PathBuf>,
    /// With --pkcs11: only tokens with this label (default: every token in
    /// a removable slot).
    #[arg(long, value_name = "LABEL", requires = "pkcs11")]
    token: Option<String>,
    /// With --pkcs11: only the token in this PKCS#11 slot ID.
    #[arg(long, value_name = "ID", requires = "pkcs11", conflicts_with = "token")]
    token_slot: Option<u64>,
    /// With --pkcs11: how many tokens to mirror at once (one virtual
    /// reader each).
    #[arg(long, value_name = "N", default_value_t = 1)]
    tokens: usize,
    /// Relay the card in this reader of a pcscd (e.g. "Virtual PCD 00 00"):
    /// APDUs, answers and ATR pass unchanged; insertion and removal
    /// follow the real card.
    #[arg(long, value_name = "NAME")]
    pcsc_reader: Option<String>,
    /// The socket of the pcscd --pcsc-reader reads from (default:
    /// $PCSCLITE_CSOCK_NAME, else the system's pcscd).
    #[arg(long, value_name = "PATH", requires = "pcsc_reader")]
    pcsc_socket: Option<PathBuf>,
}

impl HostArgs {
    /// True when a host card source was asked for.
    pub(crate) fn any(&self) -> bool {
        self.pkcs11.is_some() || self.pcsc_reader.is_some()
    }
}

/// Opens the host card sources, adds their readers to `set` (named by
/// `name(i)`) and starts the threads that follow them until `stop`.
/// Returns each reader with a description.
pub(crate) fn start(
    args: &HostArgs,
    set: &Arc<ReaderSet>,
    name: impl Fn(usize) -> String,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<(String, ReaderId)>, String> {
    let mut out = Vec::new();
    if let Some(socket) = &args.pcsc_socket {
        // Before any PC/SC call: libpcsclite reads it once.
        pcsc_relay::use_pcscd_socket(socket);
    }
    if let Some(path) = &args.pkcs11 {
        let module = pkcs11::Module::open(path, MODULE_TIMEOUT).map_err(|e| e.to_string())?;
        for s in module.slots().map_err(|e| e.to_string())? {
            log::info!(
                "{}: slot {} \"{}\"{}: {}",
                path.display(),
                s.id,
                s.description,
                if s.removable { " (removable)" } else { "" },
                s.token
                    .as_ref()
                    .map(|t| format!("token \"{}\" serial {}", t.label, t.serial))
                    .unwrap_or_else(|| "no token".into())
            );
        }
        let selection = match (&args.token, args.token_slot) {
            (Some(label), _) => pkcs11::Selection::Label(label.clone()),
            (None, Some(id)) => pkcs11::Selection::Slot(id),
            (None, None) => pkcs11::Selection::Removable,
        };
        let mut bays = Vec::new();
        for _ in 0..args.tokens.max(1) {
            let i = out.len();
            let reader = set.add_reader(&name(i)).map_err(|e| e.to_string())?;
            bays.push(reader);
            out.push((
                format!("PKCS#11 tokens of {} ({selection:?})", path.display()),
                reader,
            ));
        }
        let mut watcher = pkcs11::Watcher::new(module, selection, bays);
        // The first scan before anything is served: the tokens present now
        // are in their readers when pcscd or the guest first looks.
        match watcher.poll(set) {
            Ok(changes) if changes.is_empty() => {
                log::warn!("{}: no matching token yet; waiting for one", path.display())
            }
            Ok(changes) => changes.iter().for_each(|c| log::info!("{c}")),
            Err(e) => return Err(e.to_string()),
        }
        let (set, stop) = (Arc::clone(set), Arc::clone(stop));
        std::thread::Builder::new()
            .name("pkcs11 watcher".into())
            .spawn(move || {
                watcher.run(
                    &set,
                    &stop,
                    TOKEN_POLL,
                    |c| log::info!("{c}"),
                    |e| log::warn!("{e}"),
                )
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    if let Some(host_reader) = &args.pcsc_reader {
        let i = out.len();
        let reader = set.add_reader(&name(i)).map_err(|e| e.to_string())?;
        out.push((format!("the card in host reader \"{host_reader}\""), reader));
        let mut watcher =
            pcsc_relay::Watcher::new(host_reader, reader, pcsc_relay::RelayOptions::default());
        let (set, stop) = (Arc::clone(set), Arc::clone(stop));
        let label = host_reader.clone();
        std::thread::Builder::new()
            .name("pcsc watcher".into())
            .spawn(move || watcher.run(&set, &stop, |e| log::info!("relay \"{label}\": {e}")))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    Ok(out)
}
