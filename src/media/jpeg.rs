//! A structural check that a JPEG file is complete.
//!
//! The JPEG decoder in `image` 0.25.10 (zune-jpeg) reports success on a
//! file cut off in the middle of its image data. This walk over the marker
//! segments (ITU-T T.81, annex B) finds the end-of-image marker of the main
//! image, skipping segment payloads such as Exif thumbnails, which carry
//! their own end-of-image markers.

/// Marker byte values, each following a 0xFF byte.
const EOI: u8 = 0xd9;
const SOS: u8 = 0xda;
const TEM: u8 = 0x01;
const RST_FIRST: u8 = 0xd0;
const RST_LAST: u8 = 0xd7;

/// Defect in a JPEG's marker structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JpegDefect {
    /// The data ends before the end-of-image marker.
    Truncated,
    /// A segment length is smaller than its own two length bytes.
    BadSegmentLength,
}

/// Checks that `bytes`, which start with the SOI marker, reach the
/// end-of-image marker of the main image. Bytes after it are allowed,
/// because some cameras and phones append data there.
pub(crate) fn check_complete(bytes: &[u8]) -> Result<(), JpegDefect> {
    let mut position = 2;
    loop {
        let marker = next_marker(bytes, &mut position)?;
        match marker {
            EOI => return Ok(()),
            TEM | RST_FIRST..=RST_LAST => {}
            SOS => {
                position = segment_end(bytes, position)?;
                position = entropy_coded_end(bytes, position)?;
            }
            _ => position = segment_end(bytes, position)?,
        }
    }
}

/// Moves `position` past the next marker and returns its code. Bytes
/// other than 0xFF before a marker are skipped, as decoders tolerate them.
fn next_marker(bytes: &[u8], position: &mut usize) -> Result<u8, JpegDefect> {
    while bytes.get(*position).is_some_and(|&byte| byte != 0xff) {
        *position += 1;
    }
    // A marker may be preceded by any number of 0xFF fill bytes.
    while bytes.get(*position) == Some(&0xff) {
        *position += 1;
    }
    let marker = *bytes.get(*position).ok_or(JpegDefect::Truncated)?;
    *position += 1;
    Ok(marker)
}

/// Returns the position after the segment whose length field is at
/// `position`; the length counts its own two bytes.
fn segment_end(bytes: &[u8], position: usize) -> Result<usize, JpegDefect> {
    let length_bytes = bytes
        .get(position..position + 2)
        .ok_or(JpegDefect::Truncated)?;
    let length = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
    if length < 2 {
        return Err(JpegDefect::BadSegmentLength);
    }
    let end = position + length;
    if end > bytes.len() {
        return Err(JpegDefect::Truncated);
    }
    Ok(end)
}

/// Returns the position of the 0xFF that starts the first marker after
/// entropy-coded data. Inside that data a 0xFF byte is followed by 0x00
/// (a stuffed byte), a restart marker, or more 0xFF fill bytes.
fn entropy_coded_end(bytes: &[u8], mut position: usize) -> Result<usize, JpegDefect> {
    loop {
        let offset = bytes[position..]
            .iter()
            .position(|&byte| byte == 0xff)
            .ok_or(JpegDefect::Truncated)?;
        position += offset;
        let next = *bytes.get(position + 1).ok_or(JpegDefect::Truncated)?;
        match next {
            0x00 | RST_FIRST..=RST_LAST => position += 2,
            0xff => position += 1,
            _ => return Ok(position),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP1 segment holding a complete inner JPEG (like an Exif
    /// thumbnail), SOS with entropy data, then EOI.
    fn sample() -> Vec<u8> {
        let mut bytes = vec![0xff, 0xd8];
        let thumbnail = [0xff, 0xd8, 0xff, 0xd9];
        bytes.extend_from_slice(&[0xff, 0xe1, 0x00, 2 + thumbnail.len() as u8]);
        bytes.extend_from_slice(&thumbnail);
        bytes.extend_from_slice(&[0xff, 0xda, 0x00, 0x03, 0x01]);
        bytes.extend_from_slice(&[0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xff]);
        bytes.extend_from_slice(&[0xff, 0xd9]);
        bytes
    }

    #[test]
    fn complete_structure_passes() {
        assert_eq!(check_complete(&sample()), Ok(()));
    }

    #[test]
    fn trailing_data_passes() {
        let mut bytes = sample();
        bytes.extend_from_slice(&[0xff, 0xda, 0x00, 0x00, 0x42]);
        assert_eq!(check_complete(&bytes), Ok(()));
    }

    #[test]
    fn every_cut_is_truncated() {
        let bytes = sample();
        for cut in 2..bytes.len() - 1 {
            assert_eq!(
                check_complete(&bytes[..cut]),
                Err(JpegDefect::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn short_segment_length_is_defect() {
        let bytes = [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01, 0xff, 0xd9];
        assert_eq!(check_complete(&bytes), Err(JpegDefect::BadSegmentLength));
    }
}
