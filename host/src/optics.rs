//! Electron optics: wavelength, interaction constant, detector sampling and the probe.
//!
//! Units (DESIGN.md): lengths in Å, angles in mrad, voltage in kV, Cs in mm.
//!
//! # Conventions
//! - The probe is the inverse Fourier transform of the aperture times `exp(−iχ(k))`, with the
//!   aberration function `χ(k) = 2π/λ · (½ C10 θ² + ½ C12 θ² cos 2(φ − φ12) + ¼ C30 θ⁴)`,
//!   `θ = λ|k|` (the abTEM convention). **Defocus is positive for underfocus**: `C10 = −defocus`.
//! - FFTs follow numpy/rustfft: forward `exp(−2πi jk/N)`, no normalisation forward; this module
//!   normalises the probe so that `Σ|P|² = 1` (DESIGN.md).
//! - The probe array is centred: its optical axis sits at pixel `(M/2, M/2)` of the `M × M`
//!   window (the centre of a `fftshift`ed array).

use num_complex::{Complex32, Complex64};

use crate::fourier::{Direction, Fft2d, signed_frequency};
use crate::{Error, Result};

/// Planck constant × speed of light, in keV·Å.
const HC_KEV_ANGSTROM: f64 = 12.398_419_843_320_026;
/// Electron rest energy m₀c², in keV.
const ELECTRON_REST_KEV: f64 = 510.998_950_69;

/// Relativistic electron wavelength λ in Å for an accelerating voltage in kV.
///
/// `λ = hc / √(E (2 m₀c² + E))` with `E = e·V`.
/// λ(80 kV) = 0.041757 Å, λ(300 kV) = 0.019687 Å.
pub fn wavelength_angstrom(kv: f64) -> f64 {
    HC_KEV_ANGSTROM / (kv * (2.0 * ELECTRON_REST_KEV + kv)).sqrt()
}

/// Interaction constant σ in rad / (V·Å) (Kirkland, *Advanced Computing in Electron
/// Microscopy*, eq. 5.6): the phase shift per projected potential, `σ = 2π m e λ / h²`
/// with the relativistic mass, i.e. `σ = 2π / (λ V) · (m₀c² + eV) / (2 m₀c² + eV)`.
/// σ(300 kV) ≈ 6.53 × 10⁻⁴ rad/(V·Å).
pub fn interaction_constant(kv: f64) -> f64 {
    let lambda = wavelength_angstrom(kv);
    let volts = kv * 1e3;
    2.0 * std::f64::consts::PI / (lambda * volts) * (ELECTRON_REST_KEV + kv)
        / (2.0 * ELECTRON_REST_KEV + kv)
}

/// Spatial frequency in 1/Å of a scattering angle in mrad: `k = θ / λ`.
pub fn mrad_to_inv_angstrom(theta_mrad: f64, kv: f64) -> f64 {
    theta_mrad * 1e-3 / wavelength_angstrom(kv)
}

/// Scattering angle in mrad of a spatial frequency in 1/Å: `θ = λ k`.
pub fn inv_angstrom_to_mrad(k: f64, kv: f64) -> f64 {
    k * wavelength_angstrom(kv) * 1e3
}

/// Angular size of a binned detector pixel: `bin × mrad_per_px` of the unbinned detector.
pub fn binned_mrad_per_px(mrad_per_px: f64, bin: usize) -> f64 {
    mrad_per_px * bin as f64
}

/// Real-space pixel of an `M × M` reconstruction window in Å: `dx = λ / (M · θ_pixel)`,
/// with `θ_pixel` the (binned) detector pixel in mrad.
pub fn window_pixel_angstrom(kv: f64, m: usize, mrad_per_px: f64) -> f64 {
    wavelength_angstrom(kv) / (m as f64 * mrad_per_px * 1e-3)
}

/// Bright-field disc radius in detector pixels: `α / θ_pixel`.
pub fn bright_field_radius_px(alpha_mrad: f64, mrad_per_px: f64) -> f64 {
    alpha_mrad / mrad_per_px
}

/// The physics of an acquisition as far as it is known: the probe-forming optics, the
/// detector sampling and the scan step. This one type is the job configuration's `optics`
/// and a raw dump's sidecar `"optics"`; every field is optional, a writer states what it
/// knows and [`Optics::or`] fills what one source leaves out from another.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optics {
    /// Accelerating voltage in kV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<f64>,
    /// Convergence semi-angle α in mrad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_mrad: Option<f64>,
    /// Defocus in Å; positive = underfocus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defocus_angstrom: Option<f64>,
    /// Spherical aberration Cs in mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cs_mm: Option<f64>,
    /// Two-fold astigmatism |C12| in Å.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub astigmatism_angstrom: Option<f64>,
    /// Azimuth of the two-fold astigmatism in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub astigmatism_angle_deg: Option<f64>,
    /// Scattering angle per unbinned detector pixel, mrad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrad_per_px: Option<f64>,
    /// Scan step in Å (between rows and between columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_angstrom: Option<f64>,
    /// Rotation of the scan grid relative to the detector, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_rotation_deg: Option<f64>,
    /// What shapes the probe in the aperture plane besides the aperture and the aberrations
    /// ([`ProbeKind`], written `defocus`, `fzp:F` or `random:SEED[:CELL[:RANGE]]`); absent:
    /// `defocus` (a plain aperture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_kind: Option<ProbeKind>,
}

impl Optics {
    /// The fields, by configuration name, for checks and lenient reading.
    fn fields(&mut self) -> [(&'static str, &mut Option<f64>); 9] {
        [
            ("kv", &mut self.kv),
            ("alpha_mrad", &mut self.alpha_mrad),
            ("defocus_angstrom", &mut self.defocus_angstrom),
            ("cs_mm", &mut self.cs_mm),
            ("astigmatism_angstrom", &mut self.astigmatism_angstrom),
            ("astigmatism_angle_deg", &mut self.astigmatism_angle_deg),
            ("mrad_per_px", &mut self.mrad_per_px),
            ("step_angstrom", &mut self.step_angstrom),
            ("scan_rotation_deg", &mut self.scan_rotation_deg),
        ]
    }

    /// Each field from `self`, or else from `fallback`.
    pub fn or(mut self, mut fallback: Optics) -> Optics {
        for ((_, mine), (_, theirs)) in self.fields().into_iter().zip(fallback.fields()) {
            *mine = mine.or(*theirs);
        }
        self.probe_kind = self.probe_kind.or(fallback.probe_kind);
        self
    }

    /// Reads the known numeric keys of a JSON object written by someone else (a sidecar),
    /// and `probe_kind` when it is a string [`ProbeKind`] parses; other keys and values
    /// that are not numbers are ignored.
    pub fn from_json_lenient(value: &serde_json::Value) -> Optics {
        let mut optics = Optics::default();
        for (key, field) in optics.fields() {
            *field = value.get(key).and_then(|v| v.as_f64());
        }
        optics.probe_kind = value
            .get("probe_kind")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok());
        optics
    }

    /// The optics a simulator or recorder left beside a dump (`"optics"` in `<dump>.json`);
    /// empty when there is no such file or key.
    pub fn from_sidecar(dump: &std::path::Path) -> Optics {
        let mut name = dump.as_os_str().to_owned();
        name.push(".json");
        std::fs::read_to_string(std::path::PathBuf::from(name))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v.get("optics").map(Optics::from_json_lenient))
            .unwrap_or_default()
    }

    /// Checks that every value given is finite, and positive where it must be. Errors name
    /// the field (`optics.kv`).
    pub fn validate(&self) -> Result<()> {
        let mut copy = *self;
        for (name, value) in copy.fields() {
            let positive = matches!(name, "kv" | "alpha_mrad" | "mrad_per_px" | "step_angstrom");
            if let Some(v) = *value
                && (!v.is_finite() || (positive && v <= 0.0))
            {
                let want = if positive {
                    "a finite value > 0"
                } else {
                    "a finite value"
                };
                return Err(Error::param(
                    format!("optics.{name}"),
                    format!("got {v}, expected {want}"),
                ));
            }
        }
        self.probe_kind.map_or(Ok(()), |k| k.validate())
    }

    /// A value the reconstruction needs: an error naming the field when it is missing.
    pub fn need(value: Option<f64>, field: &str) -> Result<f64> {
        value.ok_or_else(|| {
            Error::param(
                format!("optics.{field}"),
                "needed by the reconstruction (not given, and not in the dump's sidecar)",
            )
        })
    }

    /// The probe-forming optics: voltage, aperture and defocus are needed, the aberrations
    /// default to 0.
    pub fn probe(&self) -> Result<ProbeParams> {
        let p = ProbeParams {
            kv: Optics::need(self.kv, "kv")?,
            alpha_mrad: Optics::need(self.alpha_mrad, "alpha_mrad")?,
            defocus_angstrom: Optics::need(self.defocus_angstrom, "defocus_angstrom")?,
            cs_mm: self.cs_mm.unwrap_or(0.0),
            astigmatism_angstrom: self.astigmatism_angstrom.unwrap_or(0.0),
            astigmatism_angle_deg: self.astigmatism_angle_deg.unwrap_or(0.0),
            kind: self.probe_kind.unwrap_or_default(),
        };
        p.validate()?;
        Ok(p)
    }
}

/// What shapes the probe in the aperture (back focal) plane besides the disc of the
/// condenser aperture and the aberration phase `χ`: the aperture-plane function is
/// `A(k) = a(k) · exp(i φ_plate(k)) · exp(−i χ(k))` with `a` the disc of radius α, and the probe
/// its inverse Fourier transform ([`ProbeParams::sample`]). The three probes of paper 003
/// (Pelz et al. 2017, fig. 5): a defocused probe, a defocused Fresnel zone plate and a
/// randomised probe from a holographic phase plate focused by a conventional lens.
///
/// Written (command line `--probe-kind`, JSON `optics.probe_kind`) as `defocus`, `fzp:F` or
/// `random:SEED[:CELL_MRAD[:RANGE_RAD]]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ProbeKind {
    /// No plate: `φ_plate = 0`; the probe is shaped by the aperture and `χ` alone (defocus).
    #[default]
    Defocus,
    /// A binary phase Fresnel zone plate of focal length `f` (Å) in the aperture plane:
    /// `φ_plate(k) = π · (⌊λ f |k|²⌋ mod 2)`, amplitude 1. Zone `n` covers
    /// `n ≤ λ f |k|² < n + 1`, i.e. the zones of a lens that defocuses by `f`
    /// (`π λ f |k|²` = the defocus phase of `f`, crossing a multiple of π at each zone edge);
    /// `α² f / λ` zones fill the aperture. Equal-area 0/π zones carry no zeroth order: the
    /// probe is the sum of the ±1st orders, beams focused `f` before and after the specimen
    /// (plus the odd higher orders at `f/3`, `f/5`, … with weights `1/9`, `1/25`, … in
    /// intensity). Paper 003 places the specimen 600 nm from the plate's focus, with the lens
    /// itself in focus (`optics.defocus_angstrom` 0).
    Fzp {
        /// Focal length `f` of the zone plate's first order, Å (> 0).
        focal_angstrom: f64,
    },
    /// A random phase plate: the aperture is tiled by square cells of side `cell_mrad`
    /// (in scattering angle, aligned with the optical axis at a cell corner); cell `(i, j)`
    /// (`i = ⌊θx / cell⌋`, `j = ⌊θy / cell⌋`) carries the phase `range_rad · u(seed, i, j)`
    /// with `u = (h >> 11) / 2⁵³` uniform in `[0, 1)`,
    /// `h = s(s(s(seed) ⊕ i) ⊕ j)`, `s` = splitmix64 (Steele et al. 2014; `i`, `j` as
    /// two's-complement u64), amplitude 1. Reproducible: the same seed gives the same plate on
    /// every grid, run and platform, and a few lines of any language recompute it
    /// (`studies/run_probes.py` does, for abTEM). Paper 003 states neither the feature size nor the phase range; the defaults are
    /// cells of α/10 (about 80 cells in the aperture; the probe's speckle envelope is about
    /// `λ / cell` = 10 λ/α wide) and the full range 2π.
    Random {
        /// Seed of the plate.
        seed: u64,
        /// Side of a cell in mrad; absent: α / 10.
        cell_mrad: Option<f64>,
        /// Phase range in radians (phases uniform in `[0, range)`); absent: 2π.
        range_rad: Option<f64>,
    },
}

impl ProbeKind {
    /// Checks the parameters (finite, positive where they must be); errors name
    /// `optics.probe_kind`.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::param("optics.probe_kind", what));
        match *self {
            ProbeKind::Defocus => Ok(()),
            ProbeKind::Fzp { focal_angstrom: f } if !(f.is_finite() && f > 0.0) => {
                bad(format!("fzp focal length {f} Å, expected > 0"))
            }
            ProbeKind::Random {
                cell_mrad: Some(c), ..
            } if !(c.is_finite() && c > 0.0) => bad(format!("random cell {c} mrad, expected > 0")),
            ProbeKind::Random {
                range_rad: Some(r), ..
            } if !(r.is_finite() && r >= 0.0) => {
                bad(format!("random phase range {r} rad, expected ≥ 0"))
            }
            _ => Ok(()),
        }
    }

    /// The plate's phase `φ_plate` in radians at spatial frequency `(kx, ky)` (1/Å), for the
    /// wavelength `lambda` (Å) and aperture `alpha_mrad` (the random plate's default cell).
    pub fn plate_phase(&self, kx: f64, ky: f64, lambda: f64, alpha_mrad: f64) -> f64 {
        match *self {
            ProbeKind::Defocus => 0.0,
            ProbeKind::Fzp { focal_angstrom } => {
                let zone = (lambda * focal_angstrom * (kx * kx + ky * ky)).floor() as u64;
                if zone % 2 == 1 {
                    std::f64::consts::PI
                } else {
                    0.0
                }
            }
            ProbeKind::Random {
                seed,
                cell_mrad,
                range_rad,
            } => {
                let cell = cell_mrad.unwrap_or(alpha_mrad / 10.0) * 1e-3;
                let i = (lambda * kx / cell).floor() as i64;
                let j = (lambda * ky / cell).floor() as i64;
                let bits = splitmix64(splitmix64(splitmix64(seed) ^ i as u64) ^ j as u64);
                let u = (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                range_rad.unwrap_or(2.0 * std::f64::consts::PI) * u
            }
        }
    }

    /// The command-line and JSON name of the kind: `defocus`, `fzp` or `random`.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Defocus => "defocus",
            ProbeKind::Fzp { .. } => "fzp",
            ProbeKind::Random { .. } => "random",
        }
    }
}

/// splitmix64's output function of `state + γ` (Steele, Lea & Flood 2014): a fixed, well-mixed
/// 64-bit hash; the random phase plate's cell values ([`ProbeKind::Random`]).
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ProbeKind::Defocus => write!(f, "defocus"),
            ProbeKind::Fzp { focal_angstrom } => write!(f, "fzp:{focal_angstrom}"),
            ProbeKind::Random {
                seed,
                cell_mrad,
                range_rad,
            } => {
                write!(f, "random:{seed}")?;
                match (cell_mrad, range_rad) {
                    (None, None) => Ok(()),
                    (Some(c), None) => write!(f, ":{c}"),
                    (c, Some(r)) => {
                        write!(f, ":{}:{r}", c.map_or(String::new(), |c| c.to_string()))
                    }
                }
            }
        }
    }
}

impl std::str::FromStr for ProbeKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "optics.probe_kind",
                format!(
                    "`{text}`: expected defocus, fzp:F (focal length in Å) or \
                     random:SEED[:CELL_MRAD[:RANGE_RAD]]"
                ),
            )
        };
        let mut parts = text.trim().split(':');
        let kind = match parts.next().unwrap_or("") {
            "defocus" => ProbeKind::Defocus,
            "fzp" => ProbeKind::Fzp {
                focal_angstrom: parts
                    .next()
                    .ok_or_else(bad)?
                    .trim()
                    .parse()
                    .map_err(|_| bad())?,
            },
            "random" => {
                let seed = parts
                    .next()
                    .ok_or_else(bad)?
                    .trim()
                    .parse()
                    .map_err(|_| bad())?;
                let opt = |p: Option<&str>| -> Result<Option<f64>> {
                    match p.map(str::trim) {
                        None | Some("") => Ok(None),
                        Some(v) => v.parse().map(Some).map_err(|_| bad()),
                    }
                };
                let cell_mrad = opt(parts.next())?;
                let range_rad = opt(parts.next())?;
                ProbeKind::Random {
                    seed,
                    cell_mrad,
                    range_rad,
                }
            }
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        kind.validate()?;
        Ok(kind)
    }
}

impl serde::Serialize for ProbeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ProbeKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The probe-forming optics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeParams {
    /// Accelerating voltage in kV.
    pub kv: f64,
    /// Convergence semi-angle α in mrad (radius of the condenser aperture).
    pub alpha_mrad: f64,
    /// Defocus in Å; positive = underfocus (`C10 = −defocus`).
    pub defocus_angstrom: f64,
    /// Spherical aberration Cs (C30) in mm.
    pub cs_mm: f64,
    /// Two-fold astigmatism |C12| in Å.
    pub astigmatism_angstrom: f64,
    /// Azimuth φ12 of the two-fold astigmatism in degrees.
    pub astigmatism_angle_deg: f64,
    /// The phase plate in the aperture plane ([`ProbeKind`]; default: none, `defocus`).
    #[serde(default)]
    pub kind: ProbeKind,
}

impl ProbeParams {
    /// An aberration-free probe (apart from defocus).
    pub fn new(kv: f64, alpha_mrad: f64, defocus_angstrom: f64) -> Self {
        ProbeParams {
            kv,
            alpha_mrad,
            defocus_angstrom,
            cs_mm: 0.0,
            astigmatism_angstrom: 0.0,
            astigmatism_angle_deg: 0.0,
            kind: ProbeKind::Defocus,
        }
    }

    /// Checks that every value is finite and physical.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: f64, positive: bool| {
            if !v.is_finite() || (positive && v <= 0.0) {
                let want = if positive {
                    "a finite value > 0"
                } else {
                    "a finite value"
                };
                Err(Error::param(name, format!("got {v}, expected {want}")))
            } else {
                Ok(())
            }
        };
        check("optics.kv", self.kv, true)?;
        check("optics.alpha_mrad", self.alpha_mrad, true)?;
        check("optics.defocus_angstrom", self.defocus_angstrom, false)?;
        check("optics.cs_mm", self.cs_mm, false)?;
        check(
            "optics.astigmatism_angstrom",
            self.astigmatism_angstrom,
            false,
        )?;
        check(
            "optics.astigmatism_angle_deg",
            self.astigmatism_angle_deg,
            false,
        )?;
        self.kind.validate()
    }

    /// Electron wavelength in Å.
    pub fn wavelength(&self) -> f64 {
        wavelength_angstrom(self.kv)
    }

    /// Aberration phase χ in radians at spatial frequency `(kx, ky)` (1/Å).
    pub fn chi(&self, kx: f64, ky: f64) -> f64 {
        let lambda = self.wavelength();
        let k2 = kx * kx + ky * ky;
        let theta2 = lambda * lambda * k2;
        let phi = ky.atan2(kx);
        let c10 = -self.defocus_angstrom;
        let c12 = self.astigmatism_angstrom;
        let phi12 = self.astigmatism_angle_deg.to_radians();
        let c30 = self.cs_mm * 1e7;
        2.0 * std::f64::consts::PI / lambda
            * (0.5 * c10 * theta2
                + 0.5 * c12 * theta2 * (2.0 * (phi - phi12)).cos()
                + 0.25 * c30 * theta2 * theta2)
    }

    /// The aperture-plane phase in radians at `(kx, ky)` (1/Å) inside the aperture:
    /// `φ_plate(k) − χ(k)` ([`ProbeKind::plate_phase`], [`ProbeParams::chi`]).
    pub fn aperture_phase(&self, kx: f64, ky: f64) -> f64 {
        self.kind
            .plate_phase(kx, ky, self.wavelength(), self.alpha_mrad)
            - self.chi(kx, ky)
    }

    /// The probe sampled on an `M × M` window of pixel `dx` Å, centred at pixel `(M/2, M/2)`,
    /// row-major (row = y), normalised to `Σ|P|² = 1`: the inverse FFT of the aperture-plane
    /// function `a(k) · exp(i (φ_plate(k) − χ(k)))` (see [`ProbeKind`]).
    ///
    /// The aperture is a disc of radius α with a one-pixel linear soft edge in reciprocal space
    /// (limits ringing from a sampled hard edge). Errors if α lies beyond the window's Nyquist
    /// frequency (the aperture would alias) or if no frequency falls inside the aperture.
    pub fn sample(&self, m: usize, dx: f64) -> Result<Vec<Complex32>> {
        self.validate()?;
        if m < 2 {
            return Err(Error::param(
                "window",
                format!("{m} pixels, expected at least 2"),
            ));
        }
        if !(dx.is_finite() && dx > 0.0) {
            return Err(Error::param("pixel size", format!("{dx} Å, expected > 0")));
        }
        let lambda = self.wavelength();
        let dk = 1.0 / (m as f64 * dx);
        let k_alpha = self.alpha_mrad * 1e-3 / lambda;
        let k_nyquist = 0.5 / dx;
        if k_alpha > k_nyquist {
            return Err(Error::param(
                "optics.alpha_mrad",
                format!(
                    "aperture {:.2} mrad reaches beyond the window's Nyquist angle {:.2} mrad \
                     (pixel {dx:.4} Å); use a smaller real-space pixel (more detector pixels)",
                    self.alpha_mrad,
                    k_nyquist * lambda * 1e3
                ),
            ));
        }
        let freq = |i: usize| signed_frequency(i, m) * dk;
        let centre = (m / 2) as f64;
        let mut spectrum = vec![Complex64::new(0.0, 0.0); m * m];
        for (row, line) in spectrum.chunks_exact_mut(m).enumerate() {
            let ky = freq(row);
            for (col, value) in line.iter_mut().enumerate() {
                let kx = freq(col);
                let k = (kx * kx + ky * ky).sqrt();
                // Linear soft edge one reciprocal pixel wide, centred on the aperture radius.
                let a = ((k_alpha - k) / dk + 0.5).clamp(0.0, 1.0);
                if a > 0.0 {
                    // Centre the probe at (M/2, M/2): multiply by exp(−2πi k·r0).
                    let shift = -2.0 * std::f64::consts::PI * (kx + ky) * centre * dx;
                    let phase = match self.kind {
                        // Bit-identical to the probe before plates existed.
                        ProbeKind::Defocus => -self.chi(kx, ky) + shift,
                        _ => self.aperture_phase(kx, ky) + shift,
                    };
                    *value = Complex64::from_polar(a, phase);
                }
            }
        }
        if spectrum.iter().all(|v| v.norm_sqr() == 0.0) {
            return Err(Error::param(
                "optics.alpha_mrad",
                "aperture smaller than one reciprocal pixel of the window; enlarge the window",
            ));
        }
        Fft2d::new(m, m).process(&mut spectrum, Direction::Inverse);
        let norm = spectrum.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt();
        Ok(spectrum
            .iter()
            .map(|v| Complex32::new((v.re / norm) as f32, (v.im / norm) as f32))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn wavelength_matches_tables_to_five_digits() {
        // Relativistic wavelengths (e.g. Williams & Carter table 1.1, Kirkland appendix).
        for (kv, lambda) in [
            (60.0, 0.048661),
            (80.0, 0.041757),
            (200.0, 0.025079),
            (300.0, 0.019687),
        ] {
            // Five significant digits: equal once rounded to the table's last digit.
            let got = wavelength_angstrom(kv);
            assert!((got - lambda).abs() <= 0.5e-6, "{kv} kV: {got}");
        }
    }

    #[test]
    fn interaction_constant_matches_kirkland() {
        // Kirkland: σ = 0.00092 (100 kV), 0.00073 (200 kV), 0.00065 (300 kV) rad/(V·Å).
        for (kv, sigma) in [(100.0, 9.24e-4), (200.0, 7.29e-4), (300.0, 6.53e-4)] {
            assert!(
                rel(interaction_constant(kv), sigma) < 3e-3,
                "{kv} kV: {}",
                interaction_constant(kv)
            );
        }
    }

    #[test]
    fn sampling_conversions_round_trip() {
        let k = mrad_to_inv_angstrom(24.0, 80.0);
        assert!(rel(k, 0.024 / 0.041757) < 1e-4);
        assert!(rel(inv_angstrom_to_mrad(k, 80.0), 24.0) < 1e-12);
        assert_eq!(binned_mrad_per_px(0.5, 4), 2.0);
        // 64 px window, 1 mrad/px at 300 kV: dx = 0.019687 / 0.064 Å.
        assert!(rel(window_pixel_angstrom(300.0, 64, 1.0), 0.019687 / 0.064) < 1e-4);
        assert_eq!(bright_field_radius_px(24.0, 0.75), 32.0);
    }

    #[test]
    fn probe_is_normalised_and_centred() {
        let p = ProbeParams::new(300.0, 18.0, 0.0);
        let m = 64;
        let dx = window_pixel_angstrom(300.0, m, 1.5);
        let probe = p.sample(m, dx).unwrap();
        let total: f64 = probe.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let peak = (0..m * m).max_by(|&a, &b| probe[a].norm_sqr().total_cmp(&probe[b].norm_sqr()));
        assert_eq!(peak, Some((m / 2) * m + m / 2));
    }

    /// The probe's Fourier transform is the aperture: the bright-field disc has radius α/θ_px.
    #[test]
    fn probe_spectrum_is_the_aperture() {
        let (m, mrad_px) = (64, 1.0);
        let p = ProbeParams::new(80.0, 24.0, 300.0);
        let probe = p
            .sample(m, window_pixel_angstrom(80.0, m, mrad_px))
            .unwrap();
        let mut spec: Vec<Complex64> = probe
            .iter()
            .map(|v| Complex64::new(v.re as f64, v.im as f64))
            .collect();
        Fft2d::new(m, m).process(&mut spec, Direction::Forward);
        let radius = bright_field_radius_px(24.0, mrad_px);
        for r in 0..m {
            for c in 0..m {
                let fy = if r < m / 2 {
                    r as f64
                } else {
                    r as f64 - m as f64
                };
                let fx = if c < m / 2 {
                    c as f64
                } else {
                    c as f64 - m as f64
                };
                let d = (fx * fx + fy * fy).sqrt();
                let mag = spec[r * m + c].norm();
                if d < radius - 1.0 {
                    assert!(mag > 0.1, "inside the disc at d={d}: {mag}");
                } else if d > radius + 1.0 {
                    assert!(mag < 1e-6, "outside the disc at d={d}: {mag}");
                }
            }
        }
    }

    /// Geometric optics: a strongly defocused probe is a uniform disc of radius defocus·α,
    /// whose RMS radius is R/√2.
    #[test]
    fn defocused_probe_diameter_is_two_defocus_alpha() {
        let (m, kv, alpha, defocus) = (256, 80.0, 24.0, 800.0);
        let dx = 0.4;
        let probe = ProbeParams::new(kv, alpha, defocus).sample(m, dx).unwrap();
        let c = (m / 2) as f64;
        let mut r2 = 0.0;
        for (i, v) in probe.iter().enumerate() {
            let (y, x) = ((i / m) as f64 - c, (i % m) as f64 - c);
            r2 += (x * x + y * y) * dx * dx * v.norm_sqr() as f64;
        }
        let rms = r2.sqrt();
        let geometric = defocus * alpha * 1e-3 / 2f64.sqrt();
        assert!(
            rel(rms, geometric) < 0.08,
            "rms radius {rms} Å vs geometric {geometric} Å"
        );
        // The sign of defocus only mirrors the phase (conjugates the probe), not the intensity.
        let over = ProbeParams::new(kv, alpha, -defocus).sample(m, dx).unwrap();
        let mut err = 0.0f64;
        for (a, b) in probe.iter().zip(&over) {
            err = err.max((a.norm_sqr() - b.norm_sqr()).abs() as f64);
        }
        assert!(err < 1e-6);
    }

    /// The forward FFT of a sampled probe (FFT order).
    fn spectrum_of(probe: &[Complex32], m: usize) -> Vec<Complex64> {
        let mut spec: Vec<Complex64> = probe
            .iter()
            .map(|v| Complex64::new(v.re as f64, v.im as f64))
            .collect();
        Fft2d::new(m, m).process(&mut spec, Direction::Forward);
        spec
    }

    fn kinds() -> [ProbeKind; 4] {
        [
            ProbeKind::Defocus,
            ProbeKind::Fzp {
                focal_angstrom: 500.0,
            },
            ProbeKind::Random {
                seed: 7,
                cell_mrad: None,
                range_rad: None,
            },
            ProbeKind::Random {
                seed: 8,
                cell_mrad: Some(3.0),
                range_rad: Some(1.0),
            },
        ]
    }

    /// Every kind is normalised, and its spectrum is the definition
    /// `a(k) exp(i(φ_plate − χ))` (times the centring ramp) at the sample points well inside
    /// the aperture, up to one real positive factor: same amplitude everywhere, same phase.
    #[test]
    fn every_probe_kind_is_normalised_and_its_aperture_is_the_definition() {
        let (m, kv, mrad_px) = (128, 300.0, 0.5);
        let dx = window_pixel_angstrom(kv, m, mrad_px);
        let dk = 1.0 / (m as f64 * dx);
        for kind in kinds() {
            let p = ProbeParams {
                cs_mm: 0.5,
                kind,
                ..ProbeParams::new(kv, 18.0, 120.0)
            };
            let probe = p.sample(m, dx).unwrap();
            let total: f64 = probe.iter().map(|v| v.norm_sqr() as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "{kind}: Σ|P|² = {total}");
            let spec = spectrum_of(&probe, m);
            let radius = bright_field_radius_px(18.0, mrad_px);
            let centre = (m / 2) as f64;
            let mut factor: Option<Complex64> = None;
            let mut checked = 0;
            for r in 0..m {
                for c in 0..m {
                    let (ky, kx) = (signed_frequency(r, m) * dk, signed_frequency(c, m) * dk);
                    let d = (kx * kx + ky * ky).sqrt() / dk;
                    if d > radius - 1.5 {
                        assert!(d < radius + 1.0 || spec[r * m + c].norm() < 1e-6);
                        continue;
                    }
                    let shift = -2.0 * std::f64::consts::PI * (kx + ky) * centre * dx;
                    let want = Complex64::from_polar(1.0, p.aperture_phase(kx, ky) + shift);
                    let ratio = spec[r * m + c] * want.conj();
                    let f = *factor.get_or_insert(ratio);
                    assert!(
                        (ratio - f).norm() < 1e-4 * f.norm(),
                        "{kind}: at ({kx:.4}, {ky:.4}) 1/Å the spectrum / definition is {ratio} \
                         but {f} elsewhere"
                    );
                    checked += 1;
                }
            }
            let f = factor.unwrap();
            assert!(f.re > 0.0 && f.im.abs() < 1e-4 * f.re, "{kind}: factor {f}");
            assert!(checked > 3000, "{kind}: {checked} points");
        }
    }

    /// The zone plate's zones by hand: edges at θ_n = √(n λ / f), phases 0, π, 0, …; the
    /// random plate is constant on each cell, reproducible, and uniform over its range.
    #[test]
    fn plates_match_their_definition_at_hand_made_points() {
        let (lambda, alpha) = (wavelength_angstrom(300.0), 18.0);
        let f = 500.0;
        let fzp = ProbeKind::Fzp { focal_angstrom: f };
        for n in 1..6 {
            let k_edge = (n as f64 / (lambda * f)).sqrt();
            let (before, after) = (
                fzp.plate_phase(k_edge * 0.999, 0.0, lambda, alpha),
                fzp.plate_phase(0.0, k_edge * 1.001, lambda, alpha),
            );
            let want_after = if n % 2 == 1 {
                std::f64::consts::PI
            } else {
                0.0
            };
            assert_eq!(after, want_after, "zone {n}");
            assert_eq!(before, std::f64::consts::PI - want_after, "zone {}", n - 1);
        }
        let random = |seed| ProbeKind::Random {
            seed,
            cell_mrad: Some(2.0),
            range_rad: None,
        };
        // 2 mrad cells = 2e-3 / λ 1/Å.
        let cell_k = 2e-3 / lambda;
        let a = random(3);
        let at = |kind: ProbeKind, i: f64, j: f64| {
            kind.plate_phase(i * cell_k, j * cell_k, lambda, alpha)
        };
        assert_eq!(at(a, 0.1, 0.2), at(a, 0.9, 0.7), "one cell, one phase");
        assert_eq!(at(a, -2.5, 1.5), at(a, -2.1, 1.9));
        assert_eq!(
            at(a, 0.5, 0.5),
            at(random(3), 0.5, 0.5),
            "same seed, same plate"
        );
        let (mut sum, mut sum2, mut same) = (0.0, 0.0, 0);
        let n = 40;
        for i in -n / 2..n / 2 {
            for j in -n / 2..n / 2 {
                let v = at(a, i as f64 + 0.5, j as f64 + 0.5);
                assert!((0.0..2.0 * std::f64::consts::PI).contains(&v));
                sum += v;
                sum2 += v * v;
                same += usize::from(v == at(random(4), i as f64 + 0.5, j as f64 + 0.5));
            }
        }
        let cells = (n * n) as f64;
        let mean = sum / cells;
        let sd = (sum2 / cells - mean * mean).sqrt();
        // Uniform on [0, 2π): mean π, sd 2π/√12 = 1.814; 1600 cells: σ(mean) = 0.045.
        assert!((mean - std::f64::consts::PI).abs() < 0.2, "mean {mean}");
        assert!((sd - 1.814).abs() < 0.1, "sd {sd}");
        assert_eq!(same, 0, "another seed, another plate");
    }

    /// splitmix64's published first output for state 0 (`0xE220A8397B1DCDAF`), and one
    /// plate value recomputed by hand from the documented formula.
    #[test]
    fn random_plate_uses_splitmix64() {
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let lambda = wavelength_angstrom(300.0);
        let kind = ProbeKind::Random {
            seed: 7,
            cell_mrad: Some(2.0),
            range_rad: Some(1.0),
        };
        // Cell (i, j) = (−1, 2).
        let (kx, ky) = (-0.5 * 2e-3 / lambda, 2.5 * 2e-3 / lambda);
        let h = splitmix64(splitmix64(splitmix64(7) ^ (-1i64) as u64) ^ 2);
        let want = (h >> 11) as f64 / 9_007_199_254_740_992.0;
        assert_eq!(kind.plate_phase(kx, ky, lambda, 18.0), want);
    }

    /// Physics of the 0/π zone plate: its ±1st orders each carry 4/π² of the intensity, so
    /// refocusing by ∓f (defocus = −f or +f) gives a focused spot whose peak is ≈ 4/π² = 0.405
    /// of the plain in-focus probe's; in focus, the plate has no focused (zeroth) order.
    #[test]
    fn zone_plate_focuses_two_fifths_of_the_beam_at_plus_minus_f() {
        let (m, kv, alpha, mrad_px, f) = (256, 300.0, 18.0, 0.25, 500.0);
        let dx = window_pixel_angstrom(kv, m, mrad_px);
        let centre = (m / 2) * m + m / 2;
        let peak = |defocus: f64, kind| {
            let p = ProbeParams {
                kind,
                ..ProbeParams::new(kv, alpha, defocus)
            };
            p.sample(m, dx).unwrap()[centre].norm_sqr() as f64
        };
        let plain = peak(0.0, ProbeKind::Defocus);
        let fzp = ProbeKind::Fzp { focal_angstrom: f };
        let want = 4.0 / std::f64::consts::PI.powi(2);
        for defocus in [f, -f] {
            let ratio = peak(defocus, fzp) / plain;
            assert!((ratio - want).abs() < 0.06, "defocus {defocus}: {ratio}");
        }
        let in_focus = peak(0.0, fzp) / plain;
        assert!(in_focus < 0.05, "in focus: {in_focus}");
    }

    #[test]
    fn probe_kinds_parse_print_and_name_their_field() {
        for text in [
            "defocus",
            "fzp:6000",
            "random:7",
            "random:7:2.5",
            "random:7:2.5:3",
            "random:7::3",
        ] {
            let kind: ProbeKind = text.parse().unwrap();
            assert_eq!(kind.to_string(), text);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<ProbeKind>(&json).unwrap(), kind);
        }
        assert_eq!(
            "random:1".parse::<ProbeKind>().unwrap(),
            ProbeKind::Random {
                seed: 1,
                cell_mrad: None,
                range_rad: None
            }
        );
        for bad in [
            "",
            "fzp",
            "fzp:-1",
            "fzp:x",
            "random",
            "random:-3",
            "random:1:0",
            "zernike",
            "fzp:1:2",
        ] {
            let e = bad.parse::<ProbeKind>().unwrap_err().to_string();
            assert!(e.contains("optics.probe_kind"), "{bad}: {e}");
        }
        // Through the optics: the sidecar's string, and the job's field.
        let o = Optics::from_json_lenient(&serde_json::json!({"kv": 300, "probe_kind": "fzp:10"}));
        assert_eq!(
            o.probe_kind,
            Some(ProbeKind::Fzp {
                focal_angstrom: 10.0
            })
        );
        let o: Optics = serde_json::from_str(r#"{"probe_kind": "random:5"}"#).unwrap();
        assert_eq!(o.probe_kind.unwrap().name(), "random");
        assert!(serde_json::from_str::<Optics>(r#"{"probe_kind": "fzp:0"}"#).is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut p = ProbeParams::new(300.0, 18.0, 0.0);
        p.alpha_mrad = f64::NAN;
        let e = p.sample(64, 0.3).unwrap_err().to_string();
        assert!(e.contains("optics.alpha_mrad"), "{e}");
        let p = ProbeParams::new(300.0, 300.0, 0.0);
        let e = p.sample(64, 0.3).unwrap_err().to_string();
        assert!(e.contains("Nyquist"), "{e}");
        let p = ProbeParams::new(-1.0, 18.0, 0.0);
        assert!(
            p.sample(64, 0.3)
                .unwrap_err()
                .to_string()
                .contains("optics.kv")
        );
    }
}
