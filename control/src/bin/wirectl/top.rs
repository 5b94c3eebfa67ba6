//! `wirectl top`: scrapes the nodes' `/metrics` every `--interval` and shows the top view
//! (`wire_control::metrics::top`), so its figures are the scrape's.
//!
//! With `--ca` (a node with TLS on) it scrapes over HTTPS, presenting `--cert`/`--key` when
//! given, and sends `--token`/`WIRE_TOKEN` as a bearer token; a token is never sent over plain
//! HTTP.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wire_control::metrics::top::{parse, render_text, Sample, Top};

use crate::{Format, TopArgs};

/// How `top` reaches the metrics endpoints: over TLS or not, with a token or not.
pub struct Scraper {
    /// With `--ca`: the client configuration (the CA, and `--cert`/`--key` when given).
    tls: Option<TlsConnector>,
    /// The `authorization` header's value, sent only over TLS.
    authorization: Option<String>,
}

impl Scraper {
    /// The scraper `--ca`, `--cert`, `--key` and `--token` ask for; errors name the flag.
    pub fn new(
        ca: Option<&std::path::Path>,
        identity: Option<(&std::path::Path, &std::path::Path)>,
        token: Option<&str>,
    ) -> Result<Scraper, String> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(ca) = ca else {
            if identity.is_some() {
                return Err(
                    "--cert needs --ca (the cluster CA that signed the node's certificate)".into(),
                );
            }
            return Ok(Scraper {
                tls: None,
                authorization: None,
            });
        };
        wire_control::tls::install_crypto_provider();
        let config = wire_net::tls::client_config(ca, identity).map_err(|err| err.to_string())?;
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if token.is_some_and(|t| t.contains(['\r', '\n'])) {
            return Err(
                "--token (or WIRE_TOKEN) holds characters a token never has; copy it again".into(),
            );
        }
        Ok(Scraper {
            tls: Some(TlsConnector::from(Arc::new(config))),
            authorization: token.map(|t| format!("Bearer {t}")),
        })
    }
}

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a metrics endpoint.
const MAX_ANSWER: u64 = 64 << 20;

/// Shows views until Ctrl-C, or one with `--once`.
pub async fn run(args: &TopArgs, format: Format, scraper: &Scraper) -> Result<(), String> {
    let mut before = view(&args.metrics, scraper).await?;
    loop {
        tokio::time::sleep(args.interval).await;
        let mut now = match view(&args.metrics, scraper).await {
            Ok(now) => now,
            Err(err) if !args.once => {
                eprintln!("error: {err}");
                continue;
            }
            Err(err) => return Err(err),
        };
        now.rates_since(&before);
        show(&now, format, args)?;
        if args.once {
            return Ok(());
        }
        before = now;
    }
}

fn show(top: &Top, format: Format, args: &TopArgs) -> Result<(), String> {
    let text = match format {
        Format::Json => {
            let mut json = serde_json::to_string_pretty(top)
                .map_err(|err| format!("cannot encode the view: {err}"))?;
            json.push('\n');
            json
        }
        Format::Table => render_text(top),
    };
    let mut stdout = std::io::stdout().lock();
    let live = !args.once && format == Format::Table && stdout.is_terminal();
    if live {
        // Home and clear, like top.
        let _ = write!(
            stdout,
            "\x1b[H\x1b[2Jwirectl top: {} every {:?} (Ctrl-C ends)\n\n",
            args.metrics.join(", "),
            args.interval
        );
    }
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// One view of every endpoint's samples together.
async fn view(endpoints: &[String], scraper: &Scraper) -> Result<Top, String> {
    let mut all: Vec<Sample> = Vec::new();
    for endpoint in endpoints {
        let text = scrape(endpoint, scraper).await?;
        all.extend(parse(&text).map_err(|err| format!("{endpoint}: {err}"))?);
    }
    Ok(Top::from_samples(&all, now_ms()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /metrics` of `endpoint` (HOST:PORT, `http://HOST:PORT`, `https://HOST:PORT` or the
/// full URL), over TLS when the scraper has `--ca`.
async fn scrape(endpoint: &str, scraper: &Scraper) -> Result<String, String> {
    let https = endpoint.starts_with("https://");
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let addr = addr.split('/').next().unwrap_or(addr);
    let scheme = if scraper.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let failed = |what: String| format!("cannot scrape {scheme}://{addr}/metrics: {what}");
    if https && scraper.tls.is_none() {
        return Err(failed(
            "https needs --ca (or WIRE_CA) with the cluster CA".into(),
        ));
    }
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, get(addr, scraper))
        .await
        .map_err(|_| failed(format!("no answer within {SCRAPE_TIMEOUT:?}")))?
        .map_err(failed)?;
    let text = String::from_utf8(answer).map_err(|_| failed("the answer is not UTF-8".into()))?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        let hint = match scraper.tls {
            None => " (if the node serves HTTPS, give --ca with the cluster CA)",
            Some(_) => "",
        };
        return Err(failed(format!("the answer has no HTTP head{hint}")));
    };
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_string()),
        Some("401") => Err(failed(format!(
            "answered `{status}`: {}",
            match (&scraper.tls, &scraper.authorization) {
                (None, _) => "give --ca (the node serves HTTPS) and a viewer token",
                (Some(_), None) =>
                    "give a viewer, operator or admin token with --token or WIRE_TOKEN",
                (Some(_), Some(_)) =>
                    "the token is not valid (malformed, unknown, revoked or expired)",
            }
        ))),
        _ => Err(failed(format!("answered `{status}`: {}", body.trim()))),
    }
}

async fn get(addr: &str, scraper: &Scraper) -> Result<Vec<u8>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|err| lower(&err))?;
    let mut request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let Some(tls) = &scraper.tls else {
        request.push_str("\r\n");
        return exchange(stream, &request).await.map_err(|err| lower(&err));
    };
    if let Some(authorization) = &scraper.authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    let name = wire_net::tls::server_name(addr)?;
    let stream = tls
        .connect(name, stream)
        .await
        .map_err(|err| wire_net::tls::explain_handshake(&err))?;
    exchange(stream, &request).await.map_err(|err| lower(&err))
}

/// Sends `request` and reads the answer until the server closes.
async fn exchange<S>(mut stream: S, request: &str) -> std::io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    // A TLS server may close without close_notify; what arrived before still counts.
    match (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
    {
        Ok(_) => Ok(answer),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {
            Ok(answer)
        }
        Err(err) => Err(err),
    }
}

/// An IO error's text in lower case without the `(os error N)` suffix.
fn lower(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
