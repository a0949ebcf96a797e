//! libvirt's `host` mode in a real guest: Debian's QEMU 7.2 with
//! `-device usb-ccid -device ccid-card-emulated,backend=nss-emulated`
//! (what `<smartcard mode='host'/>` becomes) loading **vcac's**
//! `libcacard.so.0` (first in `LD_LIBRARY_PATH`). QEMU calls
//! `vcard_emul_init(NULL)`: the library reads `/etc/pki/nssdb/pkcs11.txt`
//! and mirrors every removable hardware token of the modules listed there.
//!
//! `/etc/pki/nssdb` exists only in QEMU's private mount namespace
//! (`unshare -m`, an overlay on `/etc` and a bind mount of a test
//! database made with `modutil`). The token is a SoftHSM2 key: SoftHSM's
//! slots are not hardware slots (no `CKF_HW_SLOT`; libcacard 2.8.0
//! mirrors none of them with `use_hw=yes`), so the key reaches the
//! database the way a hardware token does: `vcac serve --pkcs11
//! libsofthsm2.so` presents it as a CAC in a private pcscd (vpcd), and the
//! database lists OpenSC's PKCS#11 module, whose reader slots are
//! removable hardware slots.
//!
//! ```text
//!  softhsm key ─► vcac serve --pkcs11 ─► vpcd ─► pcscd ─► opensc-pkcs11.so
//!      ─► our libcacard.so.0 (pkcs11.txt) ─► QEMU ccid-card-emulated ─► guest OpenSC
//! ```
//!
//! The guest reads certificate 0001 (equal to the one written to the
//! token) and signs with the token's PIN; the host verifies the signature
//! with openssl. Then the host card goes away and the guest's reader must
//! empty.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use vcac_tests::guest::{
    assert_cac_bound, assert_read_and_signed, guest_image, libcacard_dropin, results, with_init,
    workspace_root, Guest, CCID_DRIVER,
};
use vcac_tests::softhsm::{KeySpec, Slot, TestToken, SOFTHSM};
use vcac_tests::{check, require_peers, softhsm_conf, vcac_bin, PcscEnv, OPENSC_PKCS11};

const PIN: &str = "77777777";
const LABEL: &str = "host mode token";
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A SoftHSM2 token with one RSA-2048 key pair generated in it (id 01)
/// and a certificate for it written back. Returns the configuration and
/// the certificate (DER, PEM).
fn make_token(dir: &Path) -> (PathBuf, Vec<u8>, PathBuf) {
    let conf = softhsm_conf(dir, "");
    let token = TestToken {
        label: LABEL,
        so_pin: "12345678",
        pin: PIN,
        slot: Slot::Free,
        ca_subject: "/CN=host mode test CA",
        keys: vec![KeySpec {
            id: "01".into(),
            label: "host key".into(),
            bits: 2048,
            subject: "/CN=host mode user".into(),
            serial: 0x4242,
        }],
        ca_object: None,
    };
    let cert = token.make(&conf, dir).certs.remove(0);
    (conf, std::fs::read(&cert.der).unwrap(), cert.pem)
}

/// `vcac serve --pkcs11` inside the pcscd namespace; killed on drop.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            vcac_tests::terminate(&mut c, Duration::from_secs(5));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn libvirt_host_mode_guest_signs_with_a_host_token_through_our_libcacard() {
    require_peers(&[
        "qemu-system-x86_64",
        "/usr/lib/x86_64-linux-gnu/qemu/hw-usb-smartcard.so",
        "softhsm2-util",
        "pkcs11-tool",
        "modutil",
        "openssl",
        "unshare",
        "nsenter",
        "/bin/busybox",
        SOFTHSM,
        OPENSC_PKCS11,
        CCID_DRIVER,
    ]);
    let mut env = PcscEnv::vpcd();
    let work = env.dir().join("host-mode");
    std::fs::create_dir(&work).unwrap();
    let (conf, cert_der, cert_pem) = make_token(&work);

    // The token as a CAC in the second vpcd reader ("Virtual PCD 00 01"):
    // QEMU's event thread follows the reader of the last READER_INSERT,
    // and libcacard announces the slots in OpenSC's order.
    let log = work.join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = env
        .command(vcac_bin())
        .args([
            "serve",
            "--pkcs11",
            SOFTHSM,
            "--token",
            LABEL,
            "--vpcd",
            "127.0.0.1:35964",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut serve = Serve {
        child: Some(child),
        log,
    };
    env.wait_for_card(1);

    // The database QEMU will find at /etc/pki/nssdb: OpenSC's module.
    let db = work.join("nssdb");
    std::fs::create_dir(&db).unwrap();
    let spec = format!("sql:{}", db.display());
    for args in [
        vec!["-create", "-dbdir", &spec, "-force"],
        vec![
            "-add",
            "OpenSC",
            "-libfile",
            OPENSC_PKCS11,
            "-dbdir",
            &spec,
            "-force",
        ],
    ] {
        check(
            Command::new("modutil")
                .args(&args)
                .stdin(std::process::Stdio::null()),
        );
    }
    let listed = std::fs::read_to_string(db.join("pkcs11.txt")).unwrap();
    assert!(
        listed.contains(&format!("library={OPENSC_PKCS11}")),
        "{listed}"
    );
    // OpenSC in QEMU: no hot-plug slot (it would be announced last and
    // take QEMU's attention from the card's reader), no file cache.
    let opensc_conf = work.join("opensc-qemu.conf");
    std::fs::write(
        &opensc_conf,
        "app default {\n  framework pkcs15 { use_file_caching = false; }\n  \
         pkcs11 { plug_and_play = false; }\n}\n\
         app opensc-pkcs11 {\n  pkcs11 { plug_and_play = false; }\n}\n",
    )
    .unwrap();

    let lib_dir = work.join("lib");
    std::fs::create_dir(&lib_dir).unwrap();
    let ours = libcacard_dropin(&lib_dir);
    let image = with_init(
        &guest_image(),
        &workspace_root().join("tests/src/hostmode-init.sh"),
        &work.join("initramfs-hostmode.cpio"),
    );

    // QEMU in the pcscd namespace, in a mount namespace of its own where
    // /etc has an overlay holding pki/nssdb = the test database.
    let ovl = work.join("etc-overlay");
    std::fs::create_dir(&ovl).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs none {o}; mkdir {o}/upper {o}/work; \
         mount -t overlay overlay -o lowerdir=/etc,upperdir={o}/upper,workdir={o}/work /etc; \
         mkdir -p /etc/pki/nssdb; mount --bind {db} /etc/pki/nssdb; exec \"$0\" \"$@\"",
        o = ovl.display(),
        db = db.display()
    );
    let mut wrapper = env.command("unshare");
    wrapper.args([
        "-m",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
        "qemu-system-x86_64",
    ]);
    let args: Vec<String> = vec![
        "-machine".into(),
        "pc".into(),
        "-usb".into(),
        "-device".into(),
        "usb-ccid,id=ccid".into(),
        "-device".into(),
        "ccid-card-emulated,id=card0,backend=nss-emulated".into(),
    ];
    let mut guest = Guest::boot_wrapped(
        &image,
        &args,
        &format!("vcac.pin={PIN}"),
        &[
            ("LD_LIBRARY_PATH", lib_dir.as_os_str()),
            ("OPENSC_CONF", opensc_conf.as_os_str()),
        ],
        wrapper,
    );
    let context = || {
        let log = env.pcscd_log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "--- vcac serve\n{}\n--- pcscd log tail\n{}",
            serve.log(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    guest.wait_line("wait remove", GUEST_TIMEOUT, context);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", guest.pid())).unwrap_or_default();
    assert!(
        maps.contains(s(&ours)),
        "our library is not mapped into QEMU:\n{maps}"
    );
    assert!(
        !maps.contains("libnss3") && !maps.contains("/libcacard.so.0.0.0"),
        "QEMU maps NSS or Debian's libcacard:\n{maps}"
    );
    assert!(maps.contains("opensc-pkcs11.so"), "{maps}");

    let serial = guest.serial();
    let r = results(&serial);
    assert!(
        !r.iter().any(|(k, _)| k == "fail"),
        "{serial}\n{}",
        guest.stderr()
    );
    assert_cac_bound(&r, &serial);
    // The token's certificate and key.
    assert_read_and_signed(
        &r,
        "",
        &cert_der,
        &cert_pem,
        b"signed in the guest with a host token",
        &work,
    );

    // The host card goes: OpenSC's slot empties, our library queues
    // CARD_REMOVE, QEMU detaches the card, the guest's reader empties.
    serve.stop();
    let log = serve.log();
    guest.wait_line("ok", Duration::from_secs(120), || {
        format!("--- vcac serve\n{log}")
    });
    guest.wait_exit(Duration::from_secs(60), String::new);
    let r = results(&guest.serial());
    assert!(
        r.iter().any(|(k, v)| k == "gone" && v.contains("No")),
        "{}",
        guest.serial()
    );
}
