//! What packaging ships beside the binary: completion scripts and the man page, generated from
//! the CLI's definitions, `contrib/` (a systemd unit), and `make install` laying them out under
//! DESTDIR/PREFIX.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::sandbox::{sup_bin, Sandbox};

fn run(args: &[&str]) -> String {
    let out = Command::new(sup_bin())
        .args(args)
        .output()
        .expect("run sup");
    assert!(
        out.status.success(),
        "sup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completion_scripts_offer_the_subcommands() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _sup"), "{bash}");
    for word in [
        "status",
        "restart",
        "tail",
        "logreopen",
        "completions",
        "--socket",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    // The internal subcommands are not offered.
    assert!(!bash.contains("__man") && !bash.contains("__notify"));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef sup"));
    assert!(run(&["completions", "fish"]).contains("complete -c sup"));

    let bad = Command::new(sup_bin())
        .args(["completions", "tcsh"])
        .output()
        .expect("run sup");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn make_install_lays_out_binary_man_page_and_completions() {
    let sb = Sandbox::new("install");
    let dest = sb.path("dest");
    let out = Command::new("make")
        .args([
            "-s",
            "--no-print-directory",
            "install-built",
            "PREFIX=/opt/sup",
        ])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("SUP={}", sup_bin()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dest.join("opt/sup");
    let bin = root.join("bin/sup");
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run the installed sup");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sup "));
    let read =
        |rel: &str| fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let man = read("share/man/man1/sup.1");
    assert!(man.contains(".TH sup 1"), "{man}");
    assert!(
        man.contains("completions"),
        "the man page lists the subcommands"
    );
    assert!(read("share/bash-completion/completions/sup").contains("complete -F _sup"));
    assert!(read("share/zsh/site-functions/_sup").starts_with("#compdef sup"));
    assert!(read("share/fish/vendor_completions.d/sup.fish").contains("complete -c sup"));
    // The unit runs the installed binary: PREFIX, never DESTDIR, is in its path.
    let unit = read("lib/systemd/system/sup.service");
    assert!(
        unit.contains("\nExecStart=/opt/sup/bin/sup daemon\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecReload=/opt/sup/bin/sup reload\n"),
        "{unit}"
    );
    assert_eq!(read("share/sup/contrib/systemd/sup.service"), unit);
    assert!(read("share/sup/contrib/README.md").contains("logrotate"));
    // Nothing outside DESTDIR/PREFIX.
    let top: Vec<_> = fs::read_dir(&dest)
        .expect("DESTDIR")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(top, ["opt"]);
    assert!(Path::new(&bin).is_file());
}

/// `make install PREFIX=DIR`, as a packager runs it: every kind of file (binary, man page,
/// completions, contrib/ with its systemd unit) lands under DIR and nothing else does, and the
/// unit is one systemd accepts (checked with `systemd-analyze verify` where it exists).
#[test]
fn make_install_with_a_prefix_installs_all_four_kinds_of_files() {
    let sb = Sandbox::new("install-prefix");
    let prefix = sb.path("prefix");
    let out = Command::new("make")
        .args(["-s", "--no-print-directory", "install-built"])
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("SUP={}", sup_bin()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make");
    assert!(out.status.success(), "make install: {out:?}");
    let mut files = Vec::new();
    let mut dirs = vec![prefix.clone()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(&prefix).expect("under PREFIX");
                files.push(rel.display().to_string());
            }
        }
    }
    files.sort();
    // Every file under contrib/, in its folders (contrib/systemd/sup.service, docker/,
    // kubernetes/, nomad/ …).
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let mut shipped = Vec::new();
    let mut dirs = vec![contrib.clone()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).expect("contrib/").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(&contrib).expect("under contrib/");
                shipped.push(format!("share/sup/contrib/{}", rel.display()));
            }
        }
    }
    assert!(
        shipped.contains(&"share/sup/contrib/systemd/sup.service".to_string()),
        "{shipped:?}"
    );
    let mut want = vec![
        "bin/sup".to_string(),
        "lib/systemd/system/sup.service".to_string(),
        "share/bash-completion/completions/sup".to_string(),
        "share/fish/vendor_completions.d/sup.fish".to_string(),
        "share/man/man1/sup.1".to_string(),
        "share/zsh/site-functions/_sup".to_string(),
    ];
    want.append(&mut shipped);
    want.sort();
    assert_eq!(files, want);

    let unit = prefix.join("lib/systemd/system/sup.service");
    let text = fs::read_to_string(&unit).expect("the unit");
    let exec = format!("\nExecStart={}/bin/sup daemon", prefix.display());
    assert!(text.contains(&exec), "{text}");
    // sup sends READY=1 (sd_notify) once its autostart jobs run, and only sup may.
    assert!(text.contains("\nType=notify\n"), "{text}");
    assert!(text.contains("\nNotifyAccess=main\n"), "{text}");
    assert!(text.contains("\nKillMode=mixed\n"), "{text}");
    assert!(text.contains("\nWatchdogSec="), "{text}");
    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
    {
        Ok(v) => assert!(
            v.status.success() && v.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&v.stderr)
        ),
        Err(e) => eprintln!("systemd-analyze not run ({e}): the unit's syntax is not checked"),
    }
}

/// `make deps` on a machine with no Rust, or with Debian 12's rustc 1.63, installs a recent one
/// with rustup (faked here: the real installer needs the network) and then uses it.
#[test]
fn make_deps_installs_rust_when_missing_or_too_old() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new("deps");
    let script = |path: &std::path::Path, body: &str| {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    // The fake installer puts a cargo and a rustc 1.95 into $HOME/.cargo/bin, as rustup would.
    script(
        &sb.path("rustup-init"),
        "mkdir -p \"$HOME/.cargo/bin\"\n\
         printf '#!/bin/sh\\necho cargo 1.95.0\\n' > \"$HOME/.cargo/bin/cargo\"\n\
         printf '#!/bin/sh\\necho rustc 1.95.0\\n' > \"$HOME/.cargo/bin/rustc\"\n\
         chmod +x \"$HOME/.cargo/bin/cargo\" \"$HOME/.cargo/bin/rustc\"\n\
         echo installed",
    );
    // Debian's old toolchain, first on PATH.
    script(&sb.path("old/cargo"), "echo cargo 1.65.0");
    script(&sb.path("old/rustc"), "echo rustc 1.63.0");
    for (case, path) in [
        ("missing", "/usr/bin:/bin".to_string()),
        (
            "too old",
            format!("{}:/usr/bin:/bin", sb.path("old").display()),
        ),
    ] {
        let home = sb.path(&format!("home-{}", case.replace(' ', "-")));
        fs::create_dir_all(&home).expect("home");
        let out = Command::new("make")
            .args(["-s", "--no-print-directory", "deps"])
            .arg(format!(
                "RUSTUP_INIT=sh {}",
                sb.path("rustup-init").display()
            ))
            .env("HOME", &home)
            .env("PATH", &path)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run make");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{case}: {text}");
        assert!(text.contains("installing it with rustup"), "{case}: {text}");
        assert!(text.contains("installed"), "{case}: {text}");
        assert!(home.join(".cargo/bin/rustc").exists(), "{case}");
    }
}
