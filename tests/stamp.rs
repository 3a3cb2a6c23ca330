//! `mmgen stamp` through the real binary: photos and third-party files
//! signed with a publisher's source type, labels, directories, and the
//! container cases that C2PA tools have got wrong.

mod common;

use std::path::Path;

use common::{Sandbox, fixtures, json_lines, stderr, stdout, text};
use serde_json::Value;

const IPTC: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/";

fn copy_fixture(sandbox: &Sandbox, folder: &str, name: &str) {
    std::fs::copy(fixtures().join(folder).join(name), sandbox.path(name)).unwrap();
}

fn verify_json(sandbox: &Sandbox, name: &str) -> (Option<i32>, Value) {
    let output = sandbox.run(&["verify", "--json", name]);
    let mut reports = json_lines(&output);
    assert_eq!(reports.len(), 1, "{}", text(&output));
    (output.status.code(), reports.remove(0))
}

fn action_names(report: &Value) -> Vec<String> {
    report["manifest"]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["action"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn photo_is_stamped_beside_its_input() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "chelsea.png");
    let before = std::fs::read(sandbox.path("chelsea.png")).unwrap();
    let output = sandbox.run_ok(&["stamp", "chelsea.png", "--source-type", "digitalCapture"]);
    assert!(
        stdout(&output).contains("chelsea.png -> chelsea.stamped.png"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read(sandbox.path("chelsea.png")).unwrap(), before);

    let (code, report) = verify_json(&sandbox, "chelsea.stamped.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["verdict"], "intact");
    assert_eq!(report["manifest"]["state"], "valid");
    assert_eq!(action_names(&report), ["c2pa.created"]);
    assert_eq!(
        report["manifest"]["actions"][0]["digital_source_type"],
        format!("{IPTC}digitalCapture")
    );
    assert_eq!(report["manifest"]["ai_disclosures"], Value::Array(vec![]));
}

#[test]
fn stamp_is_logged_before_release() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "china.jpg");
    let output = sandbox.run_ok(&[
        "stamp",
        "china.jpg",
        "--source-type",
        "digitalCapture",
        "--json",
    ]);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "{}", text(&output));
    let serial = lines[0]["ledger_serial"].as_u64().expect("ledger serial");

    let shown = sandbox.run_ok(&["ledger", "show", &serial.to_string(), "--json"]);
    let record: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(record["kind"], "stamp", "{record:#}");
    assert_eq!(
        record["input_sha256"],
        common::sha256_hex(&sandbox.path("china.jpg"))
    );
    assert_eq!(
        record["output_sha256"],
        common::sha256_hex(&sandbox.path("china.stamped.jpg"))
    );
    assert_eq!(
        record["digital_source_type"],
        format!("{IPTC}digitalCapture")
    );

    let (code, report) = verify_json(&sandbox, "china.stamped.jpg");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ledger"]["byte_identical"], true);
    assert_eq!(report["ledger"]["record"]["kind"], "stamp");
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let human = sandbox.run(&["verify", "china.stamped.jpg"]);
    assert!(
        stdout(&human).contains("stamped in this mmgen home"),
        "{}",
        text(&human)
    );
}

#[test]
fn input_is_replaced_only_in_place() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "rocket.jpg");
    let before = std::fs::read(sandbox.path("rocket.jpg")).unwrap();

    let output = sandbox.run(&[
        "stamp",
        "rocket.jpg",
        "-o",
        "rocket.jpg",
        "--source-type",
        "digitalCapture",
        "--force",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("--in-place"), "{}", text(&output));
    assert_eq!(std::fs::read(sandbox.path("rocket.jpg")).unwrap(), before);

    sandbox.run_ok(&[
        "stamp",
        "rocket.jpg",
        "--in-place",
        "--source-type",
        "print",
    ]);
    let (code, report) = verify_json(&sandbox, "rocket.jpg");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        report["manifest"]["actions"][0]["digital_source_type"],
        format!("{IPTC}print")
    );
    assert!(!sandbox.path("rocket.stamped.jpg").exists());
}

#[test]
fn existing_output_needs_force() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "rocket.jpg");
    std::fs::write(sandbox.path("rocket.stamped.jpg"), b"keep").unwrap();
    let output = sandbox.run(&["stamp", "rocket.jpg", "--source-type", "digitalCapture"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("--force"), "{}", text(&output));
    assert_eq!(
        std::fs::read(sandbox.path("rocket.stamped.jpg")).unwrap(),
        b"keep"
    );
    sandbox.run_ok(&[
        "stamp",
        "rocket.jpg",
        "--source-type",
        "digitalCapture",
        "--force",
    ]);
    let (code, _) = verify_json(&sandbox, "rocket.stamped.jpg");
    assert_eq!(code, Some(0));
}

#[test]
fn directory_goes_on_past_a_bad_file() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("in");
    std::fs::create_dir(&dir).unwrap();
    for name in ["camera.png", "rocket.jpg"] {
        std::fs::copy(fixtures().join("photos").join(name), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();

    let output = sandbox.run(&[
        "stamp",
        "in",
        "-o",
        "out",
        "--source-type",
        "digitalCapture",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{}", text(&output));
    let failed: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(failed[0]["input"].as_str().unwrap().ends_with("broken.png"));
    assert!(
        stderr(&output).contains("stamped 2 of 3 files"),
        "{}",
        text(&output)
    );
    for name in ["camera.png", "rocket.jpg"] {
        let (code, report) = verify_json(&sandbox, &format!("out/{name}"));
        assert_eq!(code, Some(0), "{name}: {report:#}");
    }
    assert!(!sandbox.path("out/broken.png").exists());
}

#[test]
fn existing_manifest_becomes_the_parent() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "c2pa", "CA.jpg");
    sandbox.run_ok(&["stamp", "CA.jpg", "--source-type", "digitalCapture"]);
    let (code, report) = verify_json(&sandbox, "CA.stamped.jpg");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["state"], "valid");
    assert_eq!(action_names(&report), ["c2pa.opened"]);
    let parent = &report["manifest"]["ingredients"][0];
    assert_eq!(parent["title"], "CA.jpg");
    assert_eq!(parent["relationship"], "parentOf");
    assert_eq!(
        parent["manifest"]["signer"]["organization"],
        "C2PA Test Signing Cert"
    );
    assert_eq!(parent["manifest"]["ingredients"][0]["title"], "A.jpg");
}

#[test]
fn invalid_manifest_is_not_stamped_over() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "c2pa", "XCA.jpg");
    let output = sandbox.run(&["stamp", "XCA.jpg", "--source-type", "digitalCapture"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let err = stderr(&output);
    assert!(err.contains("XCA.jpg"), "{err}");
    assert!(err.contains("assertion.dataHash.mismatch"), "{err}");
    assert!(!sandbox.path("XCA.stamped.jpg").exists());
}

#[test]
fn own_output_can_be_signed_again() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&[
        "generate",
        "a blue circle",
        "--sign",
        "-o",
        "gen.png",
        "--seed",
        "3",
    ]);
    sandbox.run_ok(&[
        "stamp",
        "gen.png",
        "--source-type",
        "trainedAlgorithmicMedia",
    ]);
    let (code, report) = verify_json(&sandbox, "gen.stamped.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["state"], "valid", "{report:#}");
    let parent = &report["manifest"]["ingredients"][0]["manifest"];
    assert_eq!(parent["actions"][0]["action"], "c2pa.created", "{report:#}");
    let disclosures = report["manifest"]["ai_disclosures"].as_array().unwrap();
    assert_eq!(disclosures.len(), 2, "{report:#}");
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

#[test]
fn other_issuers_ai_claim_is_attributed() {
    let publisher = Sandbox::new();
    publisher.run_ok(&["keys", "init", "--organization", "Example News Ltd"]);
    copy_fixture(&publisher, "photos", "coffee.png");
    publisher.run_ok(&[
        "stamp",
        "coffee.png",
        "-o",
        "coffee-ai.png",
        "--source-type",
        "compositeWithTrainedAlgorithmicMedia",
    ]);

    let reader = Sandbox::new();
    let file = publisher.path("coffee-ai.png");
    let (code, report) = verify_json(&reader, file.to_str().unwrap());
    assert_eq!(code, Some(0), "{report:#}");
    let disclosure = &report["manifest"]["ai_disclosures"][0];
    assert_eq!(disclosure["according_to"], "Example News Ltd");
    let output = reader.run(&["verify", file.to_str().unwrap()]);
    let out = stdout(&output);
    assert!(
        out.contains(
            "AI-generated according to Example News Ltd (compositeWithTrainedAlgorithmicMedia)"
        ),
        "{out}"
    );
}

#[test]
fn label_is_drawn_on_a_copy() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "astronaut.png");
    let before = std::fs::read(sandbox.path("astronaut.png")).unwrap();
    sandbox.run_ok(&[
        "stamp",
        "astronaut.png",
        "-o",
        "labelled.png",
        "--source-type",
        "trainedAlgorithmicMedia",
        "--label",
        "generated",
        "--label-corner",
        "top-left",
        "--label-language",
        "de",
        "--label-size",
        "0.1",
    ]);
    assert_eq!(
        std::fs::read(sandbox.path("astronaut.png")).unwrap(),
        before
    );

    let original = image::open(sandbox.path("astronaut.png"))
        .unwrap()
        .to_rgb8();
    let labelled = image::open(sandbox.path("labelled.png")).unwrap().to_rgb8();
    assert_ne!(original.get_pixel(30, 30), labelled.get_pixel(30, 30));
    assert_eq!(original.get_pixel(500, 500), labelled.get_pixel(500, 500));

    let (code, report) = verify_json(&sandbox, "labelled.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(action_names(&report), ["c2pa.opened", "c2pa.edited"]);
    let description = report["manifest"]["actions"][1]["description"]
        .as_str()
        .unwrap();
    assert!(description.contains("\"KI GENERIERT\""), "{description}");
    assert!(description.contains("top-left"), "{description}");
    assert_eq!(
        report["manifest"]["ingredients"][0]["title"],
        "astronaut.png"
    );

    let output = sandbox.run(&[
        "stamp",
        "astronaut.png",
        "--in-place",
        "--label",
        "modified",
        "--source-type",
        "trainedAlgorithmicMedia",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(
        std::fs::read(sandbox.path("astronaut.png")).unwrap(),
        before
    );
}

#[test]
fn bad_arguments_are_errors() {
    let sandbox = Sandbox::new();
    copy_fixture(&sandbox, "photos", "rocket.jpg");
    let output = sandbox.run(&["stamp", "rocket.jpg", "--source-type", "photo"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("digitalCapture"),
        "{}",
        text(&output)
    );

    let output = sandbox.run(&[
        "stamp",
        "rocket.jpg",
        "-o",
        "rocket.png",
        "--source-type",
        "digitalCapture",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains(".jpg extension"),
        "{}",
        text(&output)
    );
    assert!(!sandbox.path("rocket.png").exists());

    let output = sandbox.run(&[
        "stamp",
        "rocket.jpg",
        "--source-type",
        "digitalCapture",
        "--label",
        "generated",
        "--label-size",
        "0.9",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("--label-size"),
        "{}",
        text(&output)
    );
}

/// Inserts a JPEG segment with `marker` and `contents` after SOI's first
/// segment.
fn jpeg_with_segment(jpeg: &[u8], marker: u8, contents: &[u8]) -> Vec<u8> {
    let mut parsed = img_parts::jpeg::Jpeg::from_bytes(jpeg.to_vec().into()).unwrap();
    let segment = img_parts::jpeg::JpegSegment::new_with_contents(marker, contents.to_vec().into());
    parsed.segments_mut().insert(1, segment);
    parsed.encoder().bytes().to_vec()
}

/// Builds the payload of an APP11 segment with a JUMBF superbox that is
/// not a C2PA manifest store: a description box of the JSON content type
/// labelled `org.example.metadata`, and one JSON box.
fn foreign_jumbf_app11() -> Vec<u8> {
    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }
    // The JSON content type UUID of ISO/IEC 19566-5.
    let mut description = b"json\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71".to_vec();
    description.push(0x03);
    description.extend_from_slice(b"org.example.metadata\0");
    let mut superbox = boxed(b"jumd", &description);
    superbox.extend(boxed(b"json", b"{\"note\":\"not provenance\"}"));
    // Common identifier "JP", box instance 1, packet sequence 1.
    let mut segment = b"JP\x00\x01\x00\x00\x00\x01".to_vec();
    segment.extend(boxed(b"jumb", &superbox));
    segment
}

#[test]
fn jpeg_with_foreign_app11_is_stamped() {
    let sandbox = Sandbox::new();
    let photo = std::fs::read(fixtures().join("photos/rocket.jpg")).unwrap();
    // A two-byte APP11 as some cameras write, and a JUMBF box of another
    // kind: neither is a C2PA manifest store.
    let jumbf = foreign_jumbf_app11();
    let cases: [(&str, &[u8]); 2] = [("zeros.jpg", &[0, 0]), ("jumbf.jpg", &jumbf)];
    for (name, contents) in cases {
        let bytes = jpeg_with_segment(&photo, 0xeb, contents);
        std::fs::write(sandbox.path(name), bytes).unwrap();
        let output = sandbox.run(&["stamp", name, "--source-type", "digitalCapture"]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", text(&output));
        let stamped_name = name.replace(".jpg", ".stamped.jpg");
        let (code, report) = verify_json(&sandbox, &stamped_name);
        assert_eq!(code, Some(0), "{name}: {report:#}");
        assert_eq!(report["manifest"]["state"], "valid", "{name}: {report:#}");
        let stamped = std::fs::read(sandbox.path(&stamped_name)).unwrap();
        let kept = stamped.windows(contents.len()).any(|w| w == contents);
        assert!(kept, "{name}: the foreign APP11 segment was dropped");
    }
}

#[test]
fn jpeg_with_short_app11_gets_a_clear_error() {
    let sandbox = Sandbox::new();
    let photo = std::fs::read(fixtures().join("photos/rocket.jpg")).unwrap();
    // 20 bytes: longer than 16 but too short for c2pa 0.90 to look at.
    let bytes = jpeg_with_segment(&photo, 0xeb, b"JP\x00\x01\x00\x00\x00\x01twelve bytes");
    std::fs::write(sandbox.path("short.jpg"), bytes).unwrap();
    let output = sandbox.run(&["stamp", "short.jpg", "--source-type", "digitalCapture"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let err = stderr(&output);
    assert!(err.contains("APP11"), "{err}");
    assert!(err.contains("remove"), "{err}");
    assert!(!sandbox.path("short.stamped.jpg").exists());
}

/// Returns the chunk types of a PNG, in order.
fn png_chunk_types(png: &[u8]) -> Vec<String> {
    let parsed = img_parts::png::Png::from_bytes(png.to_vec().into()).unwrap();
    parsed
        .chunks()
        .iter()
        .map(|c| String::from_utf8_lossy(&c.kind()).into_owned())
        .collect()
}

fn png_chunk(png: &[u8], kind: &[u8; 4]) -> Option<Vec<u8>> {
    let parsed = img_parts::png::Png::from_bytes(png.to_vec().into()).unwrap();
    parsed.chunk_by_type(*kind).map(|c| c.contents().to_vec())
}

#[test]
fn png_exif_after_c2pa_chunk_survives() {
    let sandbox = Sandbox::new();
    let photo = std::fs::read(fixtures().join("photos/camera.png")).unwrap();
    // Big-endian TIFF header and an empty IFD: the smallest valid Exif.
    let exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00".to_vec();
    let mut parsed = img_parts::png::Png::from_bytes(photo.into()).unwrap();
    let chunk = img_parts::png::PngChunk::new(*b"eXIf", exif.clone().into());
    parsed.chunks_mut().insert(1, chunk);
    std::fs::write(sandbox.path("exif.png"), parsed.encoder().bytes()).unwrap();

    sandbox.run_ok(&["stamp", "exif.png", "--source-type", "digitalCapture"]);
    let stamped = std::fs::read(sandbox.path("exif.stamped.png")).unwrap();
    let types = png_chunk_types(&stamped);
    let c2pa = types.iter().position(|t| t == "caBX").expect("caBX chunk");
    let exif_at = types.iter().position(|t| t == "eXIf").expect("eXIf chunk");
    assert!(c2pa < exif_at, "{types:?}");
    assert_eq!(png_chunk(&stamped, b"eXIf"), Some(exif));

    let (code, report) = verify_json(&sandbox, "exif.stamped.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["state"], "valid", "{report:#}");
    let decoded = image::open(Path::new(&sandbox.path("exif.stamped.png"))).unwrap();
    assert_eq!(decoded.width(), 512);
}
