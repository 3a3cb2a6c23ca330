//! C2PA manifests (Content Credentials): build, sign, read and report.
