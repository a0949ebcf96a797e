//! End to end in a real guest: QEMU's `usb-ccid` + `ccid-card-passthru`,
//! `vcac passthru` on the VSCard chardev, and inside a Linux guest the
//! host's own pcscd + libccid + OpenSC reading a certificate and signing.
//!
//! The guest is the shared test guest (`vcac_tests::guest::guest_image`:
//! Debian's kernel from `apt-get download`, an initramfs built from this
//! machine's binaries by `tests/qemu/build-guest.sh`, with
//! `tests/qemu/guest-init.sh` as `/init`), cached in `target/qemu-guest/`
//! and rebuilt when the scripts or the packages it copies change. Results
//! come back on the serial console as `@@VCAC <key> <value>` lines; the
//! certificate must equal `id0.pem` byte for byte and the signature must
//! verify with openssl on the host.
//!
//! Software emulation (TCG) by default; `VCAC_QEMU_ACCEL=kvm` to try KVM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;
use std::time::{Duration, Instant};

use vcac_tests::guest::{
    accel, assert_cac_in_usb_ccid, assert_read_and_signed, field, free_port, guest_image,
    qemu_version, require_guest_peers, results, usb_ccid_passthru_args, wait_for, Guest, VcacChild,
};
use vcac_tests::{pem_to_der, require_peers, vcac_bin, write_default_card};

/// The whole test must stay under 5 minutes; the guest run gets this.
const GUEST_TIMEOUT: Duration = Duration::from_secs(200);

/// APDUs in the in-guest round-trip measurement.
const RTT_APDUS: u32 = 200;

#[test]
fn opensc_in_a_qemu_guest_reads_the_certificate_and_signs() {
    let started = Instant::now();
    require_guest_peers(&[]);
    let qemu_version = qemu_version();

    let image = guest_image();
    let image_ready = started.elapsed();
    vcac_bin();
    let tmp = tempfile::tempdir().unwrap();
    let card_dir = tmp.path().join("card");
    write_default_card(&card_dir);

    let port = free_port();
    let args = usb_ccid_passthru_args(port);
    let mut guest = Guest::boot(
        &image,
        &args,
        &format!("vcac.pin=12345678 vcac.n={RTT_APDUS}"),
    );
    let mut passthru = VcacChild::spawn(
        &[
            "passthru",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--no-stdin",
            "--card",
            card_dir.to_str().unwrap(),
        ],
        &tmp.path().join("vcac.log"),
    );

    // The guest reboots (QEMU exits, -no-reboot) when it is done.
    guest.wait_exit(GUEST_TIMEOUT, || format!("--- vcac\n{}", passthru.log()));
    let guest_time = guest.elapsed();
    let serial = guest.serial();
    let r = results(&serial);
    let context = format!(
        "--- serial\n{serial}\n--- qemu stderr\n{}\n--- vcac\n{}",
        guest.stderr(),
        passthru.log()
    );
    if let Some((_, why)) = r.iter().find(|(k, _)| k == "fail") {
        panic!("the guest reports a failure: {why}\n{context}");
    }
    assert!(
        r.iter().any(|(k, _)| k == "ok"),
        "the guest did not finish\n{context}"
    );

    // OpenSC in the guest bound its CAC driver to our card behind QEMU's
    // reader.
    assert_cac_in_usb_ccid(&r, &serial);

    // The certificate read in the guest is the provisioned one, and the
    // guest's signature verifies on the host with id0.pem's key.
    let id0 = card_dir.join("id0.pem");
    assert_read_and_signed(
        &r,
        "",
        &pem_to_der(&id0),
        &id0,
        b"vcac in a QEMU guest",
        tmp.path(),
    );

    // The round trip: N extra APDUs, each answered; three measurements.
    let mut per_apdu_us = Vec::new();
    for (_, rtt) in r.iter().filter(|(k, _)| k == "rtt") {
        let n: u64 = field(rtt, "n").parse().unwrap();
        let one_ns: u64 = field(rtt, "one").parse().unwrap();
        let many_ns: u64 = field(rtt, "many").parse().unwrap();
        assert_eq!(n, u64::from(RTT_APDUS));
        assert_eq!(
            field(rtt, "answers").parse::<u64>().unwrap(),
            n + 1,
            "{rtt}"
        );
        assert_eq!(field(rtt, "sw"), "SW1=0x6A,SW2=0x82", "{rtt}");
        per_apdu_us.push(many_ns.saturating_sub(one_ns) as f64 / n as f64 / 1000.0);
    }
    assert_eq!(per_apdu_us.len(), 3, "{context}");
    per_apdu_us.sort_by(f64::total_cmp);

    // vcac registered with QEMU and announced the card; SIGTERM makes it
    // leave cleanly (QEMU is gone: it is reconnecting by now).
    let log = passthru.log();
    assert!(
        log.contains("registered with the host as reader 0"),
        "{log}"
    );
    assert!(
        log.contains("announced (ATR 3B7A18000073667465206364313434)"),
        "{log}"
    );
    let status = passthru.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "vcac passthru exited with {status}:\n{}",
        passthru.log()
    );

    let phases: Vec<String> = r
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.replace(' ', "="))
        .collect();
    println!(
        "qemu guest test: {qemu_version}, accel {}; guest image {} ({:.1} s); \
         guest run {:.1} s (guest uptime at phases: {}); total {:.1} s",
        accel(),
        if image.cached { "cached" } else { "built" },
        image_ready.as_secs_f64(),
        guest_time.as_secs_f64(),
        phases.join(" "),
        started.elapsed().as_secs_f64()
    );
    println!(
        "APDU round trip inside the guest (opensc-tool -s x {RTT_APDUS}, pcscd + libccid + USB + \
         QEMU usb-ccid + VSCard + vcac): best {:.0} µs, median {:.0} µs per APDU (runs: {})",
        per_apdu_us[0],
        per_apdu_us[1],
        per_apdu_us
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// QEMU without a guest (`-S`: devices realized, CPUs stopped): enough for
/// the chardev and `ccid-card-passthru` to speak VSCard. Its stdout carries
/// the device's debug lines (`debug=4`).
fn qemu_without_guest(chardev: &str) -> Guest {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-S", "-machine", "pc", "-accel", "tcg", "-usb"])
        .args(["-device", "usb-ccid", "-chardev", chardev])
        .args(["-device", "ccid-card-passthru,chardev=cc,debug=4"])
        .args(["-display", "none", "-serial", "none", "-monitor", "none"]);
    Guest::start(qemu)
}

/// `vcac passthru` in both socket roles follows QEMU through restarts; each
/// time QEMU's ccid-card-passthru accepts the ATR.
#[test]
fn vcac_passthru_follows_qemu_restarts_in_both_socket_roles() {
    require_peers(&["qemu-system-x86_64"]);
    vcac_bin();
    let tmp = tempfile::tempdir().unwrap();
    for role in ["connect", "listen"] {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let chardev = if role == "connect" {
            format!("socket,server=on,wait=off,host=127.0.0.1,port={port},id=cc")
        } else {
            format!("socket,host=127.0.0.1,port={port},reconnect=1,id=cc")
        };
        let mut vcac = VcacChild::spawn(
            &["passthru", &format!("--{role}"), &addr, "--no-stdin"],
            &tmp.path().join(format!("vcac-{role}.log")),
        );
        let read_log = || vcac.log();
        if role == "listen" {
            wait_for(
                "vcac to listen",
                Duration::from_secs(10),
                || read_log().contains("waiting for a VSCard host"),
                read_log,
            );
        } else {
            // QEMU is not there yet: vcac keeps trying.
            wait_for(
                "vcac to retry",
                Duration::from_secs(10),
                || read_log().contains("cannot reach"),
                read_log,
            );
        }
        for round in 1..=2 {
            let qemu = qemu_without_guest(&chardev);
            let qemu_text = || format!("{}{}", qemu.serial(), qemu.stderr());
            let both = || format!("--- vcac\n{}\n--- qemu\n{}", read_log(), qemu_text());
            wait_for(
                &format!("{role} round {round}: the card announced to QEMU"),
                Duration::from_secs(20),
                || read_log().matches("card in reader #0 announced").count() == round,
                both,
            );
            wait_for(
                "QEMU to accept the ATR",
                Duration::from_secs(10),
                || qemu_text().contains("atr passes check"),
                both,
            );
            assert!(!qemu_text().contains("ATR is inconsistent"), "{}", both());
            assert!(!qemu_text().contains("unexpected message"), "{}", both());
            // QEMU goes away.
            drop(qemu);
            wait_for(
                "vcac to notice QEMU left",
                Duration::from_secs(10),
                || read_log().matches("closed the connection").count() == round,
                read_log,
            );
        }
        let status = vcac.terminate(Duration::from_secs(10));
        assert!(status.success(), "{}", vcac.log());
    }
}
