//! QEMU guest helpers: the cached guest image (Debian's kernel + a busybox
//! initramfs with the host's pcscd, libccid and OpenSC), a running guest
//! with its serial console captured, and the `@@VCAC <key> <value>` lines
//! the guest's init prints.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// libccid's USB driver.
pub const CCID_DRIVER: &str = "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Stdout of a command (empty when it cannot run).
pub fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A guest kernel and initramfs.
#[derive(Clone, Debug)]
pub struct GuestImage {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// True when it came from the cache.
    pub cached: bool,
}

/// The test guest: Debian's kernel and an initramfs of this machine's
/// busybox, pcscd, libccid and OpenSC with the USB modules (UHCI, xHCI),
/// `tests/src/guest-lib.sh` as `/lib/vcac-guest.sh` and
/// `tests/qemu/guest-init.sh` as `/init`, built by
/// `tests/qemu/build-guest.sh`. Other tests lay their own `/init` over it
/// with [`with_init`]. Cached in `TARGET/qemu-guest/`, rebuilt when a
/// script, a host package it copies or the kernel package apt offers
/// changes.
pub fn guest_image() -> GuestImage {
    let root = workspace_root();
    let build = root.join("tests/qemu/build-guest.sh");
    let dir = target_dir().join("qemu-guest");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for f in [
        build.clone(),
        root.join("tests/qemu/guest-init.sh"),
        root.join("tests/src/guest-lib.sh"),
    ] {
        text.push_str(&std::fs::read_to_string(&f).unwrap());
    }
    text.push_str(&output(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${Package} ${Version}\n",
            "pcscd",
            "libccid",
            "opensc",
            "opensc-pkcs11",
            "libpcsclite1",
            "busybox-static",
        ],
    ));
    text.push_str(&output("apt-cache", &["depends", "linux-image-amd64"]));
    text.push_str(&std::env::var("VCAC_GUEST_KERNEL_DEB").unwrap_or_default());
    let want = format!("{:016x}", fnv1a(text.as_bytes(), 0xcbf2_9ce4_8422_2325));
    let image = |cached| GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio"),
        cached,
    };
    let stamp = dir.join("stamp");
    let cached = image(true);
    if cached.kernel.exists()
        && cached.initrd.exists()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want)
    {
        return cached;
    }
    let _ = std::fs::remove_file(&stamp);
    let out = Command::new("sh")
        .arg(&build)
        .arg(&dir)
        .output()
        .expect("run tests/qemu/build-guest.sh");
    assert!(
        out.status.success(),
        "building the guest failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    std::fs::write(&stamp, &want).unwrap();
    image(false)
}

/// The usbredir test guest: [`guest_image`] with
/// `tests/src/usbredir-init.sh` as `/init`, written to
/// `TARGET/qemu-guest/initramfs-usbredir.cpio`.
pub fn usbredir_guest_image() -> GuestImage {
    let base = guest_image();
    let out = base.initrd.with_file_name("initramfs-usbredir.cpio");
    with_init(
        &base,
        &workspace_root().join("tests/src/usbredir-init.sh"),
        &out,
    )
}

/// Fails (never skips) unless QEMU, the tools that build the guest image
/// and the host's pcscd, libccid and OpenSC it copies, and `extra`, exist.
pub fn require_guest_peers(extra: &[&str]) {
    let mut peers = vec![
        "qemu-system-x86_64",
        "apt-get",
        "dpkg-deb",
        "/bin/busybox",
        "pcscd",
        "opensc-tool",
        "pkcs11-tool",
        "openssl",
        crate::OPENSC_PKCS11,
        CCID_DRIVER,
    ];
    peers.extend_from_slice(extra);
    crate::require_peers(&peers);
}

/// The first line of `qemu-system-x86_64 --version`.
pub fn qemu_version() -> String {
    output("qemu-system-x86_64", &["--version"])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// QEMU's `usb-ccid` reader (UHCI, `-machine pc -usb`) with a
/// `ccid-card-passthru` card on a VSCard chardev listening on
/// 127.0.0.1:`port`.
pub fn usb_ccid_passthru_args(port: u16) -> Vec<String> {
    vec![
        "-machine".into(),
        "pc".into(),
        "-usb".into(),
        "-device".into(),
        "usb-ccid".into(),
        "-chardev".into(),
        format!("socket,server=on,wait=off,host=127.0.0.1,port={port},id=cc"),
        "-device".into(),
        "ccid-card-passthru,chardev=cc".into(),
    ]
}

/// The CAC's ATR as `opensc-tool -a` prints it.
pub const CAC_ATR: &str = "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34";

/// The guest's OpenSC bound its CAC driver to the card in reader 0
/// (`report_card` of `tests/src/guest-lib.sh`): the CAC's ATR, unchanged,
/// and the driver's card name.
pub fn assert_cac_bound(results: &[(String, String)], serial: &str) {
    assert_eq!(
        one(results, "atr", serial),
        CAC_ATR,
        "the card's ATR arrives unchanged"
    );
    assert_eq!(one(results, "name", serial), "Common Access Card (CAC)");
}

/// [`assert_cac_bound`], and the card is in QEMU's usb-ccid reader.
pub fn assert_cac_in_usb_ccid(results: &[(String, String)], serial: &str) {
    assert!(
        results.iter().any(|(k, v)| k == "readers"
            && v.contains("Yes")
            && v.contains("Gemalto Gemplus USB SmartCard Reader 433-Swap")),
        "no card in QEMU's usb-ccid reader:\n{serial}"
    );
    assert_cac_bound(results, serial);
}

/// What the guest's `read_cert certS` and `sign dataS sigS TEXT`
/// (`tests/src/guest-lib.sh`, S = `suffix`) reported: certificate 0001 is
/// `cert_der` byte for byte, the data signed is `text`, and the RSA-2048
/// signature verifies with openssl against `cert_pem`'s key.
pub fn assert_read_and_signed(
    results: &[(String, String)],
    suffix: &str,
    cert_der: &[u8],
    cert_pem: &Path,
    text: &[u8],
    tmp: &Path,
) {
    assert_eq!(
        joined_hex(results, &format!("cert{suffix}")),
        cert_der,
        "certificate 0001 read in the guest (cert{suffix}) differs from {}",
        cert_pem.display()
    );
    let data = joined_hex(results, &format!("data{suffix}"));
    assert_eq!(data, text, "data{suffix}");
    let sig = joined_hex(results, &format!("sig{suffix}"));
    assert_eq!(sig.len(), 256, "sig{suffix}: an RSA-2048 signature");
    assert_rsa_signature(cert_pem, &data, &sig, tmp);
}

/// The accelerator QEMU runs with: `VCAC_QEMU_ACCEL`, by default `tcg`.
pub fn accel() -> String {
    std::env::var("VCAC_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// Polls `check` every 20 ms until it holds; panics naming `what`, with
/// `context()`, after `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running QEMU guest; killed when dropped.
pub struct Guest {
    qemu: Child,
    serial: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Guest {
    /// Boots `image` with `machine_args` (machine, USB controller,
    /// devices) and the kernel command line `append` (after the console
    /// settings). The serial console is captured.
    pub fn boot(image: &GuestImage, machine_args: &[String], append: &str) -> Guest {
        Guest::boot_with_env(image, machine_args, append, &[])
    }

    /// [`Guest::boot`] with extra environment variables for QEMU (e.g.
    /// `LD_LIBRARY_PATH` for a drop-in library).
    pub fn boot_with_env(
        image: &GuestImage,
        machine_args: &[String],
        append: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Guest {
        Guest::boot_wrapped(
            image,
            machine_args,
            append,
            env,
            Command::new("qemu-system-x86_64"),
        )
    }

    /// Like [`Guest::boot_with_env`], but QEMU is started by `command`:
    /// `qemu-system-x86_64` itself, or a wrapper (`nsenter`, `unshare`)
    /// whose arguments end with `qemu-system-x86_64` and which execs it
    /// (so that [`Guest::pid`] is QEMU's).
    pub fn boot_wrapped(
        image: &GuestImage,
        machine_args: &[String],
        append: &str,
        env: &[(&str, &std::ffi::OsStr)],
        mut command: Command,
    ) -> Guest {
        command
            .envs(env.iter().copied())
            .args(["-accel", &accel(), "-smp", "2", "-m", "512"])
            .args(machine_args)
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 quiet loglevel=1 panic=-1 {append}"))
            .args([
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-no-reboot",
            ]);
        Guest::start(command)
    }

    /// Starts `command` (QEMU, or a wrapper that execs it) as it is, with
    /// its stdout (the serial console when it is `-serial stdio`) and
    /// stderr captured: e.g. a QEMU with `-S` and no guest, whose devices
    /// are realized but whose CPUs never run.
    pub fn start(mut command: Command) -> Guest {
        let mut qemu = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64");
        let serial = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                Box::new(qemu.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Arc::clone(&serial),
            ),
            (Box::new(qemu.stderr.take().unwrap()), Arc::clone(&stderr)),
        ] {
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut line = Vec::new();
                while r
                    .read_until(b'\n', &mut line)
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            }));
        }
        Guest {
            qemu,
            serial,
            stderr,
            readers,
            started: Instant::now(),
        }
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.qemu.id()
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        self.serial.lock().unwrap().clone()
    }

    /// QEMU's stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Time since boot.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the guest printed `@@VCAC <line>`; panics (with
    /// `context()`) after `timeout` or if QEMU exits.
    pub fn wait_line(&mut self, line: &str, timeout: Duration, context: impl Fn() -> String) {
        let start = Instant::now();
        loop {
            if results(&self.serial())
                .iter()
                .any(|(k, v)| format!("{k} {v}").trim() == line)
            {
                return;
            }
            if results(&self.serial()).iter().any(|(k, _)| k == "fail") {
                panic!(
                    "the guest failed while we waited for \"{line}\"\n--- serial\n{}\n{}",
                    self.serial(),
                    context()
                );
            }
            if let Ok(Some(st)) = self.qemu.try_wait() {
                panic!(
                    "QEMU exited ({st}) before \"{line}\"\n--- serial\n{}\n--- qemu\n{}\n{}",
                    self.serial(),
                    self.stderr(),
                    context()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no \"{line}\" within {timeout:?}\n--- serial\n{}\n--- qemu\n{}\n{}",
                self.serial(),
                self.stderr(),
                context()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit (the guest powers off when done).
    pub fn wait_exit(&mut self, timeout: Duration, context: impl Fn() -> String) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.qemu.try_wait().unwrap() {
                // Let the readers drain the pipes (bounded: a child QEMU
                // left behind could hold them open).
                let drained = Instant::now();
                while !self.readers.iter().all(|r| r.is_finished())
                    && drained.elapsed() < Duration::from_secs(5)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(
                    st.success(),
                    "qemu exited with {st}\n--- serial\n{}\n--- qemu\n{}\n{}",
                    self.serial(),
                    self.stderr(),
                    context()
                );
                return;
            }
            if start.elapsed() > timeout {
                let _ = self.qemu.kill();
                panic!(
                    "the guest did not finish within {timeout:?}\n--- serial\n{}\n--- qemu\n{}\n{}",
                    self.serial(),
                    self.stderr(),
                    context()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// A `vcac` child whose stdin stays open for commands; killed (SIGTERM,
/// then SIGKILL) when dropped.
pub struct VcacChild {
    child: Child,
    log: PathBuf,
}

impl VcacChild {
    /// Starts `vcac ARGS`, logging to `log`.
    pub fn spawn(args: &[&str], log: &Path) -> VcacChild {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(crate::vcac_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start vcac");
        VcacChild {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Types a command line on its standard input.
    pub fn command(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("vcac stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGTERM (it leaves cleanly) and waits for it to exit;
    /// its status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        assert!(self.sigterm(), "kill -TERM {}", self.child.id());
        self.wait_exit(timeout)
    }

    fn sigterm(&self) -> bool {
        crate::sigterm(&self.child)
    }

    /// Waits for it to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "vcac did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VcacChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            crate::terminate(&mut self.child, Duration::from_secs(3));
        }
    }
}

/// Decodes hex text.
pub fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex: {s}")))
        .collect()
}

/// The `@@VCAC` lines of a serial console, as (key, value).
pub fn results(serial: &str) -> Vec<(String, String)> {
    serial
        .lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let at = l.find("@@VCAC ")?;
            let rest = &l[at + 7..];
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// All values of `key` joined and hex-decoded.
pub fn joined_hex(results: &[(String, String)], key: &str) -> Vec<u8> {
    let hex: String = results
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .collect();
    hex_decode(&hex)
}

/// The first value of `key`; panics with the console when missing.
pub fn one<'a>(results: &'a [(String, String)], key: &str, serial: &str) -> &'a str {
    results
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the guest printed no \"{key}\":\n{serial}"))
}

/// Checks an RSA PKCS#1 v1.5 SHA-256 signature with openssl against the
/// public key of the certificate `cert` (PEM).
pub fn assert_rsa_signature(cert: &Path, data: &[u8], sig: &[u8], tmp: &Path) {
    let d = tmp.join("verify.data");
    let s = tmp.join("verify.sig");
    let k = tmp.join("verify.pub.pem");
    std::fs::write(&d, data).unwrap();
    std::fs::write(&s, sig).unwrap();
    crate::public_key_of(cert, &k);
    let v = crate::openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        k.to_str().unwrap(),
        "-signature",
        s.to_str().unwrap(),
        d.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "Verified OK");
}

/// `base` with its `/init` replaced by `init`: an appended cpio (the
/// kernel unpacks both, the later file wins), written to `out`. The
/// script can source the shared part, `/lib/vcac-guest.sh`
/// (`tests/src/guest-lib.sh`).
pub fn with_init(base: &GuestImage, init: &Path, out: &Path) -> GuestImage {
    let overlay = tempfile::tempdir().unwrap();
    std::fs::copy(init, overlay.path().join("init")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            overlay.path().join("init"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let cpio = Command::new("sh")
        .args([
            "-c",
            "find . | sort | busybox cpio -o -H newc -R 0:0 2>/dev/null",
        ])
        .current_dir(overlay.path())
        .output()
        .expect("run busybox cpio");
    assert!(cpio.status.success() && !cpio.stdout.is_empty(), "cpio");
    let mut image = std::fs::read(&base.initrd).unwrap();
    while !image.len().is_multiple_of(4) {
        image.push(0);
    }
    image.extend_from_slice(&cpio.stdout);
    // Renamed into place: a QEMU of another test may be reading `out`.
    let part = out.with_extension(format!("part-{}", std::process::id()));
    std::fs::write(&part, image).unwrap();
    std::fs::rename(&part, out).unwrap();
    GuestImage {
        kernel: base.kernel.clone(),
        initrd: out.to_path_buf(),
        cached: base.cached,
    }
}

/// vcac's `libcacard.so.0`: `cargo build -p libcacard --release`, copied
/// to `dir/libcacard.so.0` so that a concurrent build cannot swap it.
pub fn libcacard_dropin(dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-q", "-p", "libcacard", "--release"])
        .status()
        .expect("run cargo build -p libcacard");
    assert!(
        status.success(),
        "cargo build -p libcacard --release failed"
    );
    let built = target_dir().join("release/libcacard.so");
    let copy = dir.join("libcacard.so.0");
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    copy
}

/// A QMP client on QEMU's `-qmp unix:PATH,server=on,wait=off` socket.
/// Every read is bounded by the socket's read timeout.
pub struct Qmp {
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
    /// Events received so far, one JSON object a line.
    pub events: Vec<String>,
}

impl Qmp {
    /// Connects (retrying until `timeout`) and leaves capabilities
    /// negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Qmp {
        let start = Instant::now();
        let stream = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        start.elapsed() < timeout,
                        "no QMP socket at {} within {timeout:?}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = qmp.line();
        assert!(greeting.contains("\"QMP\""), "QMP greeting: {greeting}");
        let r = qmp.execute(r#"{"execute":"qmp_capabilities"}"#);
        assert!(r.contains("\"return\""), "qmp_capabilities: {r}");
        qmp
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading QMP: {e}"));
        assert!(n > 0, "QEMU closed the QMP socket");
        line
    }

    /// Sends one command (a JSON object) and returns QEMU's answer (the
    /// line with "return" or "error"); events read meanwhile are kept.
    pub fn execute(&mut self, command: &str) -> String {
        self.writer.write_all(command.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        self.writer.flush().unwrap();
        loop {
            let line = self.line();
            if line.contains("\"event\"") {
                self.events.push(line);
            } else if line.contains("\"return\"") || line.contains("\"error\"") {
                return line;
            }
        }
    }

    /// [`Qmp::execute`] that must return (no "error").
    pub fn ok(&mut self, command: &str) -> String {
        let r = self.execute(command);
        assert!(
            r.contains("\"return\"") && !r.contains("\"error\""),
            "QMP {command}: {r}"
        );
        r
    }

    /// Waits (up to `timeout`) for an event named `name` whose line
    /// contains `with`; returns it.
    pub fn wait_event(&mut self, name: &str, with: &str, timeout: Duration) -> String {
        let start = Instant::now();
        let wanted = format!("\"event\": \"{name}\"");
        let matches = |l: &str| {
            (l.contains(&wanted) || l.contains(&wanted.replace(' ', ""))) && l.contains(with)
        };
        loop {
            if let Some(e) = self.events.iter().find(|l| matches(l)) {
                return e.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "no QMP event {name} ({with}) within {timeout:?}; events: {:?}",
                self.events
            );
            let line = self.line();
            if line.contains("\"event\"") {
                self.events.push(line);
            }
        }
    }
}

/// The value of `name=` in a line of space-separated `key=value` words
/// (as the guests print them); panics when it is missing.
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in \"{line}\""))
}
