//! The Nexmark suite benchmark: every shipped `examples/nexmark/qN.yaml` run by the real `wire`
//! binary with its sinks replaced by blackholes, at 1 and 2 cores; then the cost of hop windows
//! as the number of windows per row grows, the state memory per key of an aggregate, and what
//! serving `--metrics-addr` (scraped every 100 ms) costs.
//!
//! Run: `cargo bench -p wire-bench --bench e2e_nexmark [-- --events N --queries q5,q7]`
//! (`--metrics-only`: only the metrics comparison; `--sql`: only each query's SQL version
//! (examples/nexmark/sql/) beside its YAML twin, alternated, at one core);
//! `-- --test` is a seconds-long smoke pass. Figures come from the binary's own summary
//! (events/s of all event kinds, peak RSS from VmHWM).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

struct Args {
    smoke: bool,
    events: u64,
    queries: Option<Vec<String>>,
    dir: PathBuf,
    /// Only the metrics on/off comparison.
    metrics_only: bool,
    /// Only SQL against YAML.
    sql_only: bool,
}

/// What one `wire run` reported.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    events_per_s: f64,
    peak_rss_mib: f64,
    groups: u64,
    /// User plus system CPU time of the `wire` process.
    cpu_s: f64,
}

impl Figures {
    /// Events per CPU-second of the process: less sensitive than events/s to other work on a
    /// shared machine.
    fn events_per_cpu_s(&self, events: u64) -> f64 {
        events as f64 / self.cpu_s.max(1e-9)
    }
}

/// User plus system CPU time of this process's waited-for children so far; the difference
/// across one wait is that child's CPU time.
fn children_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|usage| {
            let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            seconds(usage.user_time()) + seconds(usage.system_time())
        })
        .unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let root = wire_bench::workspace_root()?;
    let wire = wire_tests::wire_bin();
    println!("# Nexmark on wire");
    println!(
        "command: {} -- --events {}{}{}",
        wire_bench::cargo_command("e2e_nexmark"),
        args.events,
        if args.smoke { " --test" } else { "" },
        if args.metrics_only {
            " --metrics-only"
        } else if args.sql_only {
            " --sql"
        } else {
            ""
        }
    );
    println!("machine: {}", wire_bench::machine_description(&args.dir));
    println!();
    if args.sql_only {
        return sql_vs_yaml(&args, &root, &wire);
    }
    if !args.metrics_only {
        queries(&args, &root, &wire)?;
        hop_cost(&args, &root, &wire)?;
        state_per_key(&args, &root, &wire)?;
    }
    metrics_cost(&args, &root, &wire)?;
    Ok(())
}

/// q0 (pass-through) and q5 (windows, a top), or `--queries`, with and without
/// `--metrics-addr`, scraped every 100 ms (150 times Prometheus's default rate) while they run;
/// off and on alternate, the best of three runs each, in events per wall second and in events
/// per CPU-second of the process (serving the scrapes included), which other work on a shared
/// machine disturbs far less. The load average is printed before and after.
fn metrics_cost(args: &Args, root: &Path, wire: &Path) -> anyhow::Result<()> {
    println!("## metrics on and off: `--metrics-addr`, scraped every 100 ms, best of 3");
    println!("load average before: {}", load_average());
    println!("| query | cores | events | off events/s | on events/s | on / off | off events/CPU-s | on events/CPU-s | on / off (CPU) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let default = vec!["q0".to_string(), "q5".to_string()];
    let queries = match &args.queries {
        Some(queries) if args.metrics_only => queries,
        _ => &default,
    };
    for query in queries {
        let text = std::fs::read_to_string(root.join(format!("examples/nexmark/{query}.yaml")))?;
        let yaml = blackhole_sinks(&with_events(&text, args.events));
        for cores in [1, 2] {
            let (mut off, mut on) = (0.0f64, 0.0f64);
            let (mut off_cpu, mut on_cpu) = (0.0f64, 0.0f64);
            for _ in 0..3 {
                let figures = run(wire, root, &args.dir, &yaml, cores)?;
                off = off.max(figures.events_per_s);
                off_cpu = off_cpu.max(figures.events_per_cpu_s(args.events));
                let figures = run_scraped(wire, root, &args.dir, &yaml, cores)?;
                on = on.max(figures.events_per_s);
                on_cpu = on_cpu.max(figures.events_per_cpu_s(args.events));
            }
            println!(
                "| {query} | {cores} | {} | {} | {} | {:.3} | {} | {} | {:.3} |",
                wire_bench::human(args.events as f64),
                wire_bench::human(off),
                wire_bench::human(on),
                on / off.max(1.0),
                wire_bench::human(off_cpu),
                wire_bench::human(on_cpu),
                on_cpu / off_cpu.max(1.0)
            );
        }
    }
    println!("load average after: {}", load_average());
    println!();
    Ok(())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// [`run`] with `--metrics-addr` on a free port and a thread scraping it every 100 ms.
fn run_scraped(
    wire: &Path,
    root: &Path,
    dir: &Path,
    yaml: &str,
    cores: usize,
) -> anyhow::Result<Figures> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let file = dir.join("nexmark.yaml");
    std::fs::write(&file, yaml)?;
    let cpu_before = children_cpu_s();
    let child = Command::new(wire)
        .current_dir(root)
        .args(["run", "--no-progress", "--cores", &cores.to_string()])
        .args(["--metrics-addr", &addr.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                scrapes += u64::from(scrape(addr));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            scrapes
        })
    };
    let output = child.wait_with_output()?;
    let cpu_s = children_cpu_s() - cpu_before;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = scraper.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("wire run --metrics-addr failed on\n{yaml}\n{stderr}");
    }
    Ok(Figures {
        cpu_s,
        ..parse(&stderr)
    })
}

/// One `GET /metrics`, read to the end; whether it answered.
fn scrape(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = Vec::new();
    stream.write_all(request.as_bytes()).is_ok() && stream.read_to_end(&mut body).is_ok()
}

fn queries(args: &Args, root: &Path, wire: &Path) -> anyhow::Result<()> {
    println!("## every shipped query, sinks replaced by blackholes");
    println!("| query | events | 1 core events/s | 2 cores events/s | 2 cores per core | peak RSS 1 core | peak RSS 2 cores |");
    println!("|---|---|---|---|---|---|---|");
    for (name, path) in examples(root)? {
        if let Some(only) = &args.queries {
            if !only.contains(&name) {
                continue;
            }
        }
        let text = std::fs::read_to_string(&path)?;
        // q12's processing-time windows and q10's one-file-per-hour sink are written as is.
        let yaml = blackhole_sinks(&with_events(&text, args.events));
        let one = run(wire, root, &args.dir, &yaml, 1)?;
        let two = run(wire, root, &args.dir, &yaml, 2)?;
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} MiB | {:.0} MiB |",
            wire_bench::human(args.events as f64),
            wire_bench::human(one.events_per_s),
            wire_bench::human(two.events_per_s),
            wire_bench::human(two.events_per_s / 2.0),
            one.peak_rss_mib,
            two.peak_rss_mib
        );
    }
    println!();
    Ok(())
}

/// Hop windows of 10 s with ever smaller slides: per-row cost should not follow the number of
/// windows a row is in.
fn hop_cost(args: &Args, root: &Path, wire: &Path) -> anyhow::Result<()> {
    println!("## hop windows: count per auction, 10 s windows, 1 core");
    println!("| slide | windows per row | events/s | vs tumbling |");
    println!("|---|---|---|---|");
    let mut tumbling = 0.0;
    for slide_ms in [10_000u64, 2_000, 1_000, 500, 200] {
        let yaml = format!(
            "name: hop\nsources:\n  bids: {{type: nexmark, stream: bid, events: {}, seed: 1}}\noperators:\n  - name: c\n    from: bids\n    group_by: [auction]\n    window: {{type: hop, size: 10s, slide: {slide_ms}ms}}\n    aggregate: {{n: count(*)}}\nsinks:\n  out: {{type: blackhole, from: c}}\n",
            args.events
        );
        let figures = run(wire, root, &args.dir, &yaml, 1)?;
        if slide_ms == 10_000 {
            tumbling = figures.events_per_s;
        }
        println!(
            "| {slide_ms} ms | {} | {} | {:.2} |",
            10_000 / slide_ms,
            wire_bench::human(figures.events_per_s),
            figures.events_per_s / tumbling.max(1.0)
        );
    }
    println!();
    Ok(())
}

/// An unbounded count and sum over many keys: peak RSS above an empty run, per key, against
/// the raw size of a key and its two aggregates (24 bytes).
fn state_per_key(args: &Args, root: &Path, wire: &Path) -> anyhow::Result<()> {
    println!("## state memory per key: unbounded count and sum per key, 1 core");
    println!("| keys | peak RSS | baseline RSS | bytes per key | raw bytes per key | ratio |");
    println!("|---|---|---|---|---|---|");
    let events = args
        .events
        .min(if args.smoke { 200_000 } else { 5_000_000 });
    let pipeline = |group: &str| {
        format!(
            "name: state\nsources:\n  bids: {{type: nexmark, stream: bid, events: {events}, seed: 1}}\noperators:\n  - name: c\n    from: bids\n    group_by: {{k: {group}}}\n    aggregate: {{n: count(*), total: sum(price)}}\n  - name: last\n    from: c\n    filter: 'false'\nsinks:\n  out: {{type: blackhole, from: last}}\n"
        )
    };
    let baseline = run(wire, root, &args.dir, &pipeline("0"), 1)?;
    let many = run(
        wire,
        root,
        &args.dir,
        &pipeline("bidder * 1000 + price % 1000"),
        1,
    )?;
    let keys = many.groups.max(1);
    let per_key = (many.peak_rss_mib - baseline.peak_rss_mib) * (1 << 20) as f64 / keys as f64;
    println!(
        "| {} | {:.0} MiB | {:.0} MiB | {per_key:.0} | 24 | {:.1} |",
        wire_bench::human(keys as f64),
        many.peak_rss_mib,
        baseline.peak_rss_mib,
        per_key / 24.0
    );
    println!();
    Ok(())
}

fn examples(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join("examples/nexmark"))? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "yaml") {
            found.push((stem, path));
        }
    }
    found.sort_by_key(|(name, _)| name[1..].parse::<u32>().unwrap_or(u32::MAX));
    Ok(found)
}

/// `events:` of every source set to `events`.
fn with_events(yaml: &str, events: u64) -> String {
    yaml.lines()
        .map(|line| match line.trim_start().strip_prefix("events:") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}events: {events}")
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Every sink turned into a blackhole (its other keys dropped).
fn blackhole_sinks(yaml: &str) -> String {
    let mut out = Vec::new();
    let mut in_sinks = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_sinks = line.starts_with("sinks:");
        }
        let key = line.trim_start();
        if in_sinks && key.starts_with("type:") {
            let indent = &line[..line.len() - key.len()];
            out.push(format!("{indent}type: blackhole"));
        } else if in_sinks
            && [
                "path:",
                "format:",
                "roll_bytes:",
                "partition_by:",
                "csv_header:",
            ]
            .iter()
            .any(|k| key.starts_with(k))
        {
            continue;
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n") + "\n"
}

/// Each query with a SQL version: its YAML and SQL texts (sinks blackholed, `events` set) run
/// alternately at one core, best of two each; the ratio SQL / YAML should be 1 (same plan).
fn sql_vs_yaml(args: &Args, root: &Path, wire: &Path) -> anyhow::Result<()> {
    println!("## SQL beside YAML: sinks replaced by blackholes, 1 core, best of 2 alternated");
    println!("| query | events | YAML events/s | SQL events/s | SQL / YAML |");
    println!("|---|---|---|---|---|");
    for (name, path) in examples(root)? {
        if args
            .queries
            .as_ref()
            .is_some_and(|only| !only.contains(&name))
        {
            continue;
        }
        let sql_path = root
            .join("examples/nexmark/sql")
            .join(format!("{name}.sql"));
        let Ok(sql) = std::fs::read_to_string(&sql_path) else {
            continue;
        };
        let yaml = blackhole_sinks(&with_events(&std::fs::read_to_string(&path)?, args.events));
        let sql = sql_blackholed(&sql, args.events);
        let (mut by_yaml, mut by_sql) = (0.0f64, 0.0f64);
        for _ in 0..2 {
            by_yaml = by_yaml.max(run(wire, root, &args.dir, &yaml, 1)?.events_per_s);
            by_sql = by_sql.max(run_text(wire, root, &args.dir, &sql, "sql", 1)?.events_per_s);
        }
        println!(
            "| {name} | {} | {} | {} | {:.2} |",
            wire_bench::human(args.events as f64),
            wire_bench::human(by_yaml),
            wire_bench::human(by_sql),
            by_sql / by_yaml.max(1.0)
        );
    }
    println!();
    Ok(())
}

/// A SQL file with `'events' = ...` set to `events` and every table an `INSERT` writes
/// declared as a blackhole (`--` comments dropped).
fn sql_blackholed(sql: &str, events: u64) -> String {
    let text: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    let statements: Vec<&str> = text.split(';').map(str::trim).collect();
    let sinks: Vec<&str> = statements
        .iter()
        .filter_map(|s| s.strip_prefix("INSERT INTO "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let mut out = String::new();
    for statement in statements.iter().filter(|s| !s.is_empty()) {
        let created = statement
            .strip_prefix("CREATE TABLE ")
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '(').next());
        match created {
            Some(table) if sinks.contains(&table) => {
                out.push_str(&format!(
                    "CREATE TABLE {table} WITH ('connector' = 'blackhole');\n"
                ));
            }
            _ => {
                let mut rest = *statement;
                while let Some(at) = rest.find("'events' = '") {
                    let (before, after) = rest.split_at(at + "'events' = '".len());
                    out.push_str(before);
                    out.push_str(&events.to_string());
                    rest = after.find('\'').map_or("", |end| &after[end..]);
                }
                out.push_str(rest);
                out.push_str(";\n");
            }
        }
    }
    out
}

fn run(wire: &Path, root: &Path, dir: &Path, yaml: &str, cores: usize) -> anyhow::Result<Figures> {
    run_text(wire, root, dir, yaml, "yaml", cores)
}

/// Runs pipeline `text` written to a file with extension `ext` (`yaml` or `sql`).
fn run_text(
    wire: &Path,
    root: &Path,
    dir: &Path,
    yaml: &str,
    ext: &str,
    cores: usize,
) -> anyhow::Result<Figures> {
    let file = dir.join(format!("nexmark.{ext}"));
    std::fs::write(&file, yaml)?;
    let cpu_before = children_cpu_s();
    let output = Command::new(wire)
        .current_dir(root)
        .args([
            "run",
            "--no-progress",
            "--cores",
            &cores.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg(&file)
        .output()?;
    let cpu_s = children_cpu_s() - cpu_before;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("wire run failed on\n{yaml}\n{stderr}");
    }
    Ok(Figures {
        cpu_s,
        ..parse(&stderr)
    })
}

fn parse(stderr: &str) -> Figures {
    let mut figures = Figures::default();
    for line in stderr.lines().map(str::trim) {
        if let Some(rate) = wire_bench::summary_events_per_s(line) {
            figures.events_per_s = rate;
        } else if let Some(rest) = line.strip_prefix("peak memory (RSS) ") {
            figures.peak_rss_mib = wire_bench::summary_number(rest.trim_end_matches(" MiB"));
        } else if let Some(rest) = line.strip_suffix(" groups in state at the end") {
            figures.groups += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    figures
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        smoke: false,
        events: 10_000_000,
        queries: None,
        dir: PathBuf::from("target/nexmark-bench"),
        metrics_only: false,
        sql_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--test" | "--smoke" => args.smoke = true,
            "--events" => args.events = value("--events")?.parse()?,
            "--queries" => {
                args.queries = Some(value("--queries")?.split(',').map(String::from).collect())
            }
            "--dir" => args.dir = value("--dir")?.into(),
            "--metrics-only" => args.metrics_only = true,
            "--sql" => args.sql_only = true,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.smoke {
        args.events = args.events.min(100_000);
    }
    args.dir = std::path::absolute(&args.dir)?;
    Ok(args)
}
