//! `ptyflow bench`: the shape of its output, never its speed (speed lives in the benches).

use super::ptyflow;

#[test]
fn quick_json_has_one_object_per_workload_with_positive_numbers() {
    let run = ptyflow(["bench", "--quick", "--json", "--threads", "2"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    let rows = rows.as_array().expect("a JSON array");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["workload"].as_str().expect("workload is a string"))
        .collect();
    for w in ["W1", "W2", "W3", "C1"] {
        assert!(
            names.iter().any(|n| n.starts_with(w)),
            "{w} missing: {names:?}"
        );
    }
    for row in rows {
        let obj = row.as_object().expect("each row is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bandwidth_fraction",
                "cpu_fps",
                "fps",
                "frame",
                "gbps",
                "met",
                "target_fps",
                "workload"
            ]
        );
        for k in ["fps", "gbps", "bandwidth_fraction", "target_fps"] {
            let v = obj[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} is a number: {row}"));
            assert!(v.is_finite() && v > 0.0, "{k} = {v} in {row}");
        }
        // Frames per CPU-second: null where a workload does not measure it.
        assert!(
            obj["cpu_fps"].is_null() || obj["cpu_fps"].as_f64().is_some_and(|v| v > 0.0),
            "{row}"
        );
        assert!(obj["met"].is_boolean(), "{row}");
        let frame = obj["frame"].as_str().expect("frame is a string");
        assert!(
            frame.contains('x') && (frame.ends_with("u16") || frame.ends_with("f32")),
            "{frame}"
        );
    }
    assert!(
        run.stderr.contains("GB/s"),
        "bandwidth note on stderr: {}",
        run.stderr
    );
}

#[test]
fn table_names_the_bandwidth_and_unknown_workloads_are_refused() {
    let run = ptyflow(["bench", "--quick", "--only", "W2", "--threads", "1"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(run.stdout.contains("W2 memory") && !run.stdout.contains("W1 mmap"));
    assert!(
        run.stdout.contains("memory read bandwidth"),
        "{}",
        run.stdout
    );
    let bad = ptyflow(["bench", "--only", "W9"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("--only") && bad.stderr.contains("W9"),
        "{}",
        bad.stderr
    );
    assert_eq!(ptyflow(["bench", "--threads", "0"]).code, 2);
}
