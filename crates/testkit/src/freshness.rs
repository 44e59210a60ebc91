//! Whether the committed guest artifacts in `plugins/dist/` were built from the sources as they
//! are now. `scripts/build-plugins.sh` records, in `plugins/dist/MANIFEST`, a hash over every
//! source file (`wit/` and `plugins/`, minus `plugins/target/`, `plugins/dist/` and `*.md`) and the
//! SHA-256 of each artifact; this module recomputes both the same way.
//!
//! The sources hash is the SHA-256 of `sha256sum`'s output over those files in byte order of
//! their paths relative to the repository root, so the script computes it with
//! `find … -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The manifest's file name inside `plugins/dist/`.
pub const MANIFEST: &str = "plugins/dist/MANIFEST";

fn collect(root: &Path, rel: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let dir = root.join(rel);
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let rel_str = rel_path.to_string_lossy().replace('\\', "/");
        // Build output, and prose (a README cannot change an artifact).
        if rel_str == "plugins/target" || rel_str == "plugins/dist" || rel_str.ends_with(".md") {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect(root, &rel_path, out)?;
        } else if ty.is_file() {
            out.push(rel_str);
        }
    }
    Ok(())
}

/// The sources hash of the repository at `root` (see the module docs).
pub fn sources_sha256(root: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    for top in ["wit", "plugins"] {
        collect(root, Path::new(top), &mut files)?;
    }
    files.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut listing = String::new();
    for f in &files {
        let bytes = std::fs::read(root.join(f))?;
        listing.push_str(&hex::encode(Sha256::digest(&bytes)));
        listing.push_str("  ");
        listing.push_str(f);
        listing.push('\n');
    }
    Ok(hex::encode(Sha256::digest(listing.as_bytes())))
}

/// `plugins/dist/MANIFEST`, parsed.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub sources_sha256: String,
    /// `(sha256, file name in plugins/dist/)`.
    pub artifacts: Vec<(String, String)>,
}

pub fn read_manifest(root: &Path) -> std::io::Result<Manifest> {
    let text = std::fs::read_to_string(root.join(MANIFEST))?;
    let mut m = Manifest::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.strip_prefix("sources-sha256 ") {
            m.sources_sha256 = h.trim().to_string();
        } else if let Some((hash, file)) = line.split_once("  ") {
            m.artifacts.push((hash.to_string(), file.to_string()));
        }
    }
    Ok(m)
}

/// The path of a committed artifact, e.g. `dist_artifact(root, "code_features")`.
pub fn dist_artifact(root: &Path, stem: &str) -> PathBuf {
    root.join("plugins/dist").join(format!("{stem}.wasm"))
}

/// Every way `plugins/dist/` disagrees with the sources; empty when it is current.
pub fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let manifest = match read_manifest(root) {
        Ok(m) => m,
        Err(e) => return vec![format!("cannot read {MANIFEST}: {e}")],
    };
    match sources_sha256(root) {
        Ok(h) if h == manifest.sources_sha256 => {}
        Ok(h) => problems.push(format!(
            "plugin sources changed since plugins/dist was built (sources {h}, manifest {}); run scripts/build-plugins.sh and commit plugins/dist",
            manifest.sources_sha256
        )),
        Err(e) => problems.push(format!("cannot hash the plugin sources: {e}")),
    }
    if manifest.artifacts.is_empty() {
        problems.push(format!("{MANIFEST} lists no artifacts"));
    }
    for (hash, file) in &manifest.artifacts {
        match std::fs::read(root.join("plugins/dist").join(file)) {
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == *hash => {}
            Ok(_) => problems.push(format!(
                "plugins/dist/{file} does not match its hash in {MANIFEST}"
            )),
            Err(e) => problems.push(format!("plugins/dist/{file}: {e}")),
        }
    }
    problems
}
