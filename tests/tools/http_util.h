/*
 * Small HTTP helpers shared by the loopback test servers (toolserver.c,
 * modelserver.c): status texts, %-decoding, chunked bodies. Header-only:
 * each server is one program built from one .c file.
 */
#ifndef REIN_TEST_HTTP_UTIL_H
#define REIN_TEST_HTTP_UTIL_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 529: return "Overloaded";
	}
	return "Status";
}

static inline void url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = {p[1], p[2], 0};
			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* Decodes a chunked body in place at p[0..n): returns the bytes the encoded
 * form used, 0 if incomplete, -1 if malformed (or over MAX_BODY, which the
 * including server defines); the decoded size in *out. */
static inline long dechunk(char *p, size_t n, size_t *out, bool apply)
{
	size_t i = 0, o = 0;
	for (;;) {
		char *eol = memmem(p + i, n - i, "\r\n", 2);
		if (eol == NULL)
			return 0;
		char *end;
		unsigned long sz = strtoul(p + i, &end, 16);
		if (end == p + i)
			return -1;
		i = (size_t)(eol - p) + 2;
		if (sz == 0) {
			/* optional trailers, then an empty line */
			for (;;) {
				char *e2 = memmem(p + i, n - i, "\r\n", 2);
				if (e2 == NULL)
					return 0;
				size_t linelen = (size_t)(e2 - (p + i));
				i += linelen + 2;
				if (linelen == 0) {
					*out = o;
					return (long)i;
				}
			}
		}
		if (sz > MAX_BODY || n - i < sz + 2)
			return sz > MAX_BODY ? -1 : 0;
		if (apply)
			memmove(p + o, p + i, sz);
		o += sz;
		i += sz + 2;
	}
}

#endif
