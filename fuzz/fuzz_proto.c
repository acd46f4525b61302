/* libFuzzer target: every protobuf message flcache unpacks
 * (proto/flcache.proto through protobuf-c): the first input byte picks the
 * message, the rest is its wire bytes. Whatever unpacks must pack again into
 * bytes that unpack (protobuf-c is Debian's; this checks it on our schema and
 * under ASan, since the store and the cold tier feed it values others wrote). */
#include <stdint.h>
#include <stdlib.h>

#include "proto/flcache.pb-c.h"

static const ProtobufCMessageDescriptor *const descs[] = {
    &flcache__tensor_shard__descriptor, &flcache__model_update__descriptor,
    &flcache__round_meta__descriptor,   &flcache__query_request__descriptor,
    &flcache__query_row__descriptor,    &flcache__query_answer__descriptor,
};

/* Unknown fields in m and every message inside it (map entries included). */
static size_t unknown_fields(const ProtobufCMessage *m)
{
    size_t n = m->n_unknown_fields;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t cnt = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < cnt; k++)
                n += unknown_fields(arr[k]);
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
            if (sub != NULL)
                n += unknown_fields(sub);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = descs[data[0] % (sizeof descs / sizeof *descs)];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (m == NULL)
        return 0;
    if (!protobuf_c_message_check(m))
        abort(); /* unpacked messages must be complete */
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (protobuf_c_message_pack(m, buf) != n)
        abort();
    /* protobuf-c keeps unknown fields and writes them back in minimal
     * form; it accepts a tag of field number 0 spelled as a two-byte varint
     * (80 00) but refuses the one-byte form (00) it writes for it, so only
     * messages without unknown fields, at any depth, must survive the round
     * trip (flcache ignores unknown fields). */
    ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, n, buf);
    if (again == NULL && unknown_fields(m) == 0)
        abort();
    if (again != NULL)
        protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    free(buf);
    return 0;
}
