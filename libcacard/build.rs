//! Gives the shared library the soname consumers link against.

fn main() {
    // Debian's QEMU module and spice-gtk have DT_NEEDED libcacard.so.0.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcacard.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
