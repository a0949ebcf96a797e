//! A host card relayed into a real guest over VSCard: `vcac passthru
//! --pcsc-reader NAME` (vscclient's job) takes the card in a reader of a
//! private pcscd — a `vcac serve` CAC plugged in through vpcd — and gives
//! it to QEMU's `usb-ccid` + `ccid-card-passthru`. In the guest, OpenSC
//! binds the CAC, reads certificate 0001 (equal to the served card's
//! `id0.pem`) and signs with the PIN; the host verifies the signature.
//! Then the host card goes away and the guest's reader must empty.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Stdio;
use std::time::Duration;

use vcac_tests::guest::{
    assert_cac_bound, assert_read_and_signed, free_port, guest_image, results,
    usb_ccid_passthru_args, with_init, workspace_root, Guest, CCID_DRIVER,
};
use vcac_tests::{pem_to_der, require_peers, vcac_bin, PcscEnv, OPENSC_PKCS11};

const HOST_READER: &str = "Virtual PCD 00 00";
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn a_host_pcsc_card_relayed_over_vscard_is_bound_and_signs_in_a_guest() {
    require_peers(&[
        "qemu-system-x86_64",
        "/usr/lib/x86_64-linux-gnu/qemu/hw-usb-smartcard.so",
        "/bin/busybox",
        "openssl",
        OPENSC_PKCS11,
        CCID_DRIVER,
    ]);
    let mut env = PcscEnv::vpcd();
    // vcac 0: the host card.
    env.spawn_vcac(&["serve"]);
    env.wait_for_card(0);
    let work = env.dir().join("relay-guest");
    std::fs::create_dir(&work).unwrap();
    let cert_pem = work.join("id0.pem");
    std::fs::write(&cert_pem, certs_fixtures::default_card::ID0_PEM).unwrap();
    let cert_der = pem_to_der(&cert_pem);

    let image = with_init(
        &guest_image(),
        &workspace_root().join("tests/src/hostmode-init.sh"),
        &work.join("initramfs-relay.cpio"),
    );
    // QEMU in the pcscd's network namespace, where vcac passthru reaches
    // it on the loopback.
    let port = free_port();
    let args = usb_ccid_passthru_args(port);
    let mut guest = Guest::boot_wrapped(
        &image,
        &args,
        &format!("vcac.pin={}", certs_fixtures::default_card::PIN),
        &[],
        env.command("qemu-system-x86_64"),
    );
    // vcac 1: the relay, connecting to QEMU's chardev (retrying until it
    // listens).
    let log = work.join("relay.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut relay = env
        .command(vcac_bin())
        .args([
            "passthru",
            "--pcsc-reader",
            HOST_READER,
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--no-stdin",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let relay_log = || std::fs::read_to_string(&log).unwrap_or_default();
    guest.wait_line("wait remove", GUEST_TIMEOUT, || {
        format!("--- vcac passthru\n{}", relay_log())
    });
    let serial = guest.serial();
    let r = results(&serial);
    assert!(!r.iter().any(|(k, _)| k == "fail"), "{serial}");
    assert_cac_bound(&r, &serial);
    assert_read_and_signed(
        &r,
        "",
        &cert_der,
        &cert_pem,
        b"signed in the guest with a host token",
        &work,
    );

    // The host card goes: the relay removes it over VSCard.
    let host_card = env.vcac_pid(0);
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &host_card.to_string()])
        .status()
        .unwrap()
        .success());
    guest.wait_line("ok", Duration::from_secs(120), || {
        format!("--- vcac passthru\n{}", relay_log())
    });
    guest.wait_exit(Duration::from_secs(60), String::new);
    let r = results(&guest.serial());
    assert!(
        r.iter().any(|(k, v)| k == "gone" && v.contains("No")),
        "{}",
        guest.serial()
    );
    let text = relay_log();
    assert!(text.contains("card removed"), "{text}");
    let _ = relay.kill();
    let _ = relay.wait();
}
