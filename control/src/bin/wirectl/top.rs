//! `wirectl top`: scrapes the nodes' `/metrics` every `--interval` and shows the top view
//! (`wire_control::metrics::top`), so its figures are the scrape's.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire_control::metrics::top::{parse, render_text, Sample, Top};

use crate::{Format, TopArgs};

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a metrics endpoint.
const MAX_ANSWER: u64 = 64 << 20;

/// Shows views until Ctrl-C, or one with `--once`.
pub async fn run(args: &TopArgs, format: Format) -> Result<(), String> {
    let mut before = view(&args.metrics).await?;
    loop {
        tokio::time::sleep(args.interval).await;
        let mut now = match view(&args.metrics).await {
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
async fn view(endpoints: &[String]) -> Result<Top, String> {
    let mut all: Vec<Sample> = Vec::new();
    for endpoint in endpoints {
        let text = scrape(endpoint).await?;
        all.extend(parse(&text).map_err(|err| format!("{endpoint}: {err}"))?);
    }
    Ok(Top::from_samples(&all, now_ms()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /metrics` of `endpoint` (HOST:PORT, `http://HOST:PORT` or the full URL).
async fn scrape(endpoint: &str) -> Result<String, String> {
    let addr = endpoint.trim_start_matches("http://");
    let addr = addr.split('/').next().unwrap_or(addr);
    let failed = |what: String| format!("cannot scrape http://{addr}/metrics: {what}");
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, get(addr))
        .await
        .map_err(|_| failed(format!("no answer within {SCRAPE_TIMEOUT:?}")))?
        .map_err(|err| failed(lower(&err)))?;
    let text = String::from_utf8(answer).map_err(|_| failed("the answer is not UTF-8".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| failed("the answer has no HTTP head".into()))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(failed(format!("answered `{status}`")));
    }
    Ok(body.to_string())
}

async fn get(addr: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    Ok(answer)
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
