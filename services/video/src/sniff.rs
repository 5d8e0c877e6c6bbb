//! Recognises video containers by their first bytes, never by file name, and
//! checks that the whole file is laid out as its container says.

use std::io::{Read, Seek, SeekFrom};

/// A container the service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Mp4,
    QuickTime,
    WebM,
}

impl Container {
    pub fn content_type(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::QuickTime => "video/quicktime",
            Container::WebM => "video/webm",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::QuickTime => "mov",
            Container::WebM => "webm",
        }
    }
}

/// Bytes needed to decide.
pub const SNIFF_LEN: usize = 16;

/// The container `head` starts, if any. ISO base media files start with a box
/// whose type (bytes 4..8) is `ftyp` (or, in old QuickTime files, a movie
/// box); Matroska/WebM with the EBML magic.
pub fn sniff(head: &[u8]) -> Option<Container> {
    if head.len() >= 4 && head[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return Some(Container::WebM);
    }
    if head.len() < 12 {
        return None;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    match &head[4..8] {
        b"ftyp" if size >= 8 => {
            if &head[8..12] == b"qt  " {
                Some(Container::QuickTime)
            } else {
                Some(Container::Mp4)
            }
        }
        b"moov" | b"mdat" | b"wide" | b"free" if size >= 8 => Some(Container::QuickTime),
        _ => None,
    }
}

/// Checks that the whole of `file` (`len` bytes) is laid out as `container`
/// says, so bytes that merely start like a video (a `free` box then HTML,
/// `ftyp` then a ZIP, the EBML magic then a script) are refused. ISO base media
/// (MP4, QuickTime): top-level boxes with printable four-character types tile
/// the file (zero padding may follow the last), and one is the movie box (`moov`). WebM: an EBML header
/// whose DocType is `webm` or `matroska`, then a Segment that fits the file.
/// The error says what is wrong.
pub fn check_layout<R: Read + Seek>(file: &mut R, len: u64, container: Container) -> Result<(), String> {
    match container {
        Container::Mp4 | Container::QuickTime => iso_boxes(file, len),
        Container::WebM => ebml(file, len),
    }
    .map_err(|e| format!("data is not a well-formed {} file: {e}", container.extension().to_uppercase()))
}

/// More top-level boxes than this is not a video.
const MAX_BOXES: usize = 10_000;

fn iso_boxes<R: Read + Seek>(file: &mut R, len: u64) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let (mut at, mut boxes, mut movie) = (0u64, 0usize, false);
    while at < len {
        if len - at < 8 || boxes == MAX_BOXES {
            return Err(format!("bytes after the last box at offset {at}"));
        }
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut head = [0u8; 8];
        file.read_exact(&mut head).map_err(io)?;
        let kind = &head[4..8];
        if !kind.iter().all(|b| (0x20..=0x7e).contains(b)) {
            // Zero padding after the last box is harmless; anything else is not.
            if zeros_to_end(file, at, len).map_err(io)? {
                break;
            }
            return Err(format!("no box type at offset {at}"));
        }
        let (size, header) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => (len - at, 8),
            1 => {
                let mut large = [0u8; 8];
                file.read_exact(&mut large).map_err(|_| format!("box at offset {at} is cut off"))?;
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header || size > len - at {
            return Err(format!("box {:?} at offset {at} does not fit the file", String::from_utf8_lossy(kind)));
        }
        movie |= kind == b"moov";
        at += size;
        boxes += 1;
    }
    if movie { Ok(()) } else { Err("no movie box (moov)".into()) }
}

/// Whether every byte from `at` to `len` is zero.
fn zeros_to_end<R: Read + Seek>(file: &mut R, at: u64, len: u64) -> std::io::Result<bool> {
    file.seek(SeekFrom::Start(at))?;
    let mut rest = file.take(len - at);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf)? {
            0 => return Ok(true),
            n if buf[..n].iter().any(|b| *b != 0) => return Ok(false),
            _ => {}
        }
    }
}

/// Bytes of a WebM file read to find its header and the Segment after it.
const EBML_PREFIX: u64 = 64 * 1024;

fn ebml<R: Read + Seek>(file: &mut R, len: u64) -> Result<(), String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    file.take(EBML_PREFIX.min(len)).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let (id, size, body) = element(&bytes, 0).ok_or("no EBML header")?;
    if id != 0x1A45_DFA3 {
        return Err("no EBML header".into());
    }
    let end = size
        .and_then(|size| usize::try_from(size).ok())
        .and_then(|size| body.checked_add(size))
        .ok_or("an EBML header of unknown or impossible size")?;
    if end > bytes.len() {
        return Err("the EBML header does not fit the file".into());
    }
    let mut at = body;
    let mut doc_type = None;
    while at < end {
        let (child, child_size, child_body) = element(&bytes[..end], at).ok_or("a broken EBML header")?;
        let child_end = child_size
            .and_then(|size| usize::try_from(size).ok())
            .and_then(|size| child_body.checked_add(size))
            .ok_or("a broken EBML header")?;
        if child_end > end {
            return Err("a broken EBML header".into());
        }
        if child == 0x4282 {
            doc_type = Some(String::from_utf8_lossy(&bytes[child_body..child_end]).trim_end_matches('\0').to_owned());
        }
        at = child_end;
    }
    match doc_type.as_deref() {
        Some("webm" | "matroska") => {}
        other => return Err(format!("document type {other:?}, not webm")),
    }
    let (segment, segment_size, segment_body) = element(&bytes, end).ok_or("no Segment after the EBML header")?;
    if segment != 0x1853_8067 {
        return Err("no Segment after the EBML header".into());
    }
    // An unknown size (live recordings) runs to the end of the file.
    match segment_size {
        Some(size) if (segment_body as u64).checked_add(size).is_none_or(|end| end > len) => {
            Err("the Segment does not fit the file".into())
        }
        _ => Ok(()),
    }
}

/// The EBML element at `at`: its ID (marker bits kept), its data size (`None`
/// when "unknown") and where its data starts.
fn element(bytes: &[u8], at: usize) -> Option<(u64, Option<u64>, usize)> {
    let (id, id_len) = vint(bytes.get(at..)?, true)?;
    let (size, size_len) = vint(bytes.get(at + id_len..)?, false)?;
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    Some((id, (!unknown).then_some(size), at + id_len + size_len))
}

/// A variable-length integer: its value (with the length marker when `keep`)
/// and its length in bytes.
fn vint(bytes: &[u8], keep: bool) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || bytes.len() < len {
        return None;
    }
    let mut value = if keep { u64::from(first) } else { u64::from(first) & ((1u64 << (8 - len)) - 1) };
    for b in &bytes[1..len] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(boxes: &[(&[u8; 4], usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, body) in boxes {
            out.extend_from_slice(&((body + 8) as u32).to_be_bytes());
            out.extend_from_slice(*kind);
            out.extend(std::iter::repeat_n(0u8, *body));
        }
        out
    }

    fn layout(bytes: &[u8], container: Container) -> Result<(), String> {
        check_layout(&mut std::io::Cursor::new(bytes), bytes.len() as u64, container)
    }

    #[test]
    fn boxes_that_tile_the_file_with_a_movie_box_pass() {
        assert_eq!(layout(&iso(&[(b"ftyp", 16), (b"moov", 100), (b"mdat", 4000)]), Container::Mp4), Ok(()));
        // A last box of size 0 runs to the end of the file.
        let mut open_ended = iso(&[(b"ftyp", 16), (b"moov", 20)]);
        open_ended.extend_from_slice(&[0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2, 3]);
        assert_eq!(layout(&open_ended, Container::Mp4), Ok(()));
        let demo = include_bytes!("../demo/demo1.mp4");
        assert_eq!(layout(demo, sniff(demo).unwrap()), Ok(()));
        let mut padded = demo.to_vec();
        padded.extend(std::iter::repeat_n(0u8, 70_000));
        assert_eq!(layout(&padded, sniff(demo).unwrap()), Ok(()), "zero padding after the last box");
    }

    #[test]
    fn files_that_only_start_like_a_video_are_refused() {
        let mut html = iso(&[(b"free", 8)]);
        html.extend_from_slice(b"<html><script>alert(1)</script></html>");
        assert!(layout(&html, Container::QuickTime).unwrap_err().contains("offset 16"));
        let mut zip = iso(&[(b"ftyp", 16)]);
        zip.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00");
        assert!(layout(&zip, Container::Mp4).is_err());
        assert!(layout(&iso(&[(b"ftyp", 16), (b"mdat", 100)]), Container::Mp4).unwrap_err().contains("moov"));
        let mut long = iso(&[(b"ftyp", 16), (b"moov", 8)]);
        long[24..28].copy_from_slice(&1000u32.to_be_bytes());
        assert!(layout(&long, Container::Mp4).unwrap_err().contains("does not fit"));
        let mut script = vec![0x1A, 0x45, 0xDF, 0xA3];
        script.extend_from_slice(b"#!/bin/sh\nrm -rf /\n");
        assert!(layout(&script, Container::WebM).is_err());
    }

    #[test]
    fn webm_needs_its_doc_type_and_a_segment() {
        let header = |doc: &[u8]| {
            let mut h = vec![0x1A, 0x45, 0xDF, 0xA3, 0x80 | (doc.len() as u8 + 3), 0x42, 0x82, 0x80 | doc.len() as u8];
            h.extend_from_slice(doc);
            h
        };
        let mut webm = header(b"webm");
        webm.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x84, 1, 2, 3, 4]);
        assert_eq!(layout(&webm, Container::WebM), Ok(()));
        let mut live = header(b"webm");
        live.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF, 9, 9]);
        assert_eq!(layout(&live, Container::WebM), Ok(()));
        let mut other = header(b"html");
        other.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x80]);
        assert!(layout(&other, Container::WebM).unwrap_err().contains("html"));
        let mut short = header(b"webm");
        short.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x88, 1]);
        assert!(layout(&short, Container::WebM).unwrap_err().contains("Segment"));
    }

    #[test]
    fn recognises_containers_by_content() {
        assert_eq!(sniff(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"), Some(Container::Mp4));
        assert_eq!(sniff(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00"), Some(Container::QuickTime));
        assert_eq!(sniff(b"\x1A\x45\xDF\xA3\x9f\x42\x86\x81\x01\x42\xf7\x81"), Some(Container::WebM));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), None);
        assert_eq!(sniff(b"hello, this is text"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\x00\x00\x00\x00ftyp"), None);
    }
}
