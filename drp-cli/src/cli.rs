//! The command line, declared with clap. Help texts are the reference documentation of each
//! flag; the README shows them in use.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use drp_core::backup::SourceSpec;
use drp_core::provision::{HostKeyChecking, SshTarget};

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 failure; 2 usage error; 3 integrity failure (stored data or a \
manifest was refused as corrupt, truncated, tampered, unsigned or forged).

Secrets never go on the command line: passphrases come from --passphrase-env VAR or \
--passphrase-file FILE; S3 credentials from the AWS_* environment variables.";

/// drp: disaster-recovery toolkit. Back up every customer stack encrypted to that customer's
/// own OpenPGP key, restore it anywhere, and prove it works.
#[derive(Debug, Parser)]
#[command(name = "drp", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate and list OpenPGP keys (one key pair per customer).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create, list, restore, verify and prune encrypted backups.
    #[command(subcommand)]
    Backup(Box<BackupCommand>),
    /// Check a recovery plan and render its runbook.
    #[command(subcommand)]
    Plan(crate::plan::PlanCommand),
    /// Recover stacks as a plan says (--dry-run: what would run, changing nothing).
    Recover(crate::recover::RecoverArgs),
    /// Report of a recovery run: RTO/RPO per stack against the objectives, the timeline of
    /// every step, failures, notifications (Markdown, self-contained HTML, or JSON).
    Report(crate::report::ReportArgs),
    /// The recovery runs in a plan's store.
    #[command(subcommand)]
    Runs(crate::report::RunsCommand),
    /// Probe a service (HTTP(S), TCP, command, DNS, TLS certificate) and explain the result.
    Probe(Box<ProbeArgs>),
    /// Notifiers (Slack, webhook, email, log).
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Drills: inject a real fault that reverts itself, measure time to detect and
    /// recovery, report, and keep the history.
    #[command(subcommand)]
    Drill(crate::drill::DrillCommand),
    /// The whole job on one machine in under a minute, without root or servers: sample
    /// customer stacks (local HTTP services), keys, a file:// store and a plan; backups; a
    /// drill that stops the services and recovers them from the encrypted backups onto
    /// "spare" local services; the report. Cleans up what it started.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: DIR/NAME.pub.asc (certificate, give it to backup hosts) and
    /// DIR/NAME.sec.asc (secret key, keep it away from backup hosts; needed only to restore).
    Generate {
        /// Key name, usually the customer or stack ([A-Za-z0-9._-]).
        #[arg(long)]
        name: String,
        /// Directory for the key files (created if missing).
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// List the keys in a directory: name, fingerprint, created, expires, secret or public.
    List {
        /// Directory with *.asc, *.pgp or *.gpg key files.
        #[arg(long)]
        dir: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where a secret key's passphrase comes from (never from the command line).
#[derive(Debug, Args, Clone, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "passphrase_file")]
    pub passphrase_env: Option<String>,
    /// Read the passphrase from this file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The store and the stack every backup command works on: given by flags, or taken from a
/// recovery plan.
#[derive(Debug, Args, Clone)]
pub struct StackArgs {
    /// Store URL: file:///path (local directory) or s3://bucket/prefix (endpoint, region and
    /// credentials from AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_ALLOW_HTTP). Default: the DRP_STORE environment variable (ignored with --plan).
    // DRP_STORE is read by the command, not by clap: clap would count it as given and refuse
    // it beside --plan.
    #[arg(long, value_name = "URL", conflicts_with = "plan")]
    pub store: Option<String>,
    /// Stack (customer service stack) name.
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// Take the store, the keys (the stack's customer's certificates and secret key, the
    /// plan's escrow, signing and trusted keys), the sources and the host they are read on
    /// from this recovery plan instead of flags.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up sources into a new snapshot, encrypted to every --recipient. Prints the
    /// snapshot id. Needs only certificates: no secret key is read unless --sign-with is given.
    #[command(after_help = "\
SOURCE is NAME=PATH (a directory, archived with tar, or a file) or NAME=cmd:COMMAND (the \
standard output of `sh -c COMMAND`, e.g. a database dump; a non-zero exit fails the backup). \
Nothing is committed unless every source succeeds.

Example:
  drp backup create --store file:///backups --stack acme --recipient keys/acme.pub.asc \\
      files=/srv/acme db='cmd:pg_dump -Fc acme'")]
    Create {
        #[command(flatten)]
        stack: StackArgs,
        /// Back up every stack of the --plan (each from its own host).
        #[arg(long, requires = "plan", conflicts_with = "stack")]
        all: bool,
        /// Certificate file to encrypt to (repeatable; a file may hold several certificates).
        #[arg(
            long = "recipient",
            value_name = "CERT",
            required_unless_present = "plan",
            conflicts_with = "plan"
        )]
        recipients: Vec<PathBuf>,
        /// Secret key that signs the manifest (the ops signing key).
        #[arg(long, value_name = "SECKEY", conflicts_with = "plan")]
        sign_with: Option<PathBuf>,
        /// Environment variable holding the --sign-with key's passphrase.
        #[arg(
            long,
            value_name = "VAR",
            requires = "sign_with",
            conflicts_with = "sign_passphrase_file"
        )]
        sign_passphrase_env: Option<String>,
        /// File holding the --sign-with key's passphrase.
        #[arg(long, value_name = "FILE", requires = "sign_with")]
        sign_passphrase_file: Option<PathBuf>,
        /// Sources processed at once (default: number of cores, at most 4).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
        /// zstd compression level (1-19).
        #[arg(long, value_name = "LEVEL", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        compression_level: i32,
        /// Print one JSON object (snapshot, time, sources) instead of the id.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
        /// NAME=PATH or NAME=cmd:COMMAND (with --plan: the stack's sources in the plan).
        #[arg(
            value_name = "SOURCE",
            required_unless_present = "plan",
            conflicts_with = "plan",
            value_parser = parse_source
        )]
        sources: Vec<SourceSpec>,
    },
    /// List a stack's snapshots, newest first.
    List {
        #[command(flatten)]
        stack: StackArgs,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot: a directory source into DIR/NAME/, a file or command source into
    /// the file DIR/NAME. Everything is checked before anything appears in DIR; existing
    /// files are never overwritten. Or stream one source into a command with --pipe-to.
    #[command(group = clap::ArgGroup::new("destination").required(true).args(["to", "pipe_to"]))]
    Restore {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        keys: KeyArgs,
        /// Snapshot id (or a unique prefix), or "latest".
        #[arg(long, value_name = "ID", default_value = "latest")]
        snapshot: String,
        /// Restore only this source (repeatable; default: all).
        #[arg(long = "source", value_name = "NAME")]
        sources: Vec<String>,
        /// Directory to restore into (created if missing).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Stream the source's plaintext (a tar stream for a directory) into the standard
        /// input of `sh -c COMMAND`, e.g. 'psql app' or 'mongorestore --archive'. Needs
        /// exactly one source (--source). If the data turns out bad, the command is killed
        /// before it sees the end of its input.
        #[arg(long, value_name = "COMMAND")]
        pipe_to: Option<String>,
        #[command(flatten)]
        host: HostArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read snapshots back in full (hashes, signature, OpenPGP integrity, decompression)
    /// without writing anything.
    Verify {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        keys: KeyArgs,
        /// Snapshot id (or a unique prefix), "latest" or "all".
        #[arg(long, value_name = "ID", default_value = "latest")]
        snapshot: String,
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshots that no --keep-* rule keeps (restic-style; days, weeks and months are
    /// UTC), and data left by interrupted backups: their objects, and their uploads never
    /// completed nor aborted (S3 multipart uploads, whose parts are invisible but billed).
    Prune {
        #[command(flatten)]
        stack: StackArgs,
        /// Keep the newest N snapshots.
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep the newest snapshot of each of the last N days that have one.
        #[arg(long, value_name = "N")]
        keep_daily: Option<u32>,
        /// Keep the newest snapshot of each of the last N ISO weeks that have one.
        #[arg(long, value_name = "N")]
        keep_weekly: Option<u32>,
        /// Keep the newest snapshot of each of the last N months that have one.
        #[arg(long, value_name = "N")]
        keep_monthly: Option<u32>,
        /// Data of interrupted backups (no manifest) is removed, and their incomplete uploads
        /// aborted, once older than this, so a backup still running is left alone (e.g. 24h,
        /// 90m, 0s).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        orphan_grace: String,
        /// Print what would be removed or aborted, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The machine a backup reads from or a restore writes to, when it is not this one.
#[derive(Debug, Args, Clone, Default)]
pub struct HostArgs {
    /// Run on this host over SSH instead of locally: sources are read there (create), data is
    /// restored or piped there (restore). Streamed end to end; no temporary copy on either side.
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub host: Option<SshTarget>,
    /// Private key for --host (default: the keys of ssh-agent).
    #[arg(long, value_name = "FILE", requires = "host")]
    pub ssh_key: Option<PathBuf>,
    /// Environment variable holding the --ssh-key passphrase.
    #[arg(
        long,
        value_name = "VAR",
        requires = "ssh_key",
        conflicts_with = "ssh_passphrase_file"
    )]
    pub ssh_passphrase_env: Option<String>,
    /// File holding the --ssh-key passphrase.
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    pub ssh_passphrase_file: Option<PathBuf>,
    /// known_hosts file that --host's key is checked against (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE", requires = "host")]
    pub known_hosts: Option<PathBuf>,
    /// strict (default): refuse unknown and changed host keys; accept-new: record unknown
    /// keys, refuse changed ones; off: check nothing (only for throwaway hosts).
    #[arg(long, value_name = "MODE", default_value = "strict", requires = "host")]
    pub host_key_checking: HostKeyChecking,
    /// Seconds to connect, and then to complete the SSH handshake and authentication.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, requires = "host")]
    pub connect_timeout: u64,
}

/// Keys that open (and signers that vouch for) a stack's backups.
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// The stack's secret key file (from `drp keys generate` or `gpg --export-secret-keys`).
    #[arg(
        long,
        value_name = "SECKEY",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Require the manifest to be signed by this certificate (repeatable: any of them).
    #[arg(long = "trust", value_name = "CERT", conflicts_with = "plan")]
    pub trust: Vec<PathBuf>,
}

fn parse_source(spec: &str) -> Result<SourceSpec, String> {
    spec.parse()
        .map_err(|e: drp_core::backup::Error| e.to_string())
}

/// `drp probe`: exactly one target, optional conditions.
#[derive(Debug, Args, Clone)]
#[command(
    group = clap::ArgGroup::new("target").required(true).args(["url", "tcp", "command", "dns", "tls"]),
    after_help = "\
Exit status: 0 healthy; 1 unhealthy (the message says why); 2 usage error, including a \
--condition that does not parse (the error names its column) or reads what this kind of probe \
does not observe.

Conditions (all must hold; defaults: --url [STATUS] < 400, --tcp [CONNECTED] == true, \
--command [EXIT_CODE] == 0, --tls [CERTIFICATE_EXPIRATION] > 72h):
  [STATUS] == 200          [STATUS] == any(200, 204)      [RESPONSE_TIME] < 500
  [BODY].status == UP      [BODY].items[0].name == web    len([BODY].items) > 0
  [BODY] == pat(*ready*)   [CONNECTED] == true            [CERTIFICATE_EXPIRATION] > 72h
  [IP] == 10.0.0.5         [EXIT_CODE] == 0
Operators: == != < <= > >=. Durations: 500ms, 5s, 2m, 72h, 7d.

Examples:
  drp probe --url https://acme.example/health --condition '[STATUS] == 200' \\
      --condition '[BODY].status == UP'
  drp probe --tcp db.acme.example:5432 --wait 2m
  drp probe --tls acme.example --condition '[CERTIFICATE_EXPIRATION] > 14d'"
)]
pub struct ProbeArgs {
    /// Send an HTTP(S) request to this URL. TLS certificates are verified unless --insecure.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Connect over TCP.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Run `sh -c COMMAND` here; [BODY] is its standard output.
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// Resolve this name with the system resolver.
    #[arg(long, value_name = "NAME")]
    pub dns: Option<String>,
    /// Read the TLS certificate of this server (port 443 by default).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub tls: Option<String>,
    /// HTTP method (default GET).
    #[arg(long, value_name = "METHOD", requires = "url")]
    pub method: Option<String>,
    /// Request header (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'", requires = "url", value_parser = crate::probe::parse_header)]
    pub headers: Vec<(String, String)>,
    /// Request body.
    #[arg(long, value_name = "BODY", requires = "url")]
    pub body: Option<String>,
    /// Accept any certificate (self-signed, expired, other name): only for --url and --tls.
    #[arg(long)]
    pub insecure: bool,
    /// Also trust the CA certificates (PEM) in this file.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Name to send in SNI and check the certificate against (--tls; default: the host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
    /// With --dns: the name must resolve to exactly these addresses (repeatable).
    #[arg(long = "expect", value_name = "ADDRESS", requires = "dns")]
    pub expect: Vec<IpAddr>,
    /// Condition that must hold (repeatable), e.g. '[STATUS] == 200'.
    #[arg(long = "condition", value_name = "CONDITION", value_parser = crate::probe::parse_condition)]
    pub conditions: Vec<String>,
    /// Give up on one probe after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::probe::parse_duration)]
    pub timeout: Duration,
    /// Probe again every --interval until healthy or this long has passed.
    #[arg(long, value_name = "DURATION", value_parser = crate::probe::parse_duration)]
    pub wait: Option<Duration>,
    /// Time between probes with --wait.
    #[arg(long, value_name = "DURATION", default_value = "2s", requires = "wait", value_parser = crate::probe::parse_duration)]
    pub interval: Duration,
    /// With --wait: consecutive healthy results needed.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "wait")]
    pub success_threshold: u32,
    /// Print the result as JSON (observed values, each condition) instead of one line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through every notifier of a config file (to the team only) and
    /// print, per notifier, whether it was sent. Exit status 1 if any failed.
    #[command(after_help = "\
The config file holds [[notifiers]] tables (kind = slack, webhook, email or log); secrets are \
given by reference only (url_env / url_file, password_env / password_file). See the README.")]
    Test {
        /// Notifiers config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Attempts per notifier before it counts as failed (retries back off, honouring
        /// Retry-After).
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        attempts: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Reports a usage error found after parsing, the way clap reports its own, and exits with
/// status 2.
pub fn usage_error(message: String) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}
