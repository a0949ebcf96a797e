//! The APDU round trip a guest sees over usbredir (`vcac usbredir`)
//! against QEMU's own `usb-ccid` + `ccid-card-passthru` (`vcac passthru`),
//! in the same guest: one QEMU (TCG) with both readers on one USB
//! controller, once per machine type: `-machine pc -usb` (PIIX3 UHCI) and
//! `-machine q35 -device qemu-xhci`. Inside, pcscd + libccid see two
//! readers and `tests/src/latency-init.sh` alternates rounds between them:
//! per round and reader, `opensc-tool -r N -s APDU` once with 1 APDU and
//! once with 1 + K; round trip = time difference / K, median over the
//! rounds. Target: usbredir no slower (ratio ≤ 1.0); a missed target is
//! reported, not a failure.
//!
//! ```sh
//! cargo bench -p vcac-benches --bench usbredir_latency   # K = 200, 9 rounds
//! VCAC_BENCH_MACHINES=q35 cargo bench -p vcac-benches --bench usbredir_latency
//! ```
//!
//! `VCAC_BENCH_MACHINES` (default `pc,q35`) picks the machine types, and
//! `VCAC_BENCH_DATA_PATH` (default `interrupt`; or `bulk`) the `vcac
//! usbredir --data-path`.
//! Under `cargo test --benches` it runs one round with K = 10 per machine,
//! as a smoke test. It fails (never skips) without QEMU, pcscd, libccid or
//! OpenSC.
//!
//! Why `--data-path bulk` costs more than usb-ccid on UHCI
//! (docs/performance.md): QEMU's usb-redir completes every bulk transfer
//! asynchronously, and QEMU 7.2's UHCI raises the guest interrupt for an
//! asynchronous completion only at the next 1 ms frame, and walks the
//! whole queued IN transfer (libccid reads 65556 bytes: 1025 TDs, each
//! looked up in a linear list) before the request leaves. usb-ccid answers
//! inside the frame, and so does usb-redir for the interrupt endpoints the
//! default data path describes.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use vcac_tests::guest::{
    field, free_port, qemu_version, require_guest_peers, results, usbredir_guest_image, with_init,
    workspace_root, Guest, VcacChild,
};
use vcac_tests::{vcac_bin, write_default_card};

const READERS: [&str; 2] = ["usbredir", "usb-ccid"];

/// `vcac usbredir --data-path` for this run.
fn data_path() -> String {
    let path = std::env::var("VCAC_BENCH_DATA_PATH").unwrap_or_else(|_| "interrupt".into());
    assert!(
        path == "interrupt" || path == "bulk",
        "VCAC_BENCH_DATA_PATH: unknown data path {path} (interrupt, bulk)"
    );
    path
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (k, rounds) = if full { (200_u32, 9_usize) } else { (10, 1) };
    let started = Instant::now();
    require_guest_peers(&[]);
    let qemu_version = qemu_version();
    let tmp = tempfile::tempdir().unwrap();
    let image = with_init(
        &usbredir_guest_image(),
        &workspace_root().join("tests/src/latency-init.sh"),
        &tmp.path().join("initramfs-latency.cpio"),
    );
    vcac_bin();

    let machines: Vec<String> = std::env::var("VCAC_BENCH_MACHINES")
        .unwrap_or_else(|_| "pc,q35".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut table = Vec::new();
    for machine in &machines {
        let m = run(machine, &image, tmp.path(), k, rounds, full);
        println!(
            "{}: APDU round trip seen by the guest ({qemu_version}, TCG), opensc-tool 1 vs 1 + {k} \
             APDUs, {rounds} alternating round(s), usbredir data path {}; guest run {:.1} s",
            m.label,
            data_path(),
            m.guest_secs
        );
        println!("{}: per round, ms/APDU: {}", m.label, m.rounds_text);
        table.push(m);
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    println!("| machine | usbredir (`vcac usbredir`, guest libccid) ms/APDU | usb-ccid + ccid-card-passthru (`vcac passthru`) ms/APDU | ratio | target ≤ 1.0 |");
    println!("|---|---:|---:|---:|---|");
    for m in &table {
        // With the smoke test's K = 10, one slow process start can outweigh
        // the extra APDUs and make a difference negative: no ratio then.
        let (ratio, verdict) = if m.redir > 0.0 && m.ccid > 0.0 {
            let r = m.ratio();
            (
                format!("{r:.2}×"),
                if r <= 1.0 { "met" } else { "NOT met" }.to_owned(),
            )
        } else {
            ("–".to_owned(), format!("no figure: noise above {k} APDUs"))
        };
        println!(
            "| {} | {:.3} | {:.3} | {ratio} | {verdict} |",
            m.label, m.redir, m.ccid
        );
    }
}

/// One machine's figures (medians over the rounds).
struct Measured {
    label: &'static str,
    redir: f64,
    ccid: f64,
    rounds_text: String,
    guest_secs: f64,
}

impl Measured {
    fn ratio(&self) -> f64 {
        if self.ccid > 0.0 {
            self.redir / self.ccid
        } else {
            f64::NAN
        }
    }
}

/// Boots one guest with both readers on the machine's USB controller
/// (`pc`: PIIX3 UHCI; `q35`: qemu-xhci) and takes its figures.
fn run(
    machine: &str,
    image: &vcac_tests::guest::GuestImage,
    tmp: &std::path::Path,
    k: u32,
    rounds: usize,
    full: bool,
) -> Measured {
    let (label, hc, mut args, bus): (&'static str, &str, Vec<String>, &str) = match machine {
        "pc" => (
            "pc, UHCI",
            "uhci",
            vec!["-machine".into(), "pc".into(), "-usb".into()],
            "",
        ),
        "q35" => (
            "q35, xHCI",
            "xhci",
            vec![
                "-machine".into(),
                "q35".into(),
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
            ],
            ",bus=xhci.0",
        ),
        other => panic!("VCAC_BENCH_MACHINES: unknown machine {other} (pc, q35)"),
    };
    let dir = tmp.join(machine);
    std::fs::create_dir_all(&dir).unwrap();
    let (redir_card, ccid_card) = (dir.join("card-redir"), dir.join("card-ccid"));
    write_default_card(&redir_card);
    write_default_card(&ccid_card);

    let (redir_port, ccid_port) = (free_port(), free_port());
    let chardev = |port: u16, id: &str| {
        format!("socket,server=on,wait=off,host=127.0.0.1,port={port},id={id}")
    };
    args.extend([
        "-device".into(),
        format!("usb-ccid{bus}"),
        "-chardev".into(),
        chardev(ccid_port, "cc"),
        "-device".into(),
        "ccid-card-passthru,chardev=cc".into(),
        "-chardev".into(),
        chardev(redir_port, "ur"),
        "-device".into(),
        format!("usb-redir,chardev=ur{bus}"),
    ]);
    let mut guest = Guest::boot(
        image,
        &args,
        &format!("vcac.k={k} vcac.rounds={rounds} vcac.hc={hc}"),
    );
    let passthru = VcacChild::spawn(
        &[
            "passthru",
            "--connect",
            &format!("127.0.0.1:{ccid_port}"),
            "--card",
            ccid_card.to_str().unwrap(),
            "--no-stdin",
        ],
        &dir.join("passthru.log"),
    );
    let usbredir = VcacChild::spawn(
        &[
            "usbredir",
            "--connect",
            &format!("127.0.0.1:{redir_port}"),
            "--card",
            redir_card.to_str().unwrap(),
            "--data-path",
            &data_path(),
        ],
        &dir.join("usbredir.log"),
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
        "{label}\n--- serial\n{serial}\n--- qemu\n{}\n{}",
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
    Measured {
        label,
        redir,
        ccid,
        rounds_text: rounds_text.join("; "),
        guest_secs: guest_time.as_secs_f64(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}
