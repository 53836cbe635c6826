//! `drp probe` and `drp notify test` on the real binary, against real HTTP servers on
//! loopback that record what they receive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that records each request and answers
/// `respond(request number, path)` = (status, body). One request per connection.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    fn start(respond: impl Fn(usize, &str) -> (u16, String) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                let mut content_length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        content_length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; content_length];
                let _ = reader.read_exact(&mut body);
                let n = {
                    let mut all = recorded.lock().unwrap();
                    all.push(Recorded {
                        path: path.clone(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    all.len() - 1
                };
                let (status, body) = respond(n, &path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn drp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drp"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn health_server() -> Server {
    Server::start(|_, path| match path {
        "/health" => (200, r#"{"status":"UP","items":[{"name":"web"}]}"#.into()),
        _ => (502, "bad gateway".into()),
    })
}

#[test]
fn a_healthy_probe_exits_0() {
    let server = health_server();
    let url = server.url("/health");
    let out = drp(
        &[
            "probe",
            "--url",
            &url,
            "--condition",
            "[STATUS] == 200",
            "--condition",
            "[BODY].items[0].name == web",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("healthy: HTTP 200 from {url} after ")),
        "{text}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn an_unhealthy_probe_exits_1_and_says_why() {
    let server = health_server();
    let url = server.url("/broken");
    let out = drp(
        &["probe", "--url", &url, "--condition", "[STATUS] == 200"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("unhealthy: HTTP 502 from {url} after ")),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with(" ms; expected [STATUS] == 200"),
        "{text}"
    );

    let url = server.url("/health");
    let out = drp(
        &[
            "probe",
            "--url",
            &url,
            "--condition",
            "[BODY].status == DOWN",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], false);
    assert_eq!(json["kind"], "http");
    assert_eq!(json["observation"]["status"], 200);
    assert_eq!(json["conditions"][0]["condition"], "[BODY].status == DOWN");
    assert_eq!(json["conditions"][0]["ok"], false);
    assert_eq!(json["conditions"][0]["actual"], "UP");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .ends_with("; expected [BODY].status == DOWN (got UP)")
    );
}

#[test]
fn a_condition_that_does_not_parse_exits_2_naming_the_column() {
    let out = drp(
        &[
            "probe",
            "--url",
            "http://127.0.0.1:9/",
            "--condition",
            "[STATUS] == any(200,)",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unexpected ')' at column 21: expected a value"),
        "{}",
        stderr(&out)
    );

    // Parses, but a TCP probe has no HTTP status.
    let out = drp(
        &[
            "probe",
            "--tcp",
            "127.0.0.1:9",
            "--condition",
            "[STATUS] == 200",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a tcp probe does not observe [STATUS]"),
        "{}",
        stderr(&out)
    );

    let out = drp(&["probe", "--tcp", "db"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'db': expected HOST:PORT"),
        "{}",
        stderr(&out)
    );
    let out = drp(
        &[
            "probe",
            "--url",
            "http://127.0.0.1:9/",
            "--tcp",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "one target at a time");
}

#[test]
fn tcp_and_command_probes_from_the_command_line() {
    let server = health_server();
    let target = format!("127.0.0.1:{}", server.port);
    let out = drp(&["probe", "--tcp", &target], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with(&format!("healthy: connected to {target} after ")));

    let out = drp(
        &[
            "probe",
            "--command",
            "echo '{\"queue\": 12}'",
            "--condition",
            "[BODY].queue < 10",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("; expected [BODY].queue < 10 (got 12)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn wait_probes_until_healthy() {
    // Fails twice, then answers 200.
    let server = Server::start(|n, _| {
        if n < 2 {
            (503, "starting".into())
        } else {
            (200, "ready".into())
        }
    });
    let url = server.url("/");
    let out = drp(
        &[
            "probe",
            "--url",
            &url,
            "--wait",
            "60s",
            "--interval",
            "10ms",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(server.requests().len(), 3);
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("notifiers.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn notify_test_sends_through_each_notifier_and_reports() {
    let hook = Server::start(|_, _| (200, "{}".into()));
    let broken = Server::start(|_, _| (500, "boom".into()));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("notifications.jsonl");
    std::fs::write(
        dir.path().join("broken-url"),
        broken.url("/services/SECRET-B"),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl_env = \"DRP_TEST_HOOK_URL\"\n\n\
             [[notifiers]]\nname = \"journal\"\nkind = \"log\"\npath = {log:?}\n"
        ),
    );
    let hook_url = hook.url("/hooks/SECRET-A");
    let out = drp(
        &["notify", "test", "--config", &config],
        &[("DRP_TEST_HOOK_URL", &hook_url)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "sent     hook (webhook)\nsent     journal (log)\n"
    );
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hooks/SECRET-A");
    let json: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(json["event"], "test");
    assert_eq!(json["audience"], "team");
    assert_eq!(json["subject"], "[drp] test notification");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);

    // A failing notifier: reported, exit status 1, the others still sent.
    let config = write_config(
        dir.path(),
        &format!(
            "[[notifiers]]\nname = \"broken\"\nkind = \"slack\"\nurl_file = {:?}\n\n\
             [[notifiers]]\nname = \"journal\"\nkind = \"log\"\npath = {log:?}\n",
            dir.path().join("broken-url")
        ),
    );
    let out = drp(
        &[
            "notify",
            "test",
            "--config",
            &config,
            "--attempts",
            "2",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(broken.requests().len(), 2);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["event"], "test");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries[0]["notifier"], "broken");
    assert_eq!(deliveries[0]["status"], "failed");
    assert_eq!(deliveries[0]["attempts"], 2);
    assert_eq!(
        deliveries[0]["error"],
        format!("HTTP 500 from 127.0.0.1:{}: boom", broken.port)
    );
    assert_eq!(deliveries[1]["status"], "sent");
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}

#[test]
fn notify_test_refuses_a_config_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl_env = \"DRP_TEST_UNSET_SLACK\"\n",
    );
    let out = drp(&["notify", "test", "--config", &config], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "drp: error: notifier 'ops' (slack): environment variable DRP_TEST_UNSET_SLACK is not set\n"
    );

    let config = write_config(
        dir.path(),
        "[[notifiers]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"https://x\"\n",
    );
    let out = drp(&["notify", "test", "--config", &config], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown field `url`"),
        "{}",
        stderr(&out)
    );
}
