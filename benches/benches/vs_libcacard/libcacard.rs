//! The system's libcacard 2.8 (C, NSS-backed) through FFI: its NSS
//! database built with `certutil`, and its reader front end
//! (`vreader_power_on`, `vreader_xfr_bytes`).
//!
//! This is the only module besides `pcsc` and `counting` that may use
//! `unsafe`; each block says why it is sound.

use std::ffi::{c_char, c_int, c_uchar, CString};
use std::path::Path;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// libcacard's opaque reader.
#[repr(C)]
struct VReader {
    _opaque: [u8; 0],
}

/// libcacard's opaque option block.
#[repr(C)]
struct VCardEmulOptions {
    _opaque: [u8; 0],
}

/// `VCARD_EMUL_OK`.
const VCARD_EMUL_OK: c_int = 0;
/// `VREADER_OK`.
const VREADER_OK: c_int = 0;

#[link(name = "cacard")]
extern "C" {
    fn vcard_emul_options(args: *const c_char) -> *mut VCardEmulOptions;
    fn vcard_emul_init(options: *const VCardEmulOptions) -> c_int;
    fn vreader_get_reader_by_name(name: *const c_char) -> *mut VReader;
    fn vreader_power_on(reader: *mut VReader, atr: *mut c_uchar, len: *mut c_int) -> c_int;
    fn vreader_xfr_bytes(
        reader: *mut VReader,
        send_buf: *mut c_uchar,
        send_buf_len: c_int,
        receive_buf: *mut c_uchar,
        receive_buf_len: *mut c_int,
    ) -> c_int;
}

/// The certificate nicknames in the NSS database, in PKI applet order.
pub(crate) const CERTS: [&str; 3] = ["cert1", "cert2", "cert3"];

/// Builds an NSS database in `dir` as peers.md describes: no password,
/// three self-signed RSA-2048 certificates `cert1..3` with their keys.
pub(crate) fn make_nss_db(dir: &Path) {
    let db = format!("sql:{}", dir.display());
    run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]));
    let noise = dir.join("noise");
    let mut bytes = Vec::with_capacity(2048);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < 2048 {
        // Key-generation noise for certutil: any bytes do for a benchmark.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&noise, bytes).unwrap();
    for (i, name) in CERTS.iter().enumerate() {
        run(Command::new("certutil").args([
            "-S",
            "-d",
            &db,
            "-x",
            "-t",
            "CT,CT,CT",
            "-s",
            &format!("CN={name}"),
            "-n",
            name,
            "-k",
            "rsa",
            "-g",
            "2048",
            "-z",
            &noise.display().to_string(),
            "-m",
            &(101 + i).to_string(),
            "-v",
            "120",
        ]));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install libnss3-tools)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// libcacard's reader "Test" with its soft CAC card. libcacard keeps
/// global state, so there is one per process.
pub(crate) struct Libcacard {
    reader: NonNull<VReader>,
    send: Vec<u8>,
    recv: Vec<u8>,
}

impl Libcacard {
    /// `vcard_emul_init` on the NSS database in `db_dir` with a soft CAC
    /// holding [`CERTS`], then finds its reader.
    pub(crate) fn start(db_dir: &Path) -> Libcacard {
        assert!(
            !STARTED.swap(true, Ordering::SeqCst),
            "libcacard is initialised once per process"
        );
        let args = format!(
            "db=\"sql:{}\" use_hw=no soft=(,Test,CAC,,{})",
            db_dir.display(),
            CERTS.join(",")
        );
        // libcacard may keep pointers into its option string: keep it
        // alive for the whole process.
        let args: &'static CString = Box::leak(Box::new(CString::new(args).unwrap()));
        // SAFETY: `args` is a valid NUL-terminated string that lives
        // forever; vcard_emul_options only reads it and returns a pointer
        // to its own static option block (or NULL on a parse error).
        let options = unsafe { vcard_emul_options(args.as_ptr()) };
        assert!(
            !options.is_null(),
            "libcacard rejected its options: {args:?}"
        );
        // SAFETY: `options` came from vcard_emul_options just above and
        // STARTED guarantees this is the only initialisation.
        let rc = unsafe { vcard_emul_init(options) };
        assert_eq!(
            rc,
            VCARD_EMUL_OK,
            "vcard_emul_init failed on {}",
            db_dir.display()
        );
        let name = CString::new("Test").unwrap();
        // SAFETY: `name` is a valid NUL-terminated string for the call;
        // the function returns a new reference (never released: the
        // reader lives as long as the process) or NULL.
        let reader = unsafe { vreader_get_reader_by_name(name.as_ptr()) };
        let reader = NonNull::new(reader).expect("libcacard has no reader \"Test\"");
        Libcacard {
            reader,
            send: Vec::with_capacity(300),
            recv: vec![0; 65_538 + 2],
        }
    }

    /// Powers the card on and returns its ATR.
    pub(crate) fn power_on(&mut self) -> Vec<u8> {
        let mut atr = [0u8; 40];
        let mut len = atr.len() as c_int;
        // SAFETY: `reader` is a live reader reference; `atr` has room for
        // `len` bytes and libcacard writes at most that many, updating
        // `len`.
        let rc = unsafe { vreader_power_on(self.reader.as_ptr(), atr.as_mut_ptr(), &mut len) };
        assert_eq!(rc, VREADER_OK, "vreader_power_on: no card");
        atr[..len as usize].to_vec()
    }

    /// Sends one command APDU; appends the response APDU to `response`.
    pub(crate) fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) {
        // The C signature takes a mutable send buffer: hand it a copy.
        self.send.clear();
        self.send.extend_from_slice(command);
        let mut len = self.recv.len() as c_int;
        // SAFETY: `reader` is a live reader reference; `send` holds
        // `send.len()` initialised bytes; `recv` has room for `len` bytes
        // and libcacard copies at most `len` into it, updating `len`.
        let rc = unsafe {
            vreader_xfr_bytes(
                self.reader.as_ptr(),
                self.send.as_mut_ptr(),
                self.send.len() as c_int,
                self.recv.as_mut_ptr(),
                &mut len,
            )
        };
        assert_eq!(rc, VREADER_OK, "vreader_xfr_bytes: no card");
        response.extend_from_slice(&self.recv[..len as usize]);
    }
}
