/* ps_client.c - the worker side of the parameter-server exchange (see
 * ps.h): the hello with the initial model, then one push and one model per
 * step. */
#include <string.h>
#include <unistd.h>

#include "workers/ps_internal.h"

int flc_ps_connect(const char *addr, int rank, int workers, const float *w, size_t nparams,
                   float lr, unsigned timeout_ms, flc_err_t *e)
{
    int fd = flc_ps_connect_raw(addr, timeout_ms, e);
    if (fd < 0)
        return fd;
    flc_ps_hello_t h;
    memset(&h, 0, sizeof h);
    h.tag = FLC_PS_HELLO;
    h.rank = (uint32_t)rank;
    h.workers = (uint32_t)workers;
    h.nparams = nparams;
    h.lr = lr;
    int rc = flc_ps_write_all(fd, &h, sizeof h, timeout_ms);
    if (rc == FLC_OK)
        rc = flc_ps_write_all(fd, w, nparams * sizeof(float), timeout_ms);
    if (rc != FLC_OK) {
        close(fd);
        return flc_err_set(e, rc, "parameter server at %s: cannot send the hello of worker %d",
                           addr, rank);
    }
    return fd;
}

int flc_ps_step(int fd, uint32_t g, const float *grad, size_t nparams, float *w, float *loss,
                unsigned timeout_ms, flc_err_t *e)
{
    flc_ps_head_t h = {FLC_PS_PUSH, g};
    int rc = flc_ps_write_all(fd, &h, sizeof h, timeout_ms);
    if (rc == FLC_OK)
        rc = flc_ps_write_all(fd, grad, (nparams + 1) * sizeof(float), timeout_ms);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "step %u: cannot push to the parameter server", g);
    if ((rc = flc_ps_read_all(fd, &h, sizeof h, timeout_ms, NULL)) == FLC_OK &&
        (h.tag != FLC_PS_MODEL || h.step != g))
        return flc_err_set(e, FLC_EPROTO, "step %u: the parameter server answered tag %08x "
                           "for step %u", g, h.tag, h.step);
    if (rc == FLC_OK)
        rc = flc_ps_read_all(fd, w, nparams * sizeof(float), timeout_ms, NULL);
    if (rc == FLC_OK)
        rc = flc_ps_read_all(fd, loss, sizeof(float), timeout_ms, NULL);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "step %u: %s", g,
                           rc == FLC_ETIMEOUT ? "no model from the parameter server in time"
                                              : "the parameter server is gone (it names "
                                                "why on the driver's stderr)");
    return FLC_OK;
}
