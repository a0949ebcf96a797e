//! End to end in a real guest over usbredir: QEMU 7.2 with only `-device
//! usb-redir` (no usb-ccid, no smart-card code in QEMU) and `vcac
//! usbredir --connect` on its chardev. In the guest, the host's own pcscd
//! and libccid (USB) list the reader, OpenSC's CAC driver binds, reads
//! certificate 0001 byte for byte and signs (verified on the host), signs
//! again with the PIN from vcac's virtual PIN pad, and sees `remove`,
//! `insert`, `unplug`, `plug` and `exit` typed on vcac's stdin as card
//! removal and insertion, the reader leaving the bus and coming back on
//! the same connection (the certificate read again), and leaving for good. Once on `-machine pc -usb` (UHCI), once
//! on `-machine q35 -device qemu-xhci`, both with the default data path
//! (the CCID data endpoints described to QEMU as interrupt endpoints), and
//! once more on UHCI with `--data-path bulk`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use vcac_tests::guest::{
    assert_rsa_signature, free_port, joined_hex, one, qemu_version, require_guest_peers, results,
    usbredir_guest_image, Guest, VcacChild,
};
use vcac_tests::{pem_to_der, vcac_bin, write_default_card};

/// One guest at a time: two TCG guests on two CPUs only slow each other.
static ONE_GUEST: Mutex<()> = Mutex::new(());

const GUEST_TIMEOUT: Duration = Duration::from_secs(240);
const RTT_APDUS: u32 = 200;

fn run_guest(machine: &str, data_path: &str) {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    require_guest_peers(&[]);
    let qemu_version = qemu_version();
    let image = usbredir_guest_image();
    let image_time = started.elapsed();
    vcac_bin();
    let tmp = tempfile::tempdir().unwrap();
    let card = tmp.path().join("card");
    write_default_card(&card);

    let port = free_port();
    let (mut args, hc): (Vec<String>, &str) = match machine {
        "pc" => (vec!["-machine".into(), "pc".into(), "-usb".into()], "uhci"),
        _ => (
            vec![
                "-machine".into(),
                "q35".into(),
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
            ],
            "xhci",
        ),
    };
    args.push("-chardev".into());
    args.push(format!(
        "socket,server=on,wait=off,host=127.0.0.1,port={port},id=ur"
    ));
    args.push("-device".into());
    args.push(if hc == "xhci" {
        "usb-redir,chardev=ur,bus=xhci.0".into()
    } else {
        "usb-redir,chardev=ur".into()
    });
    let mut guest = Guest::boot(
        &image,
        &args,
        &format!("vcac.pin=12345678 vcac.hc={hc} vcac.hotplug=1 vcac.pinpad=1 vcac.n={RTT_APDUS}"),
    );
    let addr = format!("127.0.0.1:{port}");
    let mut vcac = VcacChild::spawn(
        &[
            "usbredir",
            "--connect",
            &addr,
            "--card",
            card.to_str().unwrap(),
            "--pinpad",
            "auto",
            "--data-path",
            data_path,
        ],
        &tmp.path().join("vcac.log"),
    );
    let log = |v: &VcacChild| format!("--- vcac\n{}", v.log());

    // Hot-plug, driven from vcac's standard input.
    guest.wait_line("wait remove", GUEST_TIMEOUT, || log(&vcac));
    vcac.command("remove");
    guest.wait_line("wait insert", Duration::from_secs(60), || log(&vcac));
    vcac.command("insert");
    guest.wait_line("wait replug", Duration::from_secs(60), || log(&vcac));
    vcac.command("unplug");
    guest.wait_line("hotplug detached", Duration::from_secs(60), || log(&vcac));
    vcac.command("plug");
    guest.wait_line("wait unplug", Duration::from_secs(120), || log(&vcac));
    vcac.command("exit");
    let status = vcac.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "vcac usbredir exited with {status}\n{}",
        log(&vcac)
    );
    guest.wait_exit(Duration::from_secs(60), || log(&vcac));
    let guest_time = guest.elapsed();

    let serial = guest.serial();
    let r = results(&serial);
    let context = format!(
        "--- serial\n{serial}\n--- qemu\n{}\n{}",
        guest.stderr(),
        log(&vcac)
    );
    if let Some((_, why)) = r.iter().find(|(k, _)| k == "fail") {
        panic!("the guest reports a failure: {why}\n{context}");
    }
    assert!(
        r.iter().any(|(k, _)| k == "ok"),
        "the guest did not finish\n{context}"
    );

    // The guest's USB stack enumerated our reader at full speed, libccid
    // bound it by its VID:PID, OpenSC bound the CAC.
    assert_eq!(one(&r, "usb", &serial), "08e6:4433 speed 12", "{context}");
    assert!(
        r.iter().any(|(k, v)| k == "readers"
            && v.contains("Yes")
            && v.contains("Gemalto Gemplus USB SmartCard Reader 433-Swap")),
        "{context}"
    );
    assert_eq!(
        one(&r, "atr", &serial),
        "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34"
    );
    assert_eq!(one(&r, "name", &serial), "Common Access Card (CAC)");

    let cert = joined_hex(&r, "cert");
    assert_eq!(
        cert,
        pem_to_der(&card.join("id0.pem")),
        "certificate 0001 read in the guest differs from id0.pem"
    );
    let data = joined_hex(&r, "data");
    assert_eq!(data, b"vcac over usbredir");
    let sig = joined_hex(&r, "sig");
    assert_eq!(sig.len(), 256, "RSA-2048 signature");
    assert_rsa_signature(&card.join("id0.pem"), &data, &sig, tmp.path());

    // The PIN pad: the token reports a protected authentication path and
    // a login without --pin signs.
    assert_eq!(
        one(&r, "pinpad-token", &serial),
        "protected-authentication-path",
        "{context}"
    );
    let pdata = joined_hex(&r, "pdata");
    assert_eq!(pdata, b"signed through the PIN pad");
    let psig = joined_hex(&r, "psig");
    assert_rsa_signature(&card.join("id0.pem"), &pdata, &psig, tmp.path());

    // Hot-plug as the guest saw it.
    assert_eq!(one(&r, "hotplug", &serial), "removed 1", "{context}");
    assert!(
        r.iter()
            .any(|(k, v)| k == "hotplug" && v == "inserted Common Access Card (CAC)"),
        "{context}"
    );
    assert!(
        r.iter()
            .any(|(k, v)| k == "hotplug" && v == "replugged Common Access Card (CAC)"),
        "{context}"
    );
    assert_eq!(
        joined_hex(&r, "recert"),
        pem_to_der(&card.join("id0.pem")),
        "certificate 0001 read after the re-plug differs from id0.pem"
    );
    assert!(
        r.iter().any(|(k, v)| k == "hotplug" && v == "unplugged"),
        "{context}"
    );
    let vlog = vcac.log();
    assert!(vlog.contains("device presented"), "{vlog}");
    assert!(vlog.contains("disconnect acknowledged"), "{vlog}");
    assert!(
        vlog.contains("unplugging the device (the connection stays)")
            && vlog.contains("plugging the device in again"),
        "{vlog}"
    );
    assert_eq!(
        vlog.matches("connected to the usbredir peer").count(),
        1,
        "one connection for the whole run: {vlog}"
    );
    assert!(
        !guest.stderr().contains("error"),
        "QEMU complained: {context}"
    );

    let mut per_apdu_us = Vec::new();
    for (_, rtt) in r.iter().filter(|(k, _)| k == "rtt") {
        let field = |name: &str| -> u64 {
            rtt.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in \"{rtt}\""))
                .parse()
                .unwrap()
        };
        assert_eq!(field("answers"), u64::from(RTT_APDUS) + 1, "{rtt}");
        per_apdu_us.push(
            field("many").saturating_sub(field("one")) as f64 / f64::from(RTT_APDUS) / 1000.0,
        );
    }
    assert_eq!(per_apdu_us.len(), 3, "{context}");
    per_apdu_us.sort_by(f64::total_cmp);
    let phases: Vec<String> = r
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.replace(' ', "="))
        .collect();
    println!(
        "usbredir guest test ({machine}, {hc}, data path {data_path}): {qemu_version}; guest image {} ({:.1} s); guest run \
         {:.1} s (uptime at phases: {}); total {:.1} s; APDU round trip in the guest: best {:.0} µs, \
         median {:.0} µs",
        if image.cached { "cached" } else { "built" },
        image_time.as_secs_f64(),
        guest_time.as_secs_f64(),
        phases.join(" "),
        started.elapsed().as_secs_f64(),
        per_apdu_us[0],
        per_apdu_us[1]
    );
}

#[test]
fn pc_uhci_guest_reads_signs_pinpad_and_hotplug_over_usbredir() {
    run_guest("pc", "interrupt");
}

#[test]
fn q35_xhci_guest_reads_signs_pinpad_and_hotplug_over_usbredir() {
    run_guest("q35", "interrupt");
}

#[test]
fn pc_uhci_guest_over_usbredir_with_bulk_data_endpoints() {
    run_guest("pc", "bulk");
}
