//! Playout, as the runner and an operator see it: slot jobs on real-time null and wav outputs,
//! every airing journaled, faults kept to the output they happen on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use hokrajai::clock::{Clock, SharedClock, SystemClock};
use hokrajai::domain::{AiringInfo, AirtimeStatus};
use hokrajai::playout::{
    AmpControl, EmergencyJob, JobItem, Journal, OutputKind, OutputSpec, PlayerHandle, SlotJob,
    SoundRun, CHANNELS, SAMPLE_RATE,
};

// ---- a journal that remembers ----

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started {
        row: i64,
        output: String,
        title: String,
        slot: String,
        at: DateTime<Utc>,
    },
    Finished {
        row: i64,
        status: AirtimeStatus,
        at: DateTime<Utc>,
        detail: String,
    },
    Failed {
        output: String,
        title: String,
        at: DateTime<Utc>,
        detail: String,
    },
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    next_row: AtomicI64,
}

impl Journal for Recorder {
    fn started(&self, airing: &AiringInfo, started_at: DateTime<Utc>) -> Result<i64, String> {
        let row = self.next_row.fetch_add(1, Ordering::SeqCst) + 1;
        self.push(Event::Started {
            row,
            output: airing.output.clone(),
            title: airing.title.clone(),
            slot: airing.slot.clone(),
            at: started_at,
        });
        Ok(row)
    }

    fn finished(&self, row: i64, status: AirtimeStatus, ended_at: DateTime<Utc>, detail: &str) {
        self.push(Event::Finished {
            row,
            status,
            at: ended_at,
            detail: detail.to_owned(),
        });
    }

    fn failed(&self, airing: &AiringInfo, at: DateTime<Utc>, detail: &str) {
        self.push(Event::Failed {
            output: airing.output.clone(),
            title: airing.title.clone(),
            at,
            detail: detail.to_owned(),
        });
    }
}

impl Recorder {
    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The events of one output: started and failed carry the output, finished follows its row.
    fn events_of(&self, output: &str) -> Vec<Event> {
        let events = self.events();
        let rows: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Started { row, output: o, .. } if o == output => Some(*row),
                _ => None,
            })
            .collect();
        events
            .into_iter()
            .filter(|e| match e {
                Event::Started { output: o, .. } | Event::Failed { output: o, .. } => o == output,
                Event::Finished { row, .. } => rows.contains(row),
            })
            .collect()
    }

    /// Wait (up to `limit`) until `done` holds for the events; then return them.
    fn wait_until(&self, limit: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let until = Instant::now() + limit;
        loop {
            let events = self.events();
            if done(&events) || Instant::now() > until {
                return events;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn ended_rows(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Finished { .. } | Event::Failed { .. }))
        .count()
}

// ---- test audio ----

/// A file from tests/fixtures (see its README for what each one is).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The demo chime shipped in audio/.
fn shipped_chime() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/chime.wav")
}

/// A 16-bit sine WAV of `seconds`, written with hound, amplitude 0.5.
fn sine_wav(dir: &Path, name: &str, seconds: f32, rate: u32, channels: u16) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    let frames = (seconds * rate as f32) as u32;
    for n in 0..frames {
        let t = n as f32 / rate as f32;
        let v = (t * 440.0 * std::f32::consts::TAU).sin() * 0.5;
        for _ in 0..channels {
            writer.write_sample((v * 32767.0) as i16).unwrap();
        }
    }
    writer.finalize().unwrap();
    path
}

fn item(output: &str, title: &str, path: &Path, seconds: f32) -> JobItem {
    JobItem {
        airing: AiringInfo {
            announcement_id: title.len() as i64,
            title: title.to_owned(),
            sha256: "0".repeat(64),
            output: output.to_owned(),
            slot: "morning".to_owned(),
            scheduled_at: Utc::now(),
        },
        path: path.to_owned(),
        gain_db: 0.0,
        duration_ms: (seconds * 1000.0) as u64,
    }
}

fn job(
    start_in: Duration,
    chime: Option<PathBuf>,
    items: Vec<JobItem>,
    pause: Duration,
) -> SlotJob {
    let start_at = Utc::now() + TimeDelta::from_std(start_in).unwrap();
    SlotJob {
        slot: "morning".to_owned(),
        start_at,
        end_at: start_at + TimeDelta::minutes(10),
        chime,
        items,
        pause,
        outro: None,
    }
}

fn spec(name: &str, kind: OutputKind, device: Option<&str>) -> OutputSpec {
    OutputSpec {
        name: name.to_owned(),
        kind,
        device: device.map(str::to_owned),
        fallback_to_null: false,
        amp: None,
    }
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn secs(d: TimeDelta) -> f64 {
    d.num_microseconds().unwrap() as f64 / 1e6
}

/// 10 ms blocks of a 16-bit stereo WAV whose RMS is above `threshold` (audible, not silence).
fn loud_blocks(path: &Path, threshold: f64) -> (usize, usize) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, SAMPLE_RATE);
    assert_eq!(spec.channels, CHANNELS);
    assert_eq!(spec.bits_per_sample, 16);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let block = (SAMPLE_RATE / 100) as usize * CHANNELS as usize;
    let blocks = samples.chunks(block);
    let total = blocks.len();
    let loud = samples
        .chunks(block)
        .filter(|b| {
            let sum: f64 = b.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
            (sum / b.len() as f64).sqrt() > threshold
        })
        .count();
    (loud, total)
}

// ---- the specification ----

#[test]
fn a_wav_output_plays_chime_and_items_in_real_time_and_journals_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Real files through media's decoder: a 2 s 48 kHz mono WAV chime, a 2 s 44.1 kHz stereo MP3
    // and a 2 s 48 kHz mono Ogg Vorbis; rodio converts each to the device's 48 kHz stereo.
    let chime = shipped_chime();
    let (mp3, ogg) = (fixture("tone.mp3"), fixture("tone.ogg"));
    let capture = dir.path().join("tower.wav");
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("tower", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );

    let pause = Duration::from_millis(200);
    let job = job(
        Duration::from_millis(300),
        Some(chime.clone()),
        vec![
            item("tower", "mp3", &mp3, 2.0),
            item("tower", "ogg", &ogg, 2.0),
        ],
        pause,
    );
    let start_at = job.start_at;
    player.submit(job).unwrap();
    let events = journal.wait_until(Duration::from_secs(12), |e| ended_rows(e) >= 2);
    assert!(player.status().device_ok, "{:?}", player.status());
    player.shutdown();

    let [Event::Started {
        row: r1,
        title: t1,
        at: s1,
        ..
    }, Event::Finished {
        row: f1,
        status: st1,
        at: e1,
        ..
    }, Event::Started {
        row: r2,
        title: t2,
        at: s2,
        ..
    }, Event::Finished {
        row: f2,
        status: st2,
        at: e2,
        ..
    }] = events.as_slice()
    else {
        panic!("expected started/finished twice, got {events:#?}");
    };
    assert_eq!((t1.as_str(), t2.as_str()), ("mp3", "ogg"));
    assert_eq!((r1, r2), (f1, f2));
    assert_eq!(
        (*st1, *st2),
        (AirtimeStatus::Completed, AirtimeStatus::Completed)
    );

    // Real time: the 2 s chime and the pause come first, each item lasts its length.
    let before_first = secs(*s1 - start_at);
    assert!(
        (0.95 * 2.2..2.6).contains(&before_first),
        "first item began {before_first} s after start_at"
    );
    for (what, len) in [("mp3", secs(*e1 - *s1)), ("ogg", secs(*e2 - *s2))] {
        assert!((1.9..2.3).contains(&len), "{what} lasted {len} s");
    }
    let gap = secs(*s2 - *e1);
    assert!(
        (0.19..0.4).contains(&gap),
        "pause between items was {gap} s"
    );
    let span = secs(*e2 - *s1);
    assert!(
        span >= 0.95 * 4.2,
        "both items with the pause took {span} s"
    );

    // What the tower "heard": the chime and both tones, with silence around them.
    let threshold = 0.05;
    let (loud, total) = loud_blocks(&capture, threshold);
    let audible = loud as f64 / 100.0;
    let expected = loud_seconds_of_mono_wav(&chime, threshold) + 4.0;
    assert!(
        (audible - expected).abs() <= 0.1,
        "{audible} s audible, expected {expected} s"
    );
    assert!(
        total > loud,
        "the file also holds the silence before the slot"
    );
}

/// Seconds of a mono 16-bit WAV whose 10 ms blocks have an RMS above `threshold`.
fn loud_seconds_of_mono_wav(path: &Path, threshold: f64) -> f64 {
    let mut reader = hound::WavReader::open(path).unwrap();
    let rate = reader.spec().sample_rate as usize;
    assert_eq!(reader.spec().channels, 1);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let loud = samples
        .chunks(rate / 100)
        .filter(|b| {
            let sum: f64 = b.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
            (sum / b.len() as f64).sqrt() > threshold
        })
        .count();
    loud as f64 / 100.0
}

#[test]
fn a_missing_file_gets_a_failed_row_and_the_next_item_plays_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = sine_wav(dir.path(), "a.wav", 0.3, 48_000, 1);
    let c = sine_wav(dir.path(), "c.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());

    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                item("pa", "a", &a, 0.3),
                item("pa", "missing", &dir.path().join("gone.mp3"), 5.0),
                item("pa", "text", &fixture("text.mp3"), 5.0),
                item("pa", "c", &c, 0.3),
            ],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 4);
    player.shutdown();

    let [Event::Started { title: a_title, .. }, Event::Finished {
        status: a_status,
        at: a_end,
        ..
    }, Event::Failed {
        title: m_title,
        at: m_at,
        detail: m_detail,
        ..
    }, Event::Failed {
        title: t_title,
        detail: t_detail,
        ..
    }, Event::Started {
        title: c_title,
        at: c_start,
        ..
    }, Event::Finished {
        status: c_status, ..
    }] = events.as_slice()
    else {
        panic!("expected a, failed missing, failed text, c; got {events:#?}");
    };
    assert_eq!(
        [a_title, m_title, t_title, c_title].map(String::as_str),
        ["a", "missing", "text", "c"]
    );
    assert_eq!(
        (*a_status, *c_status),
        (AirtimeStatus::Completed, AirtimeStatus::Completed)
    );
    assert!(m_detail.contains("reading the audio failed"), "{m_detail}");
    assert!(t_detail.contains("not audio"), "{t_detail}");
    assert!(*m_at >= *a_end);
    let dead_air = secs(*c_start - *a_end);
    assert!(
        dead_air < 0.1,
        "{dead_air} s of silence after the missing file"
    );
}

#[test]
fn an_item_whose_decoding_breaks_off_ends_as_failed_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let after = sine_wav(dir.path(), "after.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                // Opens (its start decodes), then more than half of its packets fail.
                item("pa", "broken", &fixture("bad-packets.mp3"), 2.04),
                item("pa", "after", &after, 0.3),
            ],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 2);
    player.shutdown();
    let [Event::Started {
        title, at: started, ..
    }, Event::Finished {
        status,
        at: ended,
        detail,
        ..
    }, Event::Started { .. }, Event::Finished {
        status: after_status,
        ..
    }] = events.as_slice()
    else {
        panic!("expected broken then after, got {events:#?}");
    };
    assert_eq!(title, "broken");
    assert_eq!(*status, AirtimeStatus::Failed);
    assert!(detail.contains("bad-packets.mp3"), "{detail}");
    assert!(
        secs(*ended - *started) < 1.5,
        "it played on after the break"
    );
    assert_eq!(*after_status, AirtimeStatus::Completed);
}

#[test]
fn stop_now_interrupts_the_item_on_air_and_drops_the_rest_of_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let long = sine_wav(dir.path(), "long.wav", 3.0, 48_000, 1);
    let short = sine_wav(dir.path(), "short.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());

    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                item("pa", "long", &long, 3.0),
                item("pa", "after", &short, 0.3),
            ],
            Duration::ZERO,
        ))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    assert_eq!(
        player.status().now_playing.map(|n| n.title),
        Some("long".to_owned())
    );
    std::thread::sleep(Duration::from_millis(300));
    let stopped_at = Utc::now();
    player.stop_now();
    let events = journal.wait_until(Duration::from_secs(2), |e| ended_rows(e) >= 1);
    let [Event::Started { at: started, .. }, Event::Finished {
        status,
        at: ended,
        detail,
        ..
    }] = events.as_slice()
    else {
        panic!("expected the long item started and finished, got {events:#?}");
    };
    assert_eq!(*status, AirtimeStatus::Interrupted);
    assert_eq!(detail, "stopped by operator");
    let stop_delay = secs(*ended - stopped_at);
    assert!(stop_delay < 0.1, "took {stop_delay} s to stop");
    assert!(secs(*ended - *started) < 1.0);
    assert!(player.status().now_playing.is_none());

    // The rest of the job never plays...
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(journal.events().len(), 2, "{:#?}", journal.events());

    // ...but the output does, for the next job.
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("pa", "next", &short, 0.3)],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(3), |e| ended_rows(e) >= 2);
    player.shutdown();
    assert!(
        matches!(
            events.last(),
            Some(Event::Finished {
                status: AirtimeStatus::Completed,
                ..
            })
        ),
        "{events:#?}"
    );
}

#[test]
fn outputs_play_in_parallel_and_a_dead_device_only_fails_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let one = sine_wav(dir.path(), "one.wav", 0.5, 48_000, 1);
    let two = sine_wav(dir.path(), "two.wav", 0.5, 48_000, 1);
    let capture = dir.path().join("pa.wav");
    let journal = Arc::new(Recorder::default());
    let tower = PlayerHandle::spawn(
        spec("tower", OutputKind::Null, None),
        clock(),
        journal.clone(),
    );
    let pa = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );
    let broken = PlayerHandle::spawn(
        spec("hall", OutputKind::Alsa, Some("no-such-pcm-hokrajai")),
        clock(),
        journal.clone(),
    );

    let start = Duration::from_millis(400);
    let items = |output: &str| {
        vec![
            item(output, "one", &one, 0.5),
            item(output, "two", &two, 0.5),
        ]
    };
    let mut jobs = ["tower", "pa", "hall"]
        .map(|o| job(start, Some(shipped_chime()), items(o), Duration::ZERO));
    let start_at = jobs[0].start_at;
    for job in &mut jobs {
        job.start_at = start_at;
    }
    let [for_tower, for_pa, for_hall] = jobs;
    tower.submit(for_tower).unwrap();
    pa.submit(for_pa).unwrap();
    broken.submit(for_hall).unwrap();

    journal.wait_until(Duration::from_secs(8), |e| ended_rows(e) >= 6);
    let hall_status = broken.status();
    for player in [tower, pa, broken] {
        player.shutdown();
    }

    for output in ["tower", "pa"] {
        let events = journal.events_of(output);
        let statuses: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Finished { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            [AirtimeStatus::Completed, AirtimeStatus::Completed],
            "{output}: {events:#?}"
        );
    }
    // In parallel: both outputs started their first item together, after the 2 s chime.
    let first_start = |output: &str| {
        journal.events_of(output).into_iter().find_map(|e| match e {
            Event::Started { at, .. } => Some(at),
            _ => None,
        })
    };
    let (t, p) = (first_start("tower").unwrap(), first_start("pa").unwrap());
    assert!(
        secs(p - t).abs() < 0.05,
        "tower and pa began {} s apart",
        secs(p - t)
    );
    let after_chime = secs(t - start_at);
    assert!(
        (1.95..2.2).contains(&after_chime),
        "first item {after_chime} s after start"
    );

    assert!(!hall_status.device_ok, "{hall_status:?}");
    assert!(
        hall_status
            .device_error
            .as_deref()
            .is_some_and(|e| e.contains("no-such-pcm-hokrajai")),
        "{hall_status:?}"
    );
    let hall = journal.events_of("hall");
    assert_eq!(hall.len(), 2, "{hall:#?}");
    for event in hall {
        let Event::Failed { detail, at, .. } = event else {
            panic!("hall should only have failed rows: {event:?}");
        };
        assert!(detail.starts_with("device unavailable: "), "{detail}");
        assert!(at >= start_at);
    }
}

#[test]
fn a_dead_alsa_device_with_fallback_plays_on_the_null_device() {
    let dir = tempfile::tempdir().unwrap();
    let one = sine_wav(dir.path(), "one.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let mut fallback = spec("tower", OutputKind::Alsa, Some("no-such-pcm-hokrajai"));
    fallback.fallback_to_null = true;
    let player = PlayerHandle::spawn(fallback, clock(), journal.clone());
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("tower", "one", &one, 0.3)],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(3), |e| ended_rows(e) >= 1);
    let status = player.status();
    player.shutdown();
    assert!(status.device_ok, "{status:?}");
    assert!(status.device.starts_with("null"), "{status:?}");
    assert!(status.device_error.is_some(), "{status:?}");
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Started { .. },
                Event::Finished {
                    status: AirtimeStatus::Completed,
                    ..
                }
            ]
        ),
        "{events:#?}"
    );
}

#[test]
fn the_null_output_keeps_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let two_seconds = sine_wav(dir.path(), "two.wav", 2.0, 48_000, 2);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    let began = Instant::now();
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("pa", "two", &two_seconds, 2.0)],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 1);
    let elapsed = began.elapsed();
    player.shutdown();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Started { .. },
                Event::Finished {
                    status: AirtimeStatus::Completed,
                    ..
                }
            ]
        ),
        "{events:#?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1900),
        "2 s of audio took {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2600),
        "2 s of audio took {elapsed:?}"
    );
}

#[test]
fn shutdown_while_playing_ends_the_open_row_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let long = sine_wav(dir.path(), "long.wav", 3.0, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                item("pa", "long", &long, 3.0),
                item("pa", "more", &long, 3.0),
            ],
            Duration::ZERO,
        ))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    let asked = Instant::now();
    player.shutdown();
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "shutdown took {:?}",
        asked.elapsed()
    );
    let events = journal.events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Started { .. }, Event::Finished { status: AirtimeStatus::Interrupted, detail, .. }]
                if detail == "daemon shutting down"
        ),
        "{events:#?}"
    );
}

#[test]
fn a_job_submitted_while_another_plays_waits_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let a = sine_wav(dir.path(), "a.wav", 0.5, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("pa", "first", &a, 0.5)],
            Duration::ZERO,
        ))
        .unwrap();
    // Due already, but the first job is on air: it must follow, not overlap.
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("pa", "second", &a, 0.5)],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(4), |e| ended_rows(e) >= 2);
    player.shutdown();
    let [Event::Started { title: t1, .. }, Event::Finished { at: e1, .. }, Event::Started {
        title: t2, at: s2, ..
    }, Event::Finished { .. }] = events.as_slice()
    else {
        panic!("{events:#?}");
    };
    assert_eq!((t1.as_str(), t2.as_str()), ("first", "second"));
    assert!(s2 >= e1);
}

#[test]
fn a_clock_that_has_not_reached_start_at_holds_the_job() {
    // The start is judged by the shared clock, not the wall clock.
    struct Frozen(DateTime<Utc>);
    impl Clock for Frozen {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let a = sine_wav(dir.path(), "a.wav", 0.2, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let frozen = Utc::now();
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Null, None),
        Arc::new(Frozen(frozen)),
        journal.clone(),
    );
    let mut held = job(
        Duration::ZERO,
        None,
        vec![item("pa", "a", &a, 0.2)],
        Duration::ZERO,
    );
    held.start_at = frozen + TimeDelta::milliseconds(1);
    held.end_at = frozen + TimeDelta::minutes(1);
    player.submit(held).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(journal.events().is_empty(), "{:#?}", journal.events());
    player.shutdown();
    assert!(
        journal.events().is_empty(),
        "shutdown before the start plays nothing"
    );
}

#[test]
fn a_wav_output_is_readable_while_it_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("live.wav");
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        Arc::new(Recorder::default()),
    );
    // The device runs (silence) from the moment it opens; the header is rewritten every second.
    std::thread::sleep(Duration::from_millis(1500));
    let reader = hound::WavReader::open(&capture).unwrap();
    let frames = reader.duration();
    assert_eq!(reader.spec().sample_rate, SAMPLE_RATE);
    assert!(
        frames >= SAMPLE_RATE,
        "only {frames} frames readable after 1.5 s"
    );
    drop(reader);
    player.shutdown();
    // Finalized on close: everything up to the shutdown, in real time (not 500x faster).
    let frames = hound::WavReader::open(&capture).unwrap().duration();
    let seconds = frames as f64 / SAMPLE_RATE as f64;
    assert!(
        (1.4..2.0).contains(&seconds),
        "{seconds} s written in about 1.5 s"
    );
}

#[test]
fn stop_now_before_a_job_begins_does_not_cancel_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = sine_wav(dir.path(), "a.wav", 0.2, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    player
        .submit(job(
            Duration::from_millis(300),
            None,
            vec![item("pa", "a", &a, 0.2)],
            Duration::ZERO,
        ))
        .unwrap();
    player.stop_now();
    let events = journal.wait_until(Duration::from_secs(3), |e| ended_rows(e) >= 1);
    player.shutdown();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::Started { .. },
                Event::Finished {
                    status: AirtimeStatus::Completed,
                    ..
                }
            ]
        ),
        "{events:#?}"
    );
}

#[test]
fn a_device_that_fails_while_playing_fails_the_item_and_the_rest_of_the_job() {
    // /dev/full accepts the open (the header sits in a buffer) and refuses the first write that
    // reaches it, a few ticks in: the device dies under the item.
    let dir = tempfile::tempdir().unwrap();
    let long = sine_wav(dir.path(), "long.wav", 2.5, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, Some("/dev/full")),
        clock(),
        journal.clone(),
    );
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                item("pa", "long", &long, 2.5),
                item("pa", "next", &long, 2.5),
            ],
            Duration::ZERO,
        ))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(4), |e| ended_rows(e) >= 2);
    let status = player.status();
    player.shutdown();
    let [Event::Started { .. }, Event::Finished {
        status: ended,
        detail,
        ..
    }, Event::Failed {
        title,
        detail: next_detail,
        ..
    }] = events.as_slice()
    else {
        panic!("expected long failed under way, next failed: {events:#?}");
    };
    assert_eq!(*ended, AirtimeStatus::Failed);
    assert!(detail.starts_with("device failed: "), "{detail}");
    assert!(detail.contains("/dev/full"), "{detail}");
    assert_eq!(title, "next");
    assert!(
        next_detail.starts_with("device unavailable: "),
        "{next_detail}"
    );
    assert!(!status.device_ok, "{status:?}");
}

#[test]
fn a_device_that_could_not_open_is_retried_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("not-yet");
    let capture = later.join("pa.wav");
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        Arc::new(Recorder::default()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let down = player.status();
    assert!(!down.device_ok, "{down:?}");
    assert!(
        down.device_error
            .as_deref()
            .is_some_and(|e| e.contains("not-yet")),
        "{down:?}"
    );

    std::fs::create_dir(&later).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !player.status().device_ok && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let up = player.status();
    player.shutdown();
    assert!(up.device_ok, "{up:?}");
    assert_eq!(up.device_error, None);
    assert!(capture.exists());
}

// ---- to the second, emergencies, outro, amplifier (issue #7) ----

/// A 48 kHz mono 16-bit WAV: a 440 Hz tone of `amplitude` that starts at its peak (its very
/// first sample is sound) and lasts `seconds`.
fn tone_wav(dir: &Path, name: &str, seconds: f32, amplitude: f32) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for n in 0..(seconds * 48_000.0) as u32 {
        let t = n as f32 / 48_000.0;
        let v = (t * 440.0 * std::f32::consts::TAU).cos() * amplitude;
        writer.write_sample((v * 32767.0).round() as i16).unwrap();
    }
    writer.finalize().unwrap();
    path
}

/// The journal as a story: "A started", "A completed", "A interrupted: why", "A failed: why".
fn story(events: &[Event]) -> Vec<String> {
    let mut titles = std::collections::HashMap::new();
    events
        .iter()
        .map(|e| match e {
            Event::Started {
                row, title, slot, ..
            } => {
                titles.insert(*row, title.clone());
                if slot == "emergency" {
                    format!("{title} started (emergency)")
                } else {
                    format!("{title} started")
                }
            }
            Event::Finished {
                row,
                status,
                detail,
                ..
            } => {
                let title = titles.get(row).cloned().unwrap_or_default();
                match status {
                    AirtimeStatus::Completed => format!("{title} completed"),
                    other => format!("{title} {}: {detail}", other.as_str()),
                }
            }
            Event::Failed { title, detail, .. } => format!("{title} failed: {detail}"),
        })
        .collect()
}

fn started_at(events: &[Event], title: &str, nth: usize) -> DateTime<Utc> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started { title: t, at, .. } if t == title => Some(*at),
            _ => None,
        })
        .nth(nth)
        .unwrap_or_else(|| panic!("{title} #{nth} never started: {events:#?}"))
}

fn emergency_job(
    output: &str,
    alert: &Path,
    message: &Path,
    seconds: f32,
    repeat: u32,
) -> EmergencyJob {
    let mut item = item(output, "M", message, seconds);
    item.airing.slot = "emergency".to_owned();
    EmergencyJob {
        alert: Some(alert.to_owned()),
        item,
        repeat,
        accepted_at: Utc::now(),
    }
}

/// Wait (up to `limit`) until the device has played `n` whole runs of sound since `since`.
/// "Since" by when the sound really reached the device: a device thread catching up after a late
/// wake-up stamps frames with its (earlier) tick instants.
fn runs_since(
    player: &PlayerHandle,
    since: DateTime<Utc>,
    n: usize,
    limit: Duration,
) -> Vec<SoundRun> {
    let until = Instant::now() + limit;
    loop {
        let runs: Vec<SoundRun> = player
            .sound_runs()
            .into_iter()
            .filter(|r| r.heard_start() >= since)
            .collect();
        let closed = runs.iter().filter(|r| r.end.is_some()).count();
        if closed >= n || Instant::now() > until {
            return runs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs of sound in a 16-bit WAV, as (first frame, frame after the last), found by the same
/// detector the devices use.
fn wav_runs(path: &Path) -> Vec<(u64, u64)> {
    let mut reader = hound::WavReader::open(path).unwrap();
    let channels = reader.spec().channels;
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let t0 = Instant::now();
    let frame_of = |at: Instant| ((at - t0).as_secs_f64() * 48_000.0).round() as u64;
    let mut runs = Vec::new();
    let mut detector = hokrajai::playout::RunDetector::new(channels, SAMPLE_RATE);
    let mut open = None;
    detector.feed(&samples, t0, t0, |edge| match edge {
        hokrajai::playout::RunEdge::Start(at, _) => open = Some(frame_of(at)),
        hokrajai::playout::RunEdge::End(at, _) => {
            if let Some(start) = open.take() {
                runs.push((start, frame_of(at)));
            }
        }
    });
    runs
}

/// Check that the runs in a capture are separated by `pause`, to the millisecond, counting
/// frames (so a stall of the test machine, which shifts the device clock, cannot blur it).
fn assert_frame_gaps(frames: &[(u64, u64)], pause: Duration) {
    let expected = (pause.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as i64;
    for i in 0..frames.len().saturating_sub(1) {
        let gap = frames[i + 1].0 as i64 - frames[i].1 as i64;
        assert!(
            (gap - expected).abs() <= 48,
            "pause {i}: {gap} frames, not {expected}: {frames:?}"
        );
    }
}

#[test]
fn a_slot_starts_on_the_second_and_its_pauses_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let chime = tone_wav(dir.path(), "chime.wav", 0.3, 0.5);
    let a = tone_wav(dir.path(), "a.wav", 0.4, 0.5);
    let b = tone_wav(dir.path(), "b.wav", 0.2, 0.5);
    let capture = dir.path().join("tower.wav");
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("tower", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );
    let pause = Duration::from_millis(300);
    let job = job(
        Duration::from_secs(1),
        Some(chime),
        vec![item("tower", "A", &a, 0.4), item("tower", "B", &b, 0.2)],
        pause,
    );
    let start_at = job.start_at;
    player.submit(job).unwrap();
    let events = journal.wait_until(Duration::from_secs(8), |e| ended_rows(e) >= 2);
    let runs = runs_since(
        &player,
        start_at - TimeDelta::seconds(1),
        3,
        Duration::from_secs(2),
    );
    player.shutdown();
    assert_eq!(
        story(&events),
        ["A started", "A completed", "B started", "B completed"]
    );
    assert_eq!(runs.len(), 3, "chime, A, B: {runs:#?}");

    // When sound reached the device. The tight figure (a p99 within 5 ms) is the timing
    // benchmark's to measure; a loaded test machine only has to stay well inside 20 ms.
    let start_error = secs(runs[0].start - start_at);
    assert!(
        start_error.abs() < 0.02,
        "the chime began {start_error} s off the slot time"
    );
    // The journal's instants are those of the device.
    for (title, run) in [("A", runs[1]), ("B", runs[2])] {
        let off = secs(started_at(&events, title, 0) - run.start);
        assert!(
            off.abs() < 0.005,
            "{title}: journal start {off} s off the device"
        );
    }
    // And what was written, frame by frame: the pauses are exact to the millisecond.
    let frames = wav_runs(&capture);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_frame_gaps(&frames, pause);
}

#[test]
fn an_emergency_during_a_slot_interrupts_it_then_the_slot_resumes_and_replays_the_item() {
    let dir = tempfile::tempdir().unwrap();
    // A is real audio but below the run detector's threshold, so the alert's first sound can be
    // seen right after it is cut.
    let a = tone_wav(dir.path(), "a.wav", 1.5, 0.00005);
    let b = tone_wav(dir.path(), "b.wav", 0.4, 0.5);
    let alert = tone_wav(dir.path(), "alert.wav", 0.2, 0.5);
    let message = tone_wav(dir.path(), "m.wav", 0.3, 0.5);
    let capture = dir.path().join("pa.wav");
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );
    let pause = Duration::from_millis(200);
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![item("pa", "A", &a, 1.5), item("pa", "B", &b, 0.4)],
            pause,
        ))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let called = Utc::now();
    player
        .emergency(emergency_job("pa", &alert, &message, 0.3, 2))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(10), |e| ended_rows(e) >= 5);
    let runs = runs_since(&player, called, 4, Duration::from_secs(2));
    player.shutdown();

    assert_eq!(
        story(&events),
        [
            "A started",
            "A interrupted: interrupted by an emergency",
            "M started (emergency)",
            "M completed",
            "M started (emergency)",
            "M completed",
            "A started",
            "A completed",
            "B started",
            "B completed",
        ]
    );
    let Event::Finished { at: cut_at, .. } = &events[1] else {
        panic!("{events:#?}");
    };
    // On the device clock: a device thread catching up after a late wake-up stamps the cut
    // frame with its tick's instant, which can be a little before the call.
    let cut = secs(*cut_at - called);
    assert!(
        (-0.2..0.25).contains(&cut),
        "A was cut {cut} s after the call"
    );
    // On the device: alert, M, M, B (A is below the threshold).
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let alert_latency = secs(runs[0].heard_start() - called);
    assert!(
        (0.0..0.25).contains(&alert_latency),
        "the alert reached the device {alert_latency} s after the call"
    );
    // Alert, pause, M, pause, M, (pause, quiet A), ..., B: the emergency's pauses to the frame.
    let frames = wav_runs(&capture);
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_frame_gaps(&frames[..3], pause);
    // A again only after the second M and a pause (device clock: loose, a stall shifts it).
    let m_second = started_at(&events, "M", 1);
    let replay = secs(started_at(&events, "A", 1) - m_second);
    assert!(
        (0.3 + 0.2 - 0.02..1.0).contains(&replay),
        "A aired again {replay} s after the second M began"
    );
}

#[test]
fn an_interrupted_item_that_no_longer_fits_stays_interrupted_and_the_rest_plays() {
    let dir = tempfile::tempdir().unwrap();
    let a = tone_wav(dir.path(), "a.wav", 1.5, 0.5);
    let b = tone_wav(dir.path(), "b.wav", 0.3, 0.5);
    let alert = tone_wav(dir.path(), "alert.wav", 0.2, 0.5);
    let message = tone_wav(dir.path(), "m.wav", 0.3, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    let mut tight = job(
        Duration::ZERO,
        None,
        vec![item("pa", "A", &a, 1.5), item("pa", "B", &b, 0.3)],
        Duration::from_millis(200),
    );
    // Cut at ~0.3 s, the emergency takes ~0.7 s, a pause: A (1.5 s) would end at ~2.7 s.
    tight.end_at = tight.start_at + TimeDelta::milliseconds(2600);
    player.submit(tight).unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    player
        .emergency(emergency_job("pa", &alert, &message, 0.3, 1))
        .unwrap();
    journal.wait_until(Duration::from_secs(6), |e| ended_rows(e) >= 3);
    std::thread::sleep(Duration::from_millis(1500));
    let events = journal.events();
    player.shutdown();
    assert_eq!(
        story(&events),
        [
            "A started",
            "A interrupted: interrupted by an emergency",
            "M started (emergency)",
            "M completed",
            "B started",
            "B completed",
        ]
    );
}

#[test]
fn an_emergency_on_an_idle_output_plays_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let alert = tone_wav(dir.path(), "alert.wav", 0.2, 0.5);
    let message = tone_wav(dir.path(), "m.wav", 0.3, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    std::thread::sleep(Duration::from_millis(300));
    let called = Utc::now();
    player
        .emergency(emergency_job("pa", &alert, &message, 0.3, 2))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 2);
    let runs = runs_since(&player, called, 3, Duration::from_secs(2));
    player.shutdown();
    assert_eq!(
        story(&events),
        [
            "M started (emergency)",
            "M completed",
            "M started (emergency)",
            "M completed",
        ]
    );
    assert_eq!(runs.len(), 3, "alert, M, M: {runs:#?}");
    let latency = secs(runs[0].heard_start() - called);
    assert!(
        (0.0..0.25).contains(&latency),
        "the alert reached the device {latency} s after the call"
    );
}

#[test]
fn an_emergency_while_a_slot_waits_plays_now_and_the_slot_still_starts_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let chime = tone_wav(dir.path(), "chime.wav", 0.2, 0.5);
    let x = tone_wav(dir.path(), "x.wav", 0.3, 0.5);
    let alert = tone_wav(dir.path(), "alert.wav", 0.2, 0.5);
    let message = tone_wav(dir.path(), "m.wav", 0.3, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    let job = job(
        Duration::from_millis(2500),
        Some(chime),
        vec![item("pa", "X", &x, 0.3)],
        Duration::from_millis(200),
    );
    let start_at = job.start_at;
    player.submit(job).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let called = Utc::now();
    player
        .emergency(emergency_job("pa", &alert, &message, 0.3, 1))
        .unwrap();
    let events = journal.wait_until(Duration::from_secs(6), |e| ended_rows(e) >= 2);
    let runs = runs_since(&player, called, 4, Duration::from_secs(2));
    player.shutdown();
    assert_eq!(
        story(&events),
        [
            "M started (emergency)",
            "M completed",
            "X started",
            "X completed"
        ]
    );
    assert!(secs(started_at(&events, "M", 0) - called) < 1.0);
    assert_eq!(runs.len(), 4, "alert, M, chime, X: {runs:#?}");
    let start_error = secs(runs[2].start - start_at);
    assert!(
        start_error.abs() < 0.02,
        "the slot began {start_error} s off its time"
    );
}

#[test]
fn an_emergency_during_an_emergency_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let alert = tone_wav(dir.path(), "alert.wav", 0.2, 0.5);
    let first = tone_wav(dir.path(), "m1.wav", 0.3, 0.5);
    let second = tone_wav(dir.path(), "m2.wav", 0.3, 0.5);
    let capture = dir.path().join("pa.wav");
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let called = Utc::now();
    player
        .emergency(emergency_job("pa", &alert, &first, 0.3, 2))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut next = emergency_job("pa", &alert, &second, 0.3, 1);
    next.item.airing.title = "M2".to_owned();
    player.emergency(next).unwrap();
    let events = journal.wait_until(Duration::from_secs(8), |e| ended_rows(e) >= 3);
    let runs = runs_since(&player, called, 5, Duration::from_secs(2));
    player.shutdown();
    assert_eq!(
        story(&events),
        [
            "M started (emergency)",
            "M completed",
            "M started (emergency)",
            "M completed",
            "M2 started (emergency)",
            "M2 completed",
        ]
    );
    assert_eq!(runs.len(), 5, "alert, M, M, alert, M2: {runs:#?}");
    // The second alert follows the first message after the pause, not over it. (No slot job
    // has told this player the configured pause, so it is the default, 1 s.)
    let frames = wav_runs(&capture);
    assert_eq!(frames.len(), 5, "{frames:?}");
    assert_frame_gaps(&frames, Duration::from_secs(1));
}

#[test]
fn stop_now_silences_an_emergency_and_drops_its_repetitions() {
    let dir = tempfile::tempdir().unwrap();
    let alert = tone_wav(dir.path(), "alert.wav", 0.1, 0.5);
    let message = tone_wav(dir.path(), "m.wav", 3.0, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    player
        .emergency(emergency_job("pa", &alert, &message, 3.0, 3))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Utc::now();
    player.stop_now();
    journal.wait_until(Duration::from_secs(2), |e| ended_rows(e) >= 1);
    std::thread::sleep(Duration::from_millis(800));
    let events = journal.events();
    player.shutdown();
    assert_eq!(
        story(&events),
        [
            "M started (emergency)",
            "M interrupted: stopped by operator"
        ]
    );
    let Event::Finished { at, .. } = &events[1] else {
        panic!("{events:#?}");
    };
    assert!(secs(*at - stopped) < 0.1);
}

#[test]
fn the_outro_follows_the_last_item_after_the_pause_and_is_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let x = tone_wav(dir.path(), "x.wav", 0.3, 0.5);
    let outro = tone_wav(dir.path(), "outro.wav", 0.3, 0.5);
    let capture = dir.path().join("pa.wav");
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        spec("pa", OutputKind::Wav, capture.to_str()),
        clock(),
        journal.clone(),
    );
    let mut with_outro = job(
        Duration::from_millis(700),
        None,
        vec![item("pa", "X", &x, 0.3)],
        Duration::from_millis(200),
    );
    with_outro.outro = Some(outro);
    let start_at = with_outro.start_at;
    player.submit(with_outro).unwrap();
    let runs = runs_since(
        &player,
        start_at - TimeDelta::milliseconds(100),
        2,
        Duration::from_secs(4),
    );
    let events = journal.events();
    player.shutdown();
    assert_eq!(story(&events), ["X started", "X completed"]);
    assert_eq!(runs.len(), 2, "X, then the outro: {runs:#?}");
    let frames = wav_runs(&capture);
    assert_eq!(frames.len(), 2, "X, then the outro: {frames:?}");
    assert_frame_gaps(&frames, Duration::from_millis(200));
    let outro_frames = frames[1].1 - frames[1].0;
    assert!(
        outro_frames.abs_diff(14_400) <= 48,
        "the outro sounded {outro_frames} frames, not 14400"
    );
}

/// A script that appends "<what> <unix time>" to `log` (or hangs, or fails, when told to).
fn amp_script(dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("amp.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  hang) exec sleep 30 ;;\n  fail) echo 'relay jammed' >&2; exit 3 ;;\nesac\necho \"$1 $(date +%s.%N)\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The (what, when) lines the amp script wrote.
fn amp_log(log: &Path) -> Vec<(String, DateTime<Utc>)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (what, when) = line.split_once(' ')?;
            let when: f64 = when.parse().ok()?;
            let at = DateTime::from_timestamp_micros((when * 1e6) as i64)?;
            Some((what.to_owned(), at))
        })
        .collect()
}

fn with_amp(
    mut spec: OutputSpec,
    on: Vec<String>,
    off: Vec<String>,
    preroll: Duration,
) -> OutputSpec {
    spec.amp = Some(AmpControl { on, off, preroll });
    spec
}

#[test]
fn the_amplifier_is_switched_on_a_preroll_before_the_slot_and_off_after_its_last_sound() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("amp.log");
    let script = amp_script(dir.path(), &log).display().to_string();
    let x = tone_wav(dir.path(), "x.wav", 0.3, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        with_amp(
            spec("tower", OutputKind::Null, None),
            vec![script.clone(), "on".into()],
            vec![script, "off".into()],
            Duration::from_millis(600),
        ),
        clock(),
        journal.clone(),
    );
    let job = job(
        Duration::from_millis(1500),
        None,
        vec![item("tower", "X", &x, 0.3)],
        Duration::ZERO,
    );
    let start_at = job.start_at;
    player.submit(job).unwrap();
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 1);
    let until = Instant::now() + Duration::from_secs(3);
    while amp_log(&log).len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let switched = amp_log(&log);
    player.shutdown();
    assert_eq!(story(&events), ["X started", "X completed"]);
    let [(on, on_at), (off, off_at)] = switched.as_slice() else {
        panic!("expected on then off: {switched:?}");
    };
    assert_eq!((on.as_str(), off.as_str()), ("on", "off"));
    let preroll = secs(start_at - *on_at);
    // Starting a process takes a while on a loaded machine; what matters is that it follows
    // the preroll (0.6 s), not the slot's start or the moment the job was queued (1 s ahead).
    assert!(
        (0.3..0.75).contains(&preroll),
        "amp_on ran {preroll} s before the slot, not 0.6 s"
    );
    let Event::Finished { at: ended, .. } = &events[1] else {
        panic!("{events:#?}");
    };
    let after = secs(*off_at - *ended);
    assert!(
        (0.0..1.5).contains(&after),
        "amp_off ran {after} s after the last sound ended"
    );
}

#[test]
fn a_job_that_arrives_inside_its_preroll_switches_the_amplifier_on_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("amp.log");
    let script = amp_script(dir.path(), &log).display().to_string();
    let x = tone_wav(dir.path(), "x.wav", 0.2, 0.5);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(
        with_amp(
            spec("tower", OutputKind::Null, None),
            vec![script.clone(), "on".into()],
            vec![script, "off".into()],
            Duration::from_secs(5),
        ),
        clock(),
        journal.clone(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let submitted = Utc::now();
    let job = job(
        Duration::from_millis(800),
        None,
        vec![item("tower", "X", &x, 0.2)],
        Duration::ZERO,
    );
    let start_at = job.start_at;
    player.submit(job).unwrap();
    journal.wait_until(Duration::from_secs(4), |e| ended_rows(e) >= 1);
    let switched = amp_log(&log);
    player.shutdown();
    let Some((what, on_at)) = switched.first() else {
        panic!("amp_on never ran");
    };
    assert_eq!(what, "on");
    assert!(
        *on_at >= submitted && *on_at < start_at,
        "amp_on at {on_at}, slot at {start_at}"
    );
    assert!(
        secs(*on_at - submitted) < 0.3,
        "amp_on waited {} s",
        secs(*on_at - submitted)
    );
}

#[test]
fn a_hung_or_failing_amplifier_command_does_not_hold_up_or_stop_playout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("amp.log");
    let script = amp_script(dir.path(), &log).display().to_string();
    let x = tone_wav(dir.path(), "x.wav", 0.3, 0.5);
    let journal = Arc::new(Recorder::default());
    // amp_on hangs (killed after its time limit); amp_off fails.
    let player = PlayerHandle::spawn(
        with_amp(
            spec("tower", OutputKind::Null, None),
            vec![script.clone(), "hang".into()],
            vec![script, "fail".into()],
            Duration::from_millis(300),
        ),
        clock(),
        journal.clone(),
    );
    let first = job(
        Duration::from_millis(1000),
        None,
        vec![item("tower", "X", &x, 0.3)],
        Duration::ZERO,
    );
    let start_at = first.start_at;
    player.submit(first).unwrap();
    let events = journal.wait_until(Duration::from_secs(4), |e| ended_rows(e) >= 1);
    let runs = runs_since(
        &player,
        start_at - TimeDelta::milliseconds(100),
        1,
        Duration::from_secs(1),
    );
    // And the next slot plays too, while amp_on is still hanging.
    player
        .submit(job(
            Duration::from_millis(300),
            None,
            vec![item("tower", "Y", &x, 0.3)],
            Duration::ZERO,
        ))
        .unwrap();
    let events_after = journal.wait_until(Duration::from_secs(4), |e| ended_rows(e) >= 2);
    let asked = Instant::now();
    player.shutdown();
    assert_eq!(story(&events), ["X started", "X completed"]);
    assert_eq!(
        story(&events_after),
        ["X started", "X completed", "Y started", "Y completed"]
    );
    let start_error = secs(runs[0].start - start_at);
    assert!(
        start_error.abs() < 0.02,
        "X began {start_error} s off its time"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for the hung command",
        asked.elapsed()
    );
}

// ---- withdrawn announcements (issue 3) ----

fn with_id(mut item: JobItem, id: i64) -> JobItem {
    item.airing.announcement_id = id;
    item
}

fn titles_started(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started { title, .. } => Some(title.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_withdrawn_item_on_air_is_cut_at_once_and_the_job_goes_on_with_its_next_item() {
    let dir = tempfile::tempdir().unwrap();
    let long = sine_wav(dir.path(), "long.wav", 3.0, 48_000, 1);
    let short = sine_wav(dir.path(), "short.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    let pause = Duration::from_millis(200);
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                with_id(item("pa", "withdrawn", &long, 3.0), 42),
                with_id(item("pa", "next", &short, 0.3), 7),
            ],
            pause,
        ))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let withdrawn_at = Utc::now();
    player.stop_item(42, "recalled by the district office");
    let events = journal.wait_until(Duration::from_secs(3), |e| ended_rows(e) >= 2);
    player.shutdown();

    let [Event::Started { title: t1, .. }, Event::Finished {
        status: s1,
        at: cut,
        detail: d1,
        ..
    }, Event::Started {
        title: t2, at: s2, ..
    }, Event::Finished { status: st2, .. }] = events.as_slice()
    else {
        panic!("expected the withdrawn item cut, then the next one, got {events:#?}");
    };
    assert_eq!((t1.as_str(), t2.as_str()), ("withdrawn", "next"));
    assert_eq!(*s1, AirtimeStatus::Interrupted);
    assert_eq!(d1, "withdrawn: recalled by the district office");
    let delay = secs(*cut - withdrawn_at);
    assert!(delay < 0.1, "took {delay} s to take it off the air");
    // The job goes on after the configured pause, counted from the cut.
    let gap = secs(*s2 - *cut);
    assert!(
        (0.19..0.3).contains(&gap),
        "next item {gap} s after the cut"
    );
    assert_eq!(*st2, AirtimeStatus::Completed);
}

#[test]
fn a_withdrawn_item_that_is_only_queued_never_airs_in_this_job_or_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let first = sine_wav(dir.path(), "first.wav", 0.6, 48_000, 1);
    let short = sine_wav(dir.path(), "short.wav", 0.3, 48_000, 1);
    let journal = Arc::new(Recorder::default());
    let player = PlayerHandle::spawn(spec("pa", OutputKind::Null, None), clock(), journal.clone());
    let pause = Duration::from_millis(200);
    // While "first" plays, the withdrawn one is already queued on the device behind it; it is
    // also in the job waiting after this one.
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                with_id(item("pa", "first", &first, 0.6), 1),
                with_id(item("pa", "withdrawn", &short, 0.3), 42),
                with_id(item("pa", "last", &short, 0.3), 3),
            ],
            pause,
        ))
        .unwrap();
    player
        .submit(job(
            Duration::ZERO,
            None,
            vec![
                with_id(item("pa", "withdrawn", &short, 0.3), 42),
                with_id(item("pa", "other", &short, 0.3), 5),
            ],
            pause,
        ))
        .unwrap();
    journal.wait_until(Duration::from_secs(3), |e| !e.is_empty());
    player.stop_item(42, "expired");
    let events = journal.wait_until(Duration::from_secs(5), |e| ended_rows(e) >= 3);
    std::thread::sleep(Duration::from_millis(500));
    let events = if journal.events().len() > events.len() {
        journal.events()
    } else {
        events
    };
    player.shutdown();

    assert_eq!(
        titles_started(&events),
        ["first", "last", "other"],
        "{events:#?}"
    );
    assert!(
        events.iter().all(|e| match e {
            Event::Finished { status, .. } => *status == AirtimeStatus::Completed,
            Event::Failed { .. } => false,
            Event::Started { .. } => true,
        }),
        "{events:#?}"
    );
    // "last" took the withdrawn one's place: the pause after "first" is unchanged.
    let starts_and_ends: Vec<DateTime<Utc>> = events
        .iter()
        .map(|e| match e {
            Event::Started { at, .. } | Event::Finished { at, .. } | Event::Failed { at, .. } => {
                *at
            }
        })
        .collect();
    let gap = secs(starts_and_ends[2] - starts_and_ends[1]);
    assert!(
        (0.19..0.3).contains(&gap),
        "'last' began {gap} s after 'first' ended"
    );
}
