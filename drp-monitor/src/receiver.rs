//! The alert receiver: an HTTP endpoint that external monitoring POSTs to, so that a drill
//! measures time to detect by the team's real monitoring.
//!
//! - Alertmanager webhooks (`{"version": "4", "alerts": [...]}`) give one alert per entry,
//!   with its status, labels, annotations and `startsAt`.
//! - Any other JSON body (Gatus, StatusCake, ElastAlert custom webhooks...) is one alert,
//!   kept as is, with no labels.
//!
//! Each alert is stamped with the time it arrived and its source: `?source=NAME`, else the
//! `X-Drp-Source` header, else the request path (`POST /alertmanager` → `alertmanager`).
//! Bodies over the size limit get 413; bodies that are not JSON get 400 and are counted.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Limits of an [`AlertReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverOptions {
    /// Largest accepted request body (default 1 MiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Alerts kept for [`AlertReceiver::alerts`] (default 10 000); the oldest go first.
    pub max_kept: usize,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            max_body_bytes: 1024 * 1024,
            max_kept: 10_000,
        }
    }
}

/// One alert, as received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedAlert {
    /// Arrival order, from 1.
    pub sequence: u64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Who sent it (`?source=`, `X-Drp-Source`, or the path).
    pub source: String,
    /// `firing` or `resolved` (Alertmanager).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Labels (Alertmanager); empty for other bodies.
    pub labels: BTreeMap<String, String>,
    /// Annotations (Alertmanager).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the monitoring says the problem started (Alertmanager `startsAt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// The alert entry (Alertmanager) or the whole body.
    pub body: serde_json::Value,
}

impl ReceivedAlert {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// False only for alerts that say they are resolved.
    pub fn is_firing(&self) -> bool {
        self.status.as_deref() != Some("resolved")
    }
}

#[derive(Debug)]
struct Shared {
    options: ReceiverOptions,
    alerts: Mutex<VecDeque<ReceivedAlert>>,
    sequence: AtomicU64,
    malformed: AtomicU64,
    sender: broadcast::Sender<ReceivedAlert>,
}

/// A running receiver. Dropping it (or [`AlertReceiver::shutdown`]) stops it.
#[derive(Debug)]
pub struct AlertReceiver {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl AlertReceiver {
    /// Listens on `addr` (port 0: any free port; see [`AlertReceiver::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        options: ReceiverOptions,
    ) -> std::io::Result<AlertReceiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (sender, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            options,
            alerts: Mutex::new(VecDeque::new()),
            sequence: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            sender,
        });
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, shared.clone(), stop.clone()));
        tracing::info!(%local_addr, "alert receiver listening");
        Ok(AlertReceiver {
            local_addr,
            shared,
            stop,
            server: Some(server),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The alerts received so far (at most `max_kept`), oldest first.
    pub fn alerts(&self) -> Vec<ReceivedAlert> {
        self.shared
            .alerts
            .lock()
            .expect("alerts lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Requests refused because their body was not JSON.
    pub fn malformed_count(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }

    /// Every alert from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReceivedAlert> {
        self.shared.sender.subscribe()
    }

    /// The first alert (already received, or arriving before `deadline`) that satisfies
    /// `predicate`.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&ReceivedAlert) -> bool,
        deadline: Instant,
    ) -> Option<ReceivedAlert> {
        // Subscribe before looking at what is there, so nothing falls in between.
        let mut receiver = self.subscribe();
        let mut seen = 0;
        loop {
            let unseen: Vec<ReceivedAlert> = self
                .alerts()
                .into_iter()
                .filter(|a| a.sequence > seen)
                .collect();
            for alert in unseen {
                if predicate(&alert) {
                    return Some(alert);
                }
                seen = alert.sequence;
            }
            loop {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    // Missed some: look at the kept list again.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Ok(alert)) if alert.sequence <= seen => {}
                    Ok(Ok(alert)) => {
                        if predicate(&alert) {
                            return Some(alert);
                        }
                        seen = alert.sequence;
                    }
                }
            }
        }
    }

    /// Stops listening and closes open connections.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for AlertReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    // Dropping the set when the loop ends aborts the connections still open.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. out of file descriptors: keep serving, without spinning.
                    tracing::warn!("alert receiver: accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("alert receiver: connection ended: {error}");
            }
        });
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    use serde_json::json;
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => return reply(StatusCode::OK, json!({"status": "ok"})),
        (&Method::POST, _) => {}
        _ => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "POST alerts as JSON"}),
            );
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("POST"),
            );
            return response;
        }
    }
    let source = source_of(&request);
    let limit = shared.options.max_body_bytes;
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("the body is over {limit} bytes")}),
        )
    };
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(error) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("cannot read the body: {error}")}),
            );
        }
    };
    let alerts = match parse_body(&body) {
        Ok(alerts) => alerts,
        Err(error) => {
            shared.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, "alert receiver: refused a body that is not JSON: {error}");
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the body is not JSON: {error}")}),
            );
        }
    };
    let received_at = Timestamp::now();
    let count = alerts.len();
    {
        let mut kept = shared.alerts.lock().expect("alerts lock");
        for parsed in alerts {
            let alert = ReceivedAlert {
                sequence: shared.sequence.fetch_add(1, Ordering::Relaxed) + 1,
                received_at,
                source: source.clone(),
                status: parsed.status,
                labels: parsed.labels,
                annotations: parsed.annotations,
                starts_at: parsed.starts_at,
                body: parsed.body,
            };
            tracing::info!(%source, labels = ?alert.labels, "alert received");
            // Sent under the lock so subscribers see alerts in sequence order.
            let _ = shared.sender.send(alert.clone());
            kept.push_back(alert);
            while kept.len() > shared.options.max_kept {
                kept.pop_front();
            }
        }
    }
    reply(StatusCode::OK, json!({"received": count}))
}

fn source_of(request: &Request<Incoming>) -> String {
    if let Some(query) = request.uri().query()
        && let Some((_, source)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "source")
        && !source.is_empty()
    {
        return source.into_owned();
    }
    if let Some(source) = request
        .headers()
        .get("x-drp-source")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
    {
        return source.to_owned();
    }
    match request.uri().path().trim_matches('/') {
        "" => "unknown".to_owned(),
        path => path.to_owned(),
    }
}

/// One alert as read from a request body, before the receiver numbers, stamps and keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAlert {
    /// `firing` or `resolved` (Alertmanager).
    pub status: Option<String>,
    /// Labels (Alertmanager).
    pub labels: BTreeMap<String, String>,
    /// Annotations (Alertmanager).
    pub annotations: BTreeMap<String, String>,
    /// Alertmanager `startsAt`, when it is a timestamp.
    pub starts_at: Option<Timestamp>,
    /// The alert entry (Alertmanager) or the whole body.
    pub body: serde_json::Value,
}

/// Reads a request body as the receiver does: JSON or an error; an Alertmanager webhook gives
/// one alert per entry (possibly none), any other JSON value one alert. Public so that the
/// parser can be fuzzed without a server.
pub fn parse_body(body: &[u8]) -> Result<Vec<ParsedAlert>, serde_json::Error> {
    serde_json::from_slice(body).map(alerts_of)
}

/// An Alertmanager webhook gives one alert per entry; anything else is one alert.
fn alerts_of(value: serde_json::Value) -> Vec<ParsedAlert> {
    let is_alertmanager = value
        .get("version")
        .is_some_and(serde_json::Value::is_string)
        && value.get("alerts").is_some_and(serde_json::Value::is_array);
    if !is_alertmanager {
        return vec![ParsedAlert {
            status: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            starts_at: None,
            body: value,
        }];
    }
    let group_status = value
        .get("status")
        .and_then(|s| s.as_str())
        .map(str::to_owned);
    let strings = |object: Option<&serde_json::Value>| -> BTreeMap<String, String> {
        object
            .and_then(|o| o.as_object())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut parsed = Vec::new();
    if let Some(serde_json::Value::Array(entries)) = value.get("alerts") {
        for entry in entries {
            parsed.push(ParsedAlert {
                status: entry
                    .get("status")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned)
                    .or_else(|| group_status.clone()),
                labels: strings(entry.get("labels")),
                annotations: strings(entry.get("annotations")),
                starts_at: entry
                    .get("startsAt")
                    .and_then(|s| s.as_str())
                    .and_then(|s| s.parse::<Timestamp>().ok()),
                body: entry.clone(),
            });
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_into_alerts_or_a_json_error() {
        let alertmanager = br#"{"version":"4","status":"firing","alerts":[
            {"labels":{"alertname":"Down","n":3},"startsAt":"2026-11-29T10:15:00Z"},
            {"status":"resolved","labels":{},"startsAt":"not a time"}]}"#;
        let alerts = parse_body(alertmanager).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].status.as_deref(), Some("firing"));
        assert_eq!(alerts[0].labels["n"], "3");
        assert!(alerts[0].starts_at.is_some());
        assert_eq!(alerts[1].status.as_deref(), Some("resolved"));
        assert_eq!(alerts[1].starts_at, None);
        // Any other JSON is one alert, kept whole; an Alertmanager body may hold none.
        let other = parse_body(br#"[1, "two"]"#).unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].body, serde_json::json!([1, "two"]));
        assert!(
            parse_body(br#"{"version":"4","alerts":[]}"#)
                .unwrap()
                .is_empty()
        );
        assert!(parse_body(b"down!").is_err());
        assert!(parse_body(b"").is_err());
    }
}
