/*
 * libFuzzer target for the OTLP exporter's reading of a collector's answer
 * (src/trace/otlp.c): the input is read once as a response header line
 * (Retry-After) and once as a 2xx body (partialSuccess) for a request of a
 * few spans. The delay must be -1 or a whole number of seconds within the
 * cap; the rejected count must lie in [0, nspans]. Nothing may crash, read
 * out of bounds, overflow or leak.
 */
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	/* an exact-size copy, so a read past len is caught by ASan */
	char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, p, size);
	int64_t ms = rein_otlp_retry_after(copy, size);
	if (ms != -1 && (ms < 0 || ms % 1000 != 0 || ms > REIN_OTLP_RETRY_AFTER_MAX_S * 1000LL))
		abort();
	long nspans = size % 17, rejected = -1;
	char *msg = NULL;
	if (rein_otlp_partial_parse(copy, size, nspans, &rejected, &msg) == REIN_OK) {
		if (rejected < 0 || rejected > nspans)
			abort();
		if (msg != NULL && *msg == '\0')
			abort();
	}
	rein_free(msg);
	free(copy);
	return 0;
}
