/* The helpers of the store/policy interface (cold_policy.h): query class
 * names and the Redis key of a spillable object. */
#include "cache/cold_policy.h"

static const char *qc_names[FLC_QC_COUNT] = {"other", "round", "client", "aggregate"};

const char *flc_qclass_name(int qc)
{
    return qc >= 0 && qc < FLC_QC_COUNT ? qc_names[qc] : "?";
}

void flc_obj_key(const flc_obj_t *o, char out[FLC_KEY_MAX])
{
    char tag[FLC_TAG_MAX];
    flc_key_shard_tag(tag, o->job, o->shard, o->num_shards);
    if (o->kind == FLC_OBJ_MERGED)
        flc_key_shard(out, tag, o->round, "agg");
    else
        flc_key_update(out, tag, o->round, o->client);
}
