/* OpenBLAS's thread count while query workers run (blas_workers.h). */
#include "aggregator/blas_workers.h"

#include <pthread.h>

#include <cblas.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_pools, g_saved;

void flc_blas_workers_begin(int workers)
{
    if (workers < 1)
        return;
    pthread_mutex_lock(&g_lock);
    if (g_pools++ == 0) {
        g_saved = openblas_get_num_threads();
        if (g_saved > 1)
            openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&g_lock);
}

void flc_blas_workers_end(int workers)
{
    if (workers < 1)
        return;
    pthread_mutex_lock(&g_lock);
    if (--g_pools == 0 && g_saved > 1)
        openblas_set_num_threads(g_saved);
    pthread_mutex_unlock(&g_lock);
}
