//! Recognises video containers by their first bytes, never by file name.

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

#[cfg(test)]
mod tests {
    use super::*;

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
