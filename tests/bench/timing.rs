//! `cargo bench --bench timing` — issue #7's playout timing figures, on devices that keep real
//! time, beside the setup a district officer would otherwise use, measured the same way.
//!
//! - **hokrajai**: real players on real-time null devices (the daemon's own `null` output),
//!   several outputs at once, a slot every 3 s on each (short chime, 1 s pause, item, 1 s pause,
//!   item), submitted 2 s ahead as the runner does. Start error = first non-silent frame at the
//!   device − slot time; gap error = (next sound's first frame − previous sound's last frame) −
//!   the configured pause. Then emergency preemption: `emergency()` called while an item is on
//!   air → the alert's first frame at the device.
//! - **naive cron + mpg123**: a process that wakes exactly on the second (as cron would, minus
//!   cron's own wake-up delay) and runs `sh -c 'mpg123 -q -s chime.mp3 && sleep 1 && mpg123 ...'`
//!   into a stand-in sound card: a pacer like our real-time device that takes 10 ms of 48 kHz
//!   stereo from a 4 KiB pipe (about a small ALSA buffer) every 10 ms, silence when nothing is
//!   there, and notes where sound begins and ends with the same detector
//!   ([`RunDetector`]). Each mp3's own leading silence and tail (encoder delay, as mpg123 decodes
//!   it) is measured once and taken off, so only the timing remains.
//!
//! "At the device" is the frame's instant on the device clock (its 10 ms tick's deadline + frame
//! index / rate), or later if the device thread woke late and handed it over late
//! ([`SoundRun::heard_start`]): the conservative reading. Both columns are read the same way.
//!
//! The real-time device itself can fall behind when the machine is overloaded (its thread woke
//! more than 200 ms late and skipped ahead, as a sound card underruns): those stalls are counted
//! and listed beside the figures, with the worst cases, so outliers can be told apart.
//!
//! Under `cargo test` (no `--bench` argument) it only says how to run it. Takes about 4 minutes;
//! `TIMING_PHASES=1,3` runs only some phases (1 slots, 2 emergencies, 3 naive).

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use hokrajai::clock::{SharedClock, SystemClock};
use hokrajai::domain::{AiringInfo, AirtimeStatus};
use hokrajai::playout::{
    EmergencyJob, JobItem, Journal, OutputKind, OutputSpec, PlayerHandle, RunDetector, RunEdge,
    SlotJob, SoundRun,
};

const PAUSE: Duration = Duration::from_secs(1);
const CHIME_S: f32 = 0.15;
const ITEM_S: f32 = 0.25;
/// A slot every `PERIOD` on each output: chime + pause + item + pause + item = 2.65 s.
const PERIOD: Duration = Duration::from_secs(3);
const SLOT_OUTPUTS: usize = 6;
const SLOT_ROUNDS: usize = 18;
/// The runner hands a job to its player this long before the slot.
const SUBMIT_AHEAD: Duration = Duration::from_secs(2);
const EMERGENCY_TRIALS: usize = 50;
const EMERGENCY_EVERY: Duration = Duration::from_millis(1200);
const NAIVE_SINKS: usize = 3;
const NAIVE_ROUNDS: usize = 36;
const RATE: u32 = 48_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("timing: a real-time benchmark (about 4 minutes); run it with `cargo bench --bench timing`");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stalls = Stalls::install();
    let phases = std::env::var("TIMING_PHASES").unwrap_or_else(|_| "1,2,3".to_owned());
    let run = |n: &str| phases.split(',').any(|p| p.trim() == n);
    println!("hokrajai timing benchmark (issue #7)");
    println!(
        "machine: {} cores, load average at start {}, CPU pressure {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        cpu_pressure()
    );

    let not_run = || Figures {
        note: Some("not run (TIMING_PHASES)".to_owned()),
        ..Figures::default()
    };
    let mut slots = not_run();
    if run("1") {
        println!("\n[1/3] hokrajai: {SLOT_OUTPUTS} outputs x {SLOT_ROUNDS} slots, one every {PERIOD:?} per output ...");
        slots = hokrajai_slots(dir.path(), &stalls);
    }
    let mut emergencies = not_run();
    if run("2") {
        println!("[2/3] hokrajai: {EMERGENCY_TRIALS} emergencies preempting an item on air ...");
        emergencies = emergency_latencies(dir.path(), &stalls);
    }
    let mut naive = not_run();
    if run("3") {
        println!("[3/3] naive cron + mpg123: {NAIVE_SINKS} sinks x {NAIVE_ROUNDS} slots ...");
        naive = naive_cron(dir.path());
    }
    let load_end = loadavg();

    println!();
    print_table(&slots, &emergencies, &naive);
    for (what, figures) in [
        ("hokrajai slot starts", &slots),
        ("hokrajai emergencies", &emergencies),
        ("naive slot starts", &naive),
    ] {
        let mut worst: Vec<&Sample> = figures.starts.iter().collect();
        worst.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
        let listed: Vec<String> = worst
            .iter()
            .take(3)
            .map(|s| {
                let stalled = if s.stalled { ", device stalled" } else { "" };
                format!(
                    "{:+.2} ms, {:+.2} on the device clock ({} {}{stalled})",
                    s.value,
                    s.clock,
                    s.source,
                    s.at.format("%H:%M:%S%.3f")
                )
            })
            .collect();
        if !listed.is_empty() {
            println!("worst {what}: {}", listed.join("; "));
        }
        if !figures.stalls.is_empty() {
            let listed: Vec<String> = figures
                .stalls
                .iter()
                .take(6)
                .map(|s| {
                    format!(
                        "{} {} {:.0} ms",
                        s.source,
                        s.to.format("%H:%M:%S%.3f"),
                        ms(s.to - s.from)
                    )
                })
                .collect();
            println!(
                "  device stalls during {what} ({}): {}{}",
                figures.stalls.len(),
                listed.join("; "),
                if figures.stalls.len() > 6 {
                    "; ..."
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "\nload average at the end: {load_end}, CPU pressure {}",
        cpu_pressure()
    );
}

// ---- figures ----

/// One measurement (ms, signed: positive = late) of a slot, gap or emergency.
struct Sample {
    value: f64,
    /// The same figure read on the device clock (where the player put the sound, before any
    /// lateness of the device thread that handed it over).
    clock: f64,
    /// The output or sink, and the slot time or call time.
    source: String,
    at: DateTime<Utc>,
    /// The device of this output stalled during the slot or trial.
    stalled: bool,
}

/// A stretch during which a real-time device's thread was frozen (woke > 200 ms late and
/// skipped ahead, as a sound card underruns). What played then is the machine's failure to
/// run us, not a timing the player chose.
#[derive(Clone)]
struct Stall {
    source: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn stalled(stalls: &[Stall], source: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let margin = TimeDelta::milliseconds(100);
    stalls
        .iter()
        .any(|s| s.source == source && s.from - margin < to && s.to + margin > from)
}

#[derive(Default)]
struct Figures {
    starts: Vec<Sample>,
    gaps: Vec<Sample>,
    /// Journal `started_at` − device onset, ms.
    journal: Vec<f64>,
    missing: usize,
    note: Option<String>,
    stalls: Vec<Stall>,
}

impl Figures {
    fn push(&mut self, m: &Matched, source: &str, at: DateTime<Utc>, stalled: bool) {
        let sample = |value: f64, clock: f64| Sample {
            value,
            clock,
            source: source.to_owned(),
            at,
            stalled,
        };
        self.starts.push(sample(m.start, m.start_clock));
        for (gap, clock) in m.gaps.iter().zip(m.gaps_clock) {
            self.gaps.push(sample(*gap, clock));
        }
    }
}

/// The real-time devices' "woke late; skipping ahead" reports, which the crate logs at debug
/// level through `tracing`, as stalls.
#[derive(Clone, Default)]
struct Stalls(Arc<Mutex<Vec<Stall>>>);

impl Stalls {
    fn install() -> Stalls {
        let stalls = Stalls::default();
        let filter = tracing_subscriber::EnvFilter::new("hokrajai::playout=debug");
        let _ = tracing_subscriber::registry()
            .with(stalls.clone().with_filter(filter))
            .try_init();
        stalls
    }

    fn take(&self) -> Vec<Stall> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl<S: tracing::Subscriber> Layer<S> for Stalls {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            error: String,
            output: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "error" => self.error = format!("{value:?}"),
                    "output" => self.output = format!("{value:?}").trim_matches('"').to_owned(),
                    _ => {}
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "output" {
                    self.output = value.to_owned();
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(late) = fields
            .error
            .strip_prefix("paced stream woke ")
            .and_then(|rest| rest.strip_suffix(" late; skipping ahead"))
            .and_then(parse_duration)
        else {
            return;
        };
        let to = Utc::now();
        let from = to - TimeDelta::from_std(late).unwrap_or_default();
        if let Ok(mut stalls) = self.0.lock() {
            stalls.push(Stall {
                source: fields.output,
                from,
                to,
            });
        }
    }
}

/// A `Duration`'s debug text ("734.89ms", "1.2s", "950µs").
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ns") {
        (n, 1e-9)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    let seconds = number.parse::<f64>().ok()? * scale;
    Duration::try_from_secs_f64(seconds).ok()
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    median_signed: f64,
    n: usize,
}

fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut abs: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let mut signed = values.to_vec();
    signed.sort_by(f64::total_cmp);
    let rank = |sorted: &[f64], p: f64| {
        let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    Some(Stats {
        p50: rank(&abs, 0.5),
        p99: rank(&abs, 0.99),
        max: abs[abs.len() - 1],
        median_signed: rank(&signed, 0.5),
        n: values.len(),
    })
}

/// Which reading of the samples a table cell shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// As heard: including any lateness of the device thread.
    Heard,
    /// On the device clock: the frame the sound was put on.
    Clock,
    /// As heard, leaving out slots during which the device thread stalled.
    HeardWithoutStalls,
}

fn cell(figures: &Figures, samples: &[Sample], reading: Reading) -> String {
    if let Some(note) = &figures.note {
        return format!("skipped: {note}");
    }
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| !(reading == Reading::HeardWithoutStalls && s.stalled))
        .map(|s| {
            if reading == Reading::Clock {
                s.clock
            } else {
                s.value
            }
        })
        .collect();
    match stats(&values) {
        Some(s) => format!(
            "{:.2} / {:.2} / {:.2} ms (median {:+.2}, n={})",
            s.p50, s.p99, s.max, s.median_signed, s.n
        ),
        None => "n/a".to_owned(),
    }
}

fn print_table(slots: &Figures, emergencies: &Figures, naive: &Figures) {
    let journal = match stats(&slots.journal) {
        Some(s) => format!("{:.3} / {:.3} / {:.3} ms (n={})", s.p50, s.p99, s.max, s.n),
        None => "n/a".to_owned(),
    };
    let stall_count = |f: &Figures| {
        if f.note.is_some() {
            "-".to_owned()
        } else {
            f.stalls.len().to_string()
        }
    };
    let any_stall =
        !slots.stalls.is_empty() || !emergencies.stalls.is_empty() || !naive.stalls.is_empty();
    let mut rows = vec![
        (
            "slot start error |Δ| p50 / p99 / max",
            cell(slots, &slots.starts, Reading::Heard),
            cell(naive, &naive.starts, Reading::Heard),
        ),
        (
            "  on the device clock (frame the sound was put on)",
            cell(slots, &slots.starts, Reading::Clock),
            cell(naive, &naive.starts, Reading::Clock),
        ),
        (
            "gap error |Δ| p50 / p99 / max (1 s pause)",
            cell(slots, &slots.gaps, Reading::Heard),
            cell(naive, &naive.gaps, Reading::Heard),
        ),
        (
            "  on the device clock",
            cell(slots, &slots.gaps, Reading::Clock),
            cell(naive, &naive.gaps, Reading::Clock),
        ),
        (
            "emergency: call → alert at device p50 / p99 / max",
            cell(emergencies, &emergencies.starts, Reading::Heard),
            "n/a (a cron line cannot preempt)".to_owned(),
        ),
    ];
    if any_stall {
        rows.extend([
            (
                "slot start error, slots without a device stall",
                cell(slots, &slots.starts, Reading::HeardWithoutStalls),
                cell(naive, &naive.starts, Reading::HeardWithoutStalls),
            ),
            (
                "gap error, slots without a device stall",
                cell(slots, &slots.gaps, Reading::HeardWithoutStalls),
                cell(naive, &naive.gaps, Reading::HeardWithoutStalls),
            ),
            (
                "emergency, trials without a device stall",
                cell(
                    emergencies,
                    &emergencies.starts,
                    Reading::HeardWithoutStalls,
                ),
                "n/a".to_owned(),
            ),
        ]);
    }
    rows.extend([
        (
            "journal started_at − onset on the device clock |Δ|",
            journal,
            "n/a (no journal)".to_owned(),
        ),
        (
            "device stalls (thread woke > 200 ms late)",
            format!(
                "{} (slots), {} (emergencies)",
                stall_count(slots),
                stall_count(emergencies)
            ),
            stall_count(naive),
        ),
        (
            "slots (emergencies) with no sound found",
            format!("{} ({})", slots.missing, emergencies.missing),
            naive.missing.to_string(),
        ),
    ]);
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:w0$} | {:w1$} | naive cron+mpg123",
        "figure",
        "hokrajai",
        w0 = w0,
        w1 = w1
    );
    println!(
        "{}-|-{}-|-{}",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(40)
    );
    for (figure, ours, theirs) in rows {
        let pad0 = w0 - figure.chars().count();
        let pad1 = w1 - ours.chars().count();
        println!(
            "{figure}{} | {ours}{} | {theirs}",
            " ".repeat(pad0),
            " ".repeat(pad1)
        );
    }
    println!(
        "\ntarget (issue #7): start within 5 ms p99, gaps within 5 ms of the pause, alert within 250 ms"
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn cpu_pressure() -> String {
    std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?;
            let avg60 = line.split_whitespace().find(|f| f.starts_with("avg60="))?;
            Some(format!(
                "{}% (some, avg60)",
                avg60.trim_start_matches("avg60=")
            ))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn ms(d: TimeDelta) -> f64 {
    d.num_nanoseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

// ---- audio ----

/// A 16-bit WAV: a 440 Hz tone of `amplitude` starting at its peak (the first sample is sound).
fn tone(dir: &Path, name: &str, seconds: f32, rate: u32, channels: u16, amplitude: f32) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).expect("a wav file");
    for n in 0..(seconds * rate as f32) as u32 {
        let v = (n as f32 / rate as f32 * 440.0 * std::f32::consts::TAU).cos() * amplitude;
        for _ in 0..channels {
            writer
                .write_sample((v * 32767.0).round() as i16)
                .expect("a sample");
        }
    }
    writer.finalize().expect("a finished wav");
    path
}

fn item(output: &str, title: &str, slot: &str, path: &Path, seconds: f32) -> JobItem {
    JobItem {
        airing: AiringInfo {
            announcement_id: 1,
            title: title.to_owned(),
            sha256: "0".repeat(64),
            output: output.to_owned(),
            slot: slot.to_owned(),
            scheduled_at: Utc::now(),
        },
        path: path.to_owned(),
        gain_db: 0.0,
        duration_ms: (seconds * 1000.0).round() as u64,
    }
}

fn null_output(name: &str) -> OutputSpec {
    OutputSpec {
        name: name.to_owned(),
        kind: OutputKind::Null,
        device: None,
        fallback_to_null: false,
        amp: None,
    }
}

/// Journal rows as they start: (output, title, started_at).
#[derive(Default)]
struct Rows {
    next: AtomicI64,
    started: Mutex<Vec<(String, String, DateTime<Utc>)>>,
}

impl Journal for Rows {
    fn started(&self, airing: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64, String> {
        self.started.lock().map_err(|e| e.to_string())?.push((
            airing.output.clone(),
            airing.title.clone(),
            started_at,
        ));
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn finished(&self, _: i64, status: AirtimeStatus, _: DateTime<Utc>, detail: &str) {
        if status == AirtimeStatus::Failed {
            eprintln!("an airing failed: {detail}");
        }
    }

    fn failed(&self, airing: &AiringInfo, _: DateTime<Utc>, detail: &str) {
        eprintln!("{} could not start: {detail}", airing.title);
    }
}

fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        std::thread::sleep(wait);
    }
}

/// The next whole second at least `ahead` from now.
fn whole_second_after(ahead: Duration) -> DateTime<Utc> {
    let t = Utc::now() + TimeDelta::from_std(ahead).unwrap_or_default();
    DateTime::from_timestamp(t.timestamp() + 1, 0).unwrap_or(t)
}

/// Chime, item, item of one slot among an output's runs: start error and two gap errors (ms).
/// One slot as measured: start and gap errors as heard (ms) and on the device clock, and the
/// three onsets on the device clock.
struct Matched {
    start: f64,
    start_clock: f64,
    gaps: [f64; 2],
    gaps_clock: [f64; 2],
    onsets: [DateTime<Utc>; 3],
}

fn match_slot(
    runs: &[SoundRun],
    start_at: DateTime<Utc>,
    correction: &Corrections,
) -> Option<Matched> {
    let from = start_at - TimeDelta::milliseconds(100);
    let first = runs.iter().position(|r| r.heard_start() >= from)?;
    let three = runs.get(first..first + 3)?;
    if three[0].heard_start() > start_at + TimeDelta::milliseconds(500) {
        return None;
    }
    let starts = [
        three[0].heard_start() - correction.lead[0],
        three[1].heard_start() - correction.lead[1],
        three[2].heard_start() - correction.lead[2],
    ];
    let ends = [
        three[0].heard_end()? - correction.tail[0],
        three[1].heard_end()? - correction.tail[1],
    ];
    let pause = TimeDelta::from_std(PAUSE).unwrap_or_default();
    let gaps = [
        ms(starts[1] - ends[0] - pause),
        ms(starts[2] - ends[1] - pause),
    ];
    // A gap off by more than half the pause is a mismatched sound, not an error to average.
    if gaps.iter().any(|g| g.abs() > 500.0) {
        return None;
    }
    let clock_end = |i: usize| three[i].end.map(|end| end - correction.tail[i]);
    let clock_start = |i: usize| three[i].start - correction.lead[i];
    Some(Matched {
        start: ms(starts[0] - start_at),
        start_clock: ms(clock_start(0) - start_at),
        gaps,
        gaps_clock: [
            ms(clock_start(1) - clock_end(0)? - pause),
            ms(clock_start(2) - clock_end(1)? - pause),
        ],
        onsets: [three[0].start, three[1].start, three[2].start],
    })
}

/// How much of each file's decoded sound lies before its nominal start (`lead`) and after its
/// nominal end (`tail`): zero for our WAVs, the encoder's delay and ringing for an mp3.
#[derive(Default)]
struct Corrections {
    lead: [TimeDelta; 3],
    tail: [TimeDelta; 3],
}

// ---- 1: slot starts and gaps ----

fn hokrajai_slots(dir: &Path, stalls: &Stalls) -> Figures {
    let chime = tone(dir, "chime.wav", CHIME_S, 48_000, 1, 0.5);
    // 44.1 kHz stereo: the resampling path, as most announcements take.
    let a = tone(dir, "a.wav", ITEM_S, 44_100, 2, 0.5);
    let b = tone(dir, "b.wav", ITEM_S, 48_000, 1, 0.5);
    let clock: SharedClock = Arc::new(SystemClock);
    let rows = Arc::new(Rows::default());
    let journal: Arc<dyn Journal> = rows.clone();
    let players: Vec<PlayerHandle> = (0..SLOT_OUTPUTS)
        .map(|i| {
            PlayerHandle::spawn(
                null_output(&format!("out{i}")),
                clock.clone(),
                journal.clone(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let base = whole_second_after(SUBMIT_AHEAD + Duration::from_secs(1));
    let stagger = PERIOD / SLOT_OUTPUTS as u32;
    let mut jobs: Vec<(usize, DateTime<Utc>)> = (0..SLOT_ROUNDS)
        .flat_map(|round| {
            (0..SLOT_OUTPUTS).map(move |output| {
                let offset = PERIOD * round as u32 + stagger * output as u32;
                (
                    output,
                    base + TimeDelta::from_std(offset).unwrap_or_default(),
                )
            })
        })
        .collect();
    jobs.sort_by_key(|(_, at)| *at);
    let ahead = TimeDelta::from_std(SUBMIT_AHEAD).unwrap_or_default();
    for (output, start_at) in &jobs {
        sleep_until(*start_at - ahead);
        let name = format!("out{output}");
        let job = SlotJob {
            slot: "bench".to_owned(),
            start_at: *start_at,
            end_at: *start_at + TimeDelta::milliseconds(2900),
            chime: Some(chime.clone()),
            items: vec![
                item(&name, "A", "bench", &a, ITEM_S),
                item(&name, "B", "bench", &b, ITEM_S),
            ],
            pause: PAUSE,
            outro: None,
        };
        if let Err(e) = players[*output].submit(job) {
            eprintln!("{name}: {e}");
        }
    }
    if let Some((_, last)) = jobs.last() {
        sleep_until(*last + TimeDelta::milliseconds(3500));
    }
    let runs: Vec<Vec<SoundRun>> = players.iter().map(PlayerHandle::sound_runs).collect();
    for player in players {
        player.shutdown();
    }
    let started = rows.started.lock().map(|r| r.clone()).unwrap_or_default();

    let mut figures = Figures {
        stalls: stalls.take(),
        ..Figures::default()
    };
    for (output, start_at) in jobs {
        let name = format!("out{output}");
        match match_slot(&runs[output], start_at, &Corrections::default()) {
            Some(matched) => {
                let (from, to) = (
                    start_at - TimeDelta::seconds(1),
                    start_at + TimeDelta::milliseconds(2900),
                );
                let stalled = stalled(&figures.stalls, &name, from, to);
                figures.push(&matched, &name, start_at, stalled);
                let onsets = matched.onsets;
                for (title, onset) in [("A", onsets[1]), ("B", onsets[2])] {
                    let row = started.iter().find(|(o, t, at)| {
                        *o == name
                            && t == title
                            && (*at - onset).abs() < TimeDelta::milliseconds(500)
                    });
                    if let Some((_, _, at)) = row {
                        figures.journal.push(ms(*at - onset));
                    }
                }
            }
            None => figures.missing += 1,
        }
    }
    figures
}

// ---- 2: emergency preemption ----

fn emergency_latencies(dir: &Path, stalls: &Stalls) -> Figures {
    let alert = tone(dir, "alert.wav", 0.15, 48_000, 1, 0.5);
    let message = tone(dir, "message.wav", 0.15, 48_000, 1, 0.5);
    // On air when each emergency comes: real audio, below the detector's threshold, so the
    // alert's first frame is visible right after the cut.
    let quiet = tone(dir, "quiet.wav", 60.0, 48_000, 1, 0.00005);
    let clock: SharedClock = Arc::new(SystemClock);
    let player = PlayerHandle::spawn(null_output("emergency"), clock, Arc::new(Rows::default()));
    let now = Utc::now();
    let job = SlotJob {
        slot: "bench".to_owned(),
        start_at: now,
        end_at: now + TimeDelta::minutes(10),
        chime: None,
        items: vec![item("emergency", "quiet", "bench", &quiet, 60.0)],
        pause: Duration::from_millis(200),
        outro: None,
    };
    if let Err(e) = player.submit(job) {
        eprintln!("{e}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut calls = Vec::new();
    for _ in 0..EMERGENCY_TRIALS {
        let called = Utc::now();
        let job = EmergencyJob {
            alert: Some(alert.clone()),
            item: item("emergency", "message", "emergency", &message, 0.15),
            repeat: 1,
            accepted_at: called,
        };
        if let Err(e) = player.emergency(job) {
            eprintln!("{e}");
        }
        calls.push(called);
        // The alert, a pause, the message, a pause, and the quiet item is back on air. Spread
        // the calls over the device's 10 ms tick (0, 3.7, 7.4, 1.1 ms ... into it), or every
        // trial would land at the same point of it and measure one latency 50 times.
        let spread = Duration::from_micros((calls.len() as u64 * 3_700) % 10_000);
        std::thread::sleep(EMERGENCY_EVERY + spread);
    }
    std::thread::sleep(Duration::from_millis(500));
    let runs = player.sound_runs();
    player.shutdown();
    let mut figures = Figures {
        stalls: stalls.take(),
        ..Figures::default()
    };
    for called in calls {
        let latency = runs
            .iter()
            .find(|r| r.heard_start() >= called)
            .map(|run| (ms(run.heard_start() - called), ms(run.start - called)))
            .filter(|(latency, _)| *latency < 1000.0);
        match latency {
            Some((latency, clock)) => {
                let (from, to) = (
                    called - TimeDelta::milliseconds(100),
                    called + TimeDelta::seconds(1),
                );
                let stalled = stalled(&figures.stalls, "emergency", from, to);
                figures.starts.push(Sample {
                    value: latency,
                    clock,
                    source: "emergency".to_owned(),
                    at: called,
                    stalled,
                });
            }
            None => figures.missing += 1,
        }
    }
    figures
}

// ---- 3: the naive setup ----

fn naive_cron(dir: &Path) -> Figures {
    let skipped = |note: &str| Figures {
        note: Some(note.to_owned()),
        ..Figures::default()
    };
    if !have("mpg123", "--version") {
        println!("      mpg123 is missing; installing it (Debian package mpg123) ...");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", "mpg123"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !have("mpg123", "--version") {
            return skipped("mpg123 is not installed and apt-get could not install it");
        }
    }
    if !have("ffmpeg", "-version") {
        return skipped("ffmpeg (to make the mp3 files) is not installed");
    }
    let mut files = Vec::new();
    for (name, seconds) in [("chime", CHIME_S), ("a", ITEM_S), ("b", ITEM_S)] {
        let wav = tone(dir, &format!("naive-{name}.wav"), seconds, 48_000, 2, 0.5);
        let mp3 = dir.join(format!("naive-{name}.mp3"));
        let made = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(&wav)
            .args([
                "-ar",
                "48000",
                "-ac",
                "2",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "192k",
            ])
            .arg(&mp3)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            return skipped("ffmpeg could not make the mp3 files");
        }
        files.push((mp3, seconds));
    }
    let mut corrections = Corrections::default();
    for (i, (mp3, seconds)) in files.iter().enumerate() {
        let Some((lead, tail)) = decoded_bounds(mp3, *seconds) else {
            return skipped("mpg123 could not decode the mp3 files");
        };
        corrections.lead[i] = lead;
        corrections.tail[i] = tail;
    }
    println!(
        "      mp3 decode corrections (lead / tail, ms): chime {:.2}/{:.2}, a {:.2}/{:.2}, b {:.2}/{:.2}",
        ms(corrections.lead[0]),
        ms(corrections.tail[0]),
        ms(corrections.lead[1]),
        ms(corrections.tail[1]),
        ms(corrections.lead[2]),
        ms(corrections.tail[2])
    );
    let line = format!(
        "mpg123 -q -s '{}' && sleep 1 && mpg123 -q -s '{}' && sleep 1 && mpg123 -q -s '{}'",
        files[0].0.display(),
        files[1].0.display(),
        files[2].0.display()
    );

    let base = whole_second_after(Duration::from_secs(2));
    let mut handles = Vec::new();
    for sink in 0..NAIVE_SINKS {
        let line = line.clone();
        handles.push(std::thread::spawn(move || -> Result<SinkRun, String> {
            // Each sink's 10 ms tick at a different phase to the second (0, 3.3, 6.7 ms): when
            // cron's process lands relative to a tick varies from card to card.
            let phase = Duration::from_micros(10_000 / NAIVE_SINKS as u64 * sink as u64);
            let card =
                SoundCard::open(phase).map_err(|e| format!("the stand-in sound card: {e}"))?;
            let mut targets = Vec::new();
            for round in 0..NAIVE_ROUNDS {
                // Sinks take turns, one a second: like cron lines on different seconds.
                let offset = PERIOD * round as u32 + Duration::from_secs(sink as u64);
                let target = base + TimeDelta::from_std(offset).unwrap_or_default();
                wake_exactly_at(target);
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(&line)
                    .stdin(Stdio::null())
                    .stdout(card.writer().map_err(|e| e.to_string())?)
                    .stderr(Stdio::null())
                    .spawn();
                targets.push(target);
                match child {
                    Ok(mut child) => {
                        let _ = child.wait();
                    }
                    Err(e) => return Err(format!("cannot run sh: {e}")),
                }
            }
            std::thread::sleep(Duration::from_millis(500));
            let (runs, stalls) = card.close(&format!("sink{sink}"));
            Ok((runs, stalls, targets))
        }));
    }
    let mut figures = Figures::default();
    for (sink, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok((runs, stalls, targets))) => {
                let name = format!("sink{sink}");
                for target in targets {
                    match match_slot(&runs, target, &corrections) {
                        Some(matched) => {
                            let (from, to) = (
                                target - TimeDelta::seconds(1),
                                target + TimeDelta::milliseconds(2900),
                            );
                            let stalled = stalled(&stalls, &name, from, to);
                            figures.push(&matched, &name, target, stalled);
                        }
                        None => figures.missing += 1,
                    }
                }
                figures.stalls.extend(stalls);
            }
            Ok(Err(e)) => return skipped(&e),
            Err(_) => return skipped("a sink thread panicked"),
        }
    }
    figures
}

fn have(program: &str, flag: &str) -> bool {
    Command::new(program)
        .arg(flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sleep until 2 ms before `target`, then watch the clock: a wake-up exactly on the instant.
fn wake_exactly_at(target: DateTime<Utc>) {
    sleep_until(target - TimeDelta::milliseconds(2));
    while Utc::now() < target {
        std::hint::spin_loop();
    }
}

/// Where mpg123's decoded sound of `mp3` begins (after its start) and ends (after its nominal
/// length `seconds`), found by the same detector.
fn decoded_bounds(mp3: &Path, seconds: f32) -> Option<(TimeDelta, TimeDelta)> {
    let out = Command::new("mpg123")
        .args(["-q", "-s"])
        .arg(mp3)
        .output()
        .ok()?;
    let samples: Vec<f32> = out
        .stdout
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let t0 = Instant::now();
    let mut detector = RunDetector::new(2, RATE);
    let (mut start, mut end) = (None, None);
    detector.feed(&samples, t0, t0, |edge| match edge {
        RunEdge::Start(at, _) if start.is_none() => start = Some(at - t0),
        RunEdge::End(at, _) => end = Some(at - t0),
        _ => {}
    });
    // The last run may still be open at the end of the decode.
    let end = end.unwrap_or(Duration::from_secs_f64(
        samples.len() as f64 / 2.0 / f64::from(RATE),
    ));
    let lead = TimeDelta::from_std(start?).ok()?;
    let tail = TimeDelta::from_std(end).ok()?
        - TimeDelta::from_std(Duration::from_secs_f32(seconds)).ok()?;
    Some((lead, tail))
}

/// A stretch of wall-clock time.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// What one naive sink heard: its runs of sound, its stalls, and the instants cron woke.
type SinkRun = (Vec<SoundRun>, Vec<Stall>, Vec<DateTime<Utc>>);

/// The naive setup's sound card: every 10 ms (fixed deadlines, as our real-time device) it takes
/// up to 10 ms of 48 kHz stereo s16 from a 4 KiB pipe, plays silence for what is missing, and
/// notes runs of sound with [`RunDetector`]. Like our device, a thread that wakes more than
/// 200 ms late skips ahead (an underrun) and the stall is noted.
struct SoundCard {
    writer: std::io::PipeWriter,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<SoundRun>, Vec<Span>)>,
}

impl SoundCard {
    /// Open it with its ticks `phase` after each whole 10 ms of the wall clock.
    fn open(phase: Duration) -> std::io::Result<SoundCard> {
        let (mut reader, writer) = std::io::pipe()?;
        rustix::pipe::fcntl_setpipe_size(&reader, 4096)?;
        rustix::fs::fcntl_setfl(&reader, rustix::fs::OFlags::NONBLOCK)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            const FRAMES: usize = 480;
            const BYTES: usize = FRAMES * 4;
            let mut detector = RunDetector::new(2, RATE);
            let mut runs: Vec<SoundRun> = Vec::new();
            let mut pending: Vec<u8> = Vec::with_capacity(BYTES + 4);
            let mut chunk = [0_u8; BYTES];
            let mut samples = vec![0.0_f32; FRAMES * 2];
            let mut stalls = Vec::new();
            let into_tick =
                Duration::from_nanos(u64::from(Utc::now().timestamp_subsec_nanos()) % 10_000_000);
            let mut deadline = Instant::now() + Duration::from_millis(20) + phase - into_tick;
            while !stopped.load(Ordering::Acquire) {
                let now = Instant::now();
                if let Some(wait) = deadline.checked_duration_since(now) {
                    std::thread::sleep(wait);
                } else if now - deadline > Duration::from_millis(200) {
                    stalls.push((wall(deadline), wall(now)));
                    deadline = now;
                }
                // What the pipe holds now, up to one tick.
                while pending.len() < BYTES {
                    match reader.read(&mut chunk[..BYTES - pending.len()]) {
                        Ok(0) => break,
                        Ok(n) => pending.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let frames = (pending.len() / 4).min(FRAMES);
                samples.fill(0.0);
                for (i, pair) in pending[..frames * 4].chunks_exact(2).enumerate() {
                    samples[i] = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0;
                }
                pending.drain(..frames * 4);
                detector.feed(&samples, deadline, Instant::now(), |edge| match edge {
                    RunEdge::Start(at, late) => runs.push(SoundRun {
                        start: wall(at),
                        end: None,
                        start_late: late,
                        end_late: Duration::ZERO,
                    }),
                    RunEdge::End(at, late) => {
                        if let Some(run) = runs.last_mut() {
                            run.end = Some(wall(at));
                            run.end_late = late;
                        }
                    }
                });
                deadline += Duration::from_millis(10);
            }
            (runs, stalls)
        });
        Ok(SoundCard {
            writer,
            stop,
            thread,
        })
    }

    fn writer(&self) -> std::io::Result<std::io::PipeWriter> {
        self.writer.try_clone()
    }

    fn close(self, name: &str) -> (Vec<SoundRun>, Vec<Stall>) {
        self.stop.store(true, Ordering::Release);
        let (runs, stalls) = self.thread.join().unwrap_or_default();
        let stalls = stalls
            .into_iter()
            .map(|(from, to)| Stall {
                source: name.to_owned(),
                from,
                to,
            })
            .collect();
        (runs, stalls)
    }
}

/// The wall-clock time of a monotonic instant (as the real-time device records it).
fn wall(at: Instant) -> DateTime<Utc> {
    let (now, wall_now) = (Instant::now(), Utc::now());
    match at.checked_duration_since(now) {
        Some(ahead) => wall_now + TimeDelta::from_std(ahead).unwrap_or_default(),
        None => wall_now - TimeDelta::from_std(now.duration_since(at)).unwrap_or_default(),
    }
}
