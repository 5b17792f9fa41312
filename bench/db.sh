# db.sh — sourced by runs.sh and graphile.sh, after tests/pg.sh: the benchmark's own PostgreSQL
# and database, q for one-off statements, and poll for the waits.
#
# The waits ask through one psql session, fed through two FIFOs: a psql started for each poll
# cost about 30 ms of CPU, five times a second, taken from the processes being measured. Each
# poll is its own short statement: a poller that held one transaction open would keep
# PostgreSQL from pruning what the run leaves behind, and halve weir's throughput
# (docs/decisions.md, "A long transaction halves throughput").
#
# bench_db NAME DIR : starts PostgreSQL, creates database NAME (DB is its conninfo) and opens the
#                     polling session (its FIFOs in DIR); bench_db_stop closes both
# q SQL : SQL's answer, by a psql of its own (unaligned, tuples only)
# poll SQL : the first line of SQL's answer, through the polling session
bench_db() {
  pg_start
  pg_createdb "$1"
  DB=$(pg_conn "$1")
  mkfifo "$2/poll.in" "$2/poll.out"
  $PSQL -X -A -t -q "$DB" <"$2/poll.in" >"$2/poll.out" 2>&1 &
  exec 3>"$2/poll.in" 4<"$2/poll.out"
}
bench_db_stop() {
  exec 3>&- 4<&-
  pg_stop
}
q() { $PSQL -X -A -t -q -c "$1" "$DB"; }
poll() {
  echo "$1;" >&3
  read -r answer <&4 || { echo "bench: the polling session ended" >&2; exit 1; }
  echo "$answer"
}
