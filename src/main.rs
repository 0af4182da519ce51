//! The `hokrajai` binary: command line and wiring only. Read the config, open the store, start
//! the runner (players) and the API, tell systemd we are ready, stop cleanly on a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use hokrajai::api::{self, AppState};
use hokrajai::audit::BoxKey;
use hokrajai::clock::{Clock, SharedClock, SystemClock};
use hokrajai::config::{Config, DEMO_SCHEDULE, EMBEDDED_AUDIO};
use hokrajai::domain::{AnnouncementStatus, Priority, Role};
use hokrajai::runner::{Planner, Runner};
use hokrajai::store::{NewAnnouncement, Store};
use hokrajai::sync::publish::{PublishRequest, WithdrawRequest};
use hokrajai::thai::format_datetime;

#[derive(Parser)]
#[command(
    name = "hokrajai",
    version,
    about = "Playout daemon for village broadcast towers and wired PA (หอกระจายข่าว / เสียงตามสาย)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Config file (TOML). Without it, the embedded default is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `data_dir` from the config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: playout on every output, the airtime log, the HTTP API.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Overrides `listen` from the config (e.g. 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Also seed an approved Thai demo announcement and a slot every minute.
        #[arg(long)]
        demo: bool,
    },
    /// Validate the config and every schedule file; print the next starts of each slot.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Print what would air between two instants.
    Plan {
        #[command(flatten)]
        common: Common,
        /// RFC 3339, e.g. 2026-11-24T00:00:00+07:00
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// (Internal) probe one untrusted file and print the result as one JSON line; the daemon
    /// runs this in a child process for every upload, so a decoder that aborts takes only the
    /// child down.
    #[command(hide = true)]
    ProbeFile { file: PathBuf },
    /// Make a new Ed25519 key pair (the province's publishing key): the seed in FILE (0600,
    /// never overwritten), the public key in FILE.pub and on stdout.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// (Province) Publish approved announcements of this store, with their audio, as a signed
    /// manifest in DIR for the districts to pull. Cumulative: DIR's current manifest is kept.
    Publish {
        #[command(flatten)]
        common: Common,
        /// The signing key made by `hokrajai keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The published folder (served as-is by a web server).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Who publishes, written into the manifest.
        #[arg(long, value_name = "NAME", default_value = "province")]
        publisher: String,
        /// District code the ITEMS are for (repeat it); none means every district.
        #[arg(long = "district", value_name = "CODE")]
        districts: Vec<String>,
        /// Take a published item back: its id, and optionally why (repeat it).
        #[arg(long, value_name = "ID[:REASON]", value_parser = WithdrawRequest::parse)]
        withdraw: Vec<WithdrawRequest>,
        /// Start over if DIR's manifest does not verify with this key.
        #[arg(long)]
        force: bool,
        /// Announcement ids (approved, in this store) to add or refresh.
        #[arg(value_name = "ITEMS")]
        items: Vec<i64>,
    },
    /// The tamper-evident airtime log: the box's public key, signed exports, verification, and
    /// the planned-vs-aired day report.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Print this box's Ed25519 public key (made on first start), for the province's auditors.
    Pubkey {
        #[command(flatten)]
        common: Common,
    },
    /// Check an export offline: every link of the chain and the box's signature. Names the
    /// first row that does not fit; exit status 1 if anything does not.
    Verify {
        /// The export (JSON lines) from GET /api/v1/airtime/export or `hokrajai audit export`.
        file: PathBuf,
        /// The box's public key: 64 hex digits, or a file holding them (e.g. box.pub).
        #[arg(long)]
        pubkey: String,
    },
    /// Check the chain stored in this box's database, row by row from the first. With
    /// --against, also check the database still holds an earlier export's rows unchanged (this
    /// catches rows removed from the end, which the chain alone cannot).
    VerifyDb {
        #[command(flatten)]
        common: Common,
        /// An earlier export of this box (verified first, with --pubkey).
        #[arg(long, value_name = "EXPORT", requires = "pubkey")]
        against: Option<PathBuf>,
        #[arg(long)]
        pubkey: Option<String>,
    },
    /// Write a signed export to stdout (the same as the API's).
    Export {
        #[command(flatten)]
        common: Common,
        /// Rows that became final at or after this instant (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// ... and before this one.
        #[arg(long)]
        to: Option<String>,
    },
    /// Planned vs aired per announcement and output for one local day.
    Report {
        #[command(flatten)]
        common: Common,
        /// The local day, e.g. 2026-11-24 (default: today in the box's zone).
        #[arg(long)]
        day: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token; it is printed once, only its hash is stored.
    Add {
        #[command(flatten)]
        common: Common,
        /// Who the token is for (a person or an office).
        #[arg(long)]
        name: String,
        /// uploader, approver, auditor or admin
        #[arg(long)]
        role: String,
    },
    /// List tokens (never their text).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        common: Common,
        id: i64,
    },
}

/// The file in the data dir that holds room for the airtime log (see `Store::keep_reserve`).
const LOG_RESERVE_FILE: &str = "airtime-log.reserve";
/// 8 MB: tens of thousands of airtime rows, years of a village's broadcasts.
const LOG_RESERVE_BYTES: u64 = 8 * 1024 * 1024;

fn load_config(common: &Common) -> Result<Config> {
    let mut config = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded_default(),
    };
    if let Some(d) = &common.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn open_store(config: &Config) -> Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let path = config.data_dir.join("hokrajai.db");
    Store::open(&path).with_context(|| format!("opening database {}", path.display()))
}

fn parse_instant(name: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .with_context(|| {
            format!("--{name} '{s}' is not an RFC 3339 time like 2026-11-24T06:00:00+07:00")
        })
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            common,
            listen,
            demo,
        } => serve(common, listen, demo),
        Command::Check { common } => check(common),
        Command::Plan {
            common,
            from,
            to,
            json,
        } => plan(common, &from, &to, json),
        Command::Token { action } => token(action),
        Command::Audit { action } => audit(action),
        Command::ProbeFile { file } => probe_file(&file),
        Command::Keygen { out } => keygen(&out),
        Command::Publish {
            common,
            key,
            out,
            publisher,
            districts,
            withdraw,
            force,
            items,
        } => {
            let req = PublishRequest {
                items,
                withdraw,
                districts,
                publisher,
                all_outputs: Vec::new(),
                force,
            };
            publish(common, &key, &out, req)
        }
    }
}

fn keygen(out: &std::path::Path) -> Result<()> {
    use hokrajai::audit::key;
    let signing = key::generate_signing_key()?;
    let public = key::write_new_key_file(out, &signing)?;
    eprintln!(
        "key written to {} (keep it secret); public key in {}:",
        out.display(),
        public.display()
    );
    println!("{}", key::public_hex(&signing.verifying_key()));
    Ok(())
}

fn publish(
    common: Common,
    key: &std::path::Path,
    out: &std::path::Path,
    mut req: PublishRequest,
) -> Result<()> {
    let config = load_config(&common)?;
    let signing = hokrajai::audit::key::load_signing_key(key)?;
    let store = open_store(&config)?;
    req.all_outputs = config.output_names();
    let audio = config.data_dir.join("audio");
    let report =
        hokrajai::sync::publish::publish(&store, &audio, &signing, out, &req, SystemClock.now())?;
    println!("{report}");
    Ok(())
}

/// Address space the probe child may use: far more than decoding one file needs, far less than
/// an allocation a hostile header asks for (which then fails in the child, not in the daemon).
const PROBE_MEMORY_LIMIT: u64 = 1024 * 1024 * 1024;
/// CPU seconds for the probe child, a backstop behind the daemon's own time budget.
const PROBE_CPU_SECONDS: u64 = 300;

/// The child side of `api::announcements::probe_untrusted`: one JSON line on stdout,
/// `{"ok": ProbeInfo}` or `{"error": code, "message": text}`, exit status 0 either way.
fn probe_file(file: &std::path::Path) -> Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    for (resource, limit) in [
        (Resource::As, PROBE_MEMORY_LIMIT),
        (Resource::Cpu, PROBE_CPU_SECONDS),
    ] {
        let _ = setrlimit(
            resource,
            Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            },
        );
    }
    // Panics are caught (and named) by the thread isolation; an abort ends this process.
    let line = match hokrajai::media::probe_isolated(
        file.to_path_buf(),
        Duration::from_secs(PROBE_CPU_SECONDS),
    ) {
        Ok(info) => serde_json::json!({ "ok": info }),
        Err(e) => serde_json::json!({ "error": e.code(), "message": e.to_string() }),
    };
    println!("{line}");
    Ok(())
}

fn audit(action: AuditAction) -> Result<()> {
    match action {
        AuditAction::Pubkey { common } => {
            let config = load_config(&common)?;
            let key = BoxKey::load_or_create(&config.data_dir)?;
            println!("{}", key.public_hex());
        }
        AuditAction::Verify { file, pubkey } => {
            let key = hokrajai::audit::parse_public_key(&pubkey)?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            match hokrajai::audit::verify(std::io::BufReader::new(f), &key) {
                Ok(v) => println!(
                    "OK: {} rows, seq {} to {}, last hash {}, signed by this box ({} to {}, made {})",
                    v.signed.rows,
                    v.signed.first_seq,
                    v.signed.last_seq,
                    v.signed.last_hash,
                    v.signed.from.as_deref().unwrap_or("the start"),
                    v.signed.to.as_deref().unwrap_or("the end"),
                    v.signed.generated_at
                ),
                Err(p) => {
                    println!("NOT OK: {}: {p}", file.display());
                    std::process::exit(1);
                }
            }
        }
        AuditAction::VerifyDb {
            common,
            against,
            pubkey,
        } => {
            let config = load_config(&common)?;
            let store = open_store(&config)?;
            let check = store.verify_chain()?;
            if let Some(p) = &check.problem {
                println!(
                    "NOT OK: the airtime chain breaks at {p} ({} rows before it check out)",
                    check.rows
                );
                std::process::exit(1);
            }
            println!(
                "OK: {} finished rows chained, last seq {}, last hash {}",
                check.rows, check.head_seq, check.head_hash
            );
            if let (Some(file), Some(pubkey)) = (against, pubkey) {
                let key = hokrajai::audit::parse_public_key(&pubkey)?;
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let v = match hokrajai::audit::verify(std::io::BufReader::new(f), &key) {
                    Ok(v) => v,
                    Err(p) => {
                        println!("NOT OK: the export {} itself: {p}", file.display());
                        std::process::exit(1);
                    }
                };
                let s = &v.signed;
                let end_ok = s.rows == 0
                    || store.chain_hash_at(s.last_seq)?.as_deref() == Some(s.last_hash.as_str());
                if !end_ok {
                    println!(
                        "NOT OK: the export ends at seq {} with hash {}, but the database {}: rows were removed or replaced since the export",
                        s.last_seq,
                        s.last_hash,
                        match store.chain_hash_at(s.last_seq)? {
                            Some(h) => format!("has hash {h} there"),
                            None => "has no such row".to_owned(),
                        }
                    );
                    std::process::exit(1);
                }
                println!(
                    "OK: the database still holds the export's rows up to seq {} unchanged",
                    s.last_seq
                );
            }
        }
        AuditAction::Export { common, from, to } => {
            let config = load_config(&common)?;
            let store = open_store(&config)?;
            let key = BoxKey::load(&config.data_dir)?;
            let from = from.map(|f| parse_instant("from", &f)).transpose()?;
            let to = to.map(|t| parse_instant("to", &t)).transpose()?;
            let mut out = std::io::stdout().lock();
            let mut failed: Option<std::io::Error> = None;
            let summary =
                hokrajai::audit::export(&store, &key, from, to, SystemClock.now(), |chunk| {
                    use std::io::Write;
                    match out.write_all(chunk.as_bytes()) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                });
            if let Some(e) = failed {
                bail!("writing the export: {e}");
            }
            let summary = summary?;
            eprintln!(
                "exported {} rows (seq {} to {})",
                summary.rows, summary.first_seq, summary.last_seq
            );
        }
        AuditAction::Report { common, day, json } => {
            let config = load_config(&common)?;
            let now = SystemClock.now();
            let day = match day {
                Some(d) => d
                    .parse::<chrono::NaiveDate>()
                    .with_context(|| format!("--day '{d}' is not a date like 2026-11-24"))?,
                None => now.with_timezone(&config.timezone).date_naive(),
            };
            let timetable = config.load_timetable(&[], now)?;
            let store = open_store(&config)?;
            let planner = Planner::new(Arc::new(config), timetable);
            let report = hokrajai::audit::day_report(&planner, &store, day, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", hokrajai::audit::render_text(&report));
            }
        }
    }
    Ok(())
}

fn check(common: Common) -> Result<()> {
    let config = load_config(&common)?;
    let now = SystemClock.now();
    let timetable = config.load_timetable(&[], now)?;
    let missing = config.missing_chimes(&timetable.slots);
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(s, c)| format!("slot '{s}': chime '{c}'"))
            .collect();
        bail!(
            "chime files not found in {}: {}",
            config.audio_dir().display(),
            list.join("; ")
        );
    }
    let tz = config.timezone;
    println!(
        "config OK: {} ({} outputs, {} slots, {} holidays, zone {})",
        config
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded default".into()),
        config.outputs.len(),
        timetable.slots.len(),
        timetable.calendar.len(),
        tz.name()
    );
    if let Some(d) = &config.district {
        println!("  district {} {}", d.code, d.name.as_deref().unwrap_or(""));
    }
    for u in &config.upstreams {
        println!(
            "  pulls '{}' from {} every {:?} ({} trusted key(s))",
            u.name,
            u.manifest_url,
            u.poll,
            u.keys.len()
        );
    }
    if let Some(r) = &config.report {
        println!("  reports airtime to {} every {:?}", r.url, r.interval);
    }
    match (&config.cap.feed_url, config.cap.geocodes.is_empty()) {
        (Some(f), _) => println!("  CAP feed {f} every {:?}, areas {:?}", config.cap.poll, config.cap.geocodes),
        (None, false) => println!("  CAP alerts by POST only, areas {:?}", config.cap.geocodes),
        (None, true) => println!("  CAP alerts: no area configured ([district] code or [cap] geocodes): every alert is logged, none aired"),
    }
    let planner = Planner::new(Arc::new(config), timetable);
    for (name, starts) in planner.next_starts(now, 3) {
        let s: Vec<String> = starts.iter().map(|t| format_datetime(*t, tz)).collect();
        println!("  {name:<12} next: {}", s.join(" | "));
    }
    Ok(())
}

fn plan(common: Common, from: &str, to: &str, json: bool) -> Result<()> {
    let config = load_config(&common)?;
    let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
    if to <= from {
        bail!("--to must be after --from");
    }
    let timetable = config.load_timetable(&[], SystemClock.now())?;
    let store = open_store(&config)?;
    let tz = config.timezone;
    let planner = Planner::new(Arc::new(config), timetable);
    let plan = planner.plan(&store, from, to)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<10} {:>7}  title",
        "start (เวลาไทย)", "output", "slot", "length"
    );
    for p in &plan {
        println!(
            "{:<24} {:<8} {:<10} {:>6}s  {} (#{})",
            format_datetime(p.start, tz),
            p.output,
            p.slot,
            p.duration_ms.div_ceil(1000),
            p.title,
            p.announcement_id
        );
    }
    println!("{} airings", plan.len());
    Ok(())
}

fn token(action: TokenAction) -> Result<()> {
    let now = SystemClock.now();
    match action {
        TokenAction::Add { common, name, role } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let store = open_store(&load_config(&common)?)?;
            let (token, info) = store.add_token(&name, role, now)?;
            eprintln!(
                "token #{} for '{}' ({}); it is shown only this once:",
                info.id, info.name, info.role
            );
            println!("{token}");
        }
        TokenAction::List { common } => {
            let store = open_store(&load_config(&common)?)?;
            for t in store.tokens()? {
                let state = t
                    .revoked_at
                    .map(|r| format!("revoked {r}"))
                    .unwrap_or_else(|| "active".into());
                println!("{:>4}  {:<10} {:<24} {}", t.id, t.role, t.name, state);
            }
        }
        TokenAction::Revoke { common, id } => {
            let store = open_store(&load_config(&common)?)?;
            store
                .revoke_token(id, now)
                .with_context(|| format!("revoking token {id}"))?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// Seed the approved demo announcement once (uploaded and approved by two demo identities).
fn seed_demo(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<()> {
    let bytes = EMBEDDED_AUDIO
        .iter()
        .find(|(n, _)| *n == "demo-th.ogg")
        .map(|(_, b)| *b)
        .context("demo audio missing from the binary")?;
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    if store.audio_in_use(&sha)? {
        return Ok(());
    }
    let dir = config.data_dir.join("audio");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&sha);
    std::fs::write(&path, bytes)?;
    let probe = hokrajai::media::probe(&path).context("probing the demo announcement")?;
    let a = store.insert_announcement(
        &NewAnnouncement {
            title: "ประกาศตัวอย่าง: ประชุมประจำเดือน (demo)".into(),
            script: "ประกาศจากที่ว่าการอำเภอ ขอเชิญชาวบ้านร่วมประชุมประจำเดือน วันจันทร์นี้ เวลาเก้าโมงเช้า ณ ศาลากลางหมู่บ้าน".into(),
            agency: "ที่ว่าการอำเภอ (demo)".into(),
            priority: Priority::Normal,
            sha256: sha,
            size_bytes: bytes.len() as u64,
            container: probe.container,
            codec: probe.codec,
            sample_rate: probe.sample_rate,
            channels: probe.channels,
            duration_ms: probe.duration_ms,
            loudness_lufs: probe.loudness_lufs,
            valid_from: None,
            valid_until: None,
            // Every minute of the day, so the demo slot never runs dry.
            plays_per_day: 1440,
            outputs: config.output_names(),
            uploaded_by: "demo-uploader".into(),
        },
        now,
    )?;
    store.decide(
        a.id,
        AnnouncementStatus::Approved,
        "demo-approver",
        "demo",
        now,
    )?;
    tracing::info!(id = a.id, "demo announcement seeded (approved)");
    Ok(())
}

fn serve(common: Common, listen: Option<String>, demo: bool) -> Result<()> {
    let mut config = load_config(&common)?;
    if let Some(l) = listen {
        config.listen = l
            .parse()
            .with_context(|| format!("--listen '{l}' is not an address like 127.0.0.1:8080"))?;
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let store = open_store(&config)?;
    // The key that signs airtime exports: made on the first start, kept in the data dir.
    let key = BoxKey::load_or_create(&config.data_dir)?;
    tracing::info!(public_key = %key.public_hex(), "box signing key");
    drop(key);
    // Room held for the airtime log, given back to it if the disk fills up.
    let reserve = config.data_dir.join(LOG_RESERVE_FILE);
    if let Err(e) = store.keep_reserve(reserve.clone(), LOG_RESERVE_BYTES) {
        tracing::error!(path = %reserve.display(), error = %e, "could not reserve room for the airtime log (is the disk full?)");
    }
    let closed = store.close_abandoned_airings(clock.now())?;
    if closed > 0 {
        tracing::warn!(
            closed,
            "airings left open by the last run were marked interrupted"
        );
    }
    config.install_builtin_audio().with_context(|| {
        format!(
            "writing built-in audio into {}",
            config.audio_dir().display()
        )
    })?;
    let extra: Vec<(String, String)> = if demo {
        vec![(DEMO_SCHEDULE.0.to_string(), DEMO_SCHEDULE.1.to_string())]
    } else {
        Vec::new()
    };
    let timetable = config.load_timetable(&extra, clock.now())?;
    for (slot, chime) in config.missing_chimes(&timetable.slots) {
        tracing::warn!(%slot, %chime, "chime file not found; the slot starts without it");
    }
    if demo {
        seed_demo(&config, &store, clock.now())?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(config, timetable, store, clock))
}

async fn shutdown_signal(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn run(
    config: Config,
    timetable: hokrajai::schedule::Timetable,
    store: Store,
    clock: SharedClock,
) -> Result<()> {
    let listen = config.listen;
    let config = Arc::new(config);
    let planner = Planner::new(config.clone(), timetable);
    let runner = Arc::new(Runner::start(planner, store, clock));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "hokrajai {} listening on http://{} (data in {})",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()?,
        config.data_dir.display()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(api::serve(
        listener,
        AppState {
            runner: runner.clone(),
        },
        shutdown_signal(stop_rx.clone()),
    ));
    let runner_task = tokio::spawn(runner.clone().run(shutdown_signal(stop_rx.clone())));
    // The provincial link (issue #3): pullers, the reporter, the CAP feed. They never hold up
    // playout; each ends when stop_rx turns true.
    let link_tasks = hokrajai::sync::spawn(runner.clone(), stop_rx.clone());

    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "no systemd notify socket");
    }
    if let Some(every) = sd_notify::watchdog_enabled() {
        // Fed only while the runner and every player thread are going round their loops: a hung
        // player stops the pings and systemd restarts the service.
        let mut rx = stop_rx.clone();
        let watched = runner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if watched.healthy() {
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        } else {
                            tracing::error!("a playout loop is not responding; not feeding the watchdog");
                        }
                    }
                    _ = rx.changed() => break,
                }
            }
        });
    }

    wait_for_signal().await;
    tracing::info!("stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = runner_task.await;
    for t in link_tasks {
        t.abort();
        let _ = t.await;
    }
    // Idle keep-alive connections would hold the server (and its handle on the runner) open:
    // give requests in flight a moment, then drop the server.
    let mut server = server;
    match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Err(_) => {
            server.abort();
            let _ = server.await;
        }
        _ => {}
    }
    // Now nothing else holds the runner: stop the players, closing open airings.
    match Arc::try_unwrap(runner) {
        Ok(r) => {
            tokio::task::spawn_blocking(move || {
                for p in r.into_players() {
                    p.shutdown();
                }
            })
            .await?
        }
        Err(r) => r.stop_all(),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
