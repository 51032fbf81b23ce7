#!/usr/bin/env node
// A loopback OTLP/HTTP collector for the tests (tests/cli/trace_export.sh).
// POST /v1/traces: every request is decoded against the official message
// definitions (opentelemetry-proto v1.11.0, loaded with protobufjs) under the
// OTLP/JSON rules of its docs/specification.md, strictly, since it tests a
// sender: Content-Type application/json; keys lowerCamelCase field names
// (unknown or snake_case keys refused); enums as integers; 64-bit integers as
// decimal strings; trace and span ids as hex of 16 and 8 bytes; then
// ExportTraceServiceRequest.fromObject and verify. Each span's parent must be
// a span of the same request. A span seen again with the same content is a
// duplicate; with other content under the same ids a conflict.
//
//   node collector.js --port-file FILE [--proto DIR] [--fail N] [--reject N]
//                     [--max-seconds S]
//   --fail N     answer the first N requests 503 with Retry-After: 1
//   --reject N   answer a partialSuccess rejecting N spans (once)
// GET /control/stats: {requests, accepted, invalid, spans, unique,
//   duplicates, conflicts, errors}; GET /control/spans: the unique spans.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const protobuf = require('protobufjs');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
	const i = args.indexOf(name);
	return i >= 0 ? args[i + 1] : dflt;
};
const PROTO = opt('--proto', path.join(__dirname, '../conformance/opentelemetry-proto'));
let failLeft = parseInt(opt('--fail', '0'), 10);
let rejectOnce = parseInt(opt('--reject', '0'), 10);
const portFile = opt('--port-file', null);
const maxSeconds = parseInt(opt('--max-seconds', '300'), 10);

const root = new protobuf.Root();
root.resolvePath = (origin, target) => path.join(PROTO, target);
root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
root.resolveAll();
const Req = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

const INT64 = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const HEX_IDS = {traceId: 16, spanId: 8, parentSpanId: 8};

// Checks obj against message type t under the OTLP/JSON rules and returns a
// copy protobufjs' fromObject reads (hex ids turned to base64). Throws with
// the JSON path of the first violation.
function conv(t, obj, where) {
	if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
		throw new Error(`${where}: a ${t.name} must be an object`);
	const out = {};
	for (const key of Object.keys(obj)) {
		const f = t.fields[key];
		if (!f) {
			throw new Error(`${where}.${key}: not a field of ${t.name} (lowerCamelCase names only)`);
		}
		f.resolve();
		const one = (v, w) => {
			if (f.resolvedType instanceof protobuf.Type)
				return conv(f.resolvedType, v, w);
			if (f.resolvedType instanceof protobuf.Enum) {
				if (!Number.isInteger(v))
					throw new Error(`${w}: enum ${f.resolvedType.name} must be an integer, not ${JSON.stringify(v)}`);
				return v;
			}
			if (INT64.has(f.type)) {
				if (typeof v !== 'string' || !/^-?[0-9]+$/.test(v))
					throw new Error(`${w}: a 64-bit integer must be a decimal string, not ${JSON.stringify(v)}`);
				return v;
			}
			if (f.type === 'bytes') {
				const n = HEX_IDS[key];
				if (n === undefined)
					return v;
				if (typeof v !== 'string' || !new RegExp(`^[0-9a-fA-F]{${2 * n}}$`).test(v))
					throw new Error(`${w}: ${key} must be ${n} bytes in hex, not ${JSON.stringify(v)}`);
				if (/^0+$/.test(v))
					throw new Error(`${w}: ${key} must not be all zeros`);
				return Buffer.from(v, 'hex').toString('base64');
			}
			if (f.type === 'string' && typeof v !== 'string')
				throw new Error(`${w}: must be a string`);
			if (f.type === 'bool' && typeof v !== 'boolean')
				throw new Error(`${w}: must be a boolean`);
			if (f.type === 'double' && typeof v !== 'number')
				throw new Error(`${w}: must be a number`);
			return v;
		};
		const v = obj[key];
		if (f.repeated) {
			if (!Array.isArray(v))
				throw new Error(`${where}.${key}: must be an array`);
			out[key] = v.map((x, i) => one(x, `${where}.${key}[${i}]`));
		} else {
			out[key] = one(v, `${where}.${key}`);
		}
	}
	return out;
}

function anyValue(v) {
	if (!v) return undefined;
	if ('stringValue' in v) return v.stringValue;
	if ('intValue' in v) return Number(v.intValue);
	if ('doubleValue' in v) return v.doubleValue;
	if ('boolValue' in v) return v.boolValue;
	if ('arrayValue' in v) return (v.arrayValue.values || []).map(anyValue);
	return undefined;
}

const stats = {requests: 0, accepted: 0, invalid: 0, failed503: 0, spans: 0, unique: 0,
	duplicates: 0, conflicts: 0, errors: []};
const seen = new Map(); // traceId/spanId -> canonical JSON
const spans = [];       // unique spans, decoded

function check(body) {
	const json = JSON.parse(body);
	const msg = Req.fromObject(conv(Req, json, '$'));
	const err = Req.verify(msg);
	if (err)
		throw new Error(`verify: ${err}`);
	// a binary round trip must give the same message
	const back = Req.decode(Req.encode(msg).finish());
	if (JSON.stringify(Req.toObject(back, {longs: String, bytes: String})) !==
	    JSON.stringify(Req.toObject(msg, {longs: String, bytes: String})))
		throw new Error('the binary round trip differs');
	const got = [];
	for (const rs of json.resourceSpans || [])
		for (const ss of rs.scopeSpans || []) {
			const ids = new Set((ss.spans || []).map((s) => s.traceId + '/' + s.spanId));
			for (const s of ss.spans || []) {
				if (!s.name)
					throw new Error(`span ${s.spanId}: no name`);
				if (!s.startTimeUnixNano || !s.endTimeUnixNano ||
				    BigInt(s.endTimeUnixNano) < BigInt(s.startTimeUnixNano))
					throw new Error(`span ${s.spanId}: bad times`);
				if (s.parentSpanId && !ids.has(s.traceId + '/' + s.parentSpanId))
					throw new Error(`span ${s.spanId}: parent ${s.parentSpanId} is not in the request`);
				got.push({scope: ss, span: s});
			}
		}
	return got;
}

function record(got) {
	for (const {scope, span} of got) {
		stats.spans++;
		const k = span.traceId + '/' + span.spanId;
		const canon = JSON.stringify(span);
		if (seen.has(k)) {
			if (seen.get(k) === canon) stats.duplicates++;
			else stats.conflicts++;
			continue;
		}
		seen.set(k, canon);
		stats.unique++;
		const attrs = {};
		for (const a of span.attributes || []) attrs[a.key] = anyValue(a.value);
		spans.push({traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId || null,
			name: span.name, kind: span.kind, status: span.status || {}, attrs,
			events: (span.events || []).map((e) => e.name), schemaUrl: scope.schemaUrl || null});
	}
}

const server = http.createServer((req, res) => {
	const reply = (code, obj, headers) => {
		res.writeHead(code, Object.assign({'Content-Type': 'application/json'}, headers || {}));
		res.end(JSON.stringify(obj));
	};
	if (req.method === 'GET' && req.url === '/control/stats')
		return reply(200, stats);
	if (req.method === 'GET' && req.url === '/control/spans')
		return reply(200, spans);
	if (req.method === 'GET' && req.url === '/control/headers')
		return reply(200, server.lastHeaders || {});
	if (req.method !== 'POST' || req.url !== '/v1/traces')
		return reply(404, {error: 'not found'});
	const chunks = [];
	req.on('data', (c) => chunks.push(c));
	req.on('end', () => {
		stats.requests++;
		server.lastHeaders = req.headers;
		if (failLeft > 0) {
			failLeft--;
			stats.failed503++;
			return reply(503, {code: 14, message: 'try later'}, {'Retry-After': '1'});
		}
		let got;
		try {
			if ((req.headers['content-type'] || '').split(';')[0].trim() !== 'application/json')
				throw new Error(`Content-Type ${req.headers['content-type']}`);
			got = check(Buffer.concat(chunks).toString('utf8'));
		} catch (e) {
			stats.invalid++;
			stats.errors.push(String(e.message || e));
			return reply(400, {code: 3, message: String(e.message || e)});
		}
		stats.accepted++;
		record(got);
		if (rejectOnce > 0) {
			const n = rejectOnce;
			rejectOnce = 0;
			return reply(200, {partialSuccess: {rejectedSpans: String(n), errorMessage: 'test rejection'}});
		}
		return reply(200, {});
	});
});
server.listen(0, '127.0.0.1', () => {
	const port = server.address().port;
	if (portFile) {
		fs.writeFileSync(portFile + '.tmp', String(port));
		fs.renameSync(portFile + '.tmp', portFile);
	}
});
setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
