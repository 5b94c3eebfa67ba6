//! An OTLP/HTTP trace receiver for the tracing tests: it listens on 127.0.0.1, takes real
//! `POST /v1/traces` export requests (protobuf), decodes them with the official
//! `opentelemetry-proto` types and keeps the spans.
//!
//! No collector (Jaeger, otelcol) can be installed from the registries this project may use
//! (they are Go programs, and Debian ships none), so the tests receive the spans themselves,
//! the way a collector's OTLP receiver decodes them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
pub struct Span {
    /// The exporting process's `service.name`.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// Its trace id (16 bytes).
    pub trace_id: Vec<u8>,
    /// Its id (8 bytes).
    pub span_id: Vec<u8>,
    /// Its parent's id (empty for a root span).
    pub parent_span_id: Vec<u8>,
    /// Start and end, nanoseconds since the epoch.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Its attributes, values as text.
    pub attributes: HashMap<String, String>,
    /// Its status code (0 unset, 1 ok, 2 error).
    pub status: i32,
}

impl Span {
    /// The attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<u64>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        runtime.spawn(accept(listener, spans.clone(), requests.clone()));
        Receiver {
            addr,
            spans,
            requests,
            _runtime: runtime,
        }
    }

    /// The base URL to give `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.lock().map(|r| *r).unwrap_or(0)
    }

    /// Waits up to `limit` until `done` holds for the spans received.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let until = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > until {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<u64>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (spans, requests) = (spans.clone(), requests.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (spans, requests) = (spans.clone(), requests.clone());
                async move { Ok::<_, hyper::Error>(export(request, &spans, &requests).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Answers one request: an export request's spans are kept and acknowledged (an empty
/// `ExportTraceServiceResponse`); anything else is refused as a collector would.
async fn export(
    request: Request<Incoming>,
    spans: &Mutex<Vec<Span>>,
    requests: &Mutex<u64>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.method() != hyper::Method::POST || request.uri().path() != "/v1/traces" {
        return reply(
            StatusCode::NOT_FOUND,
            b"not an OTLP traces request".to_vec(),
        );
    }
    let protobuf = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes() == b"application/x-protobuf");
    let Ok(body) = request.into_body().collect().await else {
        return reply(StatusCode::BAD_REQUEST, b"unreadable body".to_vec());
    };
    if !protobuf {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            b"protobuf only".to_vec(),
        );
    }
    let decoded = match ExportTraceServiceRequest::decode(body.to_bytes()) {
        Ok(decoded) => decoded,
        Err(err) => return reply(StatusCode::BAD_REQUEST, err.to_string().into_bytes()),
    };
    if let (Ok(mut spans), Ok(mut requests)) = (spans.lock(), requests.lock()) {
        spans.extend(flatten(decoded));
        *requests += 1;
    }
    reply(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| r.attributes);
        let service = attributes(&resource.unwrap_or_default())
            .remove("service.name")
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(f)) => f.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}
