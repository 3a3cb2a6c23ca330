//! Container shapes that the c2pa SDK (0.90) cannot sign, detected first
//! so that the error names the cause and the fix.

use super::ManifestError;

/// JPEG APP11 marker, which carries JUMBF and so C2PA manifest stores.
const APP11: u8 = 0xeb;

/// Payload lengths of an APP11 segment that c2pa 0.90 rejects with
/// "Invalid JPEG CAI JUMBF block": it treats every APP11 segment longer
/// than 16 bytes as JUMBF and reads the box type at bytes 24 to 28.
const UNREADABLE_APP11_LENGTHS: std::ops::Range<usize> = 17..28;

/// Checks that the SDK can parse the container of `asset`, a file of
/// `mime`, before it is signed or read as an ingredient.
pub(super) fn check_container(asset: &[u8], mime: &str) -> Result<(), ManifestError> {
    if mime != "image/jpeg" {
        return Ok(());
    }
    let Ok(jpeg) = img_parts::jpeg::Jpeg::from_bytes(asset.to_vec().into()) else {
        // The SDK reports a malformed file in its own words.
        return Ok(());
    };
    let short = jpeg
        .segments()
        .iter()
        .filter(|segment| segment.marker() == APP11)
        .map(|segment| segment.contents().len())
        .find(|len| UNREADABLE_APP11_LENGTHS.contains(len));
    match short {
        Some(len) => Err(ManifestError::UnsupportedContainer(format!(
            "the JPEG has an APP11 segment of {len} bytes, which the C2PA SDK (c2pa 0.90) \
             cannot parse; remove that segment with a metadata editor and try again"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_with_app11(payload: &[u8]) -> Vec<u8> {
        let image = image::RgbImage::new(8, 8);
        let jpeg = crate::media::encode(&image, crate::media::MediaFormat::Jpeg, 90).unwrap();
        let mut parsed = img_parts::jpeg::Jpeg::from_bytes(jpeg.into()).unwrap();
        let segment =
            img_parts::jpeg::JpegSegment::new_with_contents(APP11, payload.to_vec().into());
        parsed.segments_mut().insert(1, segment);
        parsed.encoder().bytes().to_vec()
    }

    #[test]
    fn short_app11_is_rejected() {
        for len in [17, 20, 27] {
            let jpeg = jpeg_with_app11(&vec![b'x'; len]);
            let err = check_container(&jpeg, "image/jpeg").unwrap_err();
            assert!(err.to_string().contains(&format!("{len} bytes")), "{err}");
        }
    }

    #[test]
    fn other_app11_lengths_pass() {
        for len in [2, 16, 28, 100] {
            let jpeg = jpeg_with_app11(&vec![b'x'; len]);
            assert!(check_container(&jpeg, "image/jpeg").is_ok(), "{len}");
        }
        assert!(check_container(b"not a png", "image/png").is_ok());
    }
}
