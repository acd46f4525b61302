/* `flcache export` and `--init` (issue 16 point 6): a small simulation on a
 * real redis-server, then the global model, a merged round and one client's
 * update exported as .npy and .safetensors by the flcache binary and read
 * back by NumPy under /usr/bin/python3 (the safetensors header parsed as
 * JSON there), compared value for value with what the store holds; then a
 * simulation started with --init from the exported model begins exactly at
 * it, and a file of the wrong length is refused naming both lengths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/store.h"
#include "clients/sim.h"
#include "ml/tensor_file.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static char g_bin[1024], g_dir[256];
static char g_out[65536];

static void sim_cfg(flc_sim_cfg_t *c, const char *job)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = 5;
    c->per_round = 5;
    c->rounds = 2;
    c->subset = 500;
    c->test_subset = 200;
    c->num_shards = 2;
    c->seed = 3;
    c->redis = fx.unix_url;
}

static int sim(flc_sim_cfg_t *c)
{
    flc_sim_result_t r = {0};
    flc_err_t e = {0};
    flc_sim_clear(c->redis, NULL, c->job, &e);
    int rc = flc_sim_run(c, NULL, NULL, &r, &e);
    if (rc != 0)
        printf("# simulate %s: %s\n", c->job, flc_err_msg(&e));
    flc_sim_result_free(&r);
    return rc;
}

/* Every shard of one stored value into a new vector of *n floats. */
static float *stored(flc_store_t *s, const char *job, uint32_t round, const char *client,
                     size_t *n)
{
    flc_shard_t sh = {0};
    int rc = client ? flc_store_get_update(s, job, round, 0, client, &sh, NULL, 0)
                    : flc_store_get_merged(s, job, round, 0, &sh, NULL, 0);
    if (rc != 0)
        flc_t_fatal("reading %s round %u: %s", job, round, flc_store_errstr(s));
    *n = (size_t)sh.model_size;
    float *v = calloc(*n, sizeof *v);
    uint32_t S = sh.num_shards;
    for (uint32_t k = 0; k < S; k++) {
        if (k > 0 && (client ? flc_store_get_update(s, job, round, k, client, &sh, NULL, 0)
                             : flc_store_get_merged(s, job, round, k, &sh, NULL, 0)) != 0)
            flc_t_fatal("reading shard %u: %s", k, flc_store_errstr(s));
        memcpy(v + sh.offset, sh.values, (size_t)sh.count * sizeof *v);
        flc_shard_release(&sh);
    }
    return v;
}

/* Runs `flcache export ARGS` against the fixture; the file is dir/name. */
static int export(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && FLCACHE_REDIS=%s %s export %s", g_dir, fx.unix_url,
             g_bin, args);
    return flc_t_run(cmd, g_out, sizeof g_out);
}

/* NumPy reads file (npy with np.load; safetensors: u64 header length, the
 * JSON header, np.frombuffer at data_offsets) and compares it with the raw
 * float32 file ref. Prints what python said; returns 1 when equal. */
static int numpy_equal(const char *file, const char *ref, const char *what)
{
    static const char *py =
        "import json,struct,sys\n"
        "import numpy as np\n"
        "f,ref,what=sys.argv[1],sys.argv[2],sys.argv[3]\n"
        "want=np.fromfile(ref,dtype='<f4')\n"
        "if f.endswith('.npy'):\n"
        "    got=np.load(f); meta={}\n"
        "else:\n"
        "    b=open(f,'rb').read(); hl=struct.unpack('<Q',b[:8])[0]\n"
        "    h=json.loads(b[8:8+hl]); t=h['params']; a,z=t['data_offsets']\n"
        "    assert t['dtype']=='F32' and t['shape']==[len(want)], t\n"
        "    got=np.frombuffer(b[8+hl+a:8+hl+z],dtype='<f4'); meta=h['__metadata__']\n"
        "    assert meta['what']==what, meta\n"
        "ok=got.dtype==np.float32 and got.shape==want.shape and np.array_equal(got,want)\n"
        "print('numpy: %s %s %d floats, max |diff| %g, equal %s, meta %s' % (f, got.dtype,"
        " got.size, float(np.max(np.abs(got-want))) if got.shape==want.shape else -1, ok,"
        " meta))\n"
        "sys.exit(0 if ok else 1)\n";
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/check.py", g_dir);
    FILE *fp = fopen(path, "w");
    fputs(py, fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "cd %s && /usr/bin/python3 check.py %s %s %s", g_dir, file, ref,
             what);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("# %s", g_out);
    return rc == 0;
}

static void write_raw(const char *name, const float *v, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "wb");
    fwrite(v, sizeof *v, n, fp);
    fclose(fp);
}

TEST(export_read_by_numpy)
{
    if (access("/usr/share/datasets/fashion-mnist", R_OK) != 0)
        flc_t_skip("no Fashion-MNIST under /usr/share/datasets/fashion-mnist");
    flc_sim_cfg_t c;
    sim_cfg(&c, "ex");
    CHECK(sim(&c) == 0, "simulated 2 rounds of job ex over 2 shards");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    Flcache__RoundMeta *m = NULL;
    CHECK(s && flc_store_get_round_meta(s, "ex", 2, &m) == 0 && m->n_participants > 0,
          "round 2 has participants");
    char client[80];
    snprintf(client, sizeof client, "%s", m->participants[0]);
    flcache__round_meta__free_unpacked(m, NULL);
    size_t ng, nm, nu;
    float *g = stored(s, "ex/g", 2, NULL, &ng), *mg = stored(s, "ex", 1, NULL, &nm);
    float *u = stored(s, "ex", 2, client, &nu);
    write_raw("g.raw", g, ng);
    write_raw("m.raw", mg, nm);
    write_raw("u.raw", u, nu);

    int rc = export("--job ex --format npy -o g.npy");
    EXPECT(rc == 0 && strstr(g_out, "round 2"), "export of the last global model (round 2) "
           "as npy: %s", g_out);
    EXPECT(numpy_equal("g.npy", "g.raw", "global"), "numpy's np.load reads the %zu floats of "
           "the global model after round 2", ng);
    rc = export("--job ex --round 2 --format safetensors -o g.safetensors");
    EXPECT(rc == 0 && numpy_equal("g.safetensors", "g.raw", "global"),
           "global model as safetensors, header parsed as JSON, data equal");
    rc = export("--job ex --round 1 --merged --format safetensors -o m.safetensors");
    EXPECT(rc == 0 && numpy_equal("m.safetensors", "m.raw", "merged"),
           "round 1's merged update as safetensors equals the stored aggregate");
    char args[256];
    snprintf(args, sizeof args, "--job ex --round 2 --client %s --format npy --out u.npy",
             client);
    rc = export(args);
    EXPECT(rc == 0 && numpy_equal("u.npy", "u.raw", "update"),
           "client %s's round-2 update as npy equals the stored update", client);
    rc = export("--job ex --round 9 --merged -o x.npy");
    EXPECT(rc == 1 && strstr(g_out, "no merged model in round 9"),
           "a round that does not exist: exit 1 naming it (%s)", g_out);
    rc = export("--job ex --client c1 -o x.npy");
    EXPECT(rc == 2 && strstr(g_out, "--client needs --round R"), "--client without --round is "
           "a usage error");
    rc = export("--job ex --format pt -o x.pt");
    EXPECT(rc == 2 && strstr(g_out, "format must be npy or safetensors, not 'pt'"),
           "--format pt refused naming it");

    /* --init: a new run starts exactly at the exported model. */
    char file[512];
    snprintf(file, sizeof file, "%s/g.safetensors", g_dir);
    flc_sim_cfg_t c2;
    sim_cfg(&c2, "ex-init");
    c2.rounds = 1;
    c2.seed = 99; /* another seed: its own init would differ */
    c2.init = file;
    CHECK(sim(&c2) == 0, "simulated job ex-init from --init g.safetensors");
    size_t n0;
    float *g0 = stored(s, "ex-init/g", 0, NULL, &n0);
    EXPECT(n0 == ng && memcmp(g0, g, ng * sizeof *g) == 0,
           "ex-init's round-0 model is the exported one, bit for bit (%zu floats)", n0);
    float *v = NULL;
    size_t n = 0;
    EXPECT(flc_tfile_read(file, &v, &n, &e) == 0 && n == ng, "flc_tfile_read reads it back");
    free(v);
    snprintf(file, sizeof file, "%s/short.npy", g_dir);
    flc_tfile_write(file, FLC_TFILE_NPY, g, 10, NULL, NULL, 0, &e);
    sim_cfg(&c2, "ex-bad");
    c2.init = file;
    flc_sim_result_t r = {0};
    rc = flc_sim_run(&c2, NULL, NULL, &r, &e);
    EXPECT(rc == FLC_EDIM && strstr(e.msg, "holds 10 floats"), "a 10-float --init file is "
           "refused: %s", e.msg);
    flc_sim_result_free(&r);
    free(g0), free(g), free(mg), free(u);
    flc_store_close(s);
}

static void setup(void)
{
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0)
        flc_t_fatal("%s is not built", g_bin);
    snprintf(g_dir, sizeof g_dir, "/tmp/flc-export-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_dir);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(export_read_by_numpy))
