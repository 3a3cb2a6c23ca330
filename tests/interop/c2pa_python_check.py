#!/usr/bin/env python3
"""Check mmgen's Content Credentials with an independent C2PA reader.

The script drives the mmgen binary in a temporary home: it generates a
signed PNG, JPEG and WebP, and stamps third-party files in each format
(one with a visible label, one that already carries a manifest). It then
reads every output with the c2pa-python package (PyPI) and checks the
validation state, with and without mmgen's CA as a trust anchor, and the
digital source type of the first action.

It is a development tool, not part of `cargo test`: see
tests/interop/README.md for how to run it. Exit status 0 means every
check passed, 1 that one failed, 2 that the set-up failed.
"""

import argparse
import importlib.metadata
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import c2pa

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
REPO = pathlib.Path(__file__).resolve().parents[2]


def fail_setup(message):
    """Print `message` and exit with status 2: no check could run."""
    print(message, file=sys.stderr)
    sys.exit(2)


def run_mmgen(mmgen, home, workdir, *args):
    """Run mmgen with `home` as its home and fail loudly on an error."""
    result = subprocess.run(
        [str(mmgen), "--home", str(home), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        fail_setup(f"mmgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")


def make_files(mmgen, fixtures, workdir):
    """Create the files to check; return (name, expected source type) pairs."""
    home = workdir / "home"
    run_mmgen(mmgen, home, workdir, "keys", "init", "--organization", "mmgen interop check")
    cases = []
    for fmt, ext in [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")]:
        name = f"generated.{ext}"
        run_mmgen(mmgen, home, workdir, "generate", "a red circle", "--sign",
                  "--format", fmt, "-o", name, "--seed", "5")
        cases.append((name, "trainedAlgorithmicMedia"))

    stamps = [
        ("photos/chelsea.png", "digitalCapture", []),
        ("photos/rocket.jpg", "trainedAlgorithmicMedia", ["--label", "generated"]),
        ("c2pa/test.webp", "compositeWithTrainedAlgorithmicMedia", []),
        ("c2pa/C.jpg", "algorithmicMedia", []),
    ]
    for source, source_type, extra in stamps:
        input_path = workdir / pathlib.Path(source).name
        shutil.copy(fixtures / source, input_path)
        output = f"stamped-{input_path.name}"
        run_mmgen(mmgen, home, workdir, "stamp", input_path.name, "-o", output,
                  "--source-type", source_type, *extra)
        cases.append((output, source_type))
    return cases, (home / "keys" / "ca.cert.pem").read_text()


def read_manifest(path, context=None):
    """Return (validation state, first action's source type, report)."""
    with c2pa.Reader(str(path), context=context) as reader:
        report = json.loads(reader.json())
    active = report["manifests"][report["active_manifest"]]
    actions = [
        action
        for assertion in active.get("assertions", [])
        if assertion["label"].startswith("c2pa.actions")
        for action in assertion["data"]["actions"]
    ]
    source_type = actions[0].get("digitalSourceType") if actions else None
    return report.get("validation_state"), source_type, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmgen", type=pathlib.Path,
                        default=REPO / "target" / "release" / "mmgen",
                        help="mmgen binary (default: target/release/mmgen)")
    parser.add_argument("--fixtures", type=pathlib.Path,
                        default=REPO.parent / "shared" / "fixtures",
                        help="third-party fixtures folder (default: ../shared/fixtures)")
    parser.add_argument("--keep", type=pathlib.Path,
                        help="write the files here instead of a temporary folder")
    args = parser.parse_args()
    if not args.mmgen.is_file():
        fail_setup(f"{args.mmgen} is missing; build it with `cargo build --release`")
    if not (args.fixtures / "photos").is_dir():
        fail_setup(f"fixtures folder {args.fixtures} is missing; pass --fixtures DIR")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or pathlib.Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cases, ca_pem = make_files(args.mmgen, args.fixtures, workdir)
        trusting = c2pa.Context(c2pa.Settings.from_dict(
            {"trust": {"trust_anchors": ca_pem}, "verify": {"verify_trust": True}}))

        package = importlib.metadata.version("c2pa-python")
        print(f"c2pa-python {package} (c2pa-rs {c2pa.sdk_version()})")
        failures = 0
        for name, expected_type in cases:
            state, source_type, report = read_manifest(workdir / name)
            trusted_state, _, _ = read_manifest(workdir / name, trusting)
            expected_uri = IPTC + expected_type
            problems = []
            if state != "Valid":
                problems.append(f"state {state}, expected Valid")
            if trusted_state != "Trusted":
                problems.append(f"state with mmgen's CA {trusted_state}, expected Trusted")
            if source_type != expected_uri:
                problems.append(f"source type {source_type}, expected {expected_uri}")
            verdict = "ok" if not problems else "FAILED: " + "; ".join(problems)
            print(f"{name:32} {state:8} {trusted_state:8} {expected_type:38} {verdict}")
            if problems:
                failures += 1
                print(json.dumps(report.get("validation_results"), indent=1))
        print(f"{len(cases) - failures} of {len(cases)} files passed")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
