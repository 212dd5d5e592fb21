//! EMPAD `.raw` dumps and their acquisition `.xml`.
//!
//! An EMPAD `.raw` holds frames of 130 rows × 128 columns of little-endian `f32`, no file
//! header. The last two rows of each frame are not image (they carry metadata); frames are
//! delivered as 128 × 128 and the two rows are treated as a 1024-byte frame footer, so the
//! pixels are read straight from the map (zero copy).
//!
//! The scan shape comes from the acquisition `.xml` beside the `.raw`. It can be written in
//! three places that can disagree (in `map4x4.xml`, `<pix_x>`/`<pix_y>` say 4 × 4 while the
//! `acquire` scan parameters say 128 × 128, left over from an earlier setting). ptyflow takes
//! the first of these whose size equals the file's frame count:
//! 1. `<pix_x>` / `<pix_y>` (EMPAD software 0.51: the scan actually recorded),
//! 2. the raw file name `scan_x{X}_y{Y}.raw` (EMPAD 1.2.x names the file after the scan),
//! 3. `<scan_parameters mode="acquire">`'s `scan_resolution_x` / `_y`.
//!
//! If none matches, no scan shape is reported (with a note saying what was found). The scan
//! shape is `(rows, cols) = (y, x)`: x is the fast axis.

use std::path::{Path, PathBuf};

use super::{Decode, Format, PixelKind, Plan};
use crate::{Error, Result};

/// Columns of an EMPAD frame.
pub(crate) const COLS: usize = 128;
/// Rows of an EMPAD frame as stored (the last two are metadata).
pub(crate) const STORED_ROWS: usize = 130;
/// Rows delivered.
pub(crate) const ROWS: usize = 128;

/// What ptyflow reads from an EMPAD acquisition `.xml`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct XmlMeta {
    /// `<raw_file filename="…"/>`.
    pub raw_file: Option<String>,
    /// `<pix_x>`, `<pix_y>`.
    pub pix: Option<(usize, usize)>,
    /// `scan_resolution_x`, `_y` of `<scan_parameters mode="acquire">`.
    pub acquire: Option<(usize, usize)>,
}

/// The text between `<tag>` and `</tag>`, searched from the start of `text`.
fn element<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    Some(text[start..start + len].trim())
}

fn number(text: &str, tag: &str) -> Option<usize> {
    element(text, tag)?.parse().ok()
}

/// Parses the fields ptyflow needs with plain string search (the files are small and flat).
pub(crate) fn parse_xml(text: &str) -> XmlMeta {
    let raw_file = text.find("<raw_file").and_then(|i| {
        let rest = &text[i..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let a = tag.find("filename=\"")? + "filename=\"".len();
        let len = tag[a..].find('"')?;
        Some(tag[a..a + len].to_owned())
    });
    let pix = number(text, "pix_x").zip(number(text, "pix_y"));
    let acquire = text
        .find("<scan_parameters mode=\"acquire\">")
        .and_then(|i| {
            let rest = &text[i..];
            let block = &rest[..rest.find("</scan_parameters>").unwrap_or(rest.len())];
            number(block, "scan_resolution_x").zip(number(block, "scan_resolution_y"))
        });
    XmlMeta {
        raw_file,
        pix,
        acquire,
    }
}

/// `(x, y)` from a file name `scan_x{X}_y{Y}.raw`.
pub(crate) fn scan_from_name(name: &str) -> Option<(usize, usize)> {
    let rest = &name[name.find("scan_x")? + "scan_x".len()..];
    let (x, rest) = rest.split_once("_y")?;
    let y = rest.strip_suffix(".raw").unwrap_or(rest);
    let y = y.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((x.parse().ok()?, y.parse().ok()?))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The EMPAD `.xml` that describes `raw`: `<stem>.xml` beside it, else the only `.xml` in the
/// same folder whose `<raw_file filename=…>` names the raw file.
pub(crate) fn find_xml(raw: &Path) -> Option<PathBuf> {
    let same = raw.with_extension("xml");
    if same.is_file() {
        return Some(same);
    }
    let name = file_name(raw);
    let dir = match raw.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut found = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let is_xml = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        if !is_xml {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        if parse_xml(&text).raw_file.as_deref() == Some(name.as_str()) {
            if found.is_some() {
                return None; // ambiguous: more than one xml claims this raw file
            }
            found = Some(p);
        }
    }
    found
}

/// The `.raw` an EMPAD `.xml` names, in the xml's folder.
pub(crate) fn raw_for_xml(xml: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(xml).map_err(|e| Error::io(xml, e))?;
    let name = parse_xml(&text).raw_file.ok_or_else(|| {
        Error::file(
            xml,
            "not an EMPAD acquisition file: no <raw_file filename=\"…\"/> element",
        )
    })?;
    Ok(xml.with_file_name(name))
}

/// Plans an EMPAD `.raw`; the scan shape is resolved once the frame count is known
/// ([`resolve_scan`]).
pub(crate) fn plan(path: &Path) -> Result<(Plan, Option<(PathBuf, XmlMeta)>)> {
    let xml = match find_xml(path) {
        Some(x) => {
            let text = std::fs::read_to_string(&x).map_err(|e| Error::io(&x, e))?;
            Some((x, parse_xml(&text)))
        }
        None => None,
    };
    let plan = Plan {
        path: path.to_owned(),
        format: Format::Empad,
        width: COLS,
        height: ROWS,
        stored_dtype: "f32, little-endian, 130×128 stored".to_owned(),
        pixel: PixelKind::F32,
        header_bytes: 0,
        frame_header_bytes: 0,
        frame_bytes: (COLS * ROWS * 4) as u64,
        frame_footer_bytes: (COLS * (STORED_ROWS - ROWS) * 4) as u64,
        decode: Decode::F32 { big: false },
        scan: None,
        declared: None,
        notes: Vec::new(),
        mib: None,
    };
    Ok((plan, xml))
}

/// The scan shape `(rows, cols)` for `frames` frames, in the order documented in the module
/// docs, and a note when the candidates disagree or none fits.
pub(crate) fn resolve_scan(
    raw: &Path,
    xml: Option<&(PathBuf, XmlMeta)>,
    frames: usize,
) -> (Option<(usize, usize)>, Option<String>) {
    let mut candidates: Vec<(&str, (usize, usize))> = Vec::new();
    if let Some((_, meta)) = xml {
        if let Some(p) = meta.pix {
            candidates.push(("<pix_x>/<pix_y>", p));
        }
    }
    let names = [
        Some(file_name(raw)),
        xml.and_then(|(_, m)| m.raw_file.clone()),
    ];
    for name in names.into_iter().flatten() {
        if let Some(p) = scan_from_name(&name) {
            candidates.push(("file name", p));
        }
    }
    if let Some((_, meta)) = xml {
        if let Some(p) = meta.acquire {
            candidates.push(("scan_parameters mode=\"acquire\"", p));
        }
    }
    let fits = candidates.iter().find(|(_, (x, y))| x * y == frames);
    let shown = || {
        candidates
            .iter()
            .map(|(src, (x, y))| format!("{src}: x {x} × y {y}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match fits {
        Some((src, (x, y))) => {
            let disagree = candidates.iter().any(|(_, c)| *c != (*x, *y));
            let note = disagree.then(|| {
                format!(
                    "EMPAD scan shape taken from the {src}; the candidates disagree ({})",
                    shown()
                )
            });
            (Some((*y, *x)), note)
        }
        None if candidates.is_empty() => (None, None),
        None => (
            None,
            Some(format!(
                "no EMPAD scan shape matches the {frames} frames in the file ({})",
                shown()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realdata(name: &str) -> Option<String> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/realdata/empad")
            .join(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Some(t),
            Err(_) => {
                eprintln!("skipping: {} not found", p.display());
                None
            }
        }
    }

    #[test]
    fn real_v051_map4x4() {
        let Some(text) = realdata("map4x4.xml") else {
            return;
        };
        let m = parse_xml(&text);
        assert_eq!(m.raw_file.as_deref(), Some("scan_x4_y4.raw"));
        assert_eq!(m.pix, Some((4, 4)));
        assert_eq!(m.acquire, Some((128, 128)));
        let xml = (PathBuf::from("map4x4.xml"), m);
        let (scan, note) = resolve_scan(Path::new("scan_x4_y4.raw"), Some(&xml), 16);
        assert_eq!(scan, Some((4, 4)));
        assert!(note.unwrap().contains("disagree"));
        // 128 × 128 frames: only the acquire parameters fit.
        let (scan, _) = resolve_scan(Path::new("other.raw"), Some(&xml), 128 * 128);
        assert_eq!(scan, Some((128, 128)));
    }

    #[test]
    fn real_v122_uses_file_name_then_acquire() {
        let Some(text) = realdata("EMPAD_v1.2.2_x32_y64_size0.8.xml") else {
            return;
        };
        let m = parse_xml(&text);
        assert_eq!(m.raw_file.as_deref(), Some("scan_x32_y64.raw"));
        assert_eq!(m.pix, None);
        assert_eq!(m.acquire, Some((32, 64)));
        let xml = (PathBuf::from("a.xml"), m);
        let (scan, note) = resolve_scan(Path::new("scan_x32_y64.raw"), Some(&xml), 32 * 64);
        assert_eq!(scan, Some((64, 32)));
        assert_eq!(note, None);
        let (scan, note) = resolve_scan(Path::new("scan_x32_y64.raw"), Some(&xml), 7);
        assert_eq!(scan, None);
        assert!(note.unwrap().contains("7 frames"));
    }

    #[test]
    fn real_series_has_no_scan() {
        let Some(text) = realdata("stack_images.xml") else {
            return;
        };
        let m = parse_xml(&text);
        assert_eq!(m.raw_file.as_deref(), Some("series_x10.raw"));
        assert_eq!((m.pix, m.acquire), (None, None));
        let xml = (PathBuf::from("s.xml"), m);
        assert_eq!(
            resolve_scan(Path::new("series_x10.raw"), Some(&xml), 10),
            (None, None)
        );
    }

    #[test]
    fn names() {
        assert_eq!(scan_from_name("scan_x256_y128.raw"), Some((256, 128)));
        assert_eq!(scan_from_name("scan_x4_y4"), Some((4, 4)));
        assert_eq!(scan_from_name("series_x10.raw"), None);
    }
}
