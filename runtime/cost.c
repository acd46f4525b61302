/* Lambda-style billing arithmetic (see cost.h). */
#include "runtime/cost.h"

#include <math.h>

uint64_t flc_cost_billed_ms(double duration_ms)
{
    if (!(duration_ms > 0.0)) /* also catches NaN */
        return 1;
    double c = ceil(duration_ms);
    return c < 1.0 ? 1 : (uint64_t)c;
}

double flc_cost_gb_s(unsigned memory_mb, uint64_t billed_ms)
{
    return ((double)memory_mb / 1024.0) * ((double)billed_ms / 1000.0);
}

double flc_cost_usd(unsigned memory_mb, uint64_t billed_ms, double price_per_gb_s,
                    double price_per_request)
{
    return flc_cost_gb_s(memory_mb, billed_ms) * price_per_gb_s + price_per_request;
}
