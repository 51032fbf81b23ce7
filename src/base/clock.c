/* The system and manual clocks, the deterministic PRNG, time formatting, ids. */
#include "base.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static int64_t system_now(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const rein_clock rein_clock_system = {system_now, NULL};

static int64_t manual_now(void *ctx) { return ((rein_manual_clock *)ctx)->now; }

void rein_manual_clock_init(rein_manual_clock *m, int64_t start_ms)
{
	m->clock.now_ms = manual_now;
	m->clock.ctx = m;
	m->now = start_ms;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void rein_rng_seed(rein_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rein_rng_next(rein_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t rein_rng_below(rein_rng *r, uint64_t n) { return n ? rein_rng_next(r) % n : 0; }

void rein_time_format(int64_t ms, char out[32])
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
		 (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, (int)(((ms % 1000) + 1000) % 1000));
	memcpy(out, tmp, 31);
	out[31] = '\0';
}

int rein_random_id(const char *prefix, char *out, size_t outlen)
{
	/* 10 chars of milliseconds then 16 random ones (like a ULID): ids sort by
	 * creation time, so the store appends to its indexes instead of writing
	 * at random pages. */
	static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
	uint8_t raw[16];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return REIN_EIO;
	int n = snprintf(out, outlen, "%s", prefix);
	if (n < 0 || (size_t)n + 27 > outlen)
		return REIN_EINVAL;
	uint64_t ms = (uint64_t)rein_clock_now(&rein_clock_system);
	for (int i = 9; i >= 0; i--) {
		out[n + i] = alphabet[ms & 31];
		ms >>= 5;
	}
	for (size_t i = 0; i < 16; i++)
		out[n + 10 + (int)i] = alphabet[raw[i] & 31];
	out[n + 26] = '\0';
	return REIN_OK;
}
