# Per-tenant secrets (docs/tools.md "secrets"): a run of tenant acme sends only
# acme's key, a run of globex only globex's (the loopback server records the
# Authorization header of each request); tool.intent and `rein audit export`
# name the credential, never its value; the database file and its WAL never
# hold a key; a tenant with no entry and no default fails the call, naming the
# secret and the tenant, before anything is sent.
. "$ROOT/tests/cli/lib.sh"
. "$ROOT/tests/cli/toollib.sh"

export ACME_KEY="acme-key-0f3a9c51d2"
export GLOBEX_KEY="globex-key-7be41e08aa"
auths() { curl -s "$TOOLSERVER/control/log" | python3 -c "
import json, sys
print(' '.join(sorted(set(e.get('auth') or '-' for e in json.load(sys.stdin)))))"; }

reset_stats
expect_exit 0 "$REIN" run "$WF/tenant_secrets" --as alice --tenant acme --input '{}'
a_run=$(json_get "$OUT" 'j["run"]')
[ "$(auths)" = "Bearer $ACME_KEY" ] || fail "acme's run sent: $(auths)"
events_of "$a_run" tool.intent | grep -q '"credential": "api_key (tenant acme, env ACME_KEY)"' ||
	fail "acme's intent: $(events_of "$a_run" tool.intent)"

reset_stats
expect_exit 0 "$REIN" run "$WF/tenant_secrets" --as bob --tenant globex --input '{}'
b_run=$(json_get "$OUT" 'j["run"]')
[ "$(auths)" = "Bearer $GLOBEX_KEY" ] || fail "globex's run sent: $(auths)"
events_of "$b_run" tool.intent | grep -q '"credential": "api_key (tenant globex, env GLOBEX_KEY)"' ||
	fail "globex's intent: $(events_of "$b_run" tool.intent)"

# the audit export names the credential of each call
expect_exit 0 "$REIN" audit export "$a_run" --format json
printf '%s' "$OUT" | grep -q 'api_key (tenant acme, env ACME_KEY)' || fail "export json: $OUT"
expect_exit 0 "$REIN" audit export "$b_run" --format md
printf '%s' "$OUT" | grep -q 'credential api_key (tenant globex, env GLOBEX_KEY)' || fail "export md: $OUT"

# a tenant with no entry and no default: the call fails, nothing is sent
reset_stats
expect_exit 1 "$REIN" run "$WF/tenant_secrets" --as carol --tenant initech --input '{}'
c_run=$(json_get "$OUT" 'j["run"]')
[ "$(json_get "$(stats)" 'j["requests"]')" = 0 ] || fail "initech's run sent a request: $(stats)"
events_of "$c_run" tool.attempt | grep -q "secret 'api_key' has no entry for tenant 'initech' and no default" ||
	fail "initech's error: $(events_of "$c_run" tool.attempt)"
events_of "$c_run" tool.attempt | grep -q '"transient": false' || fail "the error is transient"
[ "$(events_of "$c_run" tool.attempt | wc -l | tr -d ' ')" = 1 ] || fail "retried"
events_of "$c_run" tool.intent | grep -q 'api_key (tenant initech: no entry and no default)' ||
	fail "initech's intent: $(events_of "$c_run" tool.intent)"
# a run with no tenant at all: the same, saying so
expect_exit 1 "$REIN" run "$WF/tenant_secrets" --input '{}'
n_run=$(json_get "$OUT" 'j["run"]')
events_of "$n_run" tool.attempt | grep -q "the run names no tenant" || fail "no tenant: $(events_of "$n_run" tool.attempt)"

# no key value anywhere in the database file or its WAL
for k in "$ACME_KEY" "$GLOBEX_KEY"; do
	cat rein.db rein.db-wal 2>/dev/null | grep -a -q -e "$k" && fail "a key is in the database: $k"
done
"$REIN" events "$a_run" | grep -q "$ACME_KEY" && fail "acme's key is in its events"
ok "per-tenant secrets: each tenant's run sends only its key, names it, never stores it"
