//! Connecting to a member and turning transport failures and gRPC statuses into messages a
//! person can act on.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use wire_control::proto::admin::admin_service_client::AdminServiceClient;

/// The admin client, sending the bearer token with every call when there is one.
pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The header for `token`; refuses text that cannot be a header (the token is not shown).
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Bearer(None));
        };
        let value = format!("Bearer {token}").parse().map_err(|_| {
            "--token (or WIRE_TOKEN) holds characters a token never has; copy it again".to_string()
        })?;
        Ok(Bearer(Some(value)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How long connecting may take before `wirectl` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take (a write waits for a raft commit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The admin client for `endpoint` (`HOST:PORT`, or an `http://` or `https://` URL),
/// connected, over TLS when `tls` is given.
pub async fn connect(
    endpoint: &str,
    tls: Option<ClientTlsConfig>,
    bearer: Bearer,
) -> Result<Client, String> {
    let uri = match (endpoint.contains("://"), &tls) {
        (true, _) => endpoint.to_string(),
        (false, Some(_)) => format!("https://{endpoint}"),
        (false, None) => format!("http://{endpoint}"),
    };
    let mut target = Endpoint::from_shared(uri).map_err(|err| {
        format!("`{endpoint}` is not an endpoint ({err}); give HOST:PORT, like 127.0.0.1:7400")
    })?;
    let secure = tls.is_some();
    if let Some(tls) = tls {
        let host = wire_control::tls::host_of(endpoint.rsplit("://").next().unwrap_or(endpoint));
        target = target
            .tls_config(tls.domain_name(host))
            .map_err(|err| format!("tls for {endpoint}: {err}"))?;
    }
    let channel = target
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(|err| unreachable_with(endpoint, &err, secure))?;
    Ok(AdminServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(wire_control::transport::MESSAGE_BYTES_MAX))
}

/// [`unreachable`], with a hint about TLS when a connection without it was reset (a TLS
/// listener hangs up on plaintext).
fn unreachable_with(
    endpoint: &str,
    err: &(dyn std::error::Error + 'static),
    secure: bool,
) -> String {
    let message = unreachable(endpoint, err);
    if secure {
        return message;
    }
    format!("{message} (if the node serves TLS, give --ca with the cluster CA)")
}

fn unreachable(endpoint: &str, err: &(dyn std::error::Error + 'static)) -> String {
    format!(
        "cannot reach {endpoint}: {}; is `wire start` running? set --endpoint or WIRE_ENDPOINT",
        root_cause(err)
    )
}

/// The innermost cause of `err`, in lower case without the `(os error N)` suffix.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// The message for a failed request to `endpoint`.
pub fn status_message(endpoint: &str, status: &tonic::Status) -> String {
    use tonic::Code;
    match status.code() {
        Code::Unavailable if status.message().is_empty() => unreachable(endpoint, status),
        // Connected, then the connection failed under the request: most often TLS settings
        // that do not fit the node's.
        _ if is_transport(status) => format!(
            "{endpoint} broke off the connection ({}): if the node serves TLS, give --ca with \
             the cluster CA; if it requires client certificates, also --cert and --key",
            root_cause(status)
        ),
        Code::DeadlineExceeded => format!(
            "{endpoint} did not answer within {} s (is a majority of the cluster up?)",
            REQUEST_TIMEOUT.as_secs()
        ),
        Code::Unauthenticated => format!(
            "{endpoint} refused the request: {} (the node serves TLS, so every call needs \
             --token, WIRE_TOKEN or a client certificate with a role)",
            status.message()
        ),
        Code::Unimplemented => format!(
            "{endpoint} does not serve this request (is it a `wire start` node of the same \
             version?)"
        ),
        _ => status.message().to_string(),
    }
}

fn is_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}
