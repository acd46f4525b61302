/* Writes the fuzzers' seed corpus: values as flcache stores them, made by
 * the code that stores them (the shard encoder, protobuf-c packing of the
 * messages the store writes), plus URLs and events as users and drivers
 * write them. scripts/fuzz.sh runs it into build/fuzz/seeds/<target>/, so the
 * corpus follows the format when the format changes and nothing binary is
 * committed.
 *   usage: flc_fuzz_seeds DIR     (DIR/fuzz_shard_frame, DIR/fuzz_proto, ... one per target) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/shard_codec.h"
#include "proto/flcache.pb-c.h"

static const char *g_dir;

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void frame(const char *name, const char *job, uint32_t round, const char *client,
                  uint32_t shard, uint32_t nshards, uint64_t count, uint64_t model)
{
    flc_shard_t s = {.round = round, .shard = shard, .num_shards = nshards,
                     .offset = (uint64_t)shard * count, .count = count, .model_size = model,
                     .weight = 600, .num_samples = 600, .created_ms = 1764400000000ull,
                     .update_norm = 1.25};
    snprintf(s.job, sizeof s.job, "%s", job);
    snprintf(s.client, sizeof s.client, "%s", client);
    float *v = calloc(count ? count : 1, sizeof(float));
    for (uint64_t i = 0; i < count; i++)
        v[i] = (float)i * 0.125f - 1.0f;
    s.values = v;
    uint8_t *out;
    size_t len;
    flc_err_t err = {0};
    if (flc_shard_encode(&s, &out, &len, &err) != FLC_OK) {
        fprintf(stderr, "seed %s: %s\n", name, err.msg);
        exit(1);
    }
    put("fuzz_shard_frame", name, out, len);
    /* The header alone is a TensorShard message: a proto seed. */
    uint8_t *msg = malloc(len - FLC_FRAME_PREFIX + 1);
    msg[0] = 0; /* fuzz_proto's selector: TensorShard */
    uint32_t hl;
    memcpy(&hl, out + 4, 4);
    memcpy(msg + 1, out + FLC_FRAME_PREFIX, hl);
    char pname[128];
    snprintf(pname, sizeof pname, "tensor_shard_%s", name);
    put("fuzz_proto", pname, msg, hl + 1);
    free(msg);
    free(out);
    free(v);
}

static void packed(const char *name, uint8_t selector, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    b[0] = selector;
    protobuf_c_message_pack(m, b + 1);
    put("fuzz_proto", name, b, n + 1);
    free(b);
}

static void messages(void)
{
    Flcache__ModelUpdate__MetricsEntry acc = FLCACHE__MODEL_UPDATE__METRICS_ENTRY__INIT;
    acc.key = "accuracy";
    acc.value = 0.8125;
    Flcache__ModelUpdate__MetricsEntry *metrics[] = {&acc};
    Flcache__ModelUpdate__LabelsEntry fault = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
    fault.key = "fault";
    fault.value = "sign_flip";
    Flcache__ModelUpdate__LabelsEntry *labels[] = {&fault};
    Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
    u.job = "demo";
    u.round = 3;
    u.client = "c7";
    u.num_samples = 600;
    u.loss = 0.42;
    u.n_metrics = 1;
    u.metrics = metrics;
    u.local_steps = 19;
    u.local_epochs = 1;
    u.compute_ms = 12.5;
    u.comm_ms = 3.25;
    u.duration_ms = 16;
    u.update_norm = 1.25;
    u.status = "accepted";
    u.n_labels = 1;
    u.labels = labels;
    u.created_ms = 1764400000000ull;
    packed("model_update", 1, &u.base);
    u.status = "rejected";
    u.reason = "NaN at element 17";
    packed("model_update_rejected", 1, &u.base);

    char *expected[] = {"c1", "c2", "c3", "c7"}, *parts[] = {"c1", "c7"}, *missing[] = {"c2"},
         *rejected[] = {"c3"};
    Flcache__RoundMeta__HyperparamsEntry lr = FLCACHE__ROUND_META__HYPERPARAMS_ENTRY__INIT;
    lr.key = "lr";
    lr.value = 0.05;
    Flcache__RoundMeta__HyperparamsEntry *hp[] = {&lr};
    Flcache__RoundMeta__NotesEntry note = FLCACHE__ROUND_META__NOTES_ENTRY__INIT;
    note.key = "strategy";
    note.value = "krum";
    Flcache__RoundMeta__NotesEntry *notes[] = {&note};
    Flcache__RoundMeta r = FLCACHE__ROUND_META__INIT;
    r.job = "demo";
    r.round = 3;
    r.rule = "fedavg";
    r.num_shards = 4;
    r.model_size = 7850;
    r.n_expected = 4;
    r.expected = expected;
    r.n_participants = 2;
    r.participants = parts;
    r.n_missing = 1;
    r.missing = missing;
    r.n_rejected = 1;
    r.rejected = rejected;
    r.n_hyperparams = 1;
    r.hyperparams = hp;
    r.wait_ms = 40;
    r.merge_ms = 2;
    r.round_ms = 45;
    r.bytes_read = 125600;
    r.bytes_written = 31400;
    r.started_ms = 1764400000000ull;
    r.closed_ms = 1764400000045ull;
    r.status = "closed";
    r.n_notes = 1;
    r.notes = notes;
    packed("round_meta", 2, &r.base);

    Flcache__QueryRequest q = FLCACHE__QUERY_REQUEST__INIT;
    q.job = "demo";
    q.kind = "outliers";
    q.round_from = 1;
    q.round_to = 12;
    q.k = 3;
    packed("query_request", 3, &q.base);

    double vals[] = {1.5, 0.25};
    char *text[] = {"outlier"};
    Flcache__QueryRow row = FLCACHE__QUERY_ROW__INIT;
    row.key = "c7";
    row.n_values = 2;
    row.values = vals;
    row.n_text = 1;
    row.text = text;
    packed("query_row", 4, &row.base);
    Flcache__QueryRow *rows[] = {&row};
    char *cols[] = {"norm", "score", "flag"};
    Flcache__QueryAnswer a = FLCACHE__QUERY_ANSWER__INIT;
    a.job = "demo";
    a.kind = "outliers";
    a.n_columns = 3;
    a.columns = cols;
    a.num_numeric = 2;
    a.n_rows = 1;
    a.rows = rows;
    a.bytes_read = 31400;
    a.elapsed_ms = 4.5;
    packed("query_answer", 5, &a.base);
}

static void text(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    if (mkdir(g_dir, 0755) != 0 && errno != EEXIST) {
        perror(g_dir);
        return 1;
    }
    frame("client_update", "demo", 3, "c7", 1, 4, 16, 64);
    frame("merged", "demo", 3, "", 0, 1, 8, 8);
    frame("empty", "j", 1, "c0", 0, 1, 0, 0);
    messages();
    text("fuzz_url", "tcp", "redis://127.0.0.1:6379/0");
    text("fuzz_url", "tcp_auth", "redis://flc:s3cr%40t@cache.example.org:6380/2?cluster=yes");
    text("fuzz_url", "ipv6", "redis://:pw@[::1]:7000");
    text("fuzz_url", "unix", "unix:///tmp/flcache-up-0/redis.sock?db=3&user=u&password=p");
    text("fuzz_url", "unix_auth", "unix://u:p@/run/redis/redis.sock?cluster=no");
    text("fuzz_url", "tls", "rediss://:pw@cache.example.org:6380/0?cacert=/etc/flc/ca.pem");
    text("fuzz_url", "tls_full",
         "rediss://flc:s%40t@10.0.0.7:6379/1?cluster=yes&cacert=/tmp/ca%20dir/ca.pem"
         "&cert=/tmp/c.pem&key=/tmp/k.pem&sni=node-1.cache.example.org");
    text("fuzz_url", "tls_v6", "rediss://[::1]:7001?sni=localhost");
    text("fuzz_event", "client",
         "{\"role\":\"client\",\"job\":\"demo\",\"round\":3,\"client\":\"c7\","
         "\"indices\":[1,2,3],\"model\":\"softmax\",\"lr\":0.05,\"fault\":\"noise\"}");
    text("fuzz_event", "aggregator",
         "{\"role\":\"aggregator\",\"job\":\"demo\",\"round\":3,\"shard\":0,\"num_shards\":4,"
         "\"model_size\":7850,\"rule\":\"median\",\"expected\":[\"c1\",\"c2\"],"
         "\"deadline_ms\":5000}");
    text("fuzz_event", "query",
         "{\"role\":\"query\",\"kind\":\"clusters\",\"job\":\"demo\",\"round\":2,\"k\":2,"
         "\"redis\":\"unix:///tmp/r.sock\"}");
    text("fuzz_event", "worker",
         "{\"role\":\"worker\",\"job\":\"t\",\"rank\":0,\"workers\":2,\"epochs\":1,"
         "\"batch\":32,\"lr\":0.1,\"comm\":\"cache\"}");
    return 0;
}
