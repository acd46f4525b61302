/* libFuzzer target: the event reader (base/event.h), the first code that sees
 * an event a function receives from anyone who may invoke it. Parses the
 * input and reads fields of every kind the roles read, with the strict and
 * the soft getters; a parsed event must print and parse again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/event.h"

static const char *const names[] = {"role", "job", "round", "client", "indices",
                                    "model", "lr", "k", "expected", "crash"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flc_err_t e = {0};
    cJSON *ev = flc_ev_parse((const char *)data, size, &e);
    if (ev == NULL)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *n = names[i];
        long long iv;
        double dv;
        int bv;
        const char *sv;
        const cJSON *arr;
        flc_ev_has(ev, n);
        flc_ev_need_int(ev, n, 0, 4294967295LL, &iv, &e);
        flc_ev_opt_int(ev, n, -5, 5, 0, &iv, &e);
        flc_ev_need_num(ev, n, -1e9, 1e9, &dv, &e);
        flc_ev_opt_num(ev, n, 0, 1, 0.5, &dv, &e);
        flc_ev_need_str(ev, n, &sv, &e);
        flc_ev_opt_str(ev, n, "d", &sv, &e);
        flc_ev_need_bool(ev, n, &bv, &e);
        flc_ev_opt_bool(ev, n, 0, &bv, &e);
        if (flc_ev_need_array(ev, n, &arr, &e) == FLC_OK) {
            size_t k = 0;
            for (const cJSON *it = arr->child; it != NULL && k < 64; it = it->next, k++) {
                flc_ev_item_int(it, n, k, 0, 1000, &iv, &e);
                flc_ev_item_str(it, n, k, &sv, &e);
            }
        }
        flc_ev_str(ev, n, "");
        flc_ev_num(ev, n, 0);
        flc_ev_int(ev, n, 0);
        flc_ev_bool(ev, n, 0);
    }
    char *text = flc_ev_print(ev);
    if (text == NULL)
        abort();
    cJSON *again = flc_ev_parse(text, strlen(text), &e);
    if (again == NULL)
        abort(); /* what we print we must read */
    cJSON_Delete(again);
    free(text);
    cJSON_Delete(ev);
    return 0;
}
