//! HTTP(S) probe (reqwest, rustls with the platform verifier: the client object_store uses).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{
    Attempt, CertificateInfo, HealthProbe, HttpProbeSpec, MAX_BODY_BYTES, Observation, ProbeError,
    ProbeKind, ProbeResult, after, error_chain, parse_conditions, read_ca_file, timed,
};
use crate::condition::Condition;
use crate::duration::HumanDuration;

/// An HTTP(S) request checked against conditions. Build it from an [`HttpProbeSpec`].
#[derive(Debug)]
pub struct HttpProbe {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    target: String,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    timeout: Duration,
    conditions: Vec<Condition>,
}

impl HttpProbe {
    /// Checks the spec and builds the client (reading `ca_file`).
    pub fn new(spec: &HttpProbeSpec) -> Result<HttpProbe, ProbeError> {
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| ProbeError::invalid("url", format!("'{}': {e}", spec.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProbeError::invalid(
                "url",
                format!("'{}': expected an http:// or https:// URL", spec.url),
            ));
        }
        let method_text = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method_text.as_bytes()).map_err(|_| {
            ProbeError::invalid("method", format!("'{method_text}' is not an HTTP method"))
        })?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ProbeError::invalid("headers", format!("'{name}' is not a header name"))
            })?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                ProbeError::invalid(
                    "headers",
                    format!("the value of {name} is not a valid header value"),
                )
            })?;
            headers.append(name, value);
        }
        let timeout = spec.timeout.unwrap_or(super::DEFAULT_TIMEOUT);
        // No reqwest timeout: `check` bounds the whole exchange, body included, and says so.
        let mut builder = reqwest::Client::builder()
            .tls_info(true)
            .user_agent(concat!("drp/", env!("CARGO_PKG_VERSION")));
        if spec.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &spec.ca_file {
            let certs = read_ca_file(path)?
                .into_iter()
                .map(|der| reqwest::Certificate::from_der(&der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ProbeError::invalid("ca_file", format!("{}: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            ProbeError::invalid(
                "url",
                format!("cannot set up an HTTP client: {}", error_chain(&e)),
            )
        })?;
        Ok(HttpProbe {
            client,
            method,
            target: url.to_string(),
            url,
            headers,
            body: spec.body.clone(),
            timeout,
            conditions: parse_conditions(
                ProbeKind::Http,
                &spec.conditions,
                Some(HttpProbeSpec::DEFAULT_CONDITION),
            )?,
        })
    }

    /// Fills `observation`. `Ok(Some(reason))`: no response at all (a connection refused is an
    /// observation: `[CONNECTED] == false`); `Err`: the response broke off.
    async fn observe(&self, observation: &mut Observation) -> Result<Option<String>, String> {
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                observation.connected = Some(false);
                return Ok(Some(error_chain(&error.without_url())));
            }
        };
        observation.connected = Some(true);
        observation.status = Some(response.status().as_u16());
        observation
            .addresses
            .extend(response.remote_addr().map(|a| a.ip()));
        if let Some(der) = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
        {
            observation.certificate = CertificateInfo::from_der(der, Timestamp::now()).ok();
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() == MAX_BODY_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    return Err(format!(
                        "HTTP {} from {}, then the body failed: {}",
                        response.status().as_u16(),
                        self.target,
                        error_chain(&error.without_url())
                    ));
                }
            }
        }
        observation.body = Some(String::from_utf8_lossy(&body).into_owned());
        Ok(None)
    }
}

#[async_trait]
impl HealthProbe for HttpProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Http
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> ProbeResult {
        let time = Timestamp::now();
        let mut observation = Observation::default();
        let (outcome, elapsed) = timed(self.timeout, self.observe(&mut observation)).await;
        observation.response_time = elapsed;
        let (headline, error) = match outcome {
            Some(Ok(None)) => (
                format!(
                    "HTTP {} from {} {}",
                    observation.status.unwrap_or_default(),
                    self.target,
                    after(elapsed)
                ),
                None,
            ),
            Some(Ok(Some(reason))) => (
                format!(
                    "no HTTP response from {} {}: {reason}",
                    self.target,
                    after(elapsed)
                ),
                None,
            ),
            Some(Err(error)) => (String::new(), Some(format!("{error} ({})", after(elapsed)))),
            None => (
                String::new(),
                Some(format!(
                    "no complete HTTP response from {} within {}",
                    self.target,
                    HumanDuration(self.timeout)
                )),
            ),
        };
        Attempt {
            kind: ProbeKind::Http,
            target: self.target.clone(),
            time,
            observation,
            headline,
            error,
        }
        .evaluate(&self.conditions)
    }
}
