/* The C half of push_speed.py: pushes N frames of 256 x 256 u16 through the C API, with
 * the job configuration (JSON) given on the command line, and prints frames per second.
 * The frames cycle through a pool of 64 distinct frames, as push_speed.py's do.
 *
 *   cc -O2 -Iinclude push_c.c target/release/libptyflow.a -lpthread -ldl -lm -o push_c
 *   ./push_c FRAMES 'JSON'
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ptyflow.h"

#define SIDE 256
#define POOL 64

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int fail(const char *what) {
    char msg[1024];
    ptyflow_last_error_message(msg, sizeof msg);
    fprintf(stderr, "push_c: %s: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: push_c FRAMES JSON\n");
        return 2;
    }
    uint64_t frames = strtoull(argv[1], NULL, 10);
    uint16_t *pool = malloc(sizeof(uint16_t) * POOL * SIDE * SIDE);
    uint32_t x = 14;
    for (size_t i = 0; i < (size_t)POOL * SIDE * SIDE; i++) {
        x = x * 1664525u + 1013904223u; /* the same values as push_speed.py's pool */
        pool[i] = (uint16_t)(x >> 22);
    }
    PtyflowPipeline *p;
    if (ptyflow_create_json(argv[2], &p) != PTYFLOW_OK) return fail("create");
    double t0 = now();
    for (uint64_t i = 0; i < frames; i++) {
        const uint16_t *f = pool + (size_t)(i % POOL) * SIDE * SIDE;
        if (ptyflow_push(p, f, sizeof(uint16_t) * SIDE * SIDE, i) != PTYFLOW_OK) return fail("push");
    }
    double t_push = now() - t0;
    if (ptyflow_finish(p) != PTYFLOW_OK) return fail("finish");
    double t_all = now() - t0;
    printf("%.1f %.1f\n", frames / t_push, frames / t_all);
    ptyflow_free(p);
    free(pool);
    return 0;
}
