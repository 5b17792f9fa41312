# poll.sh — sourced by runs.sh and graphile.sh: their waits ask PostgreSQL through one psql
# session, fed through two FIFOs. A psql started for each poll cost about 30 ms of CPU, five
# times a second, taken from the processes being measured. Each poll is its own short
# statement: a poller that held one transaction open would keep PostgreSQL from pruning
# what the run leaves behind, and halve weir's throughput (docs/decisions.md, "A long
# transaction halves throughput").
#
# poll_start CONNINFO DIR : starts the session (its FIFOs in DIR); poll_stop ends it
# poll SQL : the first line of SQL's answer (unaligned, tuples only)
poll_start() {
  mkfifo "$2/poll.in" "$2/poll.out"
  $PSQL -X -A -t -q "$1" <"$2/poll.in" >"$2/poll.out" 2>&1 &
  exec 3>"$2/poll.in" 4<"$2/poll.out"
}
poll_stop() { exec 3>&- 4<&-; }
poll() {
  echo "$1;" >&3
  read -r answer <&4 || { echo "bench: the polling session ended" >&2; exit 1; }
  echo "$answer"
}
