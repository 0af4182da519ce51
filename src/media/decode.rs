//! The one way this module reads audio: sniff the container from the file's first bytes, open
//! that one symphonia reader, pick the audio track, and hand out decoded buffers packet by packet
//! under one tolerance policy for bad packets. `probe` and `DecodedSource` both stand on it, so a
//! file the probe accepts is a file the player can play.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{CodecRegistry, Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::sample::Sample;
use symphonia::default::formats::{
    AdtsReader, FlacReader, IsoMp4Reader, MpaReader, OggReader, WavReader,
};

use super::MediaError;

/// symphonia's own decoders plus libopus for Opus, which symphonia 0.5 lacks. Built once; both
/// the probe and the player decode through it.
static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
    let mut registry = CodecRegistry::new();
    symphonia::default::register_enabled_codecs(&mut registry);
    registry.register_all::<symphonia_adapter_libopus::OpusDecoder>();
    registry
});

/// How many bytes after the start (or after an ID3v2 tag) may be zero padding before the audio.
/// Some taggers leave padding beyond the size their tag declares.
const MAX_ZERO_PADDING: usize = 4096;

/// A mid-stream check of the bad-packet policy waits for this many packets, so that one bad
/// packet among the first few does not end a file.
const MIN_PACKETS_FOR_VERDICT: u64 = 32;

/// The containers we accept, recognised by their first bytes (never by the file's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    Wav,
    Flac,
    Ogg,
    Mp4,
    Mp3,
    Adts,
}

impl Container {
    /// The short name reported in `ProbeInfo::container`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Mp4 => "mp4",
            Container::Mp3 => "mp3",
            Container::Adts => "adts",
        }
    }
}

/// An opened audio track, decoding one packet at a time. Holds the file open; never holds more
/// than one packet and one decoded buffer.
pub(crate) struct Stream {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    container: Container,
    codec: &'static str,
    /// Packets of our track read so far, and how many of them failed to decode.
    packets: u64,
    failed: u64,
    last_failure: String,
}

/// Open `path` and get ready to decode its audio track. Reads the first bytes and the container
/// header only. Errors: `Io` (missing, unreadable), `Empty`, `NotAudio` (unknown signature, no
/// audio track, a codec we do not decode), `Undecodable` (a damaged header).
pub(crate) fn open(path: &Path) -> Result<Stream, MediaError> {
    let mut file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Err(MediaError::Empty);
    }
    let (container, offset) = sniff(&mut file)?;
    file.seek(SeekFrom::Start(0))?;
    let mut mss = MediaSourceStream::new(Box::new(file), Default::default());
    if offset > 0 {
        mss.seek(SeekFrom::Start(offset))?;
    }
    // Gapless: the readers pass on encoder delay and padding (LAME, Ogg pre-skip) so decoders trim
    // them; durations then match what ffmpeg reports and a chime starts without a silent gap.
    let options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let opened: symphonia::core::errors::Result<Box<dyn FormatReader>> = match container {
        Container::Wav => WavReader::try_new(mss, &options).map(boxed),
        Container::Flac => FlacReader::try_new(mss, &options).map(boxed),
        Container::Ogg => OggReader::try_new(mss, &options).map(boxed),
        Container::Mp4 => IsoMp4Reader::try_new(mss, &options).map(boxed),
        Container::Mp3 => MpaReader::try_new(mss, &options).map(boxed),
        Container::Adts => AdtsReader::try_new(mss, &options).map(boxed),
    };
    let format = opened.map_err(|e| header_error(container, e))?;

    let track = choose_track(container, format.tracks())?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let codec = CODECS
        .get_codec(params.codec)
        .map(|descriptor| descriptor.short_name)
        .unwrap_or("unknown");
    let decoder = CODECS
        .make(&params, &DecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => MediaError::NotAudio(format!(
                "we cannot decode this {codec} audio (in {}): {what}",
                container.name()
            )),
            other => {
                MediaError::Undecodable(format!("starting the {codec} decoder failed: {other}"))
            }
        })?;
    Ok(Stream {
        format,
        decoder,
        track_id,
        container,
        codec,
        packets: 0,
        failed: 0,
        last_failure: String::new(),
    })
}

fn boxed<R: FormatReader + 'static>(reader: R) -> Box<dyn FormatReader> {
    Box::new(reader)
}

/// The default track if we can decode it, else the first track we can decode.
fn choose_track(container: Container, tracks: &[Track]) -> Result<&Track, MediaError> {
    let decodable = |track: &&Track| {
        track.codec_params.codec != CODEC_TYPE_NULL
            && CODECS.get_codec(track.codec_params.codec).is_some()
    };
    if let Some(track) = tracks.iter().find(decodable) {
        return Ok(track);
    }
    if tracks
        .iter()
        .any(|track| track.codec_params.codec != CODEC_TYPE_NULL)
    {
        Err(MediaError::NotAudio(format!(
            "the {} file holds audio in a codec we do not decode",
            container.name()
        )))
    } else {
        Err(MediaError::NotAudio(format!(
            "the {} file has no audio track",
            container.name()
        )))
    }
}

/// A reader refused the header of a file whose signature it owns.
fn header_error(container: Container, error: SymphoniaError) -> MediaError {
    let name = container.name();
    match error {
        SymphoniaError::Unsupported(what) => MediaError::NotAudio(format!(
            "this {name} file uses a variant we do not accept: {what}"
        )),
        SymphoniaError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
            MediaError::Undecodable(format!("the {name} file ends inside its header"))
        }
        SymphoniaError::IoError(e) => MediaError::Io(e),
        other => MediaError::Undecodable(format!("the {name} header is damaged: {other}")),
    }
}

/// Which container the file's first bytes announce, and where its data starts (after any ID3v2
/// tags and a little zero padding). Only the start counts: symphonia's own probe would scan up
/// to 1 MiB for anything that looks like a frame sync, and random bytes often do.
fn sniff(file: &mut File) -> Result<(Container, u64), MediaError> {
    let mut offset: u64 = 0;
    let mut window = Vec::with_capacity(MAX_ZERO_PADDING + 16);
    // An MP3 may carry more than one ID3v2 tag; three is plenty for a real file.
    for _ in 0..4 {
        file.seek(SeekFrom::Start(offset))?;
        window.clear();
        file.by_ref()
            .take((MAX_ZERO_PADDING + 16) as u64)
            .read_to_end(&mut window)?;
        match id3v2_len(&window) {
            Some(len) => offset += len,
            None => break,
        }
    }
    // MP4 starts with zero bytes of its own (the first box's size): look before skipping any.
    let (container, offset) = match identify(&window) {
        Ok(container) => (container, offset),
        Err(unknown) => {
            let zeros = window.iter().take_while(|b| **b == 0).count();
            match window.get(zeros..).filter(|_| zeros > 0).map(identify) {
                Some(Ok(container)) => (container, offset + zeros as u64),
                _ => return Err(MediaError::NotAudio(unknown)),
            }
        }
    };
    if container == Container::Mp4 && offset > 0 {
        // MP4 chunk offsets are absolute: a prefix would shift every one of them.
        return Err(MediaError::NotAudio(
            "an MP4 file does not start at the first byte".to_owned(),
        ));
    }
    Ok((container, offset))
}

/// The full length of the ID3v2 tag at the start of `bytes`, if there is one.
fn id3v2_len(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..10)?;
    if &header[..3] != b"ID3" || header[3] == 0xff || header[4] == 0xff {
        return None;
    }
    // The size is "syncsafe": four 7-bit bytes. A set top bit means this is not an ID3 header.
    let mut size: u64 = 0;
    for byte in &header[6..10] {
        if byte & 0x80 != 0 {
            return None;
        }
        size = (size << 7) | u64::from(*byte);
    }
    let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// Name the container from its signature, or say what the bytes look like instead.
pub(crate) fn identify(head: &[u8]) -> Result<Container, String> {
    let at = |range: std::ops::Range<usize>| head.get(range).unwrap_or(&[]);
    if at(0..4) == b"RIFF" && at(8..12) == b"WAVE" {
        return Ok(Container::Wav);
    }
    if at(0..4) == b"fLaC" {
        return Ok(Container::Flac);
    }
    if at(0..4) == b"OggS" {
        return Ok(Container::Ogg);
    }
    if at(4..8) == b"ftyp" {
        return Ok(Container::Mp4);
    }
    if let [0xff, second, ..] = head {
        // MPEG-1, -2 and -2.5 layer III, with or without CRC: the same bytes symphonia's MP3
        // reader registers as its markers.
        if [0xfa, 0xfb, 0xf2, 0xf3, 0xe2, 0xe3].contains(second) {
            return Ok(Container::Mp3);
        }
        // ADTS (raw AAC), MPEG-4 or MPEG-2, without CRC.
        if [0xf1, 0xf9].contains(second) {
            return Ok(Container::Adts);
        }
    }
    Err(describe_unknown(head))
}

fn describe_unknown(head: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (b"%PDF", "it is a PDF document"),
        (b"\x89PNG", "it is a PNG image"),
        (b"\xff\xd8\xff", "it is a JPEG image"),
        (b"PK\x03\x04", "it is a ZIP archive (or an office document)"),
        (
            b"\x1a\x45\xdf\xa3",
            "it is Matroska/WebM, which we do not accept",
        ),
        (b"FORM", "it is AIFF, which we do not accept"),
        (b"caff", "it is Apple CAF, which we do not accept"),
        (
            b"#!AMR",
            "it is AMR (a phone voice memo), which we do not accept",
        ),
    ];
    if let Some((_, what)) = known.iter().find(|(magic, _)| head.starts_with(magic)) {
        return (*what).to_owned();
    }
    if !head.is_empty() && head.iter().all(|b| *b == 0) {
        return "it starts with nothing but zero bytes".to_owned();
    }
    let sample = &head[..head.len().min(512)];
    let text = match std::str::from_utf8(sample) {
        Ok(text) => Some(text),
        // A multi-byte character (Thai is three bytes) cut at the end of the sample is still text.
        Err(e) if e.error_len().is_none() => sample
            .get(..e.valid_up_to())
            .and_then(|valid| std::str::from_utf8(valid).ok()),
        Err(_) => None,
    };
    let texty = text.is_some_and(|text| {
        !text.is_empty() && !text.chars().any(|c| c.is_control() && !c.is_whitespace())
    });
    if texty {
        "it looks like text".to_owned()
    } else {
        "no known audio signature at its start".to_owned()
    }
}

impl Stream {
    pub(crate) fn container(&self) -> Container {
        self.container
    }

    /// symphonia's short codec name: "mp3", "vorbis", "opus", "flac", "pcm_s16le", "aac"...
    pub(crate) fn codec(&self) -> &'static str {
        self.codec
    }

    /// Decode up to the next buffer that holds audio; `Ok(false)` at the end of the stream.
    /// A packet that fails to decode is skipped, as players do, unless more than half of the
    /// packets have failed (checked once `MIN_PACKETS_FOR_VERDICT` were read): then, and on a
    /// demuxer or read error, `Err`. The new buffer is `buffer()`.
    pub(crate) fn advance(&mut self) -> Result<bool, MediaError> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(packet) => packet,
                // The end of the file, or a file cut short: what was there has been decoded.
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    return Ok(false)
                }
                // A chained Ogg stream starts a new one; we play the first and stop.
                Err(SymphoniaError::ResetRequired) => return Ok(false),
                Err(SymphoniaError::IoError(e)) => return Err(MediaError::Io(e)),
                Err(other) => {
                    return Err(MediaError::Undecodable(format!(
                        "reading the {} container failed after {} packets: {other}",
                        self.container.name(),
                        self.packets
                    )))
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            self.packets += 1;
            // Only the frame count leaves this statement, which ends the decoder's borrow.
            let decoded = self.decoder.decode(&packet).map(|buffer| buffer.frames());
            match decoded {
                // Headers, priming, and packets trimmed away entirely carry no frames.
                Ok(0) => continue,
                Ok(_) => return Ok(true),
                Err(SymphoniaError::DecodeError(what)) => self.note_failure(what.to_owned())?,
                // Decoders report a packet cut short as a read error: the packet is bad.
                Err(SymphoniaError::IoError(e)) => self.note_failure(e.to_string())?,
                Err(other) => {
                    return Err(MediaError::Undecodable(format!(
                        "the {} decoder stopped at packet {}: {other}",
                        self.codec, self.packets
                    )))
                }
            }
        }
    }

    fn note_failure(&mut self, what: String) -> Result<(), MediaError> {
        self.failed += 1;
        self.last_failure = what;
        self.verdict(false)
    }

    /// The bad-packet policy: `Err` when more than half of the packets failed. Mid-stream it
    /// waits for `MIN_PACKETS_FOR_VERDICT` packets; at the end (`at_end`) any count is judged.
    pub(crate) fn verdict(&self, at_end: bool) -> Result<(), MediaError> {
        let judged = at_end || self.packets >= MIN_PACKETS_FOR_VERDICT;
        if judged && self.failed * 2 > self.packets {
            return Err(MediaError::Undecodable(format!(
                "{} of {} {} packets failed to decode (last: {})",
                self.failed, self.packets, self.codec, self.last_failure
            )));
        }
        Ok(())
    }

    /// The buffer decoded by the last successful `advance()`.
    pub(crate) fn buffer(&self) -> AudioBufferRef<'_> {
        self.decoder.last_decoded()
    }
}

/// Copy a decoded buffer into `out` as interleaved f32 (replacing what was there), the layout
/// ebur128 and rodio both take. `out` keeps its allocation from one buffer to the next.
pub(crate) fn interleave(buffer: &AudioBufferRef<'_>, out: &mut Vec<f32>) {
    match buffer {
        AudioBufferRef::U8(b) => interleave_typed(b, out),
        AudioBufferRef::U16(b) => interleave_typed(b, out),
        AudioBufferRef::U24(b) => interleave_typed(b, out),
        AudioBufferRef::U32(b) => interleave_typed(b, out),
        AudioBufferRef::S8(b) => interleave_typed(b, out),
        AudioBufferRef::S16(b) => interleave_typed(b, out),
        AudioBufferRef::S24(b) => interleave_typed(b, out),
        AudioBufferRef::S32(b) => interleave_typed(b, out),
        AudioBufferRef::F32(b) => interleave_typed(b, out),
        AudioBufferRef::F64(b) => interleave_typed(b, out),
    }
}

fn interleave_typed<S: Sample + IntoSample<f32>>(buffer: &AudioBuffer<S>, out: &mut Vec<f32>) {
    let channels = buffer.spec().channels.count();
    out.clear();
    out.resize(buffer.frames() * channels, 0.0);
    for channel in 0..channels {
        let slots = out.iter_mut().skip(channel).step_by(channels.max(1));
        for (slot, sample) in slots.zip(buffer.chan(channel)) {
            *slot = (*sample).into_sample();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_name_their_container() {
        let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
        wav.extend([0; 8]);
        assert_eq!(identify(&wav), Ok(Container::Wav));
        assert_eq!(identify(b"fLaC\x00\x00\x00\x22"), Ok(Container::Flac));
        assert_eq!(identify(b"OggS\x00\x02"), Ok(Container::Ogg));
        assert_eq!(identify(b"\x00\x00\x00\x20ftypM4A "), Ok(Container::Mp4));
        assert_eq!(identify(&[0xff, 0xfb, 0x90, 0x64]), Ok(Container::Mp3));
        assert_eq!(identify(&[0xff, 0xf3, 0x90, 0x64]), Ok(Container::Mp3));
        assert_eq!(identify(&[0xff, 0xf1, 0x50, 0x80]), Ok(Container::Adts));
    }

    #[test]
    fn a_riff_that_is_not_wave_is_refused() {
        assert!(identify(b"RIFF\x24\x00\x00\x00AVI LIST").is_err());
    }

    #[test]
    fn unknown_bytes_say_what_they_look_like() {
        assert_eq!(
            identify(b"hello, world\n").unwrap_err(),
            "it looks like text"
        );
        assert_eq!(
            identify("ประกาศ".as_bytes()).unwrap_err(),
            "it looks like text"
        );
        assert_eq!(identify(b"%PDF-1.7\n").unwrap_err(), "it is a PDF document");
        let mut cut_thai = "ประกาศ".as_bytes().to_vec();
        cut_thai.pop();
        assert_eq!(identify(&cut_thai).unwrap_err(), "it looks like text");
        assert_eq!(
            identify(&[0x01, 0x9c, 0x00, 0xfe]).unwrap_err(),
            "no known audio signature at its start"
        );
    }

    #[test]
    fn id3v2_length_is_syncsafe_and_counts_the_footer() {
        // size 0x00 0x00 0x02 0x01 = 2 * 128 + 1 = 257 bytes after the 10-byte header
        assert_eq!(id3v2_len(b"ID3\x04\x00\x00\x00\x00\x02\x01"), Some(267));
        assert_eq!(id3v2_len(b"ID3\x04\x00\x10\x00\x00\x02\x01"), Some(277));
        assert_eq!(id3v2_len(b"ID3\x04\x00\x00\x00\x00\x82\x01"), None);
        assert_eq!(id3v2_len(b"ID3\x04"), None);
    }
}
