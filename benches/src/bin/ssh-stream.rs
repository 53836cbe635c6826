//! `ssh-stream`: streams the stdout of one remote command through drp's SSH transport and
//! counts the bytes, the drp side of `benches/compare-ssh.sh` (whose other side is OpenSSH's
//! `ssh HOST COMMAND > /dev/null`).
//!
//! Usage: `ssh-stream [USER@]HOST[:PORT] KEY_FILE KNOWN_HOSTS COMMAND`
//!
//! Prints the number of bytes received; exits non-zero if the command failed or the stream
//! broke. The key must not need a passphrase (the benchmark generates its own).

use std::process::ExitCode;
use std::time::Instant;

use drp_core::provision::{SshOptions, SshTarget, SshTransport, Transport};
use tokio::io::AsyncReadExt;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, key, known_hosts, command] = args.as_slice() else {
        eprintln!("usage: ssh-stream [USER@]HOST[:PORT] KEY_FILE KNOWN_HOSTS COMMAND");
        return ExitCode::from(2);
    };
    let target: SshTarget = match target.parse() {
        Ok(target) => target,
        Err(e) => {
            eprintln!("ssh-stream: {e}");
            return ExitCode::from(2);
        }
    };
    let options = SshOptions::from_target(&target)
        .with_identity_file(key)
        .with_known_hosts(known_hosts);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(stream(options, command)) {
        Ok((bytes, seconds)) => {
            println!(
                "{bytes} bytes in {seconds:.3} s ({:.1} MiB/s)",
                bytes as f64 / seconds / (1 << 20) as f64
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ssh-stream: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn stream(
    options: SshOptions,
    command: &str,
) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let transport = SshTransport::new(options);
    let start = Instant::now();
    let mut child = transport.spawn(command).await?;
    drop(child.stdin.take());
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = child.stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(format!("{command:?} ended with {status}").into());
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}
