//! `media` as a specification: what probing says about each fixture in `tests/fixtures/` (and the
//! demo audio in `audio/`), which files are refused and with which code, and what a decoded
//! source yields for the player. How each fixture was made: `tests/fixtures/README.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hokrajai::media::{self, MediaError, ProbeInfo};
use rodio::Source;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn demo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio")
        .join(name)
}

/// Duration is measured by decoding; it may differ from the true length by encoder padding.
const DURATION_TOLERANCE_MS: u64 = 60;
/// Our EBU R128 figure against ffmpeg's.
const LOUDNESS_TOLERANCE_LU: f64 = 1.0;

struct Known {
    file: &'static str,
    container: &'static str,
    codec: &'static str,
    sample_rate: u32,
    channels: u16,
    /// The length the file was made with (see the fixtures README).
    duration_ms: u64,
    /// Integrated loudness as reported by
    /// `ffmpeg -hide_banner -nostats -i FILE -af ebur128 -f null -` (ffmpeg 5.1, Debian).
    ffmpeg_lufs: f64,
}

const KNOWN: &[Known] = &[
    Known {
        file: "tone.mp3",
        container: "mp3",
        codec: "mp3",
        sample_rate: 44_100,
        channels: 2,
        duration_ms: 2000,
        ffmpeg_lufs: -13.1,
    },
    Known {
        file: "tone.ogg",
        container: "ogg",
        codec: "vorbis",
        sample_rate: 48_000,
        channels: 1,
        duration_ms: 2000,
        ffmpeg_lufs: -15.7,
    },
    Known {
        file: "tone.opus",
        container: "ogg",
        codec: "opus",
        sample_rate: 48_000,
        channels: 2,
        duration_ms: 2000,
        ffmpeg_lufs: -12.7,
    },
    Known {
        file: "tone.flac",
        container: "flac",
        codec: "flac",
        sample_rate: 22_050,
        channels: 1,
        duration_ms: 2000,
        ffmpeg_lufs: -15.7,
    },
    Known {
        file: "quiet.wav",
        container: "wav",
        codec: "pcm_s16le",
        sample_rate: 22_050,
        channels: 1,
        duration_ms: 2000,
        ffmpeg_lufs: -23.6,
    },
    Known {
        file: "float.wav",
        container: "wav",
        codec: "pcm_f32le",
        sample_rate: 8000,
        channels: 2,
        duration_ms: 1500,
        ffmpeg_lufs: -12.5,
    },
    // AAC in MP4 reports no channel count in its header and pads its end (we decode 2043 ms;
    // symphonia 0.5 ignores the edit list that would trim it).
    Known {
        file: "tone.m4a",
        container: "mp4",
        codec: "aac",
        sample_rate: 44_100,
        channels: 2,
        duration_ms: 2000,
        ffmpeg_lufs: -12.6,
    },
    Known {
        file: "alac.m4a",
        container: "mp4",
        codec: "alac",
        sample_rate: 8000,
        channels: 1,
        duration_ms: 1000,
        ffmpeg_lufs: -15.5,
    },
    // Its Info header claims 16,777,215 frames (ffprobe: 438262 s); decoding finds 2 s. Without
    // a believable frame count the encoder's end padding is not trimmed (we decode 2012 ms).
    Known {
        file: "lying-header.mp3",
        container: "mp3",
        codec: "mp3",
        sample_rate: 44_100,
        channels: 2,
        duration_ms: 2000,
        ffmpeg_lufs: -13.1,
    },
    // Cut in half by bytes, after 8 KiB of header padding: two whole FLAC frames remain,
    // 2 x 4608 / 22050 s = 418 ms (ffmpeg decodes 0.41 s), though its header still says 2 s.
    Known {
        file: "truncated.flac",
        container: "flac",
        codec: "flac",
        sample_rate: 22_050,
        channels: 1,
        duration_ms: 418,
        ffmpeg_lufs: -15.7,
    },
    // Three of 79 frames do not decode and are skipped: 2000 - 3 x 1152 / 44100 s = 1922 ms.
    // ffmpeg conceals them instead (2.00 s) and measures -13.2 LUFS.
    Known {
        file: "few-bad-packets.mp3",
        container: "mp3",
        codec: "mp3",
        sample_rate: 44_100,
        channels: 2,
        duration_ms: 1922,
        ffmpeg_lufs: -13.2,
    },
];

fn check_known(known: &Known, info: &ProbeInfo) -> Vec<String> {
    let mut wrong = Vec::new();
    let name = known.file;
    if info.container != known.container {
        wrong.push(format!(
            "{name}: container {} != {}",
            info.container, known.container
        ));
    }
    if info.codec != known.codec {
        wrong.push(format!("{name}: codec {} != {}", info.codec, known.codec));
    }
    if info.sample_rate != known.sample_rate {
        wrong.push(format!(
            "{name}: rate {} != {}",
            info.sample_rate, known.sample_rate
        ));
    }
    if info.channels != known.channels {
        wrong.push(format!(
            "{name}: channels {} != {}",
            info.channels, known.channels
        ));
    }
    if info.duration_ms.abs_diff(known.duration_ms) > DURATION_TOLERANCE_MS {
        wrong.push(format!(
            "{name}: duration {} ms, expected {} ± {DURATION_TOLERANCE_MS}",
            info.duration_ms, known.duration_ms
        ));
    }
    match info.loudness_lufs {
        Some(lufs) if (lufs - known.ffmpeg_lufs).abs() <= LOUDNESS_TOLERANCE_LU => {}
        other => wrong.push(format!(
            "{name}: loudness {other:?}, ffmpeg says {} LUFS",
            known.ffmpeg_lufs
        )),
    }
    wrong
}

#[test]
fn probe_reports_format_length_and_loudness_of_each_fixture() {
    let mut wrong = Vec::new();
    for known in KNOWN {
        match media::probe(&fixture(known.file)) {
            Ok(info) => wrong.extend(check_known(known, &info)),
            Err(e) => wrong.push(format!("{}: refused: {e}", known.file)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn probe_ignores_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("announcement.mp3");
    std::fs::copy(fixture("tone.ogg"), &renamed).unwrap();
    let info = media::probe(&renamed).unwrap();
    assert_eq!(
        (info.container.as_str(), info.codec.as_str()),
        ("ogg", "vorbis")
    );
}

#[test]
fn zero_padding_after_an_id3_tag_is_skipped() {
    // tone.mp3 starts with ffmpeg's ID3v2 tag; some taggers pad beyond the size they declare.
    let mp3 = std::fs::read(fixture("tone.mp3")).unwrap();
    assert_eq!(&mp3[..3], b"ID3");
    let tag = 10
        + mp3[6..10]
            .iter()
            .fold(0, |size, b| (size << 7) | usize::from(*b));
    let mut padded = mp3[..tag].to_vec();
    padded.extend([0u8; 1000]);
    padded.extend(&mp3[tag..]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("padded.mp3");
    std::fs::write(&path, padded).unwrap();
    let info = media::probe(&path).unwrap();
    assert_eq!((info.codec.as_str(), info.duration_ms), ("mp3", 2000));
}

fn probe_code(path: &Path) -> &'static str {
    match media::probe(path) {
        Ok(info) => panic!("{} was accepted: {info:?}", path.display()),
        Err(e) => e.code(),
    }
}

#[test]
fn refused_files_say_why() {
    assert_eq!(probe_code(&fixture("empty.mp3")), "empty_file");
    assert_eq!(probe_code(&fixture("text.mp3")), "not_audio");
    assert_eq!(probe_code(&fixture("random.wav")), "not_audio");
    assert_eq!(probe_code(&fixture("no-such-file.mp3")), "io_error");
    assert_eq!(probe_code(&fixture("")), "io_error"); // the fixtures directory itself
}

#[test]
fn text_is_called_text() {
    let e = media::probe(&fixture("text.mp3")).unwrap_err();
    assert!(e.to_string().contains("looks like text"), "{e}");
}

#[test]
fn a_file_where_most_packets_fail_is_refused() {
    let e = media::probe(&fixture("bad-packets.mp3")).unwrap_err();
    assert_eq!(e.code(), "undecodable", "{e}");
    assert!(e.to_string().contains("packets failed to decode"), "{e}");
}

/// Write a mono 16-bit WAV of `seconds` of a 440 Hz tone at `amplitude` (0 = silence).
fn write_wav(path: &Path, seconds: f64, amplitude: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 16_000.0) as u32 {
        let t = f64::from(i) / 16_000.0;
        let value = amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        writer.write_sample((value * 32767.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

#[test]
fn loudness_is_none_when_there_is_nothing_to_measure() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.wav");
    write_wav(&short, 0.2, 0.5); // under one 400 ms block
    let silent = dir.path().join("silent.wav");
    write_wav(&silent, 1.0, 0.0);
    let loud = dir.path().join("loud.wav");
    write_wav(&loud, 1.0, 0.5);

    let short = media::probe(&short).unwrap();
    assert_eq!((short.duration_ms, short.loudness_lufs), (200, None));
    let silent = media::probe(&silent).unwrap();
    assert_eq!((silent.duration_ms, silent.loudness_lufs), (1000, None));
    // A sine at amplitude 0.5 is -9.0 dBFS RMS; K-weighting adds about +0.1 at 440 Hz, and the
    // -0.691 of BS.1770 gives about -9.6 LUFS.
    let lufs = media::probe(&loud).unwrap().loudness_lufs.unwrap();
    assert!((lufs - -9.6).abs() < 0.3, "{lufs}");
}

#[test]
fn wav_with_no_samples_is_undecodable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.wav");
    write_wav(&path, 0.0, 0.5);
    assert_eq!(probe_code(&path), "undecodable");
}

#[test]
fn probe_isolated_answers_like_probe_within_its_budget() {
    let path = fixture("tone.flac");
    let direct = media::probe(&path).unwrap();
    let isolated = media::probe_isolated(path, Duration::from_secs(30)).unwrap();
    assert_eq!(isolated, direct);
    let refused = media::probe_isolated(fixture("text.mp3"), Duration::from_secs(30));
    assert_eq!(refused.unwrap_err().code(), "not_audio");
}

#[test]
fn probe_isolated_times_out_with_a_zero_budget() {
    let result = media::probe_isolated(demo("demo-th.ogg"), Duration::ZERO);
    match result {
        Err(MediaError::Timeout(budget)) => assert_eq!(budget, Duration::ZERO),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Drain a source, checking the span contract on the way: each span is a whole number of
/// frames, its length stays put while it plays, a new span's facts are known at its first
/// sample, and `Some(0)` means the end.
/// Returns (samples, channels, rate) of the last span, and the peak.
fn drain(mut source: media::DecodedSource) -> (usize, u16, u32, f32) {
    let mut total = 0;
    let mut peak = 0f32;
    loop {
        let span = source.current_span_len().expect("a decoded file has spans");
        let channels = source.channels().get();
        let rate = source.sample_rate().get();
        if span == 0 {
            assert!(source.next().is_none(), "Some(0) but samples follow");
            return (total, channels, rate, peak);
        }
        assert_eq!(
            span % usize::from(channels),
            0,
            "span {span} of {channels} channels"
        );
        for taken in 1..=span {
            let sample = source.next().expect("the span promised more samples");
            if taken < span {
                // rodio's contract: the length of the whole span, not what is left of it.
                assert_eq!(source.current_span_len(), Some(span), "mid-span");
            }
            assert!(
                (-1.0..=1.0).contains(&sample),
                "sample {sample} out of range"
            );
            peak = peak.max(sample.abs());
            total += 1;
        }
    }
}

#[test]
fn open_source_yields_the_length_that_probe_measured() {
    let mut wrong = Vec::new();
    for known in KNOWN {
        let path = fixture(known.file);
        let probed = media::probe(&path).unwrap();
        let source = media::open_source(&path, 0.0).unwrap();
        let flag = source.decode_error();
        let (samples, channels, rate, _) = drain(source);
        assert_eq!(
            (channels, rate),
            (probed.channels, probed.sample_rate),
            "{}",
            known.file
        );
        let frames = samples as f64 / f64::from(channels);
        let expected = known.duration_ms as f64 * f64::from(rate) / 1000.0;
        // Against the known length: within the probe's tolerance.
        if (frames - expected).abs() > DURATION_TOLERANCE_MS as f64 * f64::from(rate) / 1000.0 {
            wrong.push(format!(
                "{}: {frames} frames, expected ~{expected}",
                known.file
            ));
        }
        // Against the probe: the same frames, so within its rounding to a millisecond.
        let ms = frames * 1000.0 / f64::from(rate);
        if (ms - probed.duration_ms as f64).abs() > 1.0 {
            wrong.push(format!(
                "{}: source {ms} ms, probe {} ms",
                known.file, probed.duration_ms
            ));
        }
        if let Some(error) = flag.get() {
            wrong.push(format!("{}: ended early: {error}", known.file));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn gain_of_six_db_doubles_the_peak_and_clips_at_full_scale() {
    let peak = |gain_db| drain(media::open_source(&fixture("quiet.wav"), gain_db).unwrap()).3;
    let flat = peak(0.0);
    assert!((flat - 0.1).abs() < 0.005, "quiet.wav peaks at {flat}");
    let louder = peak(6.0);
    assert!(
        (louder / flat - 1.995).abs() < 0.02,
        "+6 dB: {flat} -> {louder}"
    );
    let softer = peak(-6.0);
    assert!(
        (flat / softer - 1.995).abs() < 0.02,
        "-6 dB: {flat} -> {softer}"
    );
    assert_eq!(peak(40.0), 1.0, "+40 dB clips at full scale");
}

#[test]
fn open_source_fails_up_front() {
    let code = |name: &str| match media::open_source(&fixture(name), 0.0) {
        Ok(_) => panic!("{name} opened"),
        Err(e) => e.code(),
    };
    assert_eq!(code("no-such-file.ogg"), "io_error");
    assert_eq!(code("empty.mp3"), "empty_file");
    assert_eq!(code("text.mp3"), "not_audio");
    assert_eq!(code("random.wav"), "not_audio");
}

#[test]
fn a_source_that_breaks_mid_stream_ends_early_and_says_why() {
    let source = media::open_source(&fixture("bad-packets.mp3"), 0.0).unwrap();
    let flag = source.decode_error();
    assert_eq!(flag.get(), None, "nothing has failed before playing");
    let (samples, channels, rate, _) = drain(source);
    let seconds = samples as f64 / f64::from(channels) / f64::from(rate);
    // 19 good frames (0.50 s) less the decoder's delay; ffmpeg also stops at 0.47 s.
    assert!((0.3..0.7).contains(&seconds), "played {seconds} s");
    let why = flag.get().expect("the error is recorded");
    assert!(
        why.contains("bad-packets.mp3") && why.contains("failed to decode"),
        "{why}"
    );
}

#[test]
fn a_source_that_plays_to_the_end_records_no_error() {
    let source = media::open_source(&fixture("few-bad-packets.mp3"), 0.0).unwrap();
    let flag = source.decode_error();
    drain(source);
    assert_eq!(flag.get(), None);
}

#[test]
fn rodio_resamples_a_source_to_the_output_format() {
    // What rodio's mixer does with every source: 22.05 kHz mono in, 48 kHz stereo out.
    let source = media::open_source(&fixture("quiet.wav"), 0.0).unwrap();
    let rate = std::num::NonZero::new(48_000).unwrap();
    let channels = std::num::NonZero::new(2).unwrap();
    let uniform = rodio::source::UniformSourceIterator::new(source, channels, rate);
    let samples = uniform.count() as f64;
    let expected = 2.0 * 48_000.0 * 2.0;
    assert!(
        (samples - expected).abs() < 0.01 * expected,
        "{samples} samples"
    );
}

#[test]
fn decoded_source_is_send_and_static() {
    fn check<T: Send + 'static>(_: &T) {}
    let source = media::open_source(&fixture("tone.opus"), 0.0).unwrap();
    check(&source);
    // And it really plays on another thread.
    let samples = std::thread::spawn(move || source.count()).join().unwrap();
    assert_eq!(samples, 2 * 48_000 * 2);
}

#[test]
fn the_demo_audio_is_what_its_readme_says() {
    let chime = media::probe(&demo("chime.wav")).unwrap();
    let alert = media::probe(&demo("alert.wav")).unwrap();
    for (name, info) in [("chime", &chime), ("alert", &alert)] {
        assert_eq!(
            (
                info.codec.as_str(),
                info.sample_rate,
                info.channels,
                info.duration_ms
            ),
            ("pcm_s16le", 48_000, 1, 2000),
            "{name}"
        );
    }
    let speech = media::probe(&demo("demo-th.ogg")).unwrap();
    assert_eq!(
        (speech.container.as_str(), speech.codec.as_str()),
        ("ogg", "vorbis")
    );
    assert_eq!(speech.channels, 1);
    assert!((5000..=8000).contains(&speech.duration_ms), "{speech:?}");
    for info in [&chime, &alert, &speech] {
        let lufs = info.loudness_lufs.expect("measurable");
        assert!((-24.0..=-10.0).contains(&lufs), "{info:?}");
    }
}

/// A header claiming an absurd sample rate (the fuzzer's ebur128 assertion came from one) is
/// refused with the rate named, before anything meters or plays it.
#[test]
fn sample_rates_outside_1_to_384_khz_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (rate, ok) in [
        (500, false),
        (1_000, true),
        (384_000, true),
        (768_000, false),
    ] {
        let path = dir.path().join(format!("r{rate}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..rate / 2 {
            w.write_sample(((i % 50) as i16 - 25) * 400).unwrap();
        }
        w.finalize().unwrap();
        match media::probe(&path) {
            Ok(info) => assert!(ok, "{rate} Hz accepted: {info:?}"),
            Err(e) => {
                assert!(!ok, "{rate} Hz refused: {e}");
                assert_eq!(e.code(), "undecodable");
                assert!(e.to_string().contains(&format!("{rate} Hz")), "{e}");
            }
        }
    }
}
