//! Finds the C libraries the `vs_libcacard` bench links (libcacard and
//! libpcsclite) with pkg-config. When one is missing the bench still
//! builds, and fails at run time with a message saying what to install:
//! the rest of the workspace never needs them.
#![forbid(unsafe_code)]

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(vcac_have_libcacard)");
    let cacard = probe("libcacard");
    let pcsclite = probe("libpcsclite");
    if cacard && pcsclite {
        println!("cargo::rustc-cfg=vcac_have_libcacard");
    }
}

/// Runs `pkg-config --libs-only-L NAME`; on success passes its search
/// paths on to the linker and returns true.
fn probe(name: &str) -> bool {
    let out = Command::new("pkg-config")
        .args(["--libs-only-L", name])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            for dir in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|f| f.strip_prefix("-L"))
            {
                println!("cargo::rustc-link-search=native={dir}");
            }
            true
        }
        _ => false,
    }
}
