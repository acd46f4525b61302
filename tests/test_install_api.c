/* test_install_api.c - the public header include/flcache/flcache.h says
 * what the library is.
 *
 * The public header declares the library's types and functions again, so
 * that a user needs no internal header. This file keeps the copy true. It
 * is compiled twice (tests/CMakeLists.txt):
 *   - as the test: the internal headers, then the public one. Its type
 *     blocks are skipped (guarded by the internal headers' guards) and its
 *     prototypes stay, so the compiler rejects any public prototype that
 *     differs from the library's ("conflicting types"): a build failure;
 *   - with FLC_T_PUBLIC_SIDE, the public header alone, which yields the same
 *     table of sizes, field offsets and field sizes, and enum values, as the
 *     test side builds from the internal headers. The case compares them.
 * The exported symbols of libflcache.so are compared with the header by
 * test_install.sh (install_c_client). */
#include <stddef.h>
#include <string.h>

#ifndef FLC_T_PUBLIC_SIDE
#include "aggregator/merge.h"
#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/error.h"
#include "cache/store.h"
#endif
#include "flcache/flcache.h"

typedef struct flc_t_layout {
    const char *what;
    size_t value;
} flc_t_layout_t;

#define SZ(T) {"sizeof " #T, sizeof(T)},
#define FLD(T, f) {#T "." #f " offset", offsetof(T, f)}, {#T "." #f " size", sizeof(((T *)0)->f)},
#define VAL(v) {#v, (size_t)(v)},

/* Every public struct with every field, and the enums' last values. */
#define LAYOUT                                                                                  \
    SZ(flc_err_t) FLD(flc_err_t, code) FLD(flc_err_t, msg) VAL(FLC_ECHECKSUM)                   \
    VAL(FLC_ECLOSED) VAL(FLC_ERRMSG_LEN)                                                        \
    SZ(flc_store_opts_t) FLD(flc_store_opts_t, chunk_bytes) FLD(flc_store_opts_t, max_msg_bytes) \
    FLD(flc_store_opts_t, connect_timeout_ms) FLD(flc_store_opts_t, io_timeout_ms)              \
    FLD(flc_store_opts_t, ttl_ms) FLD(flc_store_opts_t, cold_url)                               \
    FLD(flc_store_opts_t, cold_opts) FLD(flc_store_opts_t, local_node)                          \
    FLD(flc_store_opts_t, local_sock) FLD(flc_store_opts_t, wait_replicas)                      \
    FLD(flc_store_opts_t, wait_timeout_ms)                                                      \
    SZ(flc_strlist_t) FLD(flc_strlist_t, items) FLD(flc_strlist_t, n)                           \
    SZ(flc_place_t) FLD(flc_place_t, enter) FLD(flc_place_t, user)                              \
    SZ(flc_merge_kind_t) VAL(FLC_MERGE_KRUM) VAL(FLC_MERGE_NKINDS)                              \
    SZ(flc_merge_rule_t) FLD(flc_merge_rule_t, kind) FLD(flc_merge_rule_t, server_lr)           \
    FLD(flc_merge_rule_t, momentum) FLD(flc_merge_rule_t, beta1) FLD(flc_merge_rule_t, beta2)   \
    FLD(flc_merge_rule_t, tau) FLD(flc_merge_rule_t, clip) FLD(flc_merge_rule_t, trim)          \
    FLD(flc_merge_rule_t, f) FLD(flc_merge_rule_t, m) FLD(flc_merge_rule_t, weighted) FLD(flc_merge_rule_t, noise)           \
    SZ(flc_merge_batch_t) FLD(flc_merge_batch_t, u) FLD(flc_merge_batch_t, k)                   \
    FLD(flc_merge_batch_t, n) FLD(flc_merge_batch_t, len) FLD(flc_merge_batch_t, weight)        \
    FLD(flc_merge_batch_t, norm) FLD(flc_merge_batch_t, scale)                                  \
    SZ(flc_merge_info_t) FLD(flc_merge_info_t, used) FLD(flc_merge_info_t, clipped)             \
    SZ(flc_rs_push_cfg_t) FLD(flc_rs_push_cfg_t, job) FLD(flc_rs_push_cfg_t, round)             \
    FLD(flc_rs_push_cfg_t, client) FLD(flc_rs_push_cfg_t, num_shards)                           \
    FLD(flc_rs_push_cfg_t, model_size) FLD(flc_rs_push_cfg_t, num_samples)                      \
    SZ(flc_rs_merger_cfg_t) FLD(flc_rs_merger_cfg_t, job) FLD(flc_rs_merger_cfg_t, round)       \
    FLD(flc_rs_merger_cfg_t, shard) FLD(flc_rs_merger_cfg_t, num_shards)                        \
    FLD(flc_rs_merger_cfg_t, model_size) FLD(flc_rs_merger_cfg_t, rule)                         \
    FLD(flc_rs_merger_cfg_t, expected) FLD(flc_rs_merger_cfg_t, n_expected)                     \
    FLD(flc_rs_merger_cfg_t, deadline_ms) FLD(flc_rs_merger_cfg_t, readers)                     \
    FLD(flc_rs_merger_cfg_t, state) FLD(flc_rs_merger_cfg_t, ephemeral)                         \
    FLD(flc_rs_merger_cfg_t, derive_stats) FLD(flc_rs_merger_cfg_t, window_bytes)              \
    VAL(FLC_RS_WINDOW_WHOLE)                                                                    \
    SZ(flc_rs_report_t) FLD(flc_rs_report_t, shard) FLD(flc_rs_report_t, participants)          \
    FLD(flc_rs_report_t, missing) FLD(flc_rs_report_t, rejected)                                \
    FLD(flc_rs_report_t, duplicates) FLD(flc_rs_report_t, clipped)                              \
    FLD(flc_rs_report_t, bytes_read) FLD(flc_rs_report_t, wait_ms)                              \
    FLD(flc_rs_report_t, merge_ms)                                                              \
    SZ(flc_query_kind_t) VAL(FLC_Q_SCHEDULE) VAL(FLC_Q_NKINDS)                                  \
    SZ(flc_query_req_t) FLD(flc_query_req_t, kind) FLD(flc_query_req_t, job)                    \
    FLD(flc_query_req_t, round_from) FLD(flc_query_req_t, round_to)                             \
    FLD(flc_query_req_t, all_rounds) FLD(flc_query_req_t, client) FLD(flc_query_req_t, k)       \
    FLD(flc_query_req_t, cluster) FLD(flc_query_req_t, model_out)                               \
    FLD(flc_query_req_t, model_len) FLD(flc_query_req_t, seed) FLD(flc_query_req_t, url)        \
    FLD(flc_query_req_t, store_opts) FLD(flc_query_req_t, threads)                              \
    FLD(flc_query_req_t, no_cache) FLD(flc_query_req_t, place)                                 \
    FLD(flc_query_req_t, mem_budget)

#ifdef FLC_T_PUBLIC_SIDE

/* The table as the public header alone lays it out. */
const flc_t_layout_t *flc_t_public_layout(size_t *n);
const flc_t_layout_t *flc_t_public_layout(size_t *n)
{
    static const flc_t_layout_t table[] = {LAYOUT};
    *n = sizeof table / sizeof table[0];
    return table;
}

#else

#include "tests/harness.h"

const flc_t_layout_t *flc_t_public_layout(size_t *n);

/* Every size, offset and value of the public header equals the library's. */
TEST(layouts_match)
{
    static const flc_t_layout_t lib[] = {LAYOUT};
    size_t n = 0;
    const flc_t_layout_t *pub = flc_t_public_layout(&n);
    CHECK(n == sizeof lib / sizeof lib[0], "both sides list %zu entries (public: %zu)",
          sizeof lib / sizeof lib[0], n);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(pub[i].what, lib[i].what) == 0 && pub[i].value == lib[i].value)
            same++;
        else
            EXPECT(0, "%s: public header %zu, library %zu", lib[i].what, pub[i].value,
                   lib[i].value);
    }
    CHECK(same == n, "%zu of %zu sizes, offsets and values equal (flc_err_t is %zu bytes, "
          "flc_query_req_t %zu)", same, n, sizeof(flc_err_t), sizeof(flc_query_req_t));
}

/* The prototypes were compared by the compiler; this case says so, and
 * calls through the public declarations to show they reach the library. */
TEST(prototypes_match)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    CHECK(flc_merge_rule_parse(&r, "trimmed-mean:trim=0.2", &e) == FLC_OK,
          "every public prototype compiled beside the internal one; a rule parses: %s",
          flc_err_msg(&e));
    EXPECT(r.kind == FLC_MERGE_TRIMMED_MEAN && r.trim == 0.2, "kind %s, trim %g",
           flc_merge_kind_name(r.kind), r.trim);
    flc_query_kind_t k = FLC_Q_NKINDS;
    int rc = flc_query_kind_parse("outliers", &k);
    EXPECT(rc == FLC_OK && k == FLC_Q_OUTLIERS, "query kind 'outliers' is %s",
           flc_query_kind_name(k));
}

TEST_LIST(TEST_ENTRY(layouts_match), TEST_ENTRY(prototypes_match))

#endif
