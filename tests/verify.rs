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
    assert!(
        out.contains(
            "C2PA       valid: the signature is valid, but the signer is not in your trust list"
        ),
        "{out}"
    );
    assert!(
        out.contains("AI-generated according to mmgen local signer"),
        "{out}"
    );
    assert!(out.contains("watermark  found"), "{out}");
    assert!(out.contains("trainedAlgorithmicMedia"), "{out}");
}

/// Re-encodes a generated file as JPEG quality 80, which drops its
/// manifest and every other metadata block.
fn reencode_as_jpeg(sandbox: &Sandbox, from: &str, to: &str) -> Vec<u8> {
    let image = image::open(sandbox.path(from)).unwrap().to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&image)
        .unwrap();
    std::fs::write(sandbox.path(to), &jpeg).unwrap();
    jpeg
}

#[test]
fn stripped_copy_recovers_its_manifest() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let copy = reencode_as_jpeg(&sandbox, "out.png", "out.jpg");

    let (code, report) = verify_json(&sandbox, "out.jpg");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["result"], "none");
    assert_eq!(report["watermark"]["detected"], true, "{report:#}");
    assert_eq!(report["verdict"], "modified_copy");
    assert_eq!(report["ledger"]["byte_identical"], false);
    assert_eq!(report["ledger"]["found_by"], "watermark");
    let serial = report["ledger"]["record"]["serial"].clone();

    let recovered = &report["recovered_manifest"];
    assert_eq!(recovered["result"], "validated", "{report:#}");
    assert_eq!(recovered["serial"], serial);
    assert_eq!(recovered["state"], "valid", "{recovered:#}");
    assert_eq!(recovered["matches_file"], false);
    assert_eq!(recovered["soft_binding_matches"], true);
    assert_eq!(recovered["report"]["generation"]["serial"], serial);
    assert_eq!(
        recovered["report"]["soft_bindings"][0]["values"][0],
        report["ledger"]["record"]["watermark_payload"]
    );
    assert!(
        report["conflicts"].as_array().unwrap().is_empty(),
        "{report:#}"
    );

    let output = sandbox.run(&["verify", "out.jpg"]);
    let out = common::stdout(&output);
    assert!(out.contains("modified copy of mmgen generation"), "{out}");
    assert!(
        out.contains("recovered  original manifest of generation"),
        "{out}"
    );

    sandbox.run_ok(&["verify", "out.jpg", "--export-manifest", "original.c2pa"]);
    let exported = std::fs::read(sandbox.path("original.c2pa")).unwrap();
    let record = sandbox.run_ok(&["ledger", "show", &serial.to_string(), "--json"]);
    let record: Value = serde_json::from_str(&common::stdout(&record)).unwrap();
    let stored = base64_decode(record["manifest"].as_str().unwrap());
    assert_eq!(exported, stored);
    let apart = mmgen::manifest::read_store(&exported, "image/png", &copy, None).unwrap();
    assert_eq!(apart.report.state, mmgen::manifest::ValidationState::Valid);
    assert!(!apart.hard_binding_matches);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn export_manifest_needs_a_traced_file() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    std::fs::write(sandbox.path("taken.c2pa"), b"keep").unwrap();
    let output = sandbox.run(&["verify", "out.png", "--export-manifest", "taken.c2pa"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("does not exist yet"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read(sandbox.path("taken.c2pa")).unwrap(), b"keep");

    let photo = fixtures().join("photos/chelsea.png");
    let output = sandbox.run(&[
        "verify",
        photo.to_str().unwrap(),
        "--export-manifest",
        "none.c2pa",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("no ledger record"),
        "{}",
        text(&output)
    );
    assert!(!sandbox.path("none.c2pa").exists());

    let output = sandbox.run(&[
        "verify",
        "out.png",
        "out.png",
        "--export-manifest",
        "x.c2pa",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("exactly one input file"),
        "{}",
        text(&output)
    );
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

/// What `verify` reports for each file in the C2PA fixture folder: exit
/// status, verdict and validation state ("none" for no manifest).
const FIXTURE_OUTCOMES: [(&str, i32, &str, &str); 9] = [
    ("C.jpg", 0, "intact", "valid"),
    ("CA.jpg", 0, "intact", "valid"),
    ("CACA.jpg", 0, "intact", "valid"),
    ("E-sig-CA.jpg", 3, "tampered", "invalid"),
    ("XCA.jpg", 3, "tampered", "invalid"),
    ("no_manifest.jpg", 1, "nothing_found", "none"),
    ("libpng-test.png", 1, "nothing_found", "none"),
    ("sample1.png", 1, "nothing_found", "none"),
    ("test.webp", 1, "nothing_found", "none"),
];

#[test]
fn c2pa_fixtures_give_documented_outcomes() {
    let sandbox = Sandbox::new();
    let c2pa = fixtures().join("c2pa");
    for (name, exit, verdict, state) in FIXTURE_OUTCOMES {
        let (code, report) = verify_json(&sandbox, c2pa.join(name).to_str().unwrap());
        assert_eq!(code, Some(exit), "{name}: {report:#}");
        assert_eq!(report["verdict"], verdict, "{name}: {report:#}");
        if state == "none" {
            assert_eq!(report["manifest"]["result"], "none", "{name}");
        } else {
            assert_eq!(report["manifest"]["state"], state, "{name}: {report:#}");
        }
    }
}

#[test]
fn fixture_codes_and_chain_are_reported() {
    let sandbox = Sandbox::new();
    let c2pa = fixtures().join("c2pa");
    let codes = |report: &Value| -> Vec<String> {
        report["manifest"]["status"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["code"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, c) = verify_json(&sandbox, c2pa.join("C.jpg").to_str().unwrap());
    assert!(
        codes(&c).contains(&"signingCredential.untrusted".into()),
        "{c:#}"
    );
    assert_eq!(c["manifest"]["signer"]["name"], "C2PA Signer");
    assert_eq!(
        c["manifest"]["signer"]["organization"],
        "C2PA Test Signing Cert"
    );
    assert!(c["manifest"]["signer"]["signing_time"].is_string(), "{c:#}");
    assert_eq!(c["manifest"]["claim_generator"], "make_test_images/0.33.1");

    let (_, xca) = verify_json(&sandbox, c2pa.join("XCA.jpg").to_str().unwrap());
    assert!(
        codes(&xca).contains(&"assertion.dataHash.mismatch".into()),
        "{xca:#}"
    );
    let (_, esig) = verify_json(&sandbox, c2pa.join("E-sig-CA.jpg").to_str().unwrap());
    assert!(
        codes(&esig).contains(&"claimSignature.mismatch".into()),
        "{esig:#}"
    );

    let (_, caca) = verify_json(&sandbox, c2pa.join("CACA.jpg").to_str().unwrap());
    let parent = &caca["manifest"]["ingredients"][0];
    assert_eq!(parent["title"], "CA.jpg", "{caca:#}");
    assert_eq!(parent["relationship"], "parentOf");
    assert_eq!(parent["manifest"]["ingredients"][0]["title"], "A.jpg");

    let output = sandbox.run(&["verify", c2pa.join("CACA.jpg").to_str().unwrap()]);
    let out = common::stdout(&output);
    assert!(
        out.contains("ingredient \"CA.jpg\" (parentOf), with Content Credentials"),
        "{out}"
    );
    assert!(
        out.contains("ingredient \"A.jpg\" (parentOf), no Content Credentials"),
        "{out}"
    );
    assert!(out.contains("action c2pa.color_adjustments"), "{out}");
}

#[test]
fn invalid_manifest_wins_the_exit_status() {
    let sandbox = Sandbox::new();
    let c2pa = fixtures().join("c2pa");
    let valid = c2pa.join("C.jpg");
    let invalid = c2pa.join("XCA.jpg");
    let output = sandbox.run(&["verify", valid.to_str().unwrap(), invalid.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let out = common::stdout(&output);
    assert!(
        out.contains("INVALID (assertion.dataHash.mismatch"),
        "{out}"
    );
}

#[test]
fn trust_anchors_make_a_manifest_trusted() {
    let sandbox = Sandbox::new();
    generate(&sandbox, "out.png", true);
    let ca = sandbox.home().join("keys/ca.cert.pem");

    let output = sandbox.run(&["verify", "out.png", "--trust-anchors", ca.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let out = common::stdout(&output);
    assert!(
        out.contains("C2PA       trusted: the signature is valid"),
        "{out}"
    );

    let other = Sandbox::new();
    other.run_ok(&["keys", "init"]);
    let foreign = other.home().join("keys/ca.cert.pem");
    let output = sandbox.run(&[
        "verify",
        "out.png",
        "--trust-anchors",
        foreign.to_str().unwrap(),
    ]);
    let out = common::stdout(&output);
    assert!(
        out.contains("the signer is not in your trust list"),
        "{out}"
    );

    std::fs::copy(&ca, sandbox.home().join("trust-anchors.pem")).unwrap();
    let (code, report) = verify_json(&sandbox, "out.png");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["manifest"]["state"], "trusted", "{report:#}");

    std::fs::write(sandbox.path("bad.pem"), "no certificates here").unwrap();
    let output = sandbox.run(&["verify", "out.png", "--trust-anchors", "bad.pem"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("bad.pem"), "{}", text(&output));
}

/// Builds a 32x32 PNG whose XMP (an iTXt chunk) has `description`
/// inside `rdf:RDF`.
fn png_with_xmp(description: &str) -> Vec<u8> {
    let xmp = format!(
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{description}</rdf:RDF></x:xmpmeta>"#
    );
    let mut contents = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    contents.extend_from_slice(xmp.as_bytes());
    let image = image::RgbImage::from_pixel(32, 32, image::Rgb([90, 120, 200]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut png = img_parts::png::Png::from_bytes(png.into()).unwrap();
    png.chunks_mut()
        .insert(1, img_parts::png::PngChunk::new(*b"iTXt", contents.into()));
    png.encoder().bytes().to_vec()
}

#[test]
fn remote_manifest_is_reported_without_a_request() {
    use std::net::TcpListener;

    // A listener of this test's own, so that a request would be seen.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/manifest.c2pa", listener.local_addr().unwrap());
    let sandbox = Sandbox::new();
    let png = png_with_xmp(&format!(
        r#"<rdf:Description rdf:about="" xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/>"#
    ));
    std::fs::write(sandbox.path("remote.png"), png).unwrap();

    let (code, report) = verify_json(&sandbox, "remote.png");
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["manifest"]["result"], "remote");
    assert_eq!(report["manifest"]["url"], url.as_str());
    let output = sandbox.run(&["verify", "remote.png"]);
    let out = common::stdout(&output);
    assert!(out.contains("stored remotely at"), "{out}");
    assert!(out.contains("was not fetched"), "{out}");

    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "verify connected to the manifest URL: {accepted:?}"
    );
}

#[test]
fn iptc_source_type_outside_c2pa_is_read() {
    let sandbox = Sandbox::new();
    let png = png_with_xmp(&format!(
        r#"<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" Iptc4xmpExt:DigitalSourceType="{SOURCE_TYPE}"/>"#
    ));
    std::fs::write(sandbox.path("iptc.png"), png).unwrap();
    let (code, report) = verify_json(&sandbox, "iptc.png");
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["xmp_source_type"], SOURCE_TYPE);
    assert_eq!(report["manifest"]["result"], "none");
    let output = sandbox.run(&["verify", "iptc.png"]);
    let out = common::stdout(&output);
    assert!(
        out.contains("AI-generated according to the file's IPTC metadata"),
        "{out}"
    );
}

#[test]
fn closed_stderr_is_no_panic() {
    let sandbox = Sandbox::new();
    let commands = [
        &["verify", "missing.png"][..],
        &["ledger", "list"][..],
        &["stamp", "missing.png", "--source-type", "digitalCapture"][..],
    ];
    for args in commands {
        for log_filter in ["", "mmgen=debug"] {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_mmgen"))
                .args(args)
                .env("MMGEN_HOME", sandbox.home())
                .env("RUST_LOG", log_filter)
                .current_dir(sandbox.path(""))
                .stdout(std::process::Stdio::null())
                .stderr(writer)
                .status()
                .unwrap();
            assert_eq!(
                status.code(),
                Some(2),
                "{args:?} with RUST_LOG={log_filter:?}"
            );
        }
    }
}

#[test]
fn missing_file_error_names_cause_once() {
    let sandbox = Sandbox::new();
    let cause = "No such file or directory";
    let verified = sandbox.run(&["verify", "missing.png"]);
    assert_eq!(
        stderr(&verified).matches(cause).count(),
        1,
        "{}",
        text(&verified)
    );

    let as_json = sandbox.run(&["verify", "--json", "missing.png"]);
    let reports = json_lines(&as_json);
    let error = reports[0]["error"].as_str().unwrap_or_default();
    assert_eq!(error.matches(cause).count(), 1, "{}", text(&as_json));

    let stamped = sandbox.run(&["stamp", "missing.png", "--source-type", "digitalCapture"]);
    assert_eq!(
        stderr(&stamped).matches(cause).count(),
        1,
        "{}",
        text(&stamped)
    );
}
