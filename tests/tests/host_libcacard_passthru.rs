//! The `libcacard.so.0` drop-in's PC/SC passthrough (`passthru`,
//! `hw_type=PASSTHRU`): the readers of a private pcscd (vpcd) become
//! libcacard readers of the same names and a `vcac serve` CAC in the
//! first one is relayed APDU for APDU. `libcacard/tests/c/passthru.c`
//! runs against our library and against Debian's libcacard 2.8.0 in the
//! same namespace; the transcripts must agree (the listed differences
//! aside), and the relayed signature verifies with openssl.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vcac_tests::guest::{hex_decode, libcacard_dropin, workspace_root};
use vcac_tests::{key_values, openssl, require_peers, PcscEnv};

const DEBIAN_LIB: &str = "/usr/lib/x86_64-linux-gnu/libcacard.so.0";
const READER: &str = "Virtual PCD 00 00";

/// Where our transcript differs from Debian's: (key, Debian's, ours,
/// why). None so far: the relay passes every byte unchanged and the
/// events come in libcacard's order.
const DIVERGENCES: &[(&str, &str, &str, &str)] = &[];

fn compile(work: &Path, lib_dir: &Path) -> PathBuf {
    let src = workspace_root().join("libcacard/tests/c/passthru.c");
    let bin = work.join("passthru");
    let out = Command::new("cc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args(["-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(workspace_root().join("libcacard/include/cacard"))
        .arg("-L")
        .arg(lib_dir)
        .arg("-lcacard")
        .output()
        .expect("run cc (a required peer)");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn passthru_relays_the_host_pcscd_readers_like_libcacard() {
    require_peers(&["cc", DEBIAN_LIB, "openssl"]);
    let mut env = PcscEnv::vpcd();
    let work = env.dir().join("passthru");
    std::fs::create_dir(&work).unwrap();
    env.spawn_vcac(&["serve"]);
    env.wait_for_card(0);
    let lib_dir = work.join("lib");
    std::fs::create_dir(&lib_dir).unwrap();
    libcacard_dropin(&lib_dir);
    std::os::unix::fs::symlink("libcacard.so.0", lib_dir.join("libcacard.so")).unwrap();
    let bin = compile(&work, &lib_dir);

    let run = |ours: bool, options: &str| {
        let mut cmd = env.command(&bin);
        cmd.env("PT_OPTIONS", options)
            .env("PT_READER", READER)
            .env("PT_PIN", certs_fixtures::default_card::PIN);
        if ours {
            cmd.env("LD_LIBRARY_PATH", &lib_dir);
        } else {
            cmd.env_remove("LD_LIBRARY_PATH");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "passthru.c ({}) failed: {stdout}\n{}",
            if ours { "ours" } else { "Debian's" },
            String::from_utf8_lossy(&out.stderr)
        );
        key_values(&stdout)
    };
    let debian = run(false, "passthru");
    let ours = run(true, "passthru");
    // hw_type= as the last item means the same.
    assert_eq!(run(true, "use_hw=yes hw_type=PASSTHRU"), ours);

    let mut want = debian.clone();
    for (key, deb, our, _why) in DIVERGENCES {
        assert_eq!(debian[*key], *deb, "Debian's {key}");
        want.insert((*key).to_owned(), (*our).to_owned());
    }
    assert_eq!(
        ours, want,
        "our passthrough transcript differs from Debian's"
    );

    assert_eq!(ours["init"], "0");
    assert_eq!(ours["readers"], "2");
    assert_eq!(ours["reader0.name"], READER);
    assert_eq!(ours["reader0.present"], "0");
    assert_eq!(ours["reader1.name"], "Virtual PCD 00 01");
    assert_eq!(ours["reader1.present"], "1");
    assert_eq!(ours["atr"], "3B7A18000073667465206364313434");
    assert_eq!(ours["verify"], "0:9000");
    assert_eq!(ours["sign.chain1"], "0:9000");
    assert_eq!(ours["sign.chain2"], "0:6100");

    // The relayed card's key signed: openssl recovers the DigestInfo.
    let sig = hex_decode(&ours["sign.sig"]);
    assert_eq!(sig.len(), 256);
    let (sig_path, cert) = (work.join("sig.bin"), work.join("id0.pem"));
    std::fs::write(&sig_path, sig).unwrap();
    std::fs::write(&cert, certs_fixtures::default_card::ID0_PEM).unwrap();
    let out = openssl(&[
        "pkeyutl",
        "-verifyrecover",
        "-certin",
        "-inkey",
        cert.to_str().unwrap(),
        "-in",
        sig_path.to_str().unwrap(),
    ]);
    let mut digest_info = vec![
        0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    digest_info.extend(0u8..32);
    assert_eq!(out.stdout, digest_info);

    // The host card goes away (vcac serve stops): CARD_REMOVE.
    let mut cmd = env.command(&bin);
    cmd.env("PT_OPTIONS", "passthru")
        .env("PT_READER", READER)
        .env("PT_PIN", certs_fixtures::default_card::PIN)
        .env("PT_REMOVAL", "1")
        .env("LD_LIBRARY_PATH", &lib_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "passthru.c ended early:\n{seen}"
        );
        seen.push_str(&line);
        if line.trim() == "removal.ready" {
            break;
        }
    }
    let vcac = env.vcac_pid(0);
    assert!(Command::new("kill")
        .args(["-TERM", &vcac.to_string()])
        .status()
        .unwrap()
        .success());
    env.wait_vcac_exit(0, Duration::from_secs(10));
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}{rest}");
    let t = key_values(&format!("{seen}{rest}"));
    assert_eq!(t["removal.event"], "CR", "{seen}{rest}");
    assert_eq!(t["removal.present"], "1");
}
