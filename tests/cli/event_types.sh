# docs/events.md is the output of `rein event-types` under its heading: the
# docs cannot fall behind the table of event types (src/engine/events.c).
. "$ROOT/tests/cli/lib.sh"
expect_exit 0 "$REIN" event-types
printf '%s\n' "$OUT" > got.md
sed -n '/^| type |/,$p' "$ROOT/docs/events.md" > doc.md
diff -u doc.md got.md || fail "docs/events.md differs from 'rein event-types' (regenerate it: see its first paragraph)"
# every type of the table is a row, and the command refuses arguments
for t in run.started step.completed tool.intent model.breaker inbox.received; do
	grep -q "^| \`$t\` |" got.md || fail "no row for $t"
done
expect_exit 2 "$REIN" event-types extra
ok "event-types matches docs/events.md"
