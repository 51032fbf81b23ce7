/*
 * Internal to spec: a YAML document as a tree of nodes that remember where
 * they came from (line and column, 1-based), so every later check can say
 * FILE:LINE:COL. Built from libyaml's event stream.
 */
#ifndef REIN_SPEC_YAML_TREE_H
#define REIN_SPEC_YAML_TREE_H

#include "base.h"

enum { YNODE_SCALAR = 1, YNODE_MAP, YNODE_SEQ };

typedef struct ynode {
	int type;
	int line, col;
	bool plain;    /* scalar written without quotes or block style */
	bool block;    /* literal or folded block scalar (content starts next line) */
	char *str;     /* scalar text */
	size_t len;
	struct ynode **kids; /* map: key, value, key, value...; seq: items */
	size_t n;
} ynode;

/*
 * Parses one YAML document. On a syntax error returns REIN_ESPEC with err->msg
 * "LINE:COL: message" and *out untouched. An empty document gives NULL in *out.
 */
int ynode_parse(const char *text, size_t len, ynode **out, rein_err *err);
void ynode_free(ynode *n);

/* For a map: the value under key, or NULL. */
const ynode *ynode_get(const ynode *map, const char *key);

/*
 * Converts a node to JSON with YAML 1.2 core-schema typing of plain scalars
 * (null, booleans, integers, floats; everything else a string). On failure
 * (e.g. .nan, non-string key) fills *bad with the offending node.
 */
json_t *ynode_to_json(const ynode *n, const ynode **bad, rein_err *err);

/* Resolves a plain scalar the way ynode_to_json does. */
json_t *ynode_scalar_json(const ynode *n);

#endif
