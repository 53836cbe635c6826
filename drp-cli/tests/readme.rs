//! The README's examples are true: every `bash` block of its "Using drp" section runs, in
//! order, as one script in an empty directory, with the `drp` under test first on PATH.

use std::path::Path;
use std::process::Command;

fn using_drp_blocks(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Using drp"))
        .expect("README has a 'Using drp' section");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```bash") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated code block in the README");
    blocks
}

#[test]
fn readme_examples_run() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let blocks = using_drp_blocks(&readme);
    assert!(
        blocks.len() >= 6,
        "found only {} example blocks",
        blocks.len()
    );
    let script = blocks.join("\n");
    for command in [
        "keys generate",
        "keys list",
        "backup create",
        "backup list",
        "backup verify",
        "backup restore",
        "backup prune",
    ] {
        assert!(
            script.contains(&format!("drp {command}")),
            "the README shows no example of drp {command}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drp")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("DRP_STORE")
        .output()
        .unwrap();
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", dir.path().join("gnupg"))
        .args(["--kill", "gpg-agent"])
        .status();
    assert!(
        out.status.success(),
        "README examples failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CREATE TABLE customers"), "{stdout}");
}

/// The README shows the example Ansible playbook that drp-provision's tests run; the two must
/// not drift apart (the file may carry extra comment lines).
#[test]
fn readme_ansible_example_is_the_tested_playbook() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let playbook =
        std::fs::read_to_string(format!("{root}/examples/ansible/prepare-spare.yml")).unwrap();
    let without_comments: String = playbook
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let fence = "```";
    let shown = readme
        .split(&format!("{fence}yaml\n"))
        .skip(1)
        .map(|rest| rest.split(fence).next().unwrap())
        .find(|block| block.contains("name: Prepare the spares"))
        .expect("the README shows the Ansible example in a yaml block");
    assert_eq!(shown, without_comments);
}
