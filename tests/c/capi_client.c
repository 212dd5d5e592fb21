/*
 * A detector readout program in miniature: reads a raw u16 dump (the bundled fixture), pushes every frame through
 * ptyflow's C API, finishes and writes every result as raw float32 (tests/capi.rs compares
 * them with `ptyflow replay` on the same dump). On the way it checks the error paths the
 * header promises. Exit status 0 = every check passed.
 *
 * usage: capi_client DUMP WIDTH HEIGHT FRAMES ROWS COLS OUTDIR
 *
 * The reduction settings below must match REPLAY_* in tests/capi.rs.
 */
#define _POSIX_C_SOURCE 200809L

#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ptyflow.h"

#define DETECTORS "bf, adf:32:46, rings:3:32:46, dpc, com"
#define CENTER_X 48.0
#define CENTER_Y 48.0
#define BF_RADIUS 30.0
#define BIN 2

static const char *last_error(void) {
    static char buf[1024];
    ptyflow_last_error_message(buf, sizeof buf);
    return buf;
}

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

/* `call` must return `code`. */
#define EXPECT(call, code)                                                 \
    do {                                                                   \
        int rc_ = (call);                                                  \
        CHECK(rc_ == (code), "%s returned %s (%d), expected %s; last error: %s", #call, \
              ptyflow_status_name(rc_), rc_, #code, last_error());         \
    } while (0)

/* The last error must contain `needle`. */
#define EXPECT_MESSAGE(needle)                                             \
    CHECK(strstr(last_error(), (needle)) != NULL, "last error `%s` does not mention `%s`", \
          last_error(), (needle))

typedef struct {
    const PtyflowPipeline *p;
    atomic_int stop;
    uint64_t polls;
    uint64_t max_seen;
} Monitor;

/* A monitoring thread: polls the counters while the main thread pushes (documented safe). */
static void *monitor(void *arg) {
    Monitor *m = arg;
    struct timespec pause = {0, 200000};
    while (!atomic_load(&m->stop)) {
        PtyflowCounters c;
        int rc = ptyflow_counters(m->p, &c);
        if (rc != PTYFLOW_OK || c.processed > c.pushed) {
            fprintf(stderr, "FAIL monitor: rc %d, processed %llu > pushed %llu\n", rc,
                    (unsigned long long)c.processed, (unsigned long long)c.pushed);
            exit(1);
        }
        if (c.pushed > m->max_seen) m->max_seen = c.pushed;
        m->polls++;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void config_for(PtyflowConfig *cfg, size_t w, size_t h, size_t rows, size_t cols) {
    EXPECT(ptyflow_config_init(cfg), PTYFLOW_OK);
    cfg->width = w;
    cfg->height = h;
    cfg->pixel = PTYFLOW_PIXEL_U16;
    cfg->bin = BIN;
    cfg->scan_rows = rows;
    cfg->scan_cols = cols;
    cfg->serpentine = 0;
    cfg->virtual_detectors = DETECTORS;
    cfg->has_disc = 1;
    cfg->center_x = CENTER_X;
    cfg->center_y = CENTER_Y;
    cfg->bf_radius = BF_RADIUS;
    cfg->threads = 2;
    cfg->batch_frames = 4;
    cfg->queue_batches = 2;
}

static void check_error_paths(size_t w, size_t h, size_t rows, size_t cols) {
    PtyflowPipeline *p = (PtyflowPipeline *)1;
    PtyflowConfig cfg;

    EXPECT(ptyflow_create(NULL, &p), PTYFLOW_ERR_NULL);
    CHECK(p == NULL, "*out must be NULL after a failed create");
    EXPECT_MESSAGE("config");
    config_for(&cfg, w, h, rows, cols);
    EXPECT(ptyflow_create(&cfg, NULL), PTYFLOW_ERR_NULL);
    EXPECT(ptyflow_config_init(NULL), PTYFLOW_ERR_NULL);

    /* Push mode cannot find the disc: every detector needs it given. */
    cfg.has_disc = 0;
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("bright-field disc");
    cfg.has_disc = 1;
    cfg.pixel = 7;
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    cfg.pixel = PTYFLOW_PIXEL_U16;
    cfg.virtual_detectors = "bf,haadf";
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("haadf");
    cfg.virtual_detectors = DETECTORS;
    cfg.bin = 5; /* the fixture's 96 is not a multiple of 5 */
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    cfg.bin = BIN;

    /* Reconstruction settings are checked at create: an aperture beyond the window's
       Nyquist angle (25 mrad on a 96-px window at 0.25 mrad/px reaches only 12 mrad). */
    PtyflowReconConfig recon;
    EXPECT(ptyflow_recon_config_init(&recon), PTYFLOW_OK);
    recon.kv = 80;
    recon.alpha_mrad = 25;
    recon.mrad_per_px = 0.25;
    recon.scan_step_angstrom = 0.4;
    cfg.recon = &recon;
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("Nyquist");
    CHECK(p == NULL, "*out must be NULL after a failed create");
    recon.kv = -1; /* invalid optics are a configuration error */
    EXPECT(ptyflow_create(&cfg, &p), PTYFLOW_ERR_CONFIG);
    cfg.recon = NULL;

    EXPECT(ptyflow_create_json(NULL, &p), PTYFLOW_ERR_NULL);
    EXPECT(ptyflow_create_json("{not json", &p), PTYFLOW_ERR_CONFIG);
#define PUSH_24 "\"source\": {\"push\": {\"width\": 24, \"height\": 24, \"pixel\": \"u16\"}}, " \
                "\"scan\": {\"shape\": [2, 2]}"
    EXPECT(ptyflow_create_json("{" PUSH_24 ", \"colour\": 1}", &p), PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("colour");
    EXPECT(ptyflow_create_json("{" PUSH_24 ", \"optics\": {\"kv\": 80, \"alpha_mrad\": 25, "
                               "\"defocus_angstrom\": 0, \"mrad_per_px\": 1.5, "
                               "\"step_angstrom\": 0.4}, "
                               "\"recon\": {\"method\": \"epie\", \"speed\": 3}}", &p),
           PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("speed");
    /* Errors name the configuration's field. */
    EXPECT(ptyflow_create_json("{" PUSH_24 ", \"reduce\": {\"bin\": 17}}", &p),
           PTYFLOW_ERR_CONFIG);
    EXPECT_MESSAGE("reduce.bin");

    /* last error: size query and truncation. */
    size_t full = ptyflow_last_error_message(NULL, 0);
    CHECK(full == strlen(last_error()) && full > 10, "last error length %zu", full);
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(ptyflow_last_error_message(small, sizeof small) == full, "full length on truncation");
    CHECK(strlen(small) <= 7, "truncated message is NUL-terminated");

    CHECK(strcmp(ptyflow_status_name(PTYFLOW_ERR_LENGTH), "PTYFLOW_ERR_LENGTH") == 0, "name");
    CHECK(strcmp(ptyflow_status_name(12345), "unknown") == 0, "unknown name");
    CHECK(strlen(ptyflow_version()) > 0, "version");
    ptyflow_free(NULL);
}

/* Pushes every frame, retrying on PTYFLOW_QUEUE_FULL; returns the number of refusals. */
static uint64_t push_all(PtyflowPipeline *p, const uint16_t *frames, size_t frame_px,
                         size_t n, int shuffled) {
    uint64_t refusals = 0;
    for (size_t k = 0; k < n; k++) {
        /* Shuffled: even indices first, then odd: the index, not the order, places a frame. */
        size_t i = shuffled ? (k < (n + 1) / 2 ? 2 * k : 2 * (k - (n + 1) / 2) + 1) : k;
        for (;;) {
            int rc = ptyflow_push(p, frames + i * frame_px, frame_px * sizeof(uint16_t), i);
            if (rc == PTYFLOW_OK) break;
            CHECK(rc == PTYFLOW_QUEUE_FULL, "push %zu: %s: %s", i, ptyflow_status_name(rc),
                  last_error());
            refusals++;
            sched_yield();
        }
    }
    return refusals;
}

int main(int argc, char **argv) {
    CHECK(argc == 8, "usage: %s DUMP WIDTH HEIGHT FRAMES ROWS COLS OUTDIR", argv[0]);
    const char *dump = argv[1];
    size_t w = strtoul(argv[2], NULL, 10), h = strtoul(argv[3], NULL, 10);
    size_t n = strtoul(argv[4], NULL, 10);
    size_t rows = strtoul(argv[5], NULL, 10), cols = strtoul(argv[6], NULL, 10);
    const char *outdir = argv[7];
    size_t frame_px = w * h;

    uint16_t *frames = malloc(n * frame_px * sizeof *frames);
    CHECK(frames != NULL, "out of memory");
    FILE *f = fopen(dump, "rb");
    CHECK(f != NULL, "cannot open %s", dump);
    CHECK(fread(frames, sizeof *frames, n * frame_px, f) == n * frame_px, "short read");
    fclose(f);

    check_error_paths(w, h, rows, cols);

    /* A: from the struct, blocking, frames pushed out of order. */
    PtyflowConfig cfg;
    config_for(&cfg, w, h, rows, cols);
    PtyflowPipeline *a = NULL;
    EXPECT(ptyflow_create(&cfg, &a), PTYFLOW_OK);
    size_t bytes = 0;
    EXPECT(ptyflow_frame_bytes(a, &bytes), PTYFLOW_OK);
    CHECK(bytes == frame_px * 2, "frame bytes %zu", bytes);
    EXPECT(ptyflow_push(a, NULL, bytes, 0), PTYFLOW_ERR_NULL);
    EXPECT(ptyflow_push(a, frames, bytes - 1, 0), PTYFLOW_ERR_LENGTH);
    EXPECT_MESSAGE("expected");
    EXPECT(ptyflow_push(a, frames, bytes, rows * cols), PTYFLOW_ERR_INDEX);
    EXPECT(ptyflow_push(NULL, frames, bytes, 0), PTYFLOW_ERR_NULL);
    size_t count = 0;
    EXPECT(ptyflow_result_count(a, &count), PTYFLOW_ERR_STATE);
    CHECK(push_all(a, frames, frame_px, n, 1) == 0, "a blocking push answered queue full");
    PtyflowCounters c;
    EXPECT(ptyflow_counters(a, &c), PTYFLOW_OK);
    CHECK(c.pushed == n && c.dropped == 0, "pushed %llu dropped %llu",
          (unsigned long long)c.pushed, (unsigned long long)c.dropped);
    EXPECT(ptyflow_finish(a), PTYFLOW_OK);
    EXPECT(ptyflow_finish(a), PTYFLOW_ERR_STATE);
    EXPECT(ptyflow_push(a, frames, bytes, 0), PTYFLOW_ERR_STATE);
    EXPECT(ptyflow_counters(a, &c), PTYFLOW_OK);
    CHECK(c.pushed == n && c.processed == n && c.dropped == 0 && c.consumed == 0,
          "counters after finish: %llu %llu %llu", (unsigned long long)c.pushed,
          (unsigned long long)c.processed, (unsigned long long)c.dropped);

    /* B: from JSON, non-blocking with the smallest queue, a thread polling the counters. */
    char json[1024];
    snprintf(json, sizeof json,
             "{\"source\": {\"push\": {\"width\": %zu, \"height\": %zu, \"pixel\": \"u16\"}}, "
             "\"scan\": {\"shape\": [%zu, %zu], \"serpentine\": false}, "
             "\"reduce\": {\"bin\": %d, "
             "\"virtual\": [\"bf\", \"adf:32:46\", \"rings:3:32:46\", \"dpc\", \"com\"], "
             "\"center\": [%g, %g], \"bf_radius\": %g, \"radius_unit\": \"px\"}, "
             "\"run\": {\"threads\": 1, \"batch_frames\": 1, \"queue_batches\": 1, "
             "\"blocking\": false}, "
             "\"optics\": {\"kv\": 80, \"alpha_mrad\": 24, \"defocus_angstrom\": 800, "
             "\"mrad_per_px\": 0.8, \"step_angstrom\": 2.3}, "
             "\"recon\": {\"method\": \"epie\"}}",
             w, h, rows, cols, BIN, CENTER_X, CENTER_Y, BF_RADIUS);
    PtyflowPipeline *b = NULL;
    EXPECT(ptyflow_create_json(json, &b), PTYFLOW_OK);
    Monitor m = {.p = b, .polls = 0, .max_seen = 0};
    atomic_init(&m.stop, 0);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, monitor, &m) == 0, "pthread_create");
    uint64_t refusals = push_all(b, frames, frame_px, n, 0);
    EXPECT(ptyflow_finish(b), PTYFLOW_OK);
    atomic_store(&m.stop, 1);
    pthread_join(tid, NULL);
    EXPECT(ptyflow_counters(b, &c), PTYFLOW_OK);
    CHECK(c.pushed == n && c.processed == n && c.consumed == n && c.dropped == refusals,
          "B counters: pushed %llu processed %llu dropped %llu (refusals %llu)",
          (unsigned long long)c.pushed, (unsigned long long)c.processed,
          (unsigned long long)c.dropped, (unsigned long long)refusals);

    /* Results of A, written for the Rust side; B must agree bit for bit. */
    EXPECT(ptyflow_result_count(a, &count), PTYFLOW_OK);
    CHECK(count >= 9, "%zu results", count);
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.txt", outdir);
    FILE *manifest = fopen(path, "w");
    CHECK(manifest != NULL, "cannot write %s", path);
    for (size_t i = 0; i < count; i++) {
        char name[128];
        size_t needed = 0;
        EXPECT(ptyflow_result_name(a, i, name, 2, &needed), PTYFLOW_ERR_LENGTH);
        CHECK(needed > 2 && needed <= sizeof name, "name needs %zu", needed);
        EXPECT(ptyflow_result_name(a, i, name, sizeof name, NULL), PTYFLOW_OK);
        CHECK(strlen(name) + 1 == needed, "needed %zu for `%s`", needed, name);

        size_t dims[8], ndim = 0, len = 0;
        EXPECT(ptyflow_result_shape(a, name, NULL, 0, &ndim), PTYFLOW_ERR_LENGTH);
        CHECK(ndim >= 2 && ndim <= 8, "ndim %zu", ndim);
        EXPECT(ptyflow_result_shape(a, name, dims, 8, &ndim), PTYFLOW_OK);
        EXPECT(ptyflow_result_len(a, name, &len), PTYFLOW_OK);
        size_t product = 1;
        for (size_t d = 0; d < ndim; d++) product *= dims[d];
        CHECK(product == len, "`%s`: shape product %zu, len %zu", name, product, len);

        /* One float more than needed: the extra one is a canary that must survive. */
        float *va = malloc((len + 1) * sizeof *va), *vb = malloc(len * sizeof *vb);
        CHECK(va && vb, "out of memory");
        va[len] = 1234.5f;
        va[0] = -7.0f;
        EXPECT(ptyflow_result_f32(a, name, va, len + 1), PTYFLOW_ERR_LENGTH);
        EXPECT(ptyflow_result_f32(a, name, va, len - 1), PTYFLOW_ERR_LENGTH);
        CHECK(va[0] == -7.0f, "a refused read wrote into the buffer");
        EXPECT(ptyflow_result_f32(a, name, NULL, len), PTYFLOW_ERR_NULL);
        EXPECT(ptyflow_result_f32(a, name, va, len), PTYFLOW_OK);
        CHECK(va[len] == 1234.5f, "`%s`: wrote past len", name);
        EXPECT(ptyflow_result_f32(b, name, vb, len), PTYFLOW_OK);
        CHECK(memcmp(va, vb, len * sizeof *va) == 0, "`%s` differs between A and B", name);

        fprintf(manifest, "%s %zu", name, ndim);
        for (size_t d = 0; d < ndim; d++) fprintf(manifest, " %zu", dims[d]);
        fputc('\n', manifest);
        snprintf(path, sizeof path, "%s/%s.f32", outdir, name);
        FILE *out = fopen(path, "wb");
        CHECK(out != NULL, "cannot write %s", path);
        CHECK(fwrite(va, sizeof *va, len, out) == len, "short write %s", path);
        fclose(out);
        free(va);
        free(vb);
    }
    /* B also reconstructed (in push order): object and probe as (re, im) float pairs. */
    for (int r = 0; r < 2; r++) {
        const char *name = r == 0 ? "object" : "probe";
        size_t dims[3], ndim = 0, len = 0;
        EXPECT(ptyflow_result_shape(b, name, dims, 3, &ndim), PTYFLOW_OK);
        CHECK(ndim == 3 && dims[2] == 2, "`%s`: ndim %zu", name, ndim);
        EXPECT(ptyflow_result_len(b, name, &len), PTYFLOW_OK);
        float *v = malloc(len * sizeof *v);
        CHECK(v != NULL, "out of memory");
        EXPECT(ptyflow_result_f32(b, name, v, len), PTYFLOW_OK);
        fprintf(manifest, "%s 3 %zu %zu 2\n", name, dims[0], dims[1]);
        snprintf(path, sizeof path, "%s/%s.f32", outdir, name);
        FILE *out = fopen(path, "wb");
        CHECK(out != NULL, "cannot write %s", path);
        CHECK(fwrite(v, sizeof *v, len, out) == len, "short write %s", path);
        fclose(out);
        free(v);
    }
    fclose(manifest);
    EXPECT(ptyflow_result_len(a, "object", &count), PTYFLOW_ERR_NOT_FOUND);
    EXPECT_MESSAGE("virtual_bf");
    EXPECT(ptyflow_result_len(a, NULL, &count), PTYFLOW_ERR_NULL);

    ptyflow_free(a);
    ptyflow_free(b);
    free(frames);
    printf("capi client: OK (%zu frames, %llu queue-full retries, %llu counter polls)\n", n,
           (unsigned long long)refusals, (unsigned long long)m.polls);
    return 0;
}
