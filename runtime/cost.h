/* What an invocation costs: billed duration and GB-seconds at a memory size,
 * the way AWS Lambda bills (duration rounded up to 1 ms, times the configured
 * memory in GB, times a price per GB-second, plus an optional request fee). */
#ifndef FLC_RUNTIME_COST_H
#define FLC_RUNTIME_COST_H

#include <stdint.h>

/* AWS Lambda x86 price per GB-second (us-east-1, first pricing tier). */
#define FLC_LAMBDA_X86_PRICE_GB_S 0.0000166667
/* AWS Lambda price per request (0.20 USD per million); not charged by default. */
#define FLC_LAMBDA_PRICE_REQUEST 0.0000002

/* Billed milliseconds for a measured duration: rounded up to a whole
 * millisecond, at least 1 (a zero-length invocation is still billed). */
uint64_t flc_cost_billed_ms(double duration_ms);

/* GB-seconds of billed_ms at memory_mb (1 GB = 1024 MB, as Lambda counts). */
double flc_cost_gb_s(unsigned memory_mb, uint64_t billed_ms);

/* USD for one invocation: gb_s * price_per_gb_s + price_per_request. */
double flc_cost_usd(unsigned memory_mb, uint64_t billed_ms, double price_per_gb_s,
                    double price_per_request);

#endif
