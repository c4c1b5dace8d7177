//! Embeds every file of `web-client/` (no build step, no Node at run time):
//! generates a table of (URL path, content type, content encoding, bytes)
//! for `src/web.rs`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "txt" => "text/plain; charset=utf-8",
        "tsv" => "text/tab-separated-values; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    // Read at run time, not with env!(): a build script binary is reused
    // from a shared target directory by clones at other paths, and a path
    // compiled into it would name a checkout that may be gone.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../web-client");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("index.html")),
        "no web-client/index.html under {}",
        root.display()
    );
    let mut table = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f
            .strip_prefix(&root)
            .expect("walked under root")
            .to_string_lossy()
            .replace('\\', "/");
        // Tests, type-check configuration and lint settings are not served.
        if rel.starts_with("tests/")
            || rel == "package.json"
            || rel == "package-lock.json"
            || rel.starts_with("jsconfig")
            || rel.starts_with("tsconfig")
            || rel.starts_with("eslint")
        {
            continue;
        }
        // `x.tsv.gz` is served as `x.tsv`, gzip-encoded (big lists, compressed once here).
        let (rel, served, encoding) = match rel.strip_suffix(".gz") {
            Some(inner) => (inner.to_owned(), PathBuf::from(inner), Some("gzip")),
            None => (rel.clone(), f.clone(), None),
        };
        let url = if rel == "index.html" {
            "/".to_owned()
        } else {
            format!("/{rel}")
        };
        let abs = f.canonicalize().expect("file exists");
        writeln!(
            table,
            "    ({url:?}, {:?}, {encoding:?}, include_bytes!({:?})),",
            content_type(&served),
            abs.display().to_string()
        )
        .expect("write to String");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_files.rs");
    std::fs::write(out, table).expect("write web_files.rs");
}
