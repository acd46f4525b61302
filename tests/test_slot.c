/* cache/slot and the pure parts of cache/cluster_map, without a server:
 * CRC16-XMODEM and key -> slot against the vectors checked with CLUSTER
 * KEYSLOT on redis 7.0.15 (docs/cluster.md), hash-tag edge cases, MOVED/ASK
 * parsing, error classification, CLUSTER SLOTS replies built by hand (the
 * shapes servers 3.0 to 7.x send), MOVED applied to a map, and the refresh
 * rate limit. */
#include <stdlib.h>
#include <string.h>

#include "cache/cluster_map.h"
#include "cache/slot.h"
#include "tests/harness.h"

TEST(crc16_table_from_polynomial)
{
    /* The slow, obvious CRC, bit by bit, from the parameters alone. */
    int same = 1;
    for (unsigned b = 0; b < 256 && same; b++) {
        uint16_t crc = (uint16_t)(b << 8);
        for (int k = 0; k < 8; k++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
        unsigned char byte = (unsigned char)b;
        same = flc_slot_crc16(&byte, 1) == crc;
    }
    EXPECT(same, "every one-byte CRC equals the bitwise CRC of poly 0x1021 (the whole table)");
    EXPECT(flc_slot_crc16("123456789", 9) == 0x31C3,
           "CRC16-XMODEM(\"123456789\") = 0x31C3 "
           "(got 0x%04X)",
           flc_slot_crc16("123456789", 9));
    EXPECT(flc_slot_crc16("", 0) == 0, "CRC of nothing is 0");
}

TEST(slot_vectors)
{
    static const struct {
        const char *key;
        unsigned slot;
    } v[] = {
        {"123456789", 12739},
        {"foo", 12182},
        {"bar", 5061},
        {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443},
        {"foo{}{bar}", 8363},
        {"foo{{bar}}zap", 4015},
        {"foo{bar}{zap}", 5061},
        {"{}foo", 9500},
        {"a{b", 13340},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned s = flc_slot_of(v[i].key, strlen(v[i].key));
        EXPECT(s == v[i].slot, "slot of \"%s\" is %u (got %u)", v[i].key, v[i].slot, s);
    }
}

TEST(hash_tag_edges)
{
    size_t n;
    const char *p = flc_slot_hash_part("fl:{job/3/1}:u:c7", 17, &n);
    EXPECT(n == 7 && memcmp(p, "job/3/1", 7) == 0, "fl:{job/3/1}:u:c7 hashes job/3/1");
    EXPECT(flc_slot_of("fl:{job/3/1}:agg", 16) == flc_slot_of("job/3/1", 7),
           "every key of one (job, round, shard) is in the slot of its tag");
    EXPECT(flc_slot_of("", 0) == 0, "the empty key is slot 0");
    flc_slot_hash_part("{", 1, &n);
    EXPECT(n == 1, "a lone '{' hashes the whole key");
    flc_slot_hash_part("}{", 2, &n);
    EXPECT(n == 2, "'}' before '{' is not a tag: the whole key");
    p = flc_slot_hash_part("x{}", 3, &n);
    EXPECT(n == 3, "a tag that ends the key empty ('x{}') is the whole key");
    p = flc_slot_hash_part("{a}", 3, &n);
    EXPECT(n == 1 && *p == 'a', "{a} hashes a");
    /* Binary keys: NUL is a byte; strlen would stop at it. */
    const char bin[] = {'k', '\0', '{', 'x', '\0', 'y', '}', 'z'};
    p = flc_slot_hash_part(bin, sizeof bin, &n);
    EXPECT(n == 3 && p == bin + 3, "a tag after a NUL is found, and holds a NUL (3 bytes)");
    EXPECT(flc_slot_of(bin, sizeof bin) == flc_slot_of("{x\0y}", 5),
           "a binary key's slot is that of its tag's bytes");
    EXPECT(flc_slot_of("k\0a", 3) != flc_slot_of("k", 1),
           "bytes after a NUL count (\"k\\0a\" is not \"k\")");
    unsigned max = 0;
    for (int i = 0; i < 5000; i++) {
        char k[16];
        int len = snprintf(k, sizeof k, "key:%d", i);
        unsigned s = flc_slot_of(k, (size_t)len);
        max = s > max ? s : max;
    }
    EXPECT(max < FLC_SLOT_COUNT && max > FLC_SLOT_COUNT - 100,
           "5000 keys land in 0..16383, reaching near the top (max %u)", max);
}

TEST(redirect_parsing)
{
    flc_cluster_redirect_t rd;
    flc_cluster_reply_t k;
    flc_err_t e = {0};
    const char *m = "MOVED 12182 127.0.0.1:47003";
    CHECK(flc_cluster_redirect_parse(m, strlen(m), &k, &rd, &e) == 0 && k == FLC_CLUSTER_R_MOVED &&
              rd.slot == 12182 && strcmp(rd.host, "127.0.0.1") == 0 && rd.port == 47003,
          "%s: slot 12182 to 127.0.0.1 port 47003", m);
    m = "ASK 5061 n47005.example:47005";
    CHECK(flc_cluster_redirect_parse(m, strlen(m), &k, &rd, &e) == 0 && k == FLC_CLUSTER_R_ASK &&
              rd.slot == 5061 && strcmp(rd.host, "n47005.example") == 0 && rd.port == 47005,
          "%s: a hostname", m);
    m = "MOVED 5061 :47005";
    CHECK(flc_cluster_redirect_parse(m, strlen(m), &k, &rd, &e) == 0 && rd.host[0] == '\0' &&
              rd.port == 47005,
          "%s: no endpoint, host empty (use the host asked)", m);
    m = "MOVED 0 ::1:6379";
    CHECK(flc_cluster_redirect_parse(m, strlen(m), &k, &rd, &e) == 0 && rd.slot == 0 &&
              strcmp(rd.host, "::1") == 0 && rd.port == 6379,
          "%s: IPv6 split at the last ':'", m);
    m = "ASK 16383 [fe80::1]:7000";
    CHECK(flc_cluster_redirect_parse(m, strlen(m), &k, &rd, &e) == 0 && rd.slot == 16383 &&
              strcmp(rd.host, "fe80::1") == 0 && rd.port == 7000,
          "%s: bracketed IPv6, brackets removed", m);
    static const char *bad[] = {"MOVED 16384 h:1",  "MOVED -1 h:1",  "MOVED 12 h",   "MOVED 12 h:0",
                                "MOVED 12 h:65536", "MOVED x h:1",   "MOVED 12",     "ASK",
                                "MOVE 1 h:1",       "MOVED 12 h:1x", "MOVED  12 h:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        flc_err_clear(&e);
        EXPECT(flc_cluster_redirect_parse(bad[i], strlen(bad[i]), &k, &rd, &e) == FLC_EPROTO &&
                   strstr(e.msg, bad[i]) != NULL,
               "'%s' is refused, naming it: %s", bad[i], e.msg);
    }
    /* A reply's length, not a NUL, ends the message. */
    m = "MOVED 7 h:1234trailing";
    CHECK(flc_cluster_redirect_parse(m, 14, &k, &rd, &e) == 0 && rd.port == 1234,
          "the length given bounds the parse (port 1234)");
}

TEST(error_classification)
{
    static const struct {
        const char *msg;
        flc_cluster_reply_t kind;
    } v[] = {
        {"MOVED 3999 127.0.0.1:6381", FLC_CLUSTER_R_MOVED},
        {"ASK 3999 127.0.0.1:6381", FLC_CLUSTER_R_ASK},
        {"TRYAGAIN Multiple keys request during rehashing of slot", FLC_CLUSTER_R_TRYAGAIN},
        {"CLUSTERDOWN The cluster is down", FLC_CLUSTER_R_CLUSTERDOWN},
        {"CLUSTERDOWN The cluster is down and only accepts read commands",
         FLC_CLUSTER_R_CLUSTERDOWN},
        {"CLUSTERDOWN Hash slot not served", FLC_CLUSTER_R_CLUSTERDOWN},
        {"CROSSSLOT Keys in request don't hash to the same slot", FLC_CLUSTER_R_CROSSSLOT},
        {"UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
         "replica?)",
         FLC_CLUSTER_R_UNBLOCKED},
        {"ERR This instance has cluster support disabled", FLC_CLUSTER_R_OTHER},
        {"WRONGTYPE Operation against a key holding the wrong kind of value", FLC_CLUSTER_R_OTHER},
        {"MOVEDX 1 h:1", FLC_CLUSTER_R_OTHER},
        {"MOVED garbage", FLC_CLUSTER_R_OTHER},
        {"ASKING", FLC_CLUSTER_R_OTHER},
        {"", FLC_CLUSTER_R_OTHER},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        flc_cluster_reply_t k = flc_cluster_classify_msg(v[i].msg, strlen(v[i].msg), NULL);
        EXPECT(k == v[i].kind, "'%.40s' is %s (got %s)", v[i].msg,
               flc_cluster_reply_name(v[i].kind), flc_cluster_reply_name(k));
    }
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "ASK 12 10.0.0.1:6379", .len = 20};
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "MOVED 1 h:1", .len = 11};
    flc_cluster_redirect_t rd = {0};
    EXPECT(flc_cluster_classify(&err, &rd) == FLC_CLUSTER_R_ASK && rd.slot == 12 &&
               strcmp(rd.host, "10.0.0.1") == 0 && rd.port == 6379,
           "an ASK error reply is classified and its target filled");
    EXPECT(flc_cluster_classify(&ok, NULL) == FLC_CLUSTER_R_OK,
           "a status reply is OK whatever it says");
    EXPECT(flc_cluster_classify(NULL, NULL) == FLC_CLUSTER_R_IOERR, "no reply is an I/O error");
}

/* ---- CLUSTER SLOTS replies built by hand --------------------------------- */

static redisReply *r_int(long long v)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *r_str(const char *s) /* NULL: NIL */
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = s ? REDIS_REPLY_STRING : REDIS_REPLY_NIL;
    if (s) {
        r->str = strdup(s);
        r->len = strlen(s);
    }
    return r;
}

static redisReply *r_arr(size_t n, redisReply **items)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    for (size_t i = 0; i < n; i++)
        r->element[i] = items[i];
    return r;
}

static void r_free(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->elements; i++)
        r_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* A node entry: [endpoint, port] plus id and metadata as given (n = 2..4). */
static redisReply *r_node(const char *ep, int port, const char *id, int n)
{
    redisReply *it[4] = {r_str(ep), r_int(port), r_str(id), r_arr(0, NULL)};
    for (int i = n; i < 4; i++)
        r_free(it[i]);
    return r_arr((size_t)n, it);
}

static redisReply *r_range(long long lo, long long hi, size_t nn, redisReply **nodes)
{
    redisReply *it[8] = {r_int(lo), r_int(hi)};
    for (size_t i = 0; i < nn; i++)
        it[2 + i] = nodes[i];
    return r_arr(2 + nn, it);
}

#define ID(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

TEST(slots_reply_parsing)
{
    /* Master A with two ranges (after a migration) and replica B; master C
     * with a NIL endpoint (= the host asked) and replica "" (same); a range
     * whose master is "?" (unreachable); a 3.0-style 2-element node. */
    redisReply *g[5];
    g[0] = r_range(0, 99, 2,
                   (redisReply *[]){r_node("10.0.0.1", 6379, ID("a"), 4),
                                    r_node("10.0.0.2", 6379, ID("b"), 4)});
    g[1] = r_range(200, 16283, 2,
                   (redisReply *[]){r_node(NULL, 7001, ID("c"), 4), r_node("", 7002, ID("d"), 3)});
    g[2] = r_range(100, 149, 2,
                   (redisReply *[]){r_node("10.0.0.1", 6379, ID("a"), 4),
                                    r_node("10.0.0.2", 6379, ID("b"), 4)});
    g[3] = r_range(150, 199, 1, (redisReply *[]){r_node("?", 7003, ID("e"), 4)});
    g[4] = r_range(16284, 16383, 1, (redisReply *[]){r_node("old.example", 6000, NULL, 2)});
    redisReply *r = r_arr(5, g);
    flc_cluster_map_t m;
    flc_cluster_map_init(&m);
    flc_err_t e = {0};
    CHECK(flc_cluster_map_parse(&m, r, "seed.example", &e) == 0, "the reply parses: %s", e.msg);
    EXPECT(m.nnodes == 5, "5 nodes: a, b, c, d, old (the '?' one skipped) (got %zu)", m.nnodes);
    int a = flc_cluster_map_find(&m, "10.0.0.1", 6379),
        b = flc_cluster_map_find(&m, "10.0.0.2", 6379);
    int c = flc_cluster_map_find(&m, "seed.example", 7001);
    int d = flc_cluster_map_find(&m, "seed.example", 7002);
    int o = flc_cluster_map_find(&m, "old.example", 6000);
    CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0 && o >= 0,
          "every node found by host:port; NIL and \"\" endpoints took the host asked");
    EXPECT(m.nodes[a].role == FLC_CLUSTER_MASTER && m.nodes[a].nslots == 150 &&
               m.nodes[a].nreplicas == 1 && m.nodes[a].id[0] == 'a' && strlen(m.nodes[a].id) == 40,
           "a: master of 150 slots in two ranges, one replica counted once, id kept");
    EXPECT(m.nodes[b].role == FLC_CLUSTER_REPLICA && m.nodes[b].master == a, "b: replica of a");
    EXPECT(m.nodes[d].role == FLC_CLUSTER_REPLICA && m.nodes[d].master == c &&
               m.nodes[d].id[0] == 'd',
           "d (3-element entry, no metadata): replica of c");
    EXPECT(m.nodes[o].role == FLC_CLUSTER_MASTER && m.nodes[o].id[0] == '\0' &&
               m.nodes[o].nslots == 100,
           "old (2-element entry, no id): master of 100 slots");
    EXPECT(flc_cluster_map_owner(&m, 0) == (unsigned)a &&
               flc_cluster_map_owner(&m, 149) == (unsigned)a &&
               flc_cluster_map_owner(&m, 200) == (unsigned)c &&
               flc_cluster_map_owner(&m, 16383) == (unsigned)o,
           "range edges map to their masters");
    EXPECT(flc_cluster_map_owner(&m, 150) == FLC_CLUSTER_NO_NODE &&
               flc_cluster_map_owner(&m, 199) == FLC_CLUSTER_NO_NODE,
           "the '?' master's slots 150-199 stay unowned");
    EXPECT(flc_cluster_map_covered(&m) == FLC_SLOT_COUNT - 50, "16334 slots covered (got %u)",
           flc_cluster_map_covered(&m));
    EXPECT(flc_cluster_map_lookup(&m, "foo", 3) == (unsigned)c, "foo (slot 12182) is on c");

    /* A second reply without b: indexes stay, b is gone, a keeps its slots. */
    uint64_t v0 = m.version;
    redisReply *g2[1] = {
        r_range(0, 16383, 1, (redisReply *[]){r_node("10.0.0.1", 6379, ID("a"), 4)})};
    redisReply *r2 = r_arr(1, g2);
    CHECK(flc_cluster_map_parse(&m, r2, "seed.example", &e) == 0, "a second reply parses");
    EXPECT(m.nnodes == 5 && flc_cluster_map_find(&m, "10.0.0.1", 6379) == a &&
               m.nodes[b].role == FLC_CLUSTER_GONE && m.nodes[a].nslots == FLC_SLOT_COUNT &&
               m.nodes[a].nreplicas == 0 && m.version > v0,
           "node indexes are stable across a refresh; unlisted nodes are gone");
    r_free(r2);

    /* Bad replies leave the map as it was. */
    redisReply *empty = r_arr(0, NULL);
    EXPECT(flc_cluster_map_parse(&m, empty, "h", &e) == FLC_ENOTFOUND,
           "no ranges (a node without slots) is ENOTFOUND: %s", e.msg);
    redisReply *g3[1] = {r_range(10, 5, 1, (redisReply *[]){r_node("x", 1, NULL, 2)})};
    redisReply *r3 = r_arr(1, g3);
    EXPECT(flc_cluster_map_parse(&m, r3, "h", &e) == FLC_EPROTO && strstr(e.msg, "range 0"),
           "a range 10-5 is EPROTO naming the range: %s", e.msg);
    redisReply *g4[1] = {r_range(0, 1, 1, (redisReply *[]){r_node(NULL, 1, NULL, 2)})};
    redisReply *r4 = r_arr(1, g4);
    EXPECT(flc_cluster_map_parse(&m, r4, NULL, &e) == FLC_EPROTO,
           "a NIL endpoint with no host asked is EPROTO: %s", e.msg);
    redisReply errr = {.type = REDIS_REPLY_ERROR,
                       .str = "ERR This instance has cluster support disabled",
                       .len = 46};
    EXPECT(flc_cluster_map_parse(&m, &errr, "h", &e) == FLC_EINVAL,
           "'cluster support disabled' is EINVAL: %s", e.msg);
    EXPECT(m.nodes[a].nslots == FLC_SLOT_COUNT && flc_cluster_map_covered(&m) == FLC_SLOT_COUNT,
           "after the bad replies the map is unchanged");
    r_free(empty);
    r_free(r3);
    r_free(r4);
    r_free(r);
    flc_cluster_map_free(&m);
}

TEST(moved_patches_one_slot)
{
    flc_cluster_map_t m;
    flc_cluster_map_init(&m);
    redisReply *g[1] = {
        r_range(0, 16383, 1, (redisReply *[]){r_node("10.0.0.1", 6379, ID("a"), 4)})};
    redisReply *r = r_arr(1, g);
    flc_err_t e = {0};
    CHECK(flc_cluster_map_parse(&m, r, "10.0.0.1", &e) == 0, "one master owns everything");
    r_free(r);
    flc_cluster_redirect_t rd;
    const char *msg = "MOVED 12182 10.0.0.9:6380";
    CHECK(flc_cluster_classify_msg(msg, strlen(msg), &rd) == FLC_CLUSTER_R_MOVED, "%s", msg);
    int i = flc_cluster_map_apply_moved(&m, &rd, "10.0.0.1", &e);
    CHECK(i == 1, "the MOVED target is a new node, index 1 (got %d)", i);
    EXPECT(flc_cluster_map_lookup(&m, "foo", 3) == 1u && flc_cluster_map_owner(&m, 12181) == 0u &&
               flc_cluster_map_owner(&m, 12183) == 0u,
           "slot 12182 (foo) moved alone; its neighbours stay");
    EXPECT(m.refresh_pending && m.nodes[1].role == FLC_CLUSTER_MASTER && m.nodes[1].nslots == 1 &&
               m.nodes[0].nslots == FLC_SLOT_COUNT - 1,
           "a full refresh is pending; slot counts follow");
    msg = "ASK 5 :6380";
    CHECK(flc_cluster_classify_msg(msg, strlen(msg), &rd) == FLC_CLUSTER_R_ASK, "%s", msg);
    uint64_t v = m.version;
    i = flc_cluster_map_node_for(&m, &rd, "10.0.0.9", &e);
    EXPECT(i == 1 && flc_cluster_map_owner(&m, 5) == 0u && m.version == v,
           "an ASK with no host names the node asked (10.0.0.9:6380), and changes no slot");
    EXPECT(flc_cluster_map_node_for(&m, &rd, NULL, &e) == FLC_EINVAL,
           "an empty host with no host asked is refused: %s", e.msg);
    flc_cluster_map_free(&m);
}

TEST(refresh_rate_limit)
{
    flc_cluster_map_t m;
    flc_cluster_map_init(&m);
    EXPECT(flc_cluster_map_refresh_due(&m, 5, 0), "a map never fetched is due");
    m.fetched_ms = 10000;
    EXPECT(!flc_cluster_map_refresh_due(&m, 10999, 0), "999 ms after a fetch: not due");
    EXPECT(flc_cluster_map_refresh_due(&m, 10999, 1), "... unless forced");
    EXPECT(flc_cluster_map_refresh_due(&m, 11000, 0), "1000 ms after: due");
    m.refresh_min_ms = 50;
    EXPECT(flc_cluster_map_refresh_due(&m, 10050, 0) && !flc_cluster_map_refresh_due(&m, 10049, 0),
           "refresh_min_ms sets the window (50 ms)");
    flc_cluster_map_free(&m);
}

TEST_LIST(TEST_ENTRY(crc16_table_from_polynomial), TEST_ENTRY(slot_vectors),
          TEST_ENTRY(hash_tag_edges), TEST_ENTRY(redirect_parsing),
          TEST_ENTRY(error_classification), TEST_ENTRY(slots_reply_parsing),
          TEST_ENTRY(moved_patches_one_slot), TEST_ENTRY(refresh_rate_limit))
