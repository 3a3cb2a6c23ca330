//! `mmgen generate` through the real binary: files, keys, ledger records
//! and the JSON summary.

mod common;

use common::{Sandbox, json_lines, stderr, stdout, text};

#[test]
fn signed_generation_reports_every_layer() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_ok(&[
        "generate",
        "a red circle above a blue square",
        "--sign",
        "-o",
        "out.png",
        "--seed",
        "7",
    ]);
    let out = stdout(&output);
    assert!(sandbox.path("out.png").is_file(), "{}", text(&output));
    assert!(out.contains("wrote out.png"), "{out}");
    assert!(out.contains("ledger serial"), "{out}");
    assert!(out.contains("mmgen-wm1:"), "{out}");
    let err = stderr(&output);
    assert!(err.contains("created a local key set"), "{err}");
    assert!(err.contains("not trusted by anyone else"), "{err}");
}

#[test]
fn first_generation_creates_private_keys() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a green star", "-o", "a.png", "--seed", "1"]);
    let keys = sandbox.home().join("keys");
    for name in [
        "ca.key.pem",
        "signer.key.pem",
        "watermark.key",
        "checkpoint.key.pem",
    ] {
        let path = keys.join(name);
        assert!(path.is_file(), "{} missing", path.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        }
    }
}

#[test]
fn unsigned_generation_says_so() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_ok(&[
        "generate",
        "a yellow triangle",
        "-o",
        "u.png",
        "--seed",
        "3",
    ]);
    assert!(stdout(&output).contains("unsigned"), "{}", text(&output));
}

#[test]
fn count_makes_distinct_serials_as_json() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_ok(&[
        "generate",
        "a blue square",
        "-n",
        "3",
        "-o",
        "batch.png",
        "--seed",
        "5",
        "--json",
    ]);
    let images: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON summary");
    let images = images.as_array().expect("array of images");
    assert_eq!(images.len(), 3);
    let serials: Vec<u64> = images
        .iter()
        .map(|i| i["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials.len(), 3);
    assert!(
        serials[0] < serials[1] && serials[1] < serials[2],
        "{serials:?}"
    );
    for i in 1..=3 {
        assert!(
            sandbox.path(&format!("batch-{i}.png")).is_file(),
            "batch-{i}.png missing"
        );
    }
    let seeds: Vec<u64> = images.iter().map(|i| i["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, vec![5, 6, 7]);
}

#[test]
fn existing_output_is_not_overwritten() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path("keep.png"), b"precious").unwrap();
    let output = sandbox.run(&["generate", "a red circle", "-o", "keep.png"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("--force"), "{}", text(&output));
    assert_eq!(
        std::fs::read(sandbox.path("keep.png")).unwrap(),
        b"precious"
    );
}

#[test]
fn every_output_has_a_ledger_record() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&[
        "generate",
        "a pink star",
        "-n",
        "2",
        "-o",
        "s.png",
        "--seed",
        "9",
    ]);
    let listed = sandbox.run_ok(&["ledger", "list", "--json"]);
    let records = json_lines(&listed);
    assert_eq!(records.len(), 2, "{}", text(&listed));
    for record in &records {
        assert_eq!(record["prompt"], "a pink star");
        assert_eq!(record["seed"].as_u64().is_some(), true);
    }
}

#[test]
fn invalid_arguments_are_errors() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["generate", "a red circle", "--steps", "0", "-o", "x.png"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("steps 0"), "{}", text(&output));
    assert!(!sandbox.path("x.png").exists());
}

/// Verifies `name` in `sandbox` and returns its JSON report.
fn verify_report(sandbox: &Sandbox, name: &str) -> serde_json::Value {
    let output = sandbox.run(&["verify", "--json", name]);
    let mut reports = json_lines(&output);
    assert_eq!(reports.len(), 1, "{}", text(&output));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    reports.remove(0)
}

#[test]
fn each_format_is_signed() {
    let sandbox = Sandbox::new();
    let cases = [
        ("png", "image/png"),
        ("jpeg", "image/jpeg"),
        ("webp", "image/webp"),
    ];
    for (format, mime) in cases {
        let name = format!("out-{format}.img");
        sandbox.run_ok(&[
            "generate",
            "a green star",
            "--sign",
            "--format",
            format,
            "-o",
            &name,
            "--seed",
            "2",
        ]);
        let report = verify_report(&sandbox, &name);
        assert_eq!(report["format"], mime, "{report:#}");
        assert_eq!(report["manifest"]["state"], "valid", "{format}: {report:#}");
        assert_eq!(report["ledger"]["byte_identical"], true, "{format}");
        assert_eq!(report["verdict"], "intact", "{format}");
        let binding = &report["manifest"]["soft_bindings"][0];
        assert_eq!(binding["alg"], "org.mmgen.latent-watermark.1", "{format}");
        assert_eq!(
            binding["values"][0], report["ledger"]["record"]["watermark_payload"],
            "{format}"
        );
    }
}

#[test]
fn prompt_reaches_manifest_only_on_request() {
    let sandbox = Sandbox::new();
    let prompt = "a pink circle";
    sandbox.run_ok(&[
        "generate",
        prompt,
        "--sign",
        "-o",
        "hidden.png",
        "--seed",
        "4",
    ]);
    sandbox.run_ok(&[
        "generate",
        prompt,
        "--sign",
        "--prompt-in-manifest",
        "-o",
        "shown.png",
        "--seed",
        "4",
    ]);
    let hidden = verify_report(&sandbox, "hidden.png");
    let generation = &hidden["manifest"]["generation"];
    assert!(generation.get("prompt").is_none(), "{generation:#}");
    assert_eq!(generation["prompt_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        generation["model_name"],
        hidden["ledger"]["record"]["model_name"]
    );
    assert_eq!(
        generation["weights_sha256"],
        hidden["ledger"]["record"]["weights_sha256"]
    );

    let shown = verify_report(&sandbox, "shown.png");
    assert_eq!(shown["manifest"]["generation"]["prompt"], prompt);

    let output = sandbox.run(&[
        "generate",
        prompt,
        "--sign",
        "--prompt-in-manifest",
        "--redact-prompt",
        "-o",
        "x.png",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(!sandbox.path("x.png").exists());
}

/// Milliseconds of jitter from the clock, so that each run kills at other
/// moments: 0 to `max` - 1.
fn jitter(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % max
}

#[test]
fn killed_generation_leaves_verifiable_ledger() {
    let sandbox = Sandbox::new();
    // Keys first: a kill while the key set is written leaves it incomplete
    // on purpose, which `load` reports.
    sandbox.run_ok(&["keys", "init"]);
    let ledger = sandbox.home().join("ledger.sqlite");
    for round in 0..7 {
        let output = format!("k{round}.png");
        let mut child = sandbox.spawn(&["generate", "a red circle", "-n", "2", "-o", &output]);
        // A run takes about 1.5 s here, so this kills it in any phase:
        // start-up, ledger creation, sampling, signing, the append or the
        // release.
        std::thread::sleep(std::time::Duration::from_millis(jitter(1800)));
        let _ = child.kill();
        child.wait().unwrap();

        if !ledger.exists() {
            // Killed before the ledger was created: nothing was released.
            assert!(!sandbox.path(&output).exists(), "round {round}");
            continue;
        }
        let verified = sandbox.run(&["ledger", "verify"]);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "round {round}: {}",
            text(&verified)
        );
    }

    sandbox.run_ok(&["generate", "a red circle", "-o", "last.png", "--seed", "1"]);
    let listed = sandbox.run_ok(&["ledger", "list", "--json"]);
    let logged: std::collections::BTreeSet<String> = json_lines(&listed)
        .iter()
        .map(|r| r["output_sha256"].as_str().unwrap().to_string())
        .collect();
    for entry in std::fs::read_dir(sandbox.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            let digest = common::sha256_hex(&path);
            assert!(
                logged.contains(&digest),
                "{} has no ledger record",
                path.display()
            );
        }
    }
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

#[test]
fn new_ledger_with_used_key_is_rejected() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a red circle", "-o", "a.png", "--seed", "1"]);
    let ledger = sandbox.home().join("ledger.sqlite");
    let moved = sandbox.path("old-ledger.sqlite");
    std::fs::rename(&ledger, &moved).unwrap();

    let output = sandbox.run(&["generate", "a red circle", "-o", "b.png", "--seed", "2"]);
    assert!(!output.status.success(), "{}", text(&output));
    let err = stderr(&output);
    assert!(err.contains("is missing"), "{err}");
    assert!(err.contains("restore the ledger"), "{err}");
    assert!(!sandbox.path("b.png").exists());
    assert!(!ledger.exists(), "a new ledger was created");

    // With the old ledger back, generation goes on from the next serial.
    std::fs::rename(&moved, &ledger).unwrap();
    let output = sandbox.run_ok(&["generate", "a red circle", "-o", "b.png", "--seed", "2"]);
    assert!(
        stdout(&output).contains("ledger serial  2"),
        "{}",
        text(&output)
    );
}
