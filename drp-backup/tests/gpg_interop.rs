//! Interoperability with the real GnuPG (`gpg`, 2.2.x), each test in its own temporary
//! `GNUPGHOME`: what drp encrypts, `gpg --decrypt` reads; keys made by gpg work with drp; what
//! gpg encrypts to drp's keys, drp decrypts; signatures go both ways.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use drp_backup::crypto::{decrypt, encrypt, sign_detached, verify_detached};
use drp_backup::keys::{
    KeyError, Passphrase, Recipients, SecretKeys, Signer, TrustedSigners, generate_key,
};

/// A temporary GnuPG home; its gpg-agent is killed on drop (also when a test fails).
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("drp-gpg")
            .tempdir()
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `gpg --batch ARGS` with optional stdin; panics with gpg's stderr on failure.
    fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.try_gpg(args, stdin);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn try_gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.path())
            .arg("--batch")
            .arg("--no-tty")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running gpg");
        if let Some(input) = stdin {
            let mut w = child.stdin.take().unwrap();
            let input = input.to_vec();
            // Write from a thread: gpg may fill stdout before reading all of stdin.
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// The fingerprint of the only (or first) key in the keyring.
    fn first_fingerprint(&self) -> String {
        let out = self.gpg(&["--with-colons", "--list-keys"], None);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|rest| rest.trim_matches(':').to_string())
            .expect("a fingerprint")
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Deterministic pseudo-random bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn drp_encrypt(recipients: &Recipients, data: &[u8]) -> Vec<u8> {
    let sink = SharedSink::default();
    let mut w = encrypt(recipients, sink.clone()).unwrap();
    for chunk in data.chunks(100_000) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap();
    sink.0.lock().unwrap().clone()
}

fn drp_decrypt(keys: &SecretKeys, ciphertext: Vec<u8>) -> Vec<u8> {
    let mut r = decrypt(keys, std::io::Cursor::new(ciphertext)).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// drp key → `gpg --import` → drp encrypts → `gpg --decrypt` prints exactly the plaintext
/// (with and without passphrase on the key).
#[test]
fn gpg_decrypts_what_drp_encrypts_to_a_drp_key() {
    let home = GpgHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = pseudo_random(3 * 1024 * 1024 + 5, 7);

    for (name, pass) in [("plain", None), ("protected", Some("pw for drp key"))] {
        let passphrase = pass.map(Passphrase::from);
        let g = generate_key(name, tmp.path(), passphrase.as_ref()).unwrap();
        let sec = g.secret_path.to_str().unwrap();
        match pass {
            None => home.gpg(&["--import", sec], None),
            Some(p) => home.gpg(
                &[
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    p,
                    "--import",
                    sec,
                ],
                None,
            ),
        };
        let recipients = Recipients::from_files(std::slice::from_ref(&g.public_path)).unwrap();
        // Multi-chunk, empty, and a literal body of exactly one 64 KiB chunk (6 header bytes).
        for plaintext in [&data[..], b"", &data[..65536 - 6]] {
            let ct = write(tmp.path(), "ct.pgp", &drp_encrypt(&recipients, plaintext));
            let ct = ct.to_str().unwrap();
            let out = home.gpg(
                &[
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    pass.unwrap_or(""),
                    "--decrypt",
                    ct,
                ],
                None,
            );
            assert!(out.stdout == plaintext, "{name}: gpg output differs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("WARNING"), "{name}: {stderr}");

            // The packet structure as gpg sees it: PKESK v3, SEIPD v1 with MDC, literal
            // data directly inside (no compression).
            let packets = home.gpg(
                &[
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    pass.unwrap_or(""),
                    "--list-packets",
                    ct,
                ],
                None,
            );
            let listing = String::from_utf8_lossy(&packets.stdout);
            assert!(
                listing.contains(":pubkey enc packet: version 3"),
                "{listing}"
            );
            assert!(listing.contains(":encrypted data packet:"), "{listing}");
            assert!(listing.contains("mdc_method: 2"), "{listing}");
            assert!(!listing.contains(":compressed packet:"), "{listing}");
            assert!(listing.contains(":literal data packet:"), "{listing}");
        }
    }
}

/// A key made by gpg (RSA, passphrase-protected): its exported certificate works as a
/// recipient, its exported secret key decrypts with the passphrase, and gpg decrypts what
/// drp encrypted to it.
#[test]
fn gpg_made_key_works_with_drp() {
    let home = GpgHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let pass = "gpg key passphrase";
    let loopback = ["--pinentry-mode", "loopback", "--passphrase", pass];
    home.gpg(
        &[
            &loopback[..],
            &[
                "--quick-gen-key",
                "X <x@example.invalid>",
                "rsa3072",
                "sign,cert",
                "never",
            ],
        ]
        .concat(),
        None,
    );
    let fpr = home.first_fingerprint();
    home.gpg(
        &[
            &loopback[..],
            &["--quick-add-key", &fpr, "rsa3072", "encr", "never"],
        ]
        .concat(),
        None,
    );

    let public = home.gpg(&["--export", "--armor", &fpr], None).stdout;
    let public = write(tmp.path(), "x.pub.asc", &public);
    let secret = home
        .gpg(
            &[&loopback[..], &["--export-secret-keys", "--armor", &fpr]].concat(),
            None,
        )
        .stdout;
    let secret = write(tmp.path(), "x.sec.asc", &secret);

    // GnuPG 2.2 certificates advertise SEIPD v1 only (drp writes v1 regardless).
    {
        use sequoia_openpgp::cert::Preferences;
        use sequoia_openpgp::parse::Parse;
        let cert = sequoia_openpgp::Cert::from_file(&public).unwrap();
        let p = sequoia_openpgp::policy::StandardPolicy::new();
        let features = cert.with_policy(&p, None).unwrap().features().unwrap();
        assert!(features.supports_seipdv1() && !features.supports_seipdv2());
    }

    let recipients = Recipients::from_files(std::slice::from_ref(&public)).unwrap();
    assert_eq!(recipients.fingerprints(), vec![fpr.clone()]);
    let data = pseudo_random(2 * 1024 * 1024 + 1, 8);
    let ct = drp_encrypt(&recipients, &data);

    // gpg decrypts it.
    let ct_path = write(tmp.path(), "ct.pgp", &ct);
    let out = home.gpg(
        &[&loopback[..], &["--decrypt", ct_path.to_str().unwrap()]].concat(),
        None,
    );
    assert!(out.stdout == data, "gpg output differs");

    // drp decrypts it with gpg's exported secret key.
    let keys = SecretKeys::from_file(&secret, Some(&Passphrase::from(pass))).unwrap();
    assert_eq!(keys.fingerprints(), vec![fpr.clone()]);
    assert!(drp_decrypt(&keys, ct.clone()) == data);

    // Wrong or missing passphrase: clear errors, at load time.
    let err = SecretKeys::from_file(&secret, Some(&Passphrase::from("nope"))).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
    assert!(err.to_string().contains(&fpr), "{err}");
    let err = SecretKeys::from_file(&secret, None).unwrap_err();
    assert!(matches!(err, KeyError::PassphraseRequired { .. }), "{err}");

    // The secret key file as a recipient: only its public part is used.
    let r2 = Recipients::from_files(std::slice::from_ref(&secret)).unwrap();
    assert!(drp_decrypt(&keys, drp_encrypt(&r2, b"via secret file")) == b"via secret file");

    // gpg-made signing key: drp signs, gpg verifies; gpg signs, drp verifies.
    let signer = Signer::from_file(&secret, Some(&Passphrase::from(pass))).unwrap();
    assert_eq!(signer.fingerprint(), fpr);
    let manifest = b"{\"snapshot\": \"x\"}\n";
    let manifest_path = write(tmp.path(), "manifest.json", manifest);
    let sig = sign_detached(&signer, manifest).unwrap();
    let sig_path = write(tmp.path(), "manifest.json.sig", &sig);
    home.gpg(
        &[
            "--verify",
            sig_path.to_str().unwrap(),
            manifest_path.to_str().unwrap(),
        ],
        None,
    );
    let gpg_sig = home
        .gpg(
            &[
                &loopback[..],
                &[
                    "--armor",
                    "--detach-sign",
                    "--output",
                    "-",
                    manifest_path.to_str().unwrap(),
                ],
            ]
            .concat(),
            None,
        )
        .stdout;
    let trusted = TrustedSigners::from_files(std::slice::from_ref(&public)).unwrap();
    assert_eq!(verify_detached(&trusted, manifest, &gpg_sig).unwrap(), fpr);
    assert!(verify_detached(&trusted, b"tampered", &gpg_sig).is_err());
}

/// What gpg encrypts to a drp certificate (compressed by default, binary or armored), drp
/// decrypts.
#[test]
fn drp_decrypts_what_gpg_encrypts_to_a_drp_key() {
    let home = GpgHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let pass = Passphrase::from("drp key pass");
    let g = generate_key("customer", tmp.path(), Some(&pass)).unwrap();
    home.gpg(&["--import", g.public_path.to_str().unwrap()], None);
    let keys = SecretKeys::from_file(&g.secret_path, Some(&pass)).unwrap();

    let data = pseudo_random(1024 * 1024 + 3, 9);
    let plain = write(tmp.path(), "plain.bin", &data);
    for extra in [&[][..], &["--armor"][..], &["-z", "0"][..]] {
        let ct = home
            .gpg(
                &[
                    &["--trust-model", "always", "--encrypt", "-r", &g.fingerprint],
                    extra,
                    &["--output", "-", plain.to_str().unwrap()],
                ]
                .concat(),
                None,
            )
            .stdout;
        assert!(drp_decrypt(&keys, ct) == data, "gpg {extra:?}");
    }

    // Also from a pipe (no file name, partial body lengths).
    let ct = home
        .gpg(
            &["--trust-model", "always", "--encrypt", "-r", &g.fingerprint],
            Some(&data),
        )
        .stdout;
    assert!(drp_decrypt(&keys, ct) == data, "gpg from stdin");
}
