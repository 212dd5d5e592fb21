/*
 * ptyflow.h: the C ABI of ptyflow, streaming 4D-STEM reduction for detector readout software.
 *
 * Link: static  cc app.c -Iinclude path/to/libptyflow.a -lpthread -ldl -lm
 *       shared  cc app.c -Iinclude -Lpath/to -lptyflow   (and libptyflow.so on the loader path)
 *
 * USE
 *   PtyflowConfig cfg; ptyflow_config_init(&cfg);
 *   cfg.width = 256; cfg.height = 256; cfg.pixel = PTYFLOW_PIXEL_U16;
 *   cfg.scan_rows = 128; cfg.scan_cols = 128;
 *   cfg.virtual_detectors = "bf,adf:40:120,com";
 *   cfg.has_disc = 1; cfg.center_x = 127.5; cfg.center_y = 127.5; cfg.bf_radius = 30;
 *   PtyflowPipeline *p; if (ptyflow_create(&cfg, &p) != PTYFLOW_OK) { ...last error... }
 *   for each received frame: ptyflow_push(p, pixels, bytes, frame_index);
 *   ptyflow_finish(p);
 *   size_t n; ptyflow_result_len(p, "virtual_bf", &n);
 *   float *bf = malloc(n * sizeof *bf); ptyflow_result_f32(p, "virtual_bf", bf, n);
 *   ptyflow_free(p);
 *
 * STATUS CODES
 *   Every function returns PTYFLOW_OK (0), PTYFLOW_QUEUE_FULL (1, non-blocking push only; not an
 *   error) or a negative PTYFLOW_ERR_* code, so `rc < 0` means failure. A failing call stores
 *   a message in a thread-local slot: ptyflow_last_error_message copies it out. No panic ever
 *   crosses into C: a bug inside ptyflow returns PTYFLOW_ERR_PANIC.
 *
 * OWNERSHIP
 *   - A PtyflowPipeline* from ptyflow_create / ptyflow_create_json is owned by the caller and
 *     released with ptyflow_free (exactly once; NULL is accepted). Freeing without finishing
 *     stops the threads and discards the data.
 *   - Everything the caller passes in (config, strings, frames) is only read during the call
 *     and copied as needed: the caller keeps ownership and may reuse or free it at once.
 *   - Results are copied into caller-provided buffers whose lengths are checked: ask the size
 *     with ptyflow_result_len / ptyflow_result_shape; a wrong length returns PTYFLOW_ERR_LENGTH
 *     and writes nothing.
 *   - Strings returned by ptyflow_status_name and ptyflow_version are static.
 *
 * THREAD SAFETY
 *   - Different handles are independent.
 *   - On one handle, every call except ptyflow_free may come from any thread: the handle's
 *     state is behind a mutex, so calls are serialized (two threads pushing at once is safe
 *     but gains nothing; the intended use is one receive thread pushing).
 *   - ptyflow_counters and ptyflow_frame_bytes never wait on that mutex: a monitoring thread
 *     can poll them while the receive thread is blocked in ptyflow_push or ptyflow_finish.
 *   - ptyflow_free must not run concurrently with any other call on the same handle, and the
 *     handle must not be used after it.
 *   - The last-error message is per thread.
 *
 * BACKPRESSURE
 *   Frames are copied into a fixed pool of batch buffers made at creation (queue_batches +
 *   threads + 1 batches of batch_frames frames); nothing is allocated per frame. When every
 *   buffer is in flight, ptyflow_push waits (default) or, with non_blocking set, returns
 *   PTYFLOW_QUEUE_FULL without taking the frame (counted in PtyflowCounters.dropped).
 *
 * JSON CONFIGURATION (ptyflow_create_json): the job configuration every face of ptyflow shares
 * (`ptyflow replay`'s flags, Python's keywords), with a "push" source:
 *   {"source": {"push": {"width": 256, "height": 256, "pixel": "u16"}},   pixel u8|u16|u32|f32
 *    "scan": {"shape": [rows, cols], "serpentine": false},
 *    "reduce": {"bin": 1, "crop": [x0, y0, width, height],
 *               "virtual": ["bf", "adf:40:120", "rings:4:40:120", "dpc", "com"],
 *               "center": [x, y], "bf_radius": r,                  needed by every detector
 *               "radius_unit": "px"|"mrad"},        default: mrad when optics.mrad_per_px is set
 *    "optics": {"kv": 80, "alpha_mrad": 25, "defocus_angstrom": 0, "cs_mm": 0,
 *               "astigmatism_angstrom": 0, "astigmatism_angle_deg": 0,
 *               "mrad_per_px": 0.5, "step_angstrom": 0.4, "scan_rotation_deg": 0,
 *               "probe_kind": "defocus"},   or "fzp:F" (zone plate, focal length F A) or
 *                                    "random:SEED[:CELL_MRAD[:RANGE_RAD]]" (random phase plate)
 *    "recon": {"method": "epie"|"wf", "window": unbinned px, "bin": 1, "sweeps": ..., ...},
 *    "run": {"threads": 2, "batch_frames": 32, "queue_batches": 8,   absent: the defaults
 *            "blocking": true, "memory_budget": "8G"},     bytes or "500M", "16GiB", "50%"
 *    "out": "dir"}                                  optional: also write .npy and report.json
 *   Unknown keys are an error, and every error names the field (e.g. "reduce.virtual[1]").
 *   The bright-field disc must be given explicitly in push mode (ptyflow replay can find it
 *   from the recorded data; a live stream cannot).
 *
 * MEMORY BUDGET
 *   ptyflow_create estimates every buffer whose size follows from the configuration (frame
 *   geometry, scan, detectors, pool, reconstruction object and pattern store) before it
 *   allocates anything, and refuses a configuration that needs more than the budget with
 *   PTYFLOW_ERR_CONFIG and a message naming the field, the size and the budget. The budget is
 *   memory_budget (struct: bytes, 0 = default), else the environment variable
 *   PTYFLOW_MEMORY_BUDGET, else 75 % of physical memory. Allocations that still fail are
 *   PTYFLOW_ERR_CONFIG too: a size in the configuration never aborts the calling program.
 *
 * RECONSTRUCTION
 *   With "recon" (JSON) / PtyflowConfig.recon the online reconstruction runs on its own thread
 *   beside the reduction, one update per pushed frame (a serpentine scan's frames placed at
 *   their positions), its sweeps in ptyflow_finish. Its JSON options are those of `ptyflow replay` (sweeps, bin, loss,
 *   alpha_step, beta_step, wf_step, object_constraint, ...); steps and sweeps left out are
 *   chosen from the dose and the overlap exactly as replay chooses them, so the same frames
 *   give the same object. Results "object" [rows, cols, 2] and "probe" [M, M, 2].
 *
 * RESULTS (after ptyflow_finish; the layout of `ptyflow replay`'s .npy files, float32, C order)
 *   "dose" [rows, cols]; "mean", "var" [binned height, binned width];
 *   "virtual_<name>" [rows, cols] or [rows, cols, channels] with "virtual_<name>_sum";
 *   "virtual_com_x", "virtual_com_y" [rows, cols] (pixels from the disc centre);
 *   "object", "probe" [.., 2] with a reconstruction (complex as interleaved re, im).
 *   A scan position whose frame was never pushed holds 0: compare PtyflowCounters.processed
 *   with rows * cols to know that the scan is complete.
 */

#ifndef PTYFLOW_H
#define PTYFLOW_H

/* Generated by cbindgen from host/src/capi.rs with host/cbindgen.toml: do not edit.
 * Regenerate with: PTYFLOW_BLESS=1 cargo test -p ptyflow-suite capi */

#include <stddef.h>
#include <stdint.h>

// Success.
#define PTYFLOW_OK 0

// Non-blocking mode only: every buffer is in flight, the frame was NOT taken. Not an error
// (the last-error message is not set): retry, or count the frame as dropped.
#define PTYFLOW_QUEUE_FULL 1

// A required pointer argument was NULL.
#define PTYFLOW_ERR_NULL -1

// The configuration is invalid (bad JSON, unknown key, geometry, detector spec, missing disc),
// or needs more memory than the budget (`memory_budget`) or the system can give.
#define PTYFLOW_ERR_CONFIG -2

// A length does not match: the frame's byte count, an output buffer's element count, a
// dims array or name buffer that is too small. Nothing was written or taken.
#define PTYFLOW_ERR_LENGTH -3

// The frame index lies beyond the scan (index >= rows * cols).
#define PTYFLOW_ERR_INDEX -4

// The call does not fit the pipeline's state: push or finish after finish, results before
// finish, results after a failed finish.
#define PTYFLOW_ERR_STATE -5

// No result of that name (see ptyflow_result_count and ptyflow_result_name).
#define PTYFLOW_ERR_NOT_FOUND -6

// The configuration asks for something this build does not have. Reserved: this version
// returns it nowhere (the reconstruction, once refused with it, runs).
#define PTYFLOW_ERR_UNSUPPORTED -7

// A pipeline stage failed while running (the message names the frame and the reason).
#define PTYFLOW_ERR_PIPELINE -8

// A bug: ptyflow panicked inside this call. The panic was caught; the handle is unusable
// from now on (every later call on it returns this code) and should be freed.
#define PTYFLOW_ERR_PANIC -9

// Pixel type `uint8_t`.
#define PTYFLOW_PIXEL_U8 1

// Pixel type `uint16_t`.
#define PTYFLOW_PIXEL_U16 2

// Pixel type `uint32_t`.
#define PTYFLOW_PIXEL_U32 3

// Pixel type `float` (IEEE 754 binary32).
#define PTYFLOW_PIXEL_F32 4

// Reconstruction by online ePIE.
#define PTYFLOW_RECON_EPIE 1

// Reconstruction by online Wirtinger flow.
#define PTYFLOW_RECON_WF 2

// A pipeline: opaque to C. Made by ptyflow_create or ptyflow_create_json, released by
// ptyflow_free.
typedef struct PtyflowPipeline PtyflowPipeline;

// The online reconstruction and its optics. Initialise with ptyflow_recon_config_init.
// Runs ePIE or Wirtinger flow (Poisson loss) on every pushed frame, in push order; the
// window is the whole (square) frame, or `window` binned pixels centred on the disc.
typedef struct PtyflowReconConfig {
  // PTYFLOW_RECON_EPIE (default) or PTYFLOW_RECON_WF.
  uint32_t method;
  // Accelerating voltage in kV. Required.
  double kv;
  // Convergence semi-angle in mrad. Required.
  double alpha_mrad;
  // Defocus in Angstrom (positive = underfocus).
  double defocus_angstrom;
  // Spherical aberration Cs in mm.
  double cs_mm;
  // Two-fold astigmatism |C12| in Angstrom.
  double astigmatism_angstrom;
  // Azimuth of the two-fold astigmatism in degrees.
  double astigmatism_angle_deg;
  // Detector sampling in mrad per unbinned pixel; 0: the pipeline's mrad_per_px. Required
  // in one of the two places.
  double mrad_per_px;
  // Scan step in Angstrom. Required.
  double scan_step_angstrom;
  // Reconstruction window M (pixels); 0: the binned frame's width.
  size_t window;
} PtyflowReconConfig;

// How a pipeline is built. Initialise with ptyflow_config_init, then set the fields you need.
// Fields may be appended in later versions (rebuild against the new header).
//
// Frames keep the detector's layout: row-major, `height` rows of `width` pixels, native byte
// order. Pixel (row, col) has its centre at x = col, y = row. Positions and radii are in
// unbinned detector pixels, or radii in mrad when `mrad_per_px` > 0.
typedef struct PtyflowConfig {
  // Frame width in pixels (columns). Required.
  size_t width;
  // Frame height in pixels (rows). Required.
  size_t height;
  // One of PTYFLOW_PIXEL_*. Default PTYFLOW_PIXEL_U16.
  uint32_t pixel;
  // Bin factor 1..16 (1: no binning); width and height (or the crop) must be multiples.
  uint32_t bin;
  // Non-zero: use the crop window below (before binning).
  int has_crop;
  // Crop window: first column.
  size_t crop_x0;
  // Crop window: first row.
  size_t crop_y0;
  // Crop window: columns.
  size_t crop_width;
  // Crop window: rows.
  size_t crop_height;
  // Scan rows (slow axis). Required. Frame indices run over 0 .. scan_rows * scan_cols - 1.
  size_t scan_rows;
  // Scan columns (fast axis). Required.
  size_t scan_cols;
  // Non-zero: serpentine scan (odd rows run right to left).
  int serpentine;
  // Virtual detectors, comma-separated, e.g. "bf,adf:20:60,rings:4:20:60,dpc,com"; NULL or
  // "" for none. Read during ptyflow_create only (the caller keeps ownership).
  const char *virtual_detectors;
  // Non-zero: the bright-field disc below is given. Push mode cannot find the disc from the
  // data, so every detector (bf, adf, rings, dpc, com) needs it.
  int has_disc;
  // Bright-field disc centre x (column), unbinned pixels.
  double center_x;
  // Bright-field disc centre y (row), unbinned pixels.
  double center_y;
  // Bright-field disc radius (unbinned pixels, or mrad when mrad_per_px > 0).
  double bf_radius;
  // Detector sampling in mrad per unbinned pixel; > 0: radii are in mrad. 0: pixels.
  double mrad_per_px;
  // Reduction worker threads; 0: one per CPU.
  uint32_t threads;
  // Frames per batch handed to the workers; 0: 32.
  uint32_t batch_frames;
  // Batches that may be in flight (queue depth); 0: 8.
  uint32_t queue_batches;
  // 0 (default): ptyflow_push blocks while the queue is full. Non-zero: it returns
  // PTYFLOW_QUEUE_FULL at once and does not take the frame.
  int non_blocking;
  // Optional online reconstruction; NULL: none. Read during ptyflow_create only.
  const struct PtyflowReconConfig *recon;
  // Memory the pipeline may use, in bytes, checked at creation before anything is
  // allocated: a configuration that needs more is refused with PTYFLOW_ERR_CONFIG and a
  // message naming the field that sets the size. 0 (default): the environment variable
  // PTYFLOW_MEMORY_BUDGET (e.g. "8G", "50%"), else 75 % of physical memory.
  uint64_t memory_budget;
} PtyflowConfig;

// Counters of a pipeline, readable at any time from any thread.
typedef struct PtyflowCounters {
  // Frames taken by ptyflow_push.
  uint64_t pushed;
  // Frames reduced by the workers so far (equals pushed after ptyflow_finish).
  uint64_t processed;
  // ptyflow_push calls answered PTYFLOW_QUEUE_FULL (non-blocking mode; 0 otherwise). A frame
  // that was retried until taken counts once per refusal.
  uint64_t dropped;
  // Frames the reconstruction has seen so far (0 without one).
  uint64_t consumed;
} PtyflowCounters;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Fills `config` with the defaults (no detectors, no crop, no disc, u16 pixels, bin 1,
// blocking push, default threads and queue). Width, height and the scan must still be set.
// Returns PTYFLOW_OK or PTYFLOW_ERR_NULL.
//
// # Safety
// `config` is NULL or points to writable memory for one `PtyflowConfig`.
int ptyflow_config_init(struct PtyflowConfig *config);

// Fills `recon` with the defaults (ePIE, no aberrations, window 0 = binned frame width, all
// required values 0). Returns PTYFLOW_OK or PTYFLOW_ERR_NULL.
//
// # Safety
// `recon` is NULL or points to writable memory for one `PtyflowReconConfig`.
int ptyflow_recon_config_init(struct PtyflowReconConfig *recon);

// Creates a pipeline from `config` and starts its worker threads. On success `*out` is the
// new handle (free it with ptyflow_free); on failure `*out` is NULL and the status says why
// (PTYFLOW_ERR_CONFIG).
//
// # Safety
// `config` is NULL or points to a valid `PtyflowConfig` whose string and `recon` pointers are
// NULL or valid for the duration of the call; `out` is NULL or writable for one pointer.
int ptyflow_create(const struct PtyflowConfig *config, struct PtyflowPipeline **out);

// Creates a pipeline from a JSON object (UTF-8, NUL-terminated) with the same fields as
// `PtyflowConfig`; see the header's top comment for the keys. Unknown keys are an error.
// On success `*out` is the new handle; on failure `*out` is NULL.
//
// # Safety
// `json` is NULL or a NUL-terminated string valid for the call; `out` is NULL or writable for
// one pointer.
int ptyflow_create_json(const char *json, struct PtyflowPipeline **out);

// Bytes one frame must have: width * height * pixel size (before any crop or binning).
//
// # Safety
// `p` is NULL or a live handle; `out` is NULL or writable for one `size_t`.
int ptyflow_frame_bytes(const struct PtyflowPipeline *p, size_t *out);

// Pushes one frame for scan position `index` (0 .. rows * cols - 1, in acquisition order; a
// serpentine scan maps odd rows right to left). The frame (`bytes` bytes, exactly
// ptyflow_frame_bytes) is copied before the call returns: the caller may reuse its buffer at
// once. Never allocates.
//
// Blocking mode (default): waits while every buffer is in flight. Non-blocking mode: returns
// PTYFLOW_QUEUE_FULL at once without taking the frame. Errors: PTYFLOW_ERR_NULL,
// PTYFLOW_ERR_LENGTH (wrong byte count), PTYFLOW_ERR_INDEX, PTYFLOW_ERR_STATE (after
// ptyflow_finish), PTYFLOW_ERR_PIPELINE (a stage failed); the frame is then not taken.
//
// # Safety
// `p` is NULL or a live handle; `frame` is NULL or readable for `bytes` bytes during the call.
int ptyflow_push(struct PtyflowPipeline *p, const void *frame, size_t bytes, uint64_t index);

// Reads the counters. Never waits on the pipeline's lock: safe to call from a monitoring
// thread while another thread pushes or finishes.
//
// # Safety
// `p` is NULL or a live handle; `out` is NULL or writable for one `PtyflowCounters`.
int ptyflow_counters(const struct PtyflowPipeline *p, struct PtyflowCounters *out);

// Sends the last partial batch, waits for every stage and computes the results. Call once,
// after the last push. Errors: PTYFLOW_ERR_STATE (already finished), PTYFLOW_ERR_PIPELINE (a
// stage failed: the message says why; the handle then has no results, free it).
//
// # Safety
// `p` is NULL or a live handle.
int ptyflow_finish(struct PtyflowPipeline *p);

// Number of results after ptyflow_finish (PTYFLOW_ERR_STATE before).
//
// # Safety
// `p` is NULL or a live handle; `count` is NULL or writable for one `size_t`.
int ptyflow_result_count(const struct PtyflowPipeline *p, size_t *count);

// Copies the name of result `i` (0 .. count - 1), NUL-terminated, into `buf` (`len` bytes).
// `*needed` (if not NULL) receives the bytes the name needs including its NUL, also when
// `buf` is too small (PTYFLOW_ERR_LENGTH, nothing written) or NULL with `len` 0 (a size
// query, PTYFLOW_ERR_LENGTH). PTYFLOW_ERR_NOT_FOUND when `i` >= count.
//
// # Safety
// `p` is NULL or a live handle; `buf` is NULL or writable for `len` bytes; `needed` is NULL or
// writable for one `size_t`.
int ptyflow_result_name(const struct PtyflowPipeline *p,
                        size_t i,
                        char *buf,
                        size_t len,
                        size_t *needed);

// The shape of result `name` (C order, outermost first). `*ndim` (if not NULL) receives the
// number of dimensions always; `dims` receives them when `max_dims` >= ndim, else
// PTYFLOW_ERR_LENGTH and nothing is written to `dims` (call with `max_dims` 0 to ask for
// ndim). Results: "dose", "virtual_bf", "virtual_adf_IN_OUT", "virtual_dpc" [rows, cols, 4],
// "virtual_dpc_sum", "virtual_rings…" [rows, cols, N], "virtual_com_x", "virtual_com_y"
// [rows, cols]; "mean", "var" [binned height, binned width]; with a reconstruction "object"
// and "probe" [.., 2] (complex as interleaved re, im).
//
// # Safety
// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `dims` is NULL or writable
// for `max_dims` values; `ndim` is NULL or writable for one `size_t`.
int ptyflow_result_shape(const struct PtyflowPipeline *p,
                         const char *name,
                         size_t *dims,
                         size_t max_dims,
                         size_t *ndim);

// Number of `float` values of result `name` (the product of its shape).
//
// # Safety
// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `len` is NULL or writable
// for one `size_t`.
int ptyflow_result_len(const struct PtyflowPipeline *p, const char *name, size_t *len);

// Copies result `name` into `out`, which must hold exactly `len` floats = ptyflow_result_len
// (else PTYFLOW_ERR_LENGTH and nothing is written). C order. A scan position whose frame was
// never pushed holds 0 (compare counters.processed with rows * cols to know the scan is whole).
//
// # Safety
// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `out` is NULL or writable
// for `len` floats.
int ptyflow_result_f32(const struct PtyflowPipeline *p, const char *name, float *out, size_t len);

// Stops the pipeline's threads (discarding unfinished work when ptyflow_finish was not called)
// and releases the handle. NULL is accepted and ignored.
//
// # Safety
// `p` is NULL or a live handle from ptyflow_create*, not used by any other thread during or
// after this call, and not freed twice.
void ptyflow_free(struct PtyflowPipeline *p);

// Copies the message of the last failing call on this thread (UTF-8, NUL-terminated,
// truncated at a character boundary to fit `len` bytes) into `buf`. Returns the message's
// full length in bytes without the NUL (0 when no call on this thread has failed), so a
// result >= `len` means it was truncated. `buf` may be NULL with `len` 0 (a size query).
// Successful calls do not clear the message.
//
// # Safety
// `buf` is NULL or writable for `len` bytes.
size_t ptyflow_last_error_message(char *buf, size_t len);

// A static name for a status code ("PTYFLOW_OK", "PTYFLOW_ERR_LENGTH", …; "unknown" for
// other values). Never NULL; never freed.
const char *ptyflow_status_name(int status);

// ptyflow's version ("0.1.0"), static, never NULL.
const char *ptyflow_version(void);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* PTYFLOW_H */
