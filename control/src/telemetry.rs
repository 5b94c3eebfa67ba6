//! Traces out of the process (`--otlp-endpoint`): the `tracing` spans of the control plane
//! (checkpoints, restores, raft events, admin calls) exported over OTLP/HTTP (protobuf).
//!
//! Spans go to the OpenTelemetry SDK's batch processor, which queues them (dropping them
//! when its queue is full, never waiting) and exports them from its own thread with a
//! blocking HTTP client: no data core and no control-plane task ever waits on the collector.
//! A collector that cannot be reached costs one warning per outage on stderr. Only the
//! binaries install the layer this module builds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// The path OTLP/HTTP collectors take traces on.
const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often queued spans are exported.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// The crates whose spans are exported: Wire's own (`wire` is the binary). Spans of the HTTP
/// and gRPC libraries stay out, the exporter's own requests among them.
const TRACED: [&str; 6] = [
    "wire",
    "wire_control",
    "wire_actors",
    "wire_storage",
    "wire_net",
    "wire_core",
];

/// The exporter of a process: flushes what is queued when [`Traces::shutdown`] is called.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Traces {
    /// Starts exporting to the OTLP/HTTP collector at `endpoint` (`http://HOST:4318`, or the
    /// full `.../v1/traces` URL), naming this process `service` (`wire-run`, `wire-node`).
    pub fn start(endpoint: &str, service: &str) -> Result<Traces, String> {
        let endpoint = traces_url(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|err| format!("--otlp-endpoint {endpoint}: {err}"))?;
        let exporter = Warned {
            inner: exporter,
            endpoint: endpoint.clone(),
            failing: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        };
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        let resource = Resource::builder()
            .with_service_name(service.to_string())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        Ok(Traces { provider, endpoint })
    }

    /// Where the spans go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `tracing` layer that hands Wire's spans (info and above) to the exporter.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let tracer = self.provider.tracer("wire");
        let traced = TRACED.iter().fold(Targets::new(), |t, target| {
            t.with_target(*target, LevelFilter::INFO)
        });
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(traced)
    }

    /// Exports what is still queued (waiting at most the export timeout) and stops.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!(endpoint = %self.endpoint, error = %err, "traces not all exported at exit");
        }
    }
}

/// The traces URL of `endpoint`: `http(s)://HOST:PORT` gets `/v1/traces` appended (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL that already names a path is kept.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "--otlp-endpoint `{endpoint}`: {why}; expected an OTLP/HTTP collector URL like \
             http://127.0.0.1:4318"
        ))
    };
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return bad("not an http:// or https:// URL");
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return bad("no host");
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("spaces in the URL");
    }
    match path.trim_end_matches('/') {
        "" => Ok(format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'))),
        _ => Ok(endpoint.to_string()),
    }
}

/// The OTLP exporter, warning once per outage when its collector cannot take spans (the
/// batch is dropped: traces are best effort and the process runs on).
#[derive(Debug)]
struct Warned {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    failing: AtomicBool,
    /// Spans dropped in the current outage.
    lost: AtomicU64,
}

impl SpanExporter for Warned {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                let lost = self.lost.swap(0, Ordering::Relaxed);
                tracing::info!(endpoint = %self.endpoint, lost, "trace export recovered");
            }
            Ok(()) => {}
            Err(err) => {
                self.lost.fetch_add(spans, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %err,
                        "cannot export traces; spans are dropped until the collector answers"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        let url = |s: &str| traces_url(s).expect(s);
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(url("https://h/otlp/v1/traces"), "https://h/otlp/v1/traces");
    }

    #[test]
    fn a_url_that_is_not_http_names_the_flag() {
        for bad in ["127.0.0.1:4318", "grpc://h:4317", "http://", "http://a b"] {
            let err = traces_url(bad).expect_err(bad);
            assert!(err.contains("--otlp-endpoint"), "{err}");
        }
    }
}
