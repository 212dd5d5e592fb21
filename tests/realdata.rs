//! Real Merlin `.mib` files (rosettasciio test data, beside the checkout in
//! `../shared/realdata`): every file listed in `reference.json` must be read exactly as the
//! reference says, in file order (row 0 = first row stored, no flips). Skips when the folder is
//! absent.

use std::path::Path;

use ptyflow::source::{Dump, Frame, OpenOptions};
use serde_json::Value;

/// Extracts every zip in `merlin/` into `dest/<zip stem>/`, the layout `reference.json` keys use.
pub(crate) fn extract(merlin: &Path, dest: &Path) {
    for entry in std::fs::read_dir(merlin).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "zip") {
            continue;
        }
        let stem = path.file_stem().unwrap();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        zip.extract(dest.join(stem)).unwrap();
    }
}

/// Per-frame pixel values as u64, in file order.
fn values(frame: Frame<'_>) -> Vec<u64> {
    match frame {
        Frame::U8(p) => p.iter().map(|&v| u64::from(v)).collect(),
        Frame::U16(p) => p.iter().map(|&v| u64::from(v)).collect(),
        Frame::U32(p) => p.iter().map(|&v| u64::from(v)).collect(),
        Frame::F32(_) => panic!("Merlin frames are integers"),
    }
}

/// The Merlin folder of the real data and its `reference.json`.
pub(crate) fn merlin_reference(realdata: &std::path::Path) -> (std::path::PathBuf, Value) {
    let merlin = realdata.join("merlin");
    let text = std::fs::read_to_string(merlin.join("reference.json")).unwrap();
    (merlin, serde_json::from_str(&text).unwrap())
}

#[test]
fn merlin_files_match_reference() {
    let Some(realdata) = ptyflow_suite::realdata_dir() else {
        return;
    };
    let (merlin, reference) = merlin_reference(&realdata);
    let tmp = tempfile::tempdir().unwrap();
    extract(&merlin, tmp.path());

    let entries = reference.as_object().unwrap();
    assert!(
        entries.len() >= 24,
        "reference.json lists {} files",
        entries.len()
    );
    let mut failures = Vec::new();
    for (name, want) in entries {
        let path = tmp.path().join(name);
        let u = |k: &str| want[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}"));
        let check = || -> Result<(), String> {
            let dump = Dump::open(&path, &OpenOptions::default()).map_err(|e| e.to_string())?;
            let info = dump.info();
            let hw = [want["frame_hw"][0].as_u64(), want["frame_hw"][1].as_u64()];
            let got_hw = [Some(info.height as u64), Some(info.width as u64)];
            if hw != got_hw {
                return Err(format!("frame h×w {got_hw:?}, expected {hw:?}"));
            }
            if info.frames as u64 != u("frames") {
                return Err(format!("{} frames, expected {}", info.frames, u("frames")));
            }
            let want_sums: Vec<u64> = want["per_frame_sums"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let mut reader = dump.reader();
            let (mut total, mut max, mut sums) = (0u64, 0u64, Vec::new());
            for i in 0..info.frames {
                let px = values(reader.frame(i).map_err(|e| e.to_string())?);
                if i == 0 {
                    let w = info.width as u128;
                    let weighted: u128 = px
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| {
                            let (r, c) = (k as u128 / w, k as u128 % w);
                            u128::from(v) * (r * w + c + 1)
                        })
                        .sum();
                    if weighted != u128::from(u("frame0_weighted")) {
                        return Err(format!(
                            "frame0_weighted {weighted}, expected {}",
                            u("frame0_weighted")
                        ));
                    }
                    let row0: u64 = px[..info.width].iter().sum();
                    if row0 != u("frame0_row0_sum") {
                        return Err(format!(
                            "frame0_row0_sum {row0}, expected {}",
                            u("frame0_row0_sum")
                        ));
                    }
                }
                let s: u64 = px.iter().sum();
                max = max.max(px.iter().copied().max().unwrap_or(0));
                total += s;
                sums.push(s);
            }
            if sums != want_sums {
                return Err(format!("per-frame sums {sums:?}, expected {want_sums:?}"));
            }
            if sums[0] != u("frame0_sum") || total != u("total_sum") || max != u("max") {
                return Err(format!(
                    "frame0 sum {} total {total} max {max}, expected {} {} {}",
                    sums[0],
                    u("frame0_sum"),
                    u("total_sum"),
                    u("max")
                ));
            }
            Ok(())
        };
        match check() {
            Ok(()) => eprintln!("ok   {name}"),
            Err(e) => {
                eprintln!("FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}
