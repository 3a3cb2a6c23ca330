//! `mmgen verify` through the real binary, on generated files, altered
//! copies of them and third-party photos.

mod common;

use common::{Sandbox, fixtures, json_lines, stderr, text};
use serde_json::Value;

const SOURCE_TYPE: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

fn generate(sandbox: &Sandbox, name: &str, sign: bool) {
    let mut args = vec![
        "generate",
        "a red circle above a blue square",
        "-o",
        name,
        "--seed",
        "11",
    ];
    if sign {
        args.push("--sign");
    }
    sandbox.run_ok(&args);
}

fn verify_json(sandbox: &Sandbox, name: &str) -> (Option<i32>, Value) {
    let output = sandbox.run(&["verify", "--json", name]);
    let mut reports = json_lines(&output);
    assert_eq!(reports.len(), 1, "{}", text(&output));
    (output.status.code(), reports.remove(0))
}

#[test]
fn generated_file_shows_all_three_layers() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let (code, report) = verify_json(&sandbox, "out.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["verdict"], "intact");
    assert_eq!(report["manifest"]["result"], "found");
    assert_eq!(report["manifest"]["state"], "valid");
    let actions = report["manifest"]["actions"].as_array().expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a["action"] == "c2pa.created" && a["digital_source_type"] == SOURCE_TYPE),
        "{actions:?}"
    );
    assert_eq!(report["watermark"]["result"], "checked");
    assert_eq!(report["watermark"]["detected"], true, "{report:#}");
    assert!(report["watermark"]["p_value"].as_f64().unwrap() < 1e-6);
    assert_eq!(report["ledger"]["byte_identical"], true);
    assert_eq!(
        report["ledger"]["record"]["serial"],
        report["watermark"]["payload"]["serial"]
    );
}

#[test]
fn human_report_names_each_layer() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let output = sandbox.run(&["verify", "out.png"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let out = common::stdout(&output);
    assert!(out.contains("file unchanged"), "{out}");
    assert!(out.contains("C2PA       valid signature"), "{out}");
    assert!(out.contains("watermark  found"), "{out}");
    assert!(out.contains("trainedAlgorithmicMedia"), "{out}");
}

#[test]
fn jpeg_reencode_still_traces() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let image = image::open(sandbox.path("out.png")).unwrap().to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&image)
        .unwrap();
    std::fs::write(sandbox.path("out.jpg"), &jpeg).unwrap();

    let (code, report) = verify_json(&sandbox, "out.jpg");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["result"], "none");
    assert_eq!(report["watermark"]["detected"], true, "{report:#}");
    assert_eq!(report["verdict"], "modified_copy");
    assert_eq!(report["ledger"]["byte_identical"], false);
    assert_eq!(report["ledger"]["found_by"], "watermark");
}

#[test]
fn unsigned_output_is_traced_by_hash_and_watermark() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "plain.png", false);
    let (code, report) = verify_json(&sandbox, "plain.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["result"], "none");
    assert_eq!(report["watermark"]["detected"], true, "{report:#}");
    assert_eq!(report["ledger"]["byte_identical"], true);
}

#[test]
fn photos_give_no_detection() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", false);
    let photos = fixtures().join("photos");
    for name in ["astronaut.png", "chelsea.png", "china.jpg", "rocket.jpg"] {
        let path = photos.join(name);
        let (code, report) = verify_json(&sandbox, path.to_str().unwrap());
        assert_eq!(code, Some(1), "{name}: {report:#}");
        assert_eq!(report["verdict"], "nothing_found", "{name}");
        assert_eq!(report["watermark"]["detected"], false, "{name}: {report:#}");
        assert_eq!(report["manifest"]["result"], "none", "{name}");
    }
}

/// Splits a PNG file into its chunks (type, whole chunk bytes).
fn png_chunks(bytes: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = bytes[at + 4..at + 8].try_into().unwrap();
        chunks.push((kind, bytes[at..at + 12 + len].to_vec()));
        at += 12 + len;
    }
    chunks
}

/// Changes one pixel of a signed PNG and keeps its C2PA chunk where it
/// was: the pixel data is re-encoded and every other chunk is copied.
fn flip_one_pixel(signed: &[u8]) -> Vec<u8> {
    let mut image = image::load_from_memory(signed).unwrap().to_rgb8();
    image.get_pixel_mut(5, 5).0[0] ^= 0x01;
    let mut reencoded = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut reencoded),
            image::ImageFormat::Png,
        )
        .unwrap();
    let new_data: Vec<Vec<u8>> = png_chunks(&reencoded)
        .into_iter()
        .filter(|(kind, _)| kind == b"IDAT")
        .map(|(_, chunk)| chunk)
        .collect();
    let mut out = signed[..8].to_vec();
    let mut data_written = false;
    for (kind, chunk) in png_chunks(signed) {
        if &kind != b"IDAT" {
            out.extend(chunk);
        } else if !data_written {
            new_data.iter().for_each(|c| out.extend(c));
            data_written = true;
        }
    }
    out
}

#[test]
fn flipped_pixel_breaks_the_data_hash() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let signed = std::fs::read(sandbox.path("out.png")).unwrap();
    assert!(
        png_chunks(&signed).iter().any(|(kind, _)| kind == b"caBX"),
        "no C2PA chunk in the signed PNG"
    );
    std::fs::write(sandbox.path("flipped.png"), flip_one_pixel(&signed)).unwrap();

    let (code, report) = verify_json(&sandbox, "flipped.png");
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!(report["verdict"], "tampered");
    assert_eq!(report["manifest"]["state"], "invalid");
    let codes: Vec<&str> = report["manifest"]["status"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(codes.contains(&"assertion.dataHash.mismatch"), "{codes:?}");
    // The watermark survives a one-pixel change and still names the record.
    assert_eq!(report["watermark"]["detected"], true, "{report:#}");
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let bytes = std::fs::read(sandbox.path("out.png")).unwrap();
    std::fs::write(sandbox.path("truncated.png"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(sandbox.path("garbage.png"), b"this is not an image at all").unwrap();
    std::fs::write(sandbox.path("empty.png"), b"").unwrap();
    for name in ["truncated.png", "garbage.png", "empty.png", "missing.png"] {
        let output = sandbox.run(&["verify", name]);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", text(&output));
        let err = stderr(&output);
        assert!(err.contains(name), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn third_party_manifests_are_read() {
    let sandbox = Sandbox::new();
    let c2pa = fixtures().join("c2pa");
    let (code, report) = verify_json(&sandbox, c2pa.join("C.jpg").to_str().unwrap());
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["state"], "valid");
    let (code, report) = verify_json(&sandbox, c2pa.join("XCA.jpg").to_str().unwrap());
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!(report["verdict"], "tampered");
}
