//! The `hokrajai` binary: command line and wiring only. Read the config, open the store, start
//! the runner (players) and the API, tell systemd we are ready, stop cleanly on a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use hokrajai::api::{self, AppState};
use hokrajai::clock::{Clock, SharedClock, SystemClock};
use hokrajai::config::{Config, DEMO_SCHEDULE, EMBEDDED_AUDIO};
use hokrajai::domain::{AnnouncementStatus, Priority, Role};
use hokrajai::runner::{Planner, Runner};
use hokrajai::store::{NewAnnouncement, Store};
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
    }
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
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Err(_) => tracing::warn!("server did not stop within 5 s"),
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
