//! The APDU round trip a guest sees over usbredir (`vcac usbredir`)
//! against QEMU's own `usb-ccid` + `ccid-card-passthru` (`vcac passthru`),
//! in the same guest: one QEMU (`-machine pc -usb`, TCG) with both
//! readers on its UHCI bus. Inside, pcscd + libccid see two readers and
//! `tests/src/latency-init.sh` alternates rounds between them: per round
//! and reader, `opensc-tool -r N -s APDU` once with 1 APDU and once with
//! 1 + K; round trip = time difference / K. Target: usbredir no slower
//! (ratio ≤ 1.0); a missed target is reported, not a failure.
//!
//! ```sh
//! cargo bench -p vcac-benches --bench usbredir_latency   # K = 200, 5 rounds
//! ```
//!
//! Under `cargo test --benches` it runs one round with K = 10, as a smoke
//! test. It fails (never skips) without QEMU, pcscd, libccid or OpenSC.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use vcac_tests::guest::{
    field, free_port, output, results, usbredir_guest_image, with_init, workspace_root, Guest,
    VcacChild, CCID_DRIVER,
};
use vcac_tests::{require_peers, vcac_bin, write_default_card};

const READERS: [&str; 2] = ["usbredir", "usb-ccid"];

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (k, rounds) = if full { (200_u32, 5_usize) } else { (10, 1) };
    let started = Instant::now();
    require_peers(&[
        "qemu-system-x86_64",
        "apt-get",
        "dpkg-deb",
        "/bin/busybox",
        "pcscd",
        "opensc-tool",
        CCID_DRIVER,
    ]);
    let qemu_version = output("qemu-system-x86_64", &["--version"]);
    let qemu_version = qemu_version.lines().next().unwrap_or_default().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let image = with_init(
        &usbredir_guest_image(),
        &workspace_root().join("tests/src/latency-init.sh"),
        &tmp.path().join("initramfs-latency.cpio"),
    );
    vcac_bin();
    let (redir_card, ccid_card) = (tmp.path().join("card-redir"), tmp.path().join("card-ccid"));
    write_default_card(&redir_card);
    write_default_card(&ccid_card);

    let (redir_port, ccid_port) = (free_port(), free_port());
    let chardev = |port: u16, id: &str| {
        format!("socket,server=on,wait=off,host=127.0.0.1,port={port},id={id}")
    };
    let args: Vec<String> = [
        "-machine",
        "pc",
        "-usb",
        "-device",
        "usb-ccid",
        "-chardev",
        &chardev(ccid_port, "cc"),
        "-device",
        "ccid-card-passthru,chardev=cc",
        "-chardev",
        &chardev(redir_port, "ur"),
        "-device",
        "usb-redir,chardev=ur",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut guest = Guest::boot(&image, &args, &format!("vcac.k={k} vcac.rounds={rounds}"));
    let passthru = VcacChild::spawn(
        &[
            "passthru",
            "--connect",
            &format!("127.0.0.1:{ccid_port}"),
            "--card",
            ccid_card.to_str().unwrap(),
            "--no-stdin",
        ],
        &tmp.path().join("passthru.log"),
    );
    let usbredir = VcacChild::spawn(
        &[
            "usbredir",
            "--connect",
            &format!("127.0.0.1:{redir_port}"),
            "--card",
            redir_card.to_str().unwrap(),
        ],
        &tmp.path().join("usbredir.log"),
    );
    let logs = || {
        format!(
            "--- vcac passthru\n{}\n--- vcac usbredir\n{}",
            passthru.log(),
            usbredir.log()
        )
    };
    guest.wait_exit(Duration::from_secs(if full { 600 } else { 300 }), logs);
    let guest_time = guest.elapsed();

    let serial = guest.serial();
    let r = results(&serial);
    let context = format!(
        "--- serial\n{serial}\n--- qemu\n{}\n{}",
        guest.stderr(),
        logs()
    );
    if let Some((_, why)) = r.iter().find(|(key, _)| key == "fail") {
        panic!("the guest reports a failure: {why}\n{context}");
    }
    assert!(
        r.iter().any(|(key, _)| key == "ok"),
        "the guest did not finish\n{context}"
    );

    // Milliseconds per APDU, per reader, in round order.
    let mut ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (_, line) in r.iter().filter(|(key, _)| key == "lat") {
        let n = |name: &str| -> u64 { field(line, name).parse().unwrap() };
        assert_eq!(n("k"), u64::from(k), "{line}");
        assert_eq!(n("answers"), u64::from(k) + 1, "{line}\n{context}");
        let side = READERS
            .iter()
            .position(|s| *s == field(line, "reader"))
            .unwrap_or_else(|| panic!("unknown reader in \"{line}\""));
        // Signed: with few APDUs the noise can exceed their cost.
        let diff = n("many") as f64 - n("one") as f64;
        ms[side].push(diff / f64::from(k) / 1e6);
    }
    for (name, v) in READERS.iter().zip(&ms) {
        assert_eq!(v.len(), rounds, "{name}: {v:?}\n{context}");
    }
    let rounds_text: Vec<String> = ms
        .iter()
        .zip(READERS)
        .map(|(v, name)| {
            let each: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
            format!("{name} [{}]", each.join(", "))
        })
        .collect();
    let [redir, ccid] = ms.map(median);
    let ratio = if ccid > 0.0 { redir / ccid } else { f64::NAN };
    println!(
        "APDU round trip seen by the guest ({qemu_version}, TCG, -machine pc -usb, UHCI), \
         opensc-tool 1 vs 1 + {k} APDUs, {rounds} alternating round(s); guest run {:.1} s, total \
         {:.1} s",
        guest_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("per round, ms/APDU: {}", rounds_text.join("; "));
    println!("| measurement | ms/APDU (median) |");
    println!("|---|---:|");
    println!("| usbredir (`vcac usbredir`, guest libccid) | {redir:.3} |");
    println!("| usb-ccid + ccid-card-passthru (`vcac passthru`) | {ccid:.3} |");
    println!(
        "| ratio usbredir / usb-ccid | {ratio:.2}×; target ≤ 1.0 (no slower): {} |",
        if ratio <= 1.0 { "met" } else { "NOT met" }
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}
