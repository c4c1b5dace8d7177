//! A short run of the load generator against the real binary (the
//! benchmark itself is tests/bench/run.sh): two consultations for a few
//! seconds, every one held, with audio (the right tone) and video both ways,
//! and the report carrying the server's figures.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The `telehealth` binary: `TELEHEALTH_BIN`, or the one cargo built next to
/// `loadgen` (a workspace build puts every binary in one folder).
fn telehealth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TELEHEALTH_BIN") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_BIN_EXE_loadgen")).with_file_name("telehealth");
    assert!(
        p.exists(),
        "no telehealth binary at {}: build it (cargo build --bin telehealth) or set TELEHEALTH_BIN",
        p.display()
    );
    p
}

#[test]
fn two_consultations_are_held_with_audio_and_video_both_ways() {
    let dir = std::env::temp_dir().join(format!("loadgen-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--server-bin")
        .arg(telehealth_bin())
        .args([
            "--consultations",
            "2",
            "--warmup",
            "1",
            "--seconds",
            "5",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run loadgen");
    let said = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "loadgen failed\n{said}");
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let _ = std::fs::remove_dir_all(&dir);
    let r: Value = serde_json::from_str(&text).expect("JSON");

    assert_eq!(r["target"], "telehealth", "{said}");
    assert_eq!(r["consultations_held"], 2, "{said}");
    assert_eq!(r["tones_right"], 4, "each side hears the other's tone\n{said}");
    let tracks = r["tracks"].as_array().expect("tracks");
    assert_eq!(
        tracks.len(),
        8,
        "2 consultations × 2 sides × audio and video\n{said}"
    );
    for t in tracks {
        assert!(
            t["packets"].as_u64().unwrap_or(0) > 0,
            "a track received nothing: {t}"
        );
    }
    assert!(r["added_delay_ms"]["video"]["p50"].is_number(), "{said}");
    assert!(r["added_delay_ms"]["audio"]["p50"].is_number(), "{said}");
    assert!(r["join_ms"]["p50"].is_number(), "{said}");
    assert!(r["server"]["cpu_us_per_forwarded_packet"].is_number(), "{said}");
    assert!(r["server"]["rss_kib_per_consultation"].is_number(), "{said}");
    assert!(r["generator"]["cpu_percent_of_one_core"].is_number(), "{said}");
}
