//! `vcac import`: a card directory from PKCS#12 files, and the password
//! plumbing PKCS#12 needs (`--password-env`, a no-echo prompt).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use vcac_sources::p12;
use zeroize::Zeroizing;

/// Options of `vcac import`.
#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// PKCS#12 files (.p12, .pfx), one identity each: the first becomes
    /// id0 (PKI applet 0), the next id1, …
    #[arg(long = "p12", value_name = "FILE", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Card directory to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Environment variable holding the password of every file. Default:
    /// asked on the terminal (no echo), or empty without a terminal.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// The card PIN (6 to 8 digits).
    #[arg(long, default_value = "12345678")]
    pin: String,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Reads a password from the terminal without echo; `None` when standard
/// input is not a terminal.
pub(crate) fn ask_password(prompt: &str) -> Option<Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = Zeroizing::new(String::new());
    let read = stdin.read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, saved);
    }
    read.ok()?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Some(line)
}

/// The password of `file`: from `env` (which must be set), else the
/// terminal, else empty.
fn password(file: &Path, env: Option<&str>) -> Result<Zeroizing<String>, String> {
    let mut ask = |path: &Path| ask_password(&format!("Password for {}: ", path.display()));
    p12::password_for(file, env, &mut ask).map_err(|e| format!("{}: {e}", file.display()))
}

/// Reads a file of at most `max` bytes.
fn read_limited(path: &Path, max: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > max as u64 {
        return Err(format!(
            "{}: {} bytes is larger than the {max} byte limit",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `contents` to `path`; secrets are created with mode 0600 (an
/// overwritten file is set to 0600 before anything is written to it).
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    secret: bool,
    force: bool,
) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(if secret { 0o600 } else { 0o644 });
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{}: exists (use --force to overwrite)", path.display())
        } else {
            io(e)
        }
    })?;
    if secret {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Refuses (naming the file) when any of `names` exists in `dir`.
pub(crate) fn refuse_existing(dir: &Path, names: &[String]) -> Result<(), String> {
    match names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.symlink_metadata().is_ok())
    {
        Some(p) => Err(format!(
            "{}: exists (use --force to overwrite)",
            p.display()
        )),
        None => Ok(()),
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn run(args: ImportArgs) -> Result<(), String> {
    if args.files.len() > cac::card::MAX_IDENTITIES {
        return Err(format!(
            "{} files: a card holds at most {} identities",
            args.files.len(),
            cac::card::MAX_IDENTITIES
        ));
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keys: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();
    let mut toml = String::from("# Written by vcac import from");
    for f in &args.files {
        toml.push(' ');
        toml.push_str(
            &f.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        );
    }
    toml.push_str(&format!(
        "\n\n[pin]\npin = {}\nmax_tries = 3\n",
        toml_string(&args.pin)
    ));
    for (i, file) in args.files.iter().enumerate() {
        let bytes = read_limited(file, p12::MAX_P12)?;
        let pw = password(file, args.password_env.as_deref())?;
        let id = p12::read(&bytes, &pw).map_err(|e| format!("{}: {e}", file.display()))?;
        let cert_pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &id.cert_der)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        let key_pem = Zeroizing::new(
            der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &id.key_pkcs8)
                .map_err(|e| format!("{}: {e}", file.display()))?,
        );
        files.push((format!("id{i}.pem"), cert_pem.into_bytes()));
        keys.push((
            format!("id{i}.key"),
            Zeroizing::new(key_pem.as_bytes().to_vec()),
        ));
        toml.push_str(&format!(
            "\n[[identity]]\ncert = \"id{i}.pem\"\nkey = \"id{i}.key\"\n"
        ));
    }
    // Build the card in memory first: a bad PIN or a key that does not
    // match its certificate is reported before anything is written.
    let mut read = |name: &str| {
        files
            .iter()
            .map(|(n, b)| (n, b.as_slice()))
            .chain(keys.iter().map(|(n, b)| (n, b.as_slice())))
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| "no such file".to_owned())
    };
    cac::config::load_card(
        &toml,
        &mut read,
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .map_err(|e| {
        let msg = e.to_string();
        // Name the PKCS#12 file the identity came from.
        match msg.strip_prefix("id").and_then(|r| r.split_once('.')) {
            Some((n, rest)) => match n.parse::<usize>().ok().and_then(|n| args.files.get(n)) {
                Some(f) => format!("{}: id{n}.{rest}", f.display()),
                None => msg,
            },
            None => msg,
        }
    })?;

    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    names.extend(keys.iter().map(|(n, _)| n.clone()));
    names.push("card.toml".into());
    if !args.force {
        refuse_existing(&args.out, &names)?;
    }
    for (name, key) in &keys {
        write_file(&args.out.join(name), key, true, args.force)?;
    }
    for (name, bytes) in &files {
        write_file(&args.out.join(name), bytes, false, args.force)?;
    }
    write_file(
        &args.out.join("card.toml"),
        toml.as_bytes(),
        false,
        args.force,
    )?;
    println!(
        "vcac: imported {} identit{} into {} (PIN {})",
        args.files.len(),
        if args.files.len() == 1 { "y" } else { "ies" },
        args.out.display(),
        args.pin
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("12345678"), "\"12345678\"");
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn secrets_are_0600_and_not_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.key");
        write_file(&p, b"one", true, false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_file(&p, b"two", true, false).unwrap_err();
        assert_eq!(
            e,
            format!("{}: exists (use --force to overwrite)", p.display())
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&p, b"two", true, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
