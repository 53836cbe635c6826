//! The Python package and the Ansible collection, tested from Python, as part of
//! `cargo test --workspace`: builds the wheel with maturin, installs it into a fresh virtual
//! environment, and runs the pytest suite in `tests/py/` there (the API against a real
//! `file://` store, real keys and a real HTTP server; recoveries and drills on workspaces
//! made by the real `drp demo`, with its services on 127.0.0.2-4; remote hosts and
//! transport failures against a real OpenSSH `sshd` the tests start on 127.0.0.1; the
//! Ansible modules through a real `ansible-playbook` run on localhost and over SSH on that
//! sshd; `ansible-doc` on every module).
//!
//! Tools (installed by `.ci/install-deps`; override with the variables):
//! - maturin and pytest's wheels: `/opt/drp-ci/py-venv/bin/maturin` (`DRP_MATURIN`; the
//!   `python` beside it must have pip), `/opt/drp-ci/py-wheels` (`DRP_PY_WHEELS`), so
//!   nothing is downloaded here;
//! - `ansible-playbook` and `ansible-doc` on PATH (or beside the resolved `ansible-playbook`);
//! - `/usr/sbin/sshd`, `ssh` and `ssh-keygen` (Debian `openssh-server`, `openssh-client`);
//! - the `drp` binary: the one `cargo test --workspace` built, else built here (the tests
//!   compare messages with it and make their recovery and drill workspaces with `drp demo`).
//!
//! The wheel is a debug build in its own target directory (`target/drp-py-maturin`):
//! maturin's environment (PYO3_PYTHON, PYO3_BUILD_EXTENSION_MODULE) differs from the
//! workspace build's, and sharing the directory would rebuild pyo3 and its dependants on
//! every alternation. The first build compiles the dependency tree once (minutes on two
//! cores); later ones only drp-py and what changed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drp-py is inside the workspace")
        .to_path_buf()
}

/// `target/` of this build: the test binary is `target/debug/deps/python-HASH`.
fn target_dir() -> PathBuf {
    let exe = env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("target/PROFILE/deps/python-HASH")
        .to_path_buf()
}

fn profile_dir() -> PathBuf {
    env::current_exe()
        .expect("the test binary's path")
        .ancestors()
        .nth(2)
        .expect("target/PROFILE")
        .to_path_buf()
}

/// A tool: from `var`, else the first existing candidate, else `name` on PATH.
fn tool(var: &str, candidates: &[PathBuf], name: &str) -> PathBuf {
    if let Some(path) = env::var_os(var) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .or_else(|| which(name))
        .unwrap_or_else(|| {
            panic!("{name} not found (set {var}, or run .ci/install-deps to install it)")
        })
}

fn which(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs a command, panicking with its output if it fails; returns its output and how long
/// it took (reported, never asserted).
fn run(what: &str, command: &mut Command) -> Output {
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "--- {what}: {:.1} s, {}\n{stdout}{stderr}",
        started.elapsed().as_secs_f64(),
        output.status
    );
    assert!(output.status.success(), "{what} failed: {}", output.status);
    output
}

/// The `drp` binary: the workspace build's if there is one, else built now (cargo does not
/// hold the build lock while tests run).
fn drp_binary() -> PathBuf {
    let binary = profile_dir().join("drp");
    if !binary.is_file() {
        run(
            "cargo build -p drp-cli",
            Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-p", "drp-cli", "--bin", "drp"])
                .current_dir(workspace())
                .env("CARGO_TARGET_DIR", target_dir()),
        );
    }
    binary
}

#[test]
fn python_package_and_ansible_collection() {
    let work = tempfile::Builder::new()
        .prefix("drp-py-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory");
    let work = work.path();
    let maturin = tool(
        "DRP_MATURIN",
        &[PathBuf::from("/opt/drp-ci/py-venv/bin/maturin")],
        "maturin",
    );
    let wheelhouse = env::var_os("DRP_PY_WHEELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/drp-ci/py-wheels"));
    assert!(
        wheelhouse.is_dir(),
        "{} (pytest's wheels) is missing: run .ci/install-deps",
        wheelhouse.display()
    );
    let playbook = tool("DRP_ANSIBLE_PLAYBOOK", &[], "ansible-playbook");
    let doc = match env::var_os("DRP_ANSIBLE_DOC") {
        Some(path) => PathBuf::from(path),
        None => which("ansible-doc").unwrap_or_else(|| {
            std::fs::canonicalize(&playbook)
                .expect("ansible-playbook resolves")
                .with_file_name("ansible-doc")
        }),
    };
    let drp = drp_binary();

    let wheels = work.join("wheels");
    run(
        "maturin build",
        Command::new(&maturin)
            .args(["build", "--quiet", "--interpreter", "python3", "--out"])
            .arg(&wheels)
            .arg("--manifest-path")
            .arg(workspace().join("drp-py/Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir().join("drp-py-maturin")),
    );

    // The venv gets no pip of its own (ensurepip takes seconds): the tools venv's pip
    // installs into it (`pip --python`).
    let venv = work.join("venv");
    run(
        "python3 -m venv",
        Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv),
    );
    let python = venv.join("bin/python");
    run(
        "pip install drp pytest",
        Command::new(
            std::fs::canonicalize(&maturin)
                .expect("maturin resolves")
                .with_file_name("python"),
        )
        .args(["-m", "pip", "--python"])
        .arg(&python)
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
        ])
        .arg(&wheelhouse)
        .arg("--find-links")
        .arg(&wheels)
        .args(["drp", "pytest"]),
    );

    run(
        "pytest drp-py/tests/py",
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-v",
                "-rA",
                "--basetemp",
            ])
            .arg(work.join("pytest"))
            .arg(workspace().join("drp-py/tests/py"))
            .current_dir(work)
            .env("DRP_BIN", &drp)
            .env("DRP_ANSIBLE_PLAYBOOK", &playbook)
            .env("DRP_ANSIBLE_DOC", &doc)
            .env("DRP_COLLECTIONS", workspace().join("drp-py")),
    );
}
