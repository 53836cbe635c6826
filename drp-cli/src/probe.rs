//! `drp probe`: one probe from flags, its result explained; with `--wait`, probed until
//! healthy. Exit status 0 healthy, 1 unhealthy, 2 usage (a condition that does not parse,
//! or does not fit the kind of probe, names its column).

use std::sync::Arc;
use std::time::Duration;

use drp_core::monitor::probe::{
    CommandProbeSpec, DnsProbeSpec, HttpProbeSpec, ProbeError, TcpProbeSpec, TlsProbeSpec,
};
use drp_core::monitor::{HealthProbe, ProbeResult, ProbeRunner, ProbeSpec, RunnerOptions};

use crate::cli::ProbeArgs;
use crate::output::{CommandError, print_json};

pub async fn run(args: ProbeArgs) -> Result<u8, CommandError> {
    let probe = build(&args)?;
    let result = match args.wait {
        None => probe.check().await,
        Some(wait) => {
            let options = RunnerOptions {
                interval: args.interval,
                success_threshold: args.success_threshold,
                ..RunnerOptions::default()
            };
            let mut runner = ProbeRunner::new(probe.clone(), options);
            let outcome = runner
                .wait_until_healthy(tokio::time::Instant::now() + wait)
                .await;
            match outcome.last {
                Some(last) if outcome.reached => last,
                Some(mut last) => {
                    // A healthy last result that did not reach --success-threshold in time.
                    if last.healthy {
                        last.healthy = false;
                        last.message = format!(
                            "{}; but not {} healthy results in a row within {}",
                            last.message,
                            args.success_threshold,
                            drp_core::monitor::human_duration(wait)
                        );
                    }
                    last
                }
                None => {
                    return Err(CommandError::message(format!(
                        "{}: no result within {}",
                        probe.target(),
                        drp_core::monitor::human_duration(wait)
                    )));
                }
            }
        }
    };
    print(&result, args.json);
    Ok(if result.healthy {
        drp_core::exit::SUCCESS
    } else {
        drp_core::exit::FAILURE
    })
}

fn print(result: &ProbeResult, json: bool) {
    if json {
        print_json(result);
    } else if result.healthy {
        println!("healthy: {}", result.message);
    } else {
        println!("unhealthy: {}", result.message);
    }
}

fn build(args: &ProbeArgs) -> Result<Arc<dyn HealthProbe>, CommandError> {
    let conditions = args.conditions.clone();
    let timeout = Some(args.timeout);
    let spec = if let Some(url) = &args.url {
        ProbeSpec::Http(HttpProbeSpec {
            url: url.clone(),
            method: args.method.clone(),
            headers: args.headers.iter().cloned().collect(),
            body: args.body.clone(),
            insecure: args.insecure,
            ca_file: args.ca_file.clone(),
            conditions,
            timeout,
            ..HttpProbeSpec::default()
        })
    } else if let Some(target) = &args.tcp {
        let (host, port) = host_port(target, None).unwrap_or_else(|e| crate::cli::usage_error(e));
        ProbeSpec::Tcp(TcpProbeSpec {
            host,
            port,
            conditions,
            timeout,
            ..TcpProbeSpec::default()
        })
    } else if let Some(command) = &args.command {
        ProbeSpec::Command(CommandProbeSpec {
            command: command.clone(),
            conditions,
            timeout,
            ..CommandProbeSpec::default()
        })
    } else if let Some(name) = &args.dns {
        ProbeSpec::Dns(DnsProbeSpec {
            name: name.clone(),
            expect: args.expect.clone(),
            conditions,
            timeout,
            ..DnsProbeSpec::default()
        })
    } else if let Some(target) = &args.tls {
        let (host, port) =
            host_port(target, Some(443)).unwrap_or_else(|e| crate::cli::usage_error(e));
        ProbeSpec::Tls(TlsProbeSpec {
            host,
            port: Some(port),
            server_name: args.server_name.clone(),
            insecure: args.insecure,
            ca_file: args.ca_file.clone(),
            conditions,
            timeout,
            ..TlsProbeSpec::default()
        })
    } else {
        unreachable!("clap requires one of --url, --tcp, --command, --dns, --tls")
    };
    spec.build().map_err(|error| match error {
        // The command line asked for something that cannot be: a usage error.
        ProbeError::Condition { .. } | ProbeError::Placeholder { .. } => {
            crate::cli::usage_error(error.to_string())
        }
        other => CommandError::message(other.to_string()),
    })
}

/// `HOST:PORT`, `[V6]:PORT`, or `HOST` when a default port is given.
fn host_port(target: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "'{target}': expected HOST:PORT{}",
            if default_port.is_some() {
                " or HOST"
            } else {
                ""
            }
        )
    };
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, Some(port.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (target, None),
    };
    let port = port.or(default_port).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// `2s` → 2 seconds (clap value parser).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    drp_core::monitor::parse_duration(text).map_err(|e| e.to_string())
}

/// A condition, checked when the command line is parsed.
pub fn parse_condition(text: &str) -> Result<String, String> {
    drp_core::monitor::Condition::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `'Name: value'`.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}': expected 'NAME: VALUE'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("'{text}': the header name is empty"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_like_addresses() {
        let ok = |t: &str, d| host_port(t, d).unwrap();
        assert_eq!(ok("db:5432", None), ("db".into(), 5432));
        assert_eq!(ok("[::1]:443", None), ("::1".into(), 443));
        assert_eq!(ok("acme.example", Some(443)), ("acme.example".into(), 443));
        assert_eq!(ok("::1", Some(443)), ("::1".into(), 443));
        assert_eq!(
            host_port("db", None).unwrap_err(),
            "'db': expected HOST:PORT"
        );
        assert!(host_port("db:http", None).is_err());
    }

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert!(parse_header("no colon").is_err());
    }
}
