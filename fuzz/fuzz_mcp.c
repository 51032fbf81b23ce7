/*
 * libFuzzer target for the MCP client's parsers: the input is a stream that
 * is framed as newline-delimited JSON-RPC (stdio) or as Server-Sent Events
 * (streamable HTTP), fed whole and again in chunks whose sizes come from the
 * input; every unit is parsed and classified as JSON-RPC and tools/call
 * results are read. The two feeds must yield the same units. Must neither
 * crash nor leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mcp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
	rein_buf units; /* every unit, length-prefixed, for comparing feeds */
	size_t n;
} sink;

static int on_msg(void *ud, const mcp_msg *msg)
{
	size_t *count = ud;
	(*count)++;
	if (msg->kind == MCP_MSG_RESULT) {
		rein_mcp_result res = {0};
		if (mcp_tool_result(msg->result, &res) && res.is_error &&
		    res.status != REIN_MCP_TOOL_ERROR)
			__builtin_trap();
	}
	if (msg->kind == MCP_MSG_ERROR && msg->err_message == NULL)
		__builtin_trap();
	if ((msg->kind == MCP_MSG_REQUEST || msg->kind == MCP_MSG_NOTIFICATION) &&
	    msg->method == NULL)
		__builtin_trap();
	if (msg->kind == MCP_MSG_INVALID && msg->why == NULL)
		__builtin_trap();
	return 0;
}

static int on_unit(void *ud, const char *p, size_t n)
{
	sink *s = ud;
	s->n++;
	rein_buf_printf(&s->units, "%zu:", n);
	rein_buf_append(&s->units, p, n);
	size_t count = 0;
	rein_err err = {0};
	int rc = mcp_msg_parse(p, n, on_msg, &count, &err);
	if (rc == REIN_EINVAL && err.msg[0] == '\0')
		__builtin_trap();
	return 0;
}

static void feed(int mode, const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts,
		 sink *s)
{
	mcp_lines lines = {.max = 4096};
	mcp_sse sse = {.max = 4096};
	size_t off = 0, k = 0;
	int rc = 0;
	while (off < size && rc == 0) {
		size_t take = size - off;
		if (ncuts) {
			take = (size_t)cuts[k++ % ncuts] % 17 + 1;
			if (take > size - off)
				take = size - off;
		}
		const char *p = (const char *)data + off;
		rc = mode ? mcp_sse_feed(&sse, p, take, on_unit, s)
			  : mcp_lines_feed(&lines, p, take, on_unit, s);
		off += take;
	}
	if (mode && rc == 0)
		mcp_sse_finish(&sse, on_unit, s);
	rein_buf_printf(&s->units, "rc=%d", rc == 0 ? 0 : 1);
	mcp_lines_free(&lines);
	mcp_sse_free(&sse);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rein_init();
	if (size < 2)
		return 0;
	int mode = data[0] & 1;
	size_t ncuts = data[1] % 8;
	if (size < 2 + ncuts)
		return 0;
	const uint8_t *cuts = data + 2;
	data += 2 + ncuts;
	size -= 2 + ncuts;

	sink whole = {0}, chunked = {0};
	feed(mode, data, size, NULL, 0, &whole);
	feed(mode, data, size, cuts, ncuts, &chunked);
	/* the line limit may trip at a different unit in a chunked feed only
	 * when the input exceeds it; otherwise framing is chunk-independent */
	if (size < 4096 && (whole.units.len != chunked.units.len ||
			    (whole.units.len && memcmp(whole.units.p, chunked.units.p,
						       whole.units.len) != 0)))
		__builtin_trap();
	rein_buf_free(&whole.units);
	rein_buf_free(&chunked.units);
	return 0;
}
