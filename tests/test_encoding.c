/* Update encodings (issue 16 point 7, cache/encode.h):
 *   - each encoding's round trip within its documented bound: fp16 and bf16
 *     relative (2^-11 |x| + 2^-25, 2^-8 |x|), int8 by its block's scale / 2
 *     per element, topk exact on the kept coordinates (the largest) and 0
 *     elsewhere; block decoding equals whole decoding; bad payloads refused;
 *   - a frame says its encoding and decodes back to what was sent;
 *   - top-k's error feedback: the residual a client leaves in the cache
 *     comes back in its next update (sent1 + sent2 + residual2 == x exactly);
 *   - a merger folding encoded updates block by block gives the mean of the
 *     decoded updates (streaming fedavg), and a collecting rule (median)
 *     reads them decoded;
 *   - a simulate run per encoding completes, moves fewer bytes than float32,
 *     and a query's norms are the decoded updates' norms. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/rs_encode.h"
#include "cache/encode.h"
#include "cache/shard_codec.h"
#include "cache/store.h"
#include "cache/store_enc.h"
#include "clients/sim.h"
#include "ml/rng.h"
#include "tests/harness.h"

static flc_fixture_t fx;

/* Values over many magnitudes, signs, zeros and a few subnormal-range ones. */
static void awkward(float *x, size_t n, uint64_t seed)
{
    flc_rng_t r;
    flc_rng_seed2(&r, seed, 7);
    for (size_t i = 0; i < n; i++) {
        double m = pow(10.0, -8.0 + 12.0 * flc_rng_uniform(&r));
        x[i] = (float)((flc_rng_uniform(&r) < 0.5 ? -m : m));
        if (i % 97 == 0)
            x[i] = 0;
    }
}

static int roundtrip(const char *spec, const float *x, size_t n, float *y, uint64_t *nnz)
{
    flc_enc_t enc;
    flc_err_t e = {0};
    if (flc_enc_parse(spec, &enc, &e) != 0)
        return -1;
    uint64_t k = enc.kind == FLC_ENC_TOPK ? flc_enc_topk_k(n, enc.frac) : 0;
    size_t pl = flc_enc_payload_bytes(enc.kind, n, k);
    size_t room = pl > n * 4 ? pl : n * 4;
    uint8_t *buf = malloc(room);
    float *sent = malloc(n * sizeof *sent);
    int rc = flc_enc_encode(&enc, x, n, buf, nnz, sent, &e);
    rc = rc ? rc : flc_enc_check(enc.kind, buf, pl, n, *nnz, "test", &e);
    /* by blocks of 100 (as the merger reads them) ... */
    flc_enc_view_t v;
    flc_enc_view_init(&v, enc.kind, buf, n, *nnz);
    for (size_t b = 0; rc == 0 && b < n; b += 100)
        flc_enc_decode_range(&v, b, n - b < 100 ? n - b : 100, y + b);
    /* ... equal to the whole payload decoded in place and to what the
     * encoder said a reader gets */
    rc = rc ? rc : flc_enc_decode_inplace(enc.kind, buf, n, *nnz, &e);
    int same = rc == 0 && memcmp(buf, y, n * 4) == 0 && memcmp(sent, y, n * 4) == 0;
    free(buf);
    free(sent);
    if (rc)
        printf("# %s: %s\n", spec, e.msg);
    return rc ? rc : (same ? 0 : 1);
}

TEST(codec_bounds)
{
    size_t n = 1300; /* 5 int8 blocks and a partial one */
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint64_t nnz;
    awkward(x, n, 1);

    CHECK(roundtrip("fp16", x, n, y, &nnz) == 0, "fp16: blocks, in place and the encoder agree");
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)x[i] - y[i]), bound = ldexp(fabs(x[i]), -11) + ldexp(1, -25);
        if (fabs(x[i]) <= 65504)
            worst = fmax(worst, err / bound);
    }
    CHECK(worst <= 1.0, "fp16: |x - y| <= 2^-11 |x| + 2^-25 on %zu values over 1e-8..1e4 "
          "(worst %.3f of the bound)", n, worst);
    float big[3] = {1e6f, -7e4f, 65504.f}, yb[3];
    roundtrip("fp16", big, 3, yb, &nnz);
    CHECK(yb[0] == 65504.f && yb[1] == -65504.f && yb[2] == 65504.f,
          "fp16: beyond +-65504 clamped to it (%g %g)", yb[0], yb[1]);

    CHECK(roundtrip("bf16", x, n, y, &nnz) == 0, "bf16: blocks, in place and the encoder agree");
    worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)x[i] - y[i]) / fmax(ldexp(fabs(x[i]), -8), 1e-300));
    CHECK(worst <= 1.0, "bf16: |x - y| <= 2^-8 |x| (worst %.3f of the bound)", worst);

    CHECK(roundtrip("int8", x, n, y, &nnz) == 0, "int8: blocks, in place and the encoder agree");
    worst = 0;
    for (size_t b = 0; b < n; b += FLC_ENC_INT8_BLOCK) {
        size_t m = n - b < FLC_ENC_INT8_BLOCK ? n - b : FLC_ENC_INT8_BLOCK;
        float mx = 0;
        for (size_t i = 0; i < m; i++)
            mx = fmaxf(mx, fabsf(x[b + i]));
        double half = mx / 127.0f / 2.0;
        for (size_t i = 0; i < m; i++) /* float rounding of s*q: a few ulps of |x| */
            worst = fmax(worst, (fabs((double)x[b + i] - y[b + i]) - 4e-7 * fabs(x[b + i])) /
                                    half);
    }
    CHECK(worst <= 1.0, "int8: |x - s q| <= s/2 per element, s = block max / 127, 256 per "
          "block (worst %.3f of s/2)", worst);

    CHECK(roundtrip("topk:0.1", x, n, y, &nnz) == 0, "topk: blocks, in place and the encoder "
          "agree");
    size_t kept = 0;
    float min_kept = INFINITY, max_left = 0;
    int exact = 1;
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 0) {
            kept++;
            exact &= y[i] == x[i];
            min_kept = fminf(min_kept, fabsf(x[i]));
        } else {
            max_left = fmaxf(max_left, fabsf(x[i]));
        }
    }
    CHECK(nnz == 130 && kept == 130 && exact && min_kept >= max_left,
          "topk:0.1 keeps ceil(0.1 n) = %llu coordinates exactly, the largest (smallest kept "
          "%g >= largest left %g), 0 elsewhere", (unsigned long long)nnz, min_kept, max_left);

    /* refusals of payloads from outside */
    flc_err_t e = {0};
    uint16_t h[4] = {0x3c00, 0x7c00, 0, 0};
    uint8_t q[4 + 4] = {1, 0x80, 3, 4};
    uint32_t tk[4] = {5, 2, 0, 0};
    CHECK(flc_enc_check(FLC_ENC_FP16, h, 8, 4, 0, "s", &e) == FLC_EDATA &&
              strstr(e.msg, "element 1 is NaN or Inf") &&
              flc_enc_check(FLC_ENC_INT8, q, 8, 4, 0, "s", &e) == FLC_EDATA &&
              strstr(e.msg, "-128") &&
              flc_enc_check(FLC_ENC_TOPK, tk, 16, 10, 2, "s", &e) == FLC_EDATA &&
              strstr(e.msg, "not increasing") &&
              flc_enc_check(FLC_ENC_BF16, h, 6, 4, 0, "s", &e) == FLC_EDATA,
          "refused: fp16 Inf, int8 -128, topk indexes out of order, a short payload (%s)",
          e.msg);
    flc_enc_t enc;
    CHECK(flc_enc_parse("topk:0.7", &enc, &e) == FLC_EINVAL && strstr(e.msg, "(0, 0.5]") &&
              flc_enc_parse("f16", &enc, &e) == FLC_EINVAL && strstr(e.msg, "'f16'") &&
              flc_enc_parse("topk:0.25", &enc, &e) == 0 && enc.kind == FLC_ENC_TOPK,
          "specs: topk above 0.5 and unknown names refused, naming them");
    free(x);
    free(y);
}

TEST(frame_says_encoding)
{
    float x[300], sent[300];
    awkward(x, 300, 2);
    flc_enc_t enc = {.kind = FLC_ENC_INT8};
    uint8_t pay[300 + 8];
    uint64_t nnz;
    flc_err_t e = {0};
    flc_enc_encode(&enc, x, 300, pay, &nnz, sent, &e);
    flc_shard_t sh = {.round = 4, .shard = 0, .num_shards = 1, .count = 300,
                      .model_size = 300, .weight = 1, .encoding = FLC_ENC_INT8,
                      .values = (float *)(void *)pay};
    snprintf(sh.job, sizeof sh.job, "enc");
    snprintf(sh.client, sizeof sh.client, "c1");
    uint8_t *fr = NULL;
    size_t len = 0;
    int rc = flc_shard_encode(&sh, &fr, &len, &e);
    flc_shard_t back = {0};
    rc = rc ? rc : flc_shard_decode(fr, len, 1 << 20, &back, &e);
    CHECK(rc == 0 && len < 300 * 4 / 3 && back.count == 300 && back.encoding == FLC_ENC_F32 &&
              memcmp(back.values, sent, sizeof sent) == 0,
          "an int8 frame of 300 values is %zu bytes (float32: %d) and decodes to what was "
          "sent", len, 300 * 4 + (int)(len - 308));
    flc_shard_release(&back);
    /* a header that says fp16 over an int8 payload is the wrong size */
    sh.encoding = FLC_ENC_FP16;
    uint8_t hdr[8 + 4096];
    size_t hl;
    flc_shard_encode_header(&sh, hdr, sizeof hdr, &hl, &e);
    memcpy(fr, hdr, hl); /* same header length: only the field's value differs */
    rc = flc_shard_decode(fr, len, 1 << 20, &back, &e);
    CHECK(rc == FLC_EDATA && strstr(e.msg, "fp16"), "the payload must fit the encoding the "
          "header names: %s", e.msg);
    free(fr);
}

TEST(error_feedback)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL && flc_store_job_begin(s, "ef", 2) == 0, "store open, job ef with 2 shards");
    enum { P = 1000 };
    static float x[P], zero[P], got1[P], got2[P], res[P];
    awkward(x, P, 3);
    flc_enc_t enc = {.kind = FLC_ENC_TOPK, .frac = 0.05};
    flc_rs_push_cfg_t pc = {.job = "ef", .round = 1, .client = "c1", .num_shards = 2,
                            .model_size = P, .num_samples = 1};
    int rc = flc_rs_push_enc(s, &pc, &enc, x, &e);
    pc.round = 2;
    rc = rc ? rc : flc_rs_push_enc(s, &pc, &enc, zero, &e);
    CHECK(rc == 0, "two topk:0.05 pushes of client c1: x, then zeros (%s)", e.msg);
    int ok = 1;
    uint32_t from[2];
    for (uint32_t k = 0; ok && k < 2; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(P, 2, k, &off, &cnt);
        flc_shard_t a = {0}, b = {0};
        ok = flc_store_get_update(s, "ef", 1, k, "c1", &a, got1 + off, cnt) == 0 &&
             flc_store_get_update(s, "ef", 2, k, "c1", &b, got2 + off, cnt) == 0 &&
             flc_store_resid_get(s, "ef", 2, k, "c1", 3, res + off, cnt, &from[k]) == 0;
    }
    size_t nz1 = 0, nz2 = 0, carried = 0;
    int exact = ok;
    for (size_t i = 0; ok && i < P; i++) {
        nz1 += got1[i] != 0;
        nz2 += got2[i] != 0;
        carried += got1[i] == 0 && got2[i] != 0;
        exact &= got1[i] + got2[i] + res[i] == x[i] && (got2[i] == 0 || got1[i] == 0);
    }
    CHECK(ok && from[0] == 2 && from[1] == 2, "the residual after round 2 is in the cache "
          "under the client's keys, per shard");
    CHECK(exact && nz1 == 50 && nz2 == 50 && carried == 50,
          "round 2 (a zero update) sends 50 coordinates round 1 left out; sent1 + sent2 + "
          "residual == x exactly for all %d", P);
    /* A round run again (resume) reads what its first attempt read. */
    float again[P];
    uint32_t f2 = 0;
    uint64_t off, cnt;
    flc_rs_shard_range(P, 2, 0, &off, &cnt);
    rc = flc_rs_push_enc(s, &pc, &enc, zero, &e);
    flc_shard_t b = {0};
    rc = rc ? rc : flc_store_get_update(s, "ef", 2, 0, "c1", &b, again, cnt);
    CHECK(rc == 0 && memcmp(again, got2, cnt * 4) == 0 &&
              flc_store_resid_get(s, "ef", 2, 0, "c1", 2, again, cnt, &f2) == 0 && f2 == 1,
          "round 2 pushed again sends the same (its residual came from round 1, kept)");
    flc_store_close(s);
}

/* 601: shards of 301 and 300 elements (an odd one for top-k:0.5) */
#define MP 601

/* Three clients push int8 / topk updates; one merger per shard folds them. */
static int merge_round(flc_store_t *s, const char *job, const char *rule, const char *spec,
                       float (*u)[MP], float *out, float *ref)
{
    flc_err_t e = {0};
    const char *cl[3] = {"c1", "c2", "c3"};
    flc_enc_t enc;
    flc_enc_parse(spec, &enc, &e);
    for (int i = 0; i < 3; i++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = cl[i], .num_shards = 2,
                                .model_size = MP, .num_samples = (uint64_t)(i + 1)};
        if (flc_rs_push_enc(s, &pc, &enc, u[i], &e) != 0)
            return printf("# push: %s\n", e.msg), -1;
    }
    for (uint32_t k = 0; k < 2; k++) {
        flc_rs_merger_cfg_t mc = {.job = job, .round = 1, .shard = k, .num_shards = 2,
                                  .model_size = MP, .expected = cl, .n_expected = 3,
                                  .deadline_ms = 5000, .readers = 1};
        flc_merge_rule_parse(&mc.rule, rule, &e);
        flc_rs_report_t rep;
        int rc = flc_rs_merger_run(s, &mc, &rep, &e);
        int parts = (int)rep.participants.n;
        flc_rs_report_free(&rep);
        if (rc != 0 || parts != 3)
            return printf("# merge %s shard %u: %s (%d merged)\n", job, k, e.msg, parts), -1;
    }
    if (flc_rs_pull(s, job, 1, 2, MP, 5000, out, &e) != 0)
        return printf("# pull: %s\n", e.msg), -1;
    /* the reference: each update as a reader decodes it */
    float d[3][MP];
    for (int i = 0; i < 3; i++)
        for (uint32_t k = 0; k < 2; k++) {
            uint64_t off, cnt;
            flc_rs_shard_range(MP, 2, k, &off, &cnt);
            flc_shard_t sh = {0};
            if (flc_store_get_update(s, job, 1, k, cl[i], &sh, d[i] + off, cnt) != 0)
                return -1;
        }
    for (size_t j = 0; j < MP; j++) {
        if (strcmp(rule, "median") == 0) {
            float a = d[0][j], b = d[1][j], c = d[2][j];
            ref[j] = fmaxf(fminf(a, b), fminf(fmaxf(a, b), c));
        } else {
            ref[j] = (float)((1.0 * d[0][j] + 2.0 * d[1][j] + 3.0 * d[2][j]) / 6.0);
        }
    }
    return 0;
}

TEST(merger_folds_encoded)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    static float u[3][MP], out[MP], ref[MP];
    for (int i = 0; i < 3; i++)
        awkward(u[i], MP, 10 + (uint64_t)i);
    struct {
        const char *job, *rule, *spec;
    } cases[] = {{"mf-int8", "fedavg", "int8"},
                 {"mf-topk", "fedavg", "topk:0.2"},
                 {"mf-fp16", "fedavg", "fp16"},
                 {"mf-med", "median", "bf16"},
                 /* shard 0 has 301 elements: 151 kept, 1208 payload bytes > 301
                  * floats, folded from its own buffer */
                 {"mf-half", "fedavg", "topk:0.5"}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int rc = merge_round(s, cases[c].job, cases[c].rule, cases[c].spec, u, out, ref);
        double worst = 0;
        for (size_t j = 0; rc == 0 && j < MP; j++)
            worst = fmax(worst, fabs((double)out[j] - ref[j]) / fmax(fabs(ref[j]), 1e-30));
        CHECK(rc == 0 && worst <= 1.2e-7, "%s of 3 %s updates over 2 shards = the %s of the "
              "decoded updates (worst relative difference %.2g)", cases[c].rule,
              cases[c].spec, cases[c].rule, worst);
    }
    flc_store_close(s);
}

TEST(simulate_per_encoding)
{
    const char *specs[] = {"f32", "fp16", "bf16", "int8", "topk:0.1"};
    uint64_t bytes[5] = {0};
    static flc_sim_inproc_t threads = {.threads = 2};
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    for (int i = 0; i < 5; i++) {
        char job[32];
        snprintf(job, sizeof job, "se-%d", i);
        flc_sim_cfg_t c;
        flc_sim_cfg_init(&c);
        c.job = job;
        c.clients = 10;
        c.per_round = 3;
        c.rounds = 2;
        c.subset = 1000;
        c.test_subset = 300;
        c.num_shards = 2;
        c.encoding = specs[i];
        c.redis = fx.unix_url;
        c.invoke_user = &threads;
        flc_sim_result_t res = {0};
        flc_sim_clear(c.redis, NULL, job, &e);
        int rc = flc_sim_run(&c, NULL, NULL, &res, &e);
        int merged = rc == 0 && res.nrounds == 2 && res.rounds[0].merged &&
                     res.rounds[1].merged && res.rounds[1].participants == 3;
        CHECK(merged, "simulate --encoding %s: 2 rounds, 3 of 3 merged each (%s)", specs[i],
              rc ? e.msg : "ok");
        /* the update bytes clients wrote in round 2 */
        Flcache__RoundMeta *m = NULL;
        if (flc_store_get_round_meta(s, job, 2, &m) == 0) {
            for (size_t k = 0; k < m->n_notes; k++)
                if (strcmp(m->notes[k]->key, "encoding") == 0)
                    EXPECT(strcmp(m->notes[k]->value, specs[i]) == 0,
                           "round 2's notes say encoding %s", m->notes[k]->value);
            flcache__round_meta__free_unpacked(m, NULL);
        }
        bytes[i] = merged ? res.rounds[1].bytes : 0;
        /* queries on the encoded updates: norms of what a reader decodes */
        flc_query_req_t q = {.kind = FLC_Q_NORMS, .job = job, .round_from = 2, .round_to = 2,
                             .url = fx.unix_url};
        Flcache__QueryAnswer *a = NULL;
        rc = merged ? flc_query_run(s, &q, &a, &e) : -1;
        int good = rc == 0 && a->n_rows == 3;
        double worst = 0;
        for (size_t r = 0; good && r < a->n_rows; r++) {
            double ss = 0;
            for (uint32_t k = 0; k < 2; k++) {
                flc_shard_t sh = {0};
                good &= flc_store_get_update(s, job, 2, k, a->rows[r]->key, &sh, NULL, 0) == 0;
                for (uint64_t j = 0; good && j < sh.count; j++)
                    ss += (double)sh.values[j] * sh.values[j];
                flc_shard_release(&sh);
            }
            size_t col = 0;
            while (col < a->n_columns && strcmp(a->columns[col], "norm") != 0)
                col++;
            good &= col < a->rows[r]->n_values;
            if (good)
                worst = fmax(worst, fabs(a->rows[r]->values[col] - sqrt(ss)) / sqrt(ss));
        }
        CHECK(good && worst < 1e-5, "query norms on %s updates answer 3 clients, each the norm "
              "of its decoded update (worst relative difference %.1g)", specs[i], worst);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
        flc_sim_result_free(&res);
    }
    CHECK(bytes[1] < bytes[0] * 0.8 && bytes[3] < bytes[1] && bytes[4] < bytes[1],
          "bytes per round: f32 %llu, fp16 %llu, bf16 %llu, int8 %llu, topk:0.1 %llu",
          (unsigned long long)bytes[0], (unsigned long long)bytes[1],
          (unsigned long long)bytes[2], (unsigned long long)bytes[3],
          (unsigned long long)bytes[4]);
    flc_store_close(s);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(codec_bounds), TEST_ENTRY(frame_says_encoding),
                 TEST_ENTRY(error_feedback), TEST_ENTRY(merger_folds_encoded),
                 TEST_ENTRY(simulate_per_encoding))
