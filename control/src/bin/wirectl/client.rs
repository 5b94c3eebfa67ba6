//! Connecting to a member and turning transport failures and gRPC statuses into messages a
//! person can act on.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use wire_control::proto::admin::admin_service_client::AdminServiceClient;

/// How long connecting may take before `wirectl` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take (a write waits for a raft commit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The admin client for `endpoint` (`HOST:PORT` or a `http://` URL), connected.
pub async fn connect(endpoint: &str) -> Result<AdminServiceClient<Channel>, String> {
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let target = Endpoint::from_shared(uri).map_err(|err| {
        format!("`{endpoint}` is not an endpoint ({err}); give HOST:PORT, like 127.0.0.1:7400")
    })?;
    let channel = target
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(|err| unreachable(endpoint, &err))?;
    Ok(AdminServiceClient::new(channel))
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
        Code::Unavailable if status.message().is_empty() || is_transport(status) => {
            unreachable(endpoint, status)
        }
        Code::DeadlineExceeded => format!(
            "{endpoint} did not answer within {} s (is a majority of the cluster up?)",
            REQUEST_TIMEOUT.as_secs()
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
