//! XMP metadata outside C2PA: finding the packet in a PNG, JPEG or WebP
//! container, and reading the IPTC digital source type from it.
//!
//! The IPTC Photo Metadata Standard names the property
//! `Iptc4xmpExt:DigitalSourceType`, in the namespace
//! `http://iptc.org/std/Iptc4xmpExt/2008-02-29/`. Unlike a C2PA
//! manifest it is not signed, so anyone can write or change it.

use std::io::Read;

use img_parts::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use super::MediaFormat;

/// Namespace of the IPTC Extension schema.
pub const IPTC_EXT_NAMESPACE: &[u8] = b"http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
/// Namespace of RDF, whose `resource` attribute may carry the value.
const RDF_NAMESPACE: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// Local name of the property.
const DIGITAL_SOURCE_TYPE: &[u8] = b"DigitalSourceType";

/// Keyword of the PNG iTXt chunk that contains XMP (XMP specification
/// part 3).
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
/// Signature that starts a JPEG APP1 segment holding XMP.
const JPEG_XMP_SIGNATURE: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// JPEG APP1 marker.
const APP1: u8 = 0xe1;
/// Largest XMP packet that is inflated from a compressed iTXt chunk.
const MAX_XMP_BYTES: u64 = 4 * 1024 * 1024;

/// Returns the XMP packet of a PNG, JPEG or WebP file, or `None` when it
/// has none or the container does not parse.
pub fn xmp_packet(bytes: &[u8]) -> Option<String> {
    let data = Bytes::copy_from_slice(bytes);
    let packet = match MediaFormat::sniff(bytes)? {
        MediaFormat::Png => png_xmp(data),
        MediaFormat::Jpeg => jpeg_xmp(data),
        MediaFormat::Webp => webp_xmp(data),
    }?;
    String::from_utf8(packet).ok()
}

fn png_xmp(data: Bytes) -> Option<Vec<u8>> {
    let png = img_parts::png::Png::from_bytes(data).ok()?;
    png.chunks_by_type(*b"iTXt")
        .find_map(|chunk| itxt_xmp(chunk.contents()))
}

/// Parses an iTXt chunk: keyword, NUL, compression flag and method,
/// language tag, NUL, translated keyword, NUL, then the text.
fn itxt_xmp(contents: &[u8]) -> Option<Vec<u8>> {
    let rest = contents
        .strip_prefix(PNG_XMP_KEYWORD)?
        .strip_prefix(b"\0")?;
    let (&compressed, rest) = rest.split_first()?;
    let rest = rest.get(1..)?;
    let language_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[language_end + 1..];
    let keyword_end = rest.iter().position(|&b| b == 0)?;
    let text = &rest[keyword_end + 1..];
    if compressed == 0 {
        return Some(text.to_vec());
    }
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(text)
        .take(MAX_XMP_BYTES)
        .read_to_end(&mut inflated)
        .ok()?;
    Some(inflated)
}

fn jpeg_xmp(data: Bytes) -> Option<Vec<u8>> {
    let jpeg = img_parts::jpeg::Jpeg::from_bytes(data).ok()?;
    jpeg.segments_by_marker(APP1).find_map(|segment| {
        segment
            .contents()
            .strip_prefix(JPEG_XMP_SIGNATURE)
            .map(<[u8]>::to_vec)
    })
}

fn webp_xmp(data: Bytes) -> Option<Vec<u8>> {
    let webp = img_parts::webp::WebP::from_bytes(data).ok()?;
    let chunk = webp.chunk_by_id(*b"XMP ")?;
    chunk.content().data().map(|d| d.to_vec())
}

/// Returns the `Iptc4xmpExt:DigitalSourceType` value of an XMP packet:
/// as an attribute of `rdf:Description`, as element text, or as the
/// element's `rdf:resource`. Prefixes are resolved to their namespaces,
/// so any prefix bound to the IPTC Extension namespace counts.
pub fn digital_source_type(xmp: &str) -> Option<String> {
    let mut reader = NsReader::from_str(xmp);
    reader.config_mut().trim_text(true);
    loop {
        match reader.read_resolved_event().ok()? {
            (ResolveResult::Bound(Namespace(ns)), Event::Start(e))
                if ns == IPTC_EXT_NAMESPACE && e.local_name().as_ref() == DIGITAL_SOURCE_TYPE =>
            {
                if let Some(value) = attribute(&reader, &e, RDF_NAMESPACE, b"resource") {
                    return Some(value);
                }
                let text = reader.read_text(e.name()).ok()?;
                let value = text.decode().ok()?.trim().to_string();
                return (!value.is_empty()).then_some(value);
            }
            (ResolveResult::Bound(Namespace(ns)), Event::Empty(e))
                if ns == IPTC_EXT_NAMESPACE && e.local_name().as_ref() == DIGITAL_SOURCE_TYPE =>
            {
                return attribute(&reader, &e, RDF_NAMESPACE, b"resource");
            }
            (_, Event::Start(e)) | (_, Event::Empty(e)) => {
                let found = attribute(&reader, &e, IPTC_EXT_NAMESPACE, DIGITAL_SOURCE_TYPE);
                if found.is_some() {
                    return found;
                }
            }
            (_, Event::Eof) => return None,
            _ => {}
        }
    }
}

/// Returns the unescaped value of the attribute `namespace:local` of `e`.
fn attribute(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
    namespace: &[u8],
    local: &[u8],
) -> Option<String> {
    e.attributes().flatten().find_map(|attr| {
        let (resolved, name) = reader.resolver().resolve_attribute(attr.key);
        let bound = matches!(resolved, ResolveResult::Bound(Namespace(ns)) if ns == namespace);
        if !bound || name.as_ref() != local {
            return None;
        }
        attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::encode;
    use crate::media::test_images::gradient;

    const TRAINED: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

    fn packet(description: &str) -> String {
        format!(
            r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
{description}
</rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#
        )
    }

    #[test]
    fn attribute_form_is_read() {
        let xmp = packet(&format!(
            r#"<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" Iptc4xmpExt:DigitalSourceType="{TRAINED}"/>"#
        ));
        assert_eq!(digital_source_type(&xmp).as_deref(), Some(TRAINED));
    }

    #[test]
    fn element_and_resource_forms_are_read() {
        let element = packet(&format!(
            r#"<rdf:Description rdf:about="" xmlns:ext="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"><ext:DigitalSourceType> {TRAINED} </ext:DigitalSourceType></rdf:Description>"#
        ));
        assert_eq!(digital_source_type(&element).as_deref(), Some(TRAINED));
        let resource = packet(&format!(
            r#"<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"><Iptc4xmpExt:DigitalSourceType rdf:resource="{TRAINED}"/></rdf:Description>"#
        ));
        assert_eq!(digital_source_type(&resource).as_deref(), Some(TRAINED));
    }

    #[test]
    fn other_namespaces_are_ignored() {
        let xmp = packet(&format!(
            r#"<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://example.com/not-iptc/" Iptc4xmpExt:DigitalSourceType="{TRAINED}"/>"#
        ));
        assert_eq!(digital_source_type(&xmp), None);
        assert_eq!(digital_source_type("<not xml"), None);
        assert_eq!(digital_source_type(""), None);
    }

    fn itxt(text: &str) -> Vec<u8> {
        let mut contents = PNG_XMP_KEYWORD.to_vec();
        contents.extend_from_slice(b"\0\0\0\0\0");
        contents.extend_from_slice(text.as_bytes());
        contents
    }

    #[test]
    fn packets_are_found_in_each_container() {
        let xmp = packet(&format!(
            r#"<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" Iptc4xmpExt:DigitalSourceType="{TRAINED}"/>"#
        ));
        let image = gradient(16, 16);

        let png = encode(&image, MediaFormat::Png, 90).unwrap();
        let mut png = img_parts::png::Png::from_bytes(png.into()).unwrap();
        let chunk = img_parts::png::PngChunk::new(*b"iTXt", itxt(&xmp).into());
        png.chunks_mut().insert(1, chunk);
        let png = png.encoder().bytes().to_vec();
        assert_eq!(xmp_packet(&png).as_deref(), Some(xmp.as_str()));

        let jpeg = encode(&image, MediaFormat::Jpeg, 90).unwrap();
        let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(jpeg.into()).unwrap();
        let mut contents = JPEG_XMP_SIGNATURE.to_vec();
        contents.extend_from_slice(xmp.as_bytes());
        let segment = img_parts::jpeg::JpegSegment::new_with_contents(APP1, contents.into());
        jpeg.segments_mut().insert(1, segment);
        let jpeg = jpeg.encoder().bytes().to_vec();
        assert_eq!(xmp_packet(&jpeg).as_deref(), Some(xmp.as_str()));

        let plain = encode(&image, MediaFormat::Webp, 90).unwrap();
        assert_eq!(xmp_packet(&plain), None);
        let mut webp = img_parts::webp::WebP::from_bytes(plain.into()).unwrap();
        let content = img_parts::riff::RiffContent::Data(xmp.clone().into_bytes().into());
        let chunk = img_parts::riff::RiffChunk::new(*b"XMP ", content);
        webp.chunks_mut().push(chunk);
        let webp = webp.encoder().bytes().to_vec();
        assert_eq!(xmp_packet(&webp).as_deref(), Some(xmp.as_str()));
        assert_eq!(xmp_packet(b"not an image"), None);
    }
}
