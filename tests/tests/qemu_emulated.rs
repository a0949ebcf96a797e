//! End to end in a real guest with the card emulated inside QEMU: Debian's
//! QEMU 7.2 `-device usb-ccid -device ccid-card-emulated,backend=certificates`
//! loading **vcac's** `libcacard.so.0` (first in `LD_LIBRARY_PATH`), which
//! reads an NSS `sql:` database made by `certutil`/`pk12util` without NSS.
//!
//! In the guest, the host's pcscd + libccid + OpenSC bind the CAC, read
//! certificate 0001 (it must equal `certutil -L -r -n cert1` byte for byte)
//! and sign with the database password as PIN (verified with openssl on
//! the host). `/proc/<qemu>/maps` must show our library and no
//! libnss3/libnspr4. Then QMP `device_del` unplugs the card device and
//! `device_add` plugs it back (QEMU calls `vcard_emul_options` and
//! `vcard_emul_replay_insertion_events`); the guest reads and signs again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vcac_tests::guest::{
    assert_cac_in_usb_ccid, assert_read_and_signed, guest_image, libcacard_dropin, one,
    qemu_version, results, with_init, workspace_root, Guest, Qmp, CCID_DRIVER,
};
use vcac_tests::nss::{make_nssdb, three_identities};
use vcac_tests::{check, OPENSC_PKCS11};

/// The NSS database password, which is the card's PIN. Eight characters:
/// OpenSC's CAC driver takes PINs of at most 8.
const DB_PASSWORD: &str = "58291034";

const GUEST_TIMEOUT: Duration = Duration::from_secs(240);

/// QEMU's option string is 199 bytes at most; the database path must
/// leave room for the rest.
const MAX_DB_LEN: usize = 100;

/// Fails (never skips) unless every peer exists, naming its Debian package.
fn require(peers: &[(&str, &str)]) {
    let missing: Vec<String> = peers
        .iter()
        .filter(|(what, _)| {
            if what.starts_with('/') {
                !Path::new(what).exists()
            } else {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {what}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            }
        })
        .map(|(what, pkg)| format!("{what} (Debian package {pkg})"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing peer(s): {}; install them with apt-get",
        missing.join(", ")
    );
}

/// The shared objects mapped into process `pid`.
fn mapped_objects(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
    let mut objs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect();
    objs.sort();
    objs.dedup();
    objs
}

/// Our library is mapped into QEMU, no NSS/NSPR and no other libcacard.
fn assert_no_nss(pid: u32, ours: &Path, when: &str) {
    let objs = mapped_objects(pid);
    let ours = ours.to_str().unwrap();
    assert!(
        objs.iter().any(|o| o == ours),
        "{when}: {ours} is not mapped into QEMU:\n{}",
        objs.join("\n")
    );
    assert!(
        objs.iter()
            .any(|o| o.ends_with("/qemu/hw-usb-smartcard.so")),
        "{when}: QEMU's smart-card module is not loaded:\n{}",
        objs.join("\n")
    );
    let bad: Vec<&String> = objs
        .iter()
        .filter(|o| {
            let name = o.rsplit('/').next().unwrap_or_default();
            name.starts_with("libnss3")
                || name.starts_with("libnspr4")
                || name.starts_with("libsoftokn3")
                || name.starts_with("libnssutil3")
                || (name.starts_with("libcacard") && o.as_str() != ours)
        })
        .collect();
    assert!(bad.is_empty(), "{when}: QEMU maps {bad:?}");
}

#[test]
fn ccid_card_emulated_on_our_libcacard_in_a_qemu_guest() {
    let started = Instant::now();
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        (
            "/usr/lib/x86_64-linux-gnu/qemu/hw-usb-smartcard.so",
            "qemu-system-common",
        ),
        ("certutil", "libnss3-tools"),
        ("pk12util", "libnss3-tools"),
        ("openssl", "openssl"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("/bin/busybox", "busybox-static"),
        ("pcscd", "pcscd"),
        ("opensc-tool", "opensc"),
        ("pkcs11-tool", "opensc"),
        (OPENSC_PKCS11, "opensc-pkcs11"),
        (CCID_DRIVER, "libccid"),
    ]);
    let qemu_version = qemu_version();

    let tmp = tempfile::tempdir().unwrap();
    let lib_dir = tmp.path().join("lib");
    std::fs::create_dir(&lib_dir).unwrap();
    let ours = libcacard_dropin(&lib_dir);
    let built = started.elapsed();

    // The NSS database: three nicknames, and cert1's DER as NSS holds it.
    let db = tmp.path().join("nssdb");
    let spec = format!("sql:{}", db.display());
    assert!(spec.len() < MAX_DB_LEN, "database path too long: {spec}");
    let pki = three_identities(1313);
    make_nssdb(tmp.path(), &db, Some(DB_PASSWORD), &pki);
    let listing = check(Command::new("certutil").args(["-L", "-d", &spec])).stdout;
    let listing = String::from_utf8_lossy(&listing).into_owned();
    let mut nicknames: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("cert"))
        .collect();
    nicknames.sort_unstable();
    assert_eq!(nicknames, ["cert1", "cert2", "cert3"], "{listing}");
    let cert1_der =
        check(Command::new("certutil").args(["-L", "-r", "-n", "cert1", "-d", &spec])).stdout;
    assert_eq!(
        cert1_der,
        pki.identities()[0].credential().cert_der(),
        "NSS holds another cert1"
    );
    let cert1_pem = tmp.path().join("cert1.pem");
    std::fs::write(&cert1_pem, pki.identities()[0].credential().cert_pem()).unwrap();
    let db_ready = started.elapsed();

    let image = with_init(
        &guest_image(),
        &workspace_root().join("tests/src/emulated-init.sh"),
        &tmp.path().join("initramfs-emulated.cpio"),
    );
    let image_ready = started.elapsed();

    let qmp_path = tmp.path().join("qmp.sock");
    let card_props = format!(
        "ccid-card-emulated,id=card0,backend=certificates,db={spec},cert1=cert1,cert2=cert2,cert3=cert3"
    );
    let args: Vec<String> = vec![
        "-machine".into(),
        "pc".into(),
        "-usb".into(),
        "-device".into(),
        "usb-ccid,id=ccid".into(),
        "-device".into(),
        card_props,
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp_path.display()),
    ];
    let boot = Instant::now();
    let mut guest = Guest::boot_with_env(
        &image,
        &args,
        &format!("vcac.pin={DB_PASSWORD}"),
        &[("LD_LIBRARY_PATH", lib_dir.as_os_str())],
    );
    let mut qmp = Qmp::connect(&qmp_path, Duration::from_secs(30));
    // The device is realized before QMP answers: the module and its
    // libcacard are loaded by now.
    assert_no_nss(guest.pid(), &ours, "at boot");

    guest.wait_line("wait remove", GUEST_TIMEOUT, String::new);
    let first_read = boot.elapsed();
    let r = results(&guest.serial());
    let serial = guest.serial();
    assert_cac_in_usb_ccid(&r, &serial);
    // cert1_der is what NSS holds (certutil -L -r), checked above.
    assert_read_and_signed(
        &r,
        "1",
        &cert1_der,
        &cert1_pem,
        b"vcac ccid-card-emulated 1",
        tmp.path(),
    );

    // Unplug the card device: QEMU queues VEVENT_LAST and joins its threads.
    qmp.ok(r#"{"execute":"device_del","arguments":{"id":"card0"}}"#);
    qmp.wait_event("DEVICE_DELETED", "card0", Duration::from_secs(30));
    guest.wait_line("wait insert", Duration::from_secs(150), || {
        format!("--- qmp events\n{:?}", qmp.events)
    });
    let r = results(&guest.serial());
    assert!(
        r.iter()
            .any(|(k, v)| k == "gone" && v.contains("No") && v.contains("433-Swap")),
        "the reader should stay, empty:\n{}",
        guest.serial()
    );
    // Plug it back: vcard_emul_options, then the replay of the insertion.
    qmp.ok(&format!(
        r#"{{"execute":"device_add","arguments":{{"driver":"ccid-card-emulated","id":"card0","backend":"certificates","db":"{spec}","cert1":"cert1","cert2":"cert2","cert3":"cert3"}}}}"#
    ));
    // Checked while the guest is still waiting for the card: once it has
    // printed "ok" it powers off and QEMU's maps are gone.
    assert_no_nss(guest.pid(), &ours, "after device_add");
    guest.wait_line("ok", Duration::from_secs(120), String::new);
    guest.wait_exit(Duration::from_secs(60), String::new);
    let guest_time = boot.elapsed();

    let serial = guest.serial();
    let r = results(&serial);
    assert!(!r.iter().any(|(k, _)| k == "fail"), "{serial}");
    assert_eq!(one(&r, "name2", &serial), "Common Access Card (CAC)");
    // After device_add.
    assert_read_and_signed(
        &r,
        "2",
        &cert1_der,
        &cert1_pem,
        b"vcac ccid-card-emulated 2",
        tmp.path(),
    );

    let phases: Vec<String> = r
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.replace(' ', "="))
        .collect();
    println!(
        "qemu ccid-card-emulated test: {qemu_version}; libcacard built {:.1} s, NSS db {:.1} s, \
         guest image {} {:.1} s; first read+sign at {:.1} s, guest run {:.1} s (guest uptime at \
         phases: {}); total {:.1} s",
        built.as_secs_f64(),
        (db_ready - built).as_secs_f64(),
        if image.cached { "cached" } else { "built" },
        (image_ready - db_ready).as_secs_f64(),
        first_read.as_secs_f64(),
        guest_time.as_secs_f64(),
        phases.join(" "),
        started.elapsed().as_secs_f64()
    );
}
