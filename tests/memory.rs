//! Issue 20: sizes from the user never abort the process. A frame 2^31 pixels wide or a scan
//! step in the wrong unit used to end in "memory allocation of … bytes failed" (SIGABRT), taking
//! a C readout program down with it; now the set-up is checked against the memory budget
//! (`ptyflow::budget`) before anything is allocated, and the big allocations are fallible.
//!
//! Every case runs in a child process (this test binary re-executed with [`CHILD`] set, one
//! test at a time): an abort then fails the parent test instead of killing the test binary.
//! The children run with `PTYFLOW_MEMORY_BUDGET=2G`, so a configuration that is wrongly
//! accepted cannot take the machine's memory either.

use std::ffi::{CStr, CString, c_char, c_int};
use std::process::Command;

use proptest::prelude::*;
use ptyflow::capi::{
    PTYFLOW_ERR_CONFIG, PTYFLOW_OK, PtyflowConfig, PtyflowPipeline, ptyflow_config_init,
    ptyflow_create, ptyflow_create_json, ptyflow_free, ptyflow_last_error_message,
};

/// Set in the child processes; the `child_*` tests do nothing without it.
const CHILD: &str = "PTYFLOW_ISSUE20_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs the test `name` of this binary in a child process and returns what it printed;
/// fails when the child fails, panics or dies by a signal (an abort).
fn run_child(name: &str) -> String {
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("PTYFLOW_MEMORY_BUDGET", "2G")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("re-run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child `{name}` failed ({:?}; a signal means it aborted):\n{text}",
        out.status
    );
    assert!(
        text.contains("1 passed"),
        "child `{name}` did not run:\n{text}"
    );
    text
}

fn last_error() -> String {
    let mut buf = vec![0 as c_char; 4096];
    // SAFETY: `buf` is writable for its length.
    unsafe { ptyflow_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: the function NUL-terminates within `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `ptyflow_create_json(json)`: the status and the last-error message (the handle, if one was
/// made, is freed at once).
fn create_json(json: &str) -> (c_int, String) {
    let text = CString::new(json).unwrap();
    let mut p: *mut PtyflowPipeline = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a writable out pointer.
    let code = unsafe { ptyflow_create_json(text.as_ptr(), &mut p) };
    let msg = if code == PTYFLOW_OK {
        String::new()
    } else {
        assert!(p.is_null(), "a failed create leaves *out NULL");
        last_error()
    };
    // SAFETY: NULL or a live handle, freed once.
    unsafe { ptyflow_free(p) };
    (code, msg)
}

/// The bundled fixture's geometry and optics (96 × 96 u16, 10 × 10 scan, 80 kV, 24 mrad,
/// 0.8 mrad per pixel, disc of radius 30 px at the centre).
/// A push job on frames of `width` × 96 pixels with the fixture's scan and disc.
fn fixture_job(width: &str, extra: &str) -> String {
    format!(
        r#"{{"source": {{"push": {{"width": {width}, "height": 96, "pixel": "u16"}}}},
            "scan": {{"shape": [10, 10]}},
            "reduce": {{"virtual": ["bf"], "center": [48, 48], "bf_radius": 30, "radius_unit": "px"}},
            "run": {{"threads": 2}}{extra}}}"#
    )
}
const FIXTURE_OPTICS: &str = r#""kv": 80, "alpha_mrad": 24, "defocus_angstrom": 800,
    "mrad_per_px": 0.8"#;

#[test]
fn issue_20_c_width_2_31_is_refused_not_aborted() {
    let out = run_child("memory::child_c_width_2_31");
    eprintln!("{out}");
}

#[test]
fn child_c_width_2_31() {
    if !in_child() {
        return;
    }
    let (code, msg) = create_json(&fixture_job("2147483648", ""));
    assert_eq!(code, PTYFLOW_ERR_CONFIG, "{msg}");
    println!("width 2^31: {msg}");
    for part in [
        "`width × height`",
        "2147483648 × 96",
        "TB",
        "memory budget of 2.0 GB",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    assert!(
        msg.contains("`run.memory_budget` or PTYFLOW_MEMORY_BUDGET"),
        "{msg}"
    );
    // The same through the C struct.
    let mut cfg = std::mem::MaybeUninit::<PtyflowConfig>::uninit();
    // SAFETY: writable for one config.
    assert_eq!(unsafe { ptyflow_config_init(cfg.as_mut_ptr()) }, PTYFLOW_OK);
    // SAFETY: initialised by ptyflow_config_init.
    let mut cfg = unsafe { cfg.assume_init() };
    (cfg.width, cfg.height, cfg.scan_rows, cfg.scan_cols) = (1 << 31, 96, 10, 10);
    let mut p = std::ptr::null_mut();
    // SAFETY: a valid config (NULL strings and recon) and a writable out pointer.
    let code = unsafe { ptyflow_create(&cfg, &mut p) };
    assert_eq!(code, PTYFLOW_ERR_CONFIG, "{}", last_error());
    assert!(p.is_null());
    // An explicit budget is what the check uses; without a budget the allocation itself fails
    // (a 2^57-byte label table: beyond any address space), still as an error.
    cfg.memory_budget = 5_000;
    // SAFETY: as above.
    let code = unsafe { ptyflow_create(&cfg, &mut p) };
    assert_eq!(code, PTYFLOW_ERR_CONFIG);
    assert!(
        last_error().contains("5.0 kB (`run.memory_budget` 5000)"),
        "{}",
        last_error()
    );
    let (code, msg) = create_json(
        r#"{"source": {"push": {"width": 2147483648, "height": 33554432, "pixel": "u16"}},
            "scan": {"shape": [10, 10]},
            "reduce": {"virtual": ["bf"], "center": [48, 48], "bf_radius": 30},
            "run": {"threads": 1, "batch_frames": 1, "queue_batches": 1,
                    "memory_budget": "unlimited"}}"#,
    );
    assert_eq!(code, PTYFLOW_ERR_CONFIG, "{msg}");
    assert!(msg.contains("could not be allocated"), "{msg}");
}

#[test]
fn issue_20_c_scan_step_70000_is_refused_not_aborted() {
    let out = run_child("memory::child_c_scan_step_70000");
    eprintln!("{out}");
}

#[test]
fn child_c_scan_step_70000() {
    if !in_child() {
        return;
    }
    let json = |step: &str| {
        fixture_job(
            "96",
            &format!(r#", "optics": {{{FIXTURE_OPTICS}, "step_angstrom": {step}}}, "recon": {{}}"#),
        )
    };
    // The fixture's step works (and fits 2 GB) …
    let (code, msg) = create_json(&json("2.3"));
    assert_eq!(code, PTYFLOW_OK, "{msg}");
    // … a step in pm instead of Å asks for a 10.7 TB object.
    let (code, msg) = create_json(&json("70000"));
    assert_eq!(code, PTYFLOW_ERR_CONFIG, "{msg}");
    println!("scan_step_angstrom 70000: {msg}");
    for part in [
        "`optics.step_angstrom`",
        "70000 Å steps over the 10 × 10 scan",
        "× 1158802 object (10.7 TB",
        "memory budget of 2.0 GB (PTYFLOW_MEMORY_BUDGET=2G)",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
}

/// A value no configuration can use for a size: 2^31 and up (near `usize::MAX` too), or
/// negative. `None`: the field keeps its ordinary value.
fn extreme_size() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(1u64 << 31),
        Just((1u64 << 31) + 1),
        Just(1u64 << 32),
        Just(1u64 << 40),
        Just(1u64 << 63),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        (1u64 << 31)..u64::MAX,
    ]
    .prop_map(|v| v.to_string())
    .boxed()
    .prop_union((1i64..1 << 40).prop_map(|v| format!("-{v}")).boxed())
}

/// A length or angle no configuration can use: negative, zero, or absurdly large.
fn extreme_float() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(-1.0),
        Just(-1e-300),
        Just(-1e300),
        Just(0.0),
        Just(1e30),
        Just(1e300),
        Just(f64::MAX),
    ]
    .prop_map(|v: f64| format!("{v:e}"))
}

/// What one case does to its configuration: nothing, set field `k` (modulo the number of
/// fields) to 0 (either outcome is fine), or to an extreme value (must be refused).
#[derive(Debug, Clone)]
enum Twist {
    None,
    Zero(usize),
    Extreme(usize, String),
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        1 => Just(Twist::None),
        1 => any::<usize>().prop_map(Twist::Zero),
        3 => (any::<usize>(), extreme_size()).prop_map(|(k, v)| Twist::Extreme(k, v)),
        2 => (any::<usize>(), extreme_float()).prop_map(|(k, v)| Twist::Extreme(k, v)),
    ]
}

/// Applies `twist` to the named `fields` (their ordinary values as text): returns the values
/// and whether the case must be refused. Float fields take float extremes, size fields size
/// extremes (the next field of the right kind; none when the configuration has none).
fn apply(fields: &mut [(&str, String, bool)], twist: &Twist) -> bool {
    match twist {
        Twist::None => false,
        Twist::Zero(k) => {
            let n = fields.len();
            fields[k % n].1 = "0".into();
            false
        }
        Twist::Extreme(k, v) => {
            let float = v.contains('e');
            let n = fields.len();
            match (0..n)
                .map(|i| (k % n + i) % n)
                .find(|&i| fields[i].2 == float)
            {
                Some(at) => {
                    fields[at].1 = v.clone();
                    true
                }
                None => false,
            }
        }
    }
}

#[test]
fn issue_20_random_sizes_give_errors_never_aborts() {
    for child in [
        "memory::child_random_sizes_c_api",
        "memory::child_random_sizes_cli",
    ] {
        let out = run_child(child);
        let refused = out.matches("refused").count();
        let accepted = out.matches("accepted").count();
        eprintln!("{child}: {accepted} accepted, {refused} refused");
        assert!(refused > 20 && accepted > 5, "too one-sided:\n{out}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random geometry, scan, detector, pool and reconstruction sizes through
    /// `ptyflow_create_json`: an ordinary configuration may start (within the child's 2 GB
    /// budget); with one size of 2^31 or more, negative, or an absurd length, it is
    /// PTYFLOW_ERR_CONFIG; the status is never anything else (no panic, no abort).
    #[test]
    fn child_random_sizes_c_api(
        (width, height) in (4usize..48, 4usize..48), (rows, cols) in (2usize..12, 2usize..12),
        bin in 1usize..3, crop in any::<bool>(), threads in 0usize..4, batch in 0usize..64,
        queue in 0usize..8, rings in 1usize..6, recon in any::<bool>(), pad in 0usize..6,
        step in 0.5f64..5.0, twist in twist(),
    ) {
        if !in_child() {
            return Ok(());
        }
        let (w, h) = (width * bin, height * bin);
        let mut f = vec![
            ("width", w.to_string(), false), ("height", h.to_string(), false),
            ("rows", rows.to_string(), false), ("cols", cols.to_string(), false),
            ("bin", bin.to_string(), false), ("threads", threads.to_string(), false),
            ("batch", batch.to_string(), false), ("queue", queue.to_string(), false),
            ("rings", rings.to_string(), false),
        ];
        if crop {
            f.extend([("crop_w", w.to_string(), false), ("crop_h", h.to_string(), false)]);
        }
        if recon {
            f.extend([
                ("window", w.min(h).to_string(), false), ("pad", pad.to_string(), false),
                ("rbin", "1".into(), false), ("step", step.to_string(), true),
                ("kv", "80".into(), true), ("mrad", "1.5".into(), true),
            ]);
        }
        let must_fail = apply(&mut f, &twist);
        let v = |name: &str| f.iter().find(|x| x.0 == name).unwrap().1.clone();
        let crop = if crop {
            format!(r#", "crop": [0, 0, {}, {}]"#, v("crop_w"), v("crop_h"))
        } else {
            String::new()
        };
        let mut json = format!(
            r#"{{"source": {{"push": {{"width": {}, "height": {}, "pixel": "u16"}}}},
                "scan": {{"shape": [{}, {}]}},
                "reduce": {{"bin": {}, "virtual": ["bf", "rings:{}:2:4"], "center": [4, 4],
                            "bf_radius": 2, "radius_unit": "px"{crop}}},
                "run": {{"threads": {}, "batch_frames": {}, "queue_batches": {}}}"#,
            v("width"), v("height"), v("rows"), v("cols"), v("bin"), v("rings"), v("threads"),
            v("batch"), v("queue"),
        );
        if recon {
            json += &format!(
                r#", "optics": {{"kv": {}, "alpha_mrad": 1, "defocus_angstrom": 0,
                    "mrad_per_px": {}, "step_angstrom": {}}},
                    "recon": {{"window": {}, "pad": {}, "bin": {}}}"#,
                v("kv"), v("mrad"), v("step"), v("window"), v("pad"), v("rbin")
            );
        }
        json += "}";
        let (code, msg) = create_json(&json);
        prop_assert!(code == PTYFLOW_OK || code == PTYFLOW_ERR_CONFIG, "{code}: {msg}\n{json}");
        println!("{}", if code == PTYFLOW_OK { "accepted" } else { "refused" });
        if must_fail {
            prop_assert_eq!(code, PTYFLOW_ERR_CONFIG, "accepted: {}", json);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same for `ptyflow replay` on the bundled fixture (in-process, in the child): exit
    /// code 0 or 2, and 2 whenever a size is extreme.
    #[test]
    fn child_random_sizes_cli(
        (rows, cols) in (2usize..12, 2usize..12), bin in 1usize..5, threads in 1usize..3,
        rings in 1usize..6, recon in any::<bool>(), pad in 0usize..6,
        step in 0.5f64..5.0, twist in twist(),
    ) {
        if !in_child() {
            return Ok(());
        }
        let out = tempfile::tempdir().unwrap();
        let dump = ptyflow_suite::workspace_root().join("fixtures/mos2-defocus/scan.raw");
        let mut f = vec![
            ("rows", rows.to_string(), false), ("cols", cols.to_string(), false),
            ("bin", bin.to_string(), false), ("threads", threads.to_string(), false),
            ("rings", rings.to_string(), false), ("window", "96".into(), false),
            ("pad", pad.to_string(), false), ("rbin", "1".into(), false),
            ("step", step.to_string(), true), ("kv", "80".into(), true),
            ("mrad", "0.8".into(), true),
        ];
        let must_fail = apply(&mut f, &twist);
        // Every extreme field is on the command line when the reconstruction is.
        let recon = recon || must_fail;
        let v = |name: &str| f.iter().find(|x| x.0 == name).unwrap().1.clone();
        let mut args: Vec<String> = ["ptyflow", "replay", &dump.display().to_string(), "-q"]
            .map(String::from)
            .into();
        args.extend(["--out".into(), out.path().display().to_string(), "--allow-partial".into()]);
        args.extend(["--virtual".into(), format!("rings:{}:20:40", v("rings"))]);
        args.push(format!("--threads={}", v("threads")));
        args.push(format!("--scan={}x{}", v("rows"), v("cols")));
        args.push(format!("--bin={}", v("bin")));
        if recon {
            args.extend(["--recon".into(), "epie".into(), format!("--step={}", v("step"))]);
            args.push(format!("--kv={}", v("kv")));
            args.push(format!("--mrad-per-px={}", v("mrad")));
            args.push(format!("--recon-window={}", v("window")));
            args.push(format!("--recon-pad={}", v("pad")));
            args.push(format!("--recon-bin={}", v("rbin")));
        }
        let code = ptyflow::cli::main_with_args(&args);
        prop_assert!(code == 0 || code == 2, "exit {code}: {args:?}");
        println!("{}", if code == 0 { "accepted" } else { "refused" });
        if must_fail {
            prop_assert_eq!(code, 2, "accepted: {:?}", args);
        }
    }
}
