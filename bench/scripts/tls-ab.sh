#!/bin/bash
# A/B of TLS servers under one load, interleaved (order reversed every other round), with the
# server's CPU time and context switches from `perf stat`.
#
# usage: bench/scripts/tls-ab.sh ROUNDS SECONDS MODE "LABEL=COMMAND ..." ...
#   MODE: handshake or echo (`socketserver-bench tls load --mode`); each COMMAND must print
#   `serving on ADDRESS` and serve the certificate in $CERTS (made by `tls cert` if missing).
# Example (the echo example's pool against tokio-rustls):
#   C=target/tls-ab; bench/scripts/tls-ab.sh 6 2 handshake \
#     "ours=target/release/examples/echo tcp 127.0.0.1:0 --mode pool --max-connections 4096 --tls-cert $C/server.pem --tls-key $C/server.key" \
#     "tokio=target/release/socketserver-bench tls serve --cert $C/server.pem --key $C/server.key 127.0.0.1:0"
set -u
ROUNDS=$1; DUR=$2; MODE=$3; shift 3
B=${BENCH:-target/release/socketserver-bench}
CERTS=${CERTS:-target/tls-ab}
mkdir -p "$CERTS"
[ -f "$CERTS/ca.pem" ] || env -u CARGO "$B" tls cert "$CERTS" >/dev/null
for r in $(seq "$ROUNDS"); do
  specs=("$@")
  if [ $((r % 2)) -eq 0 ]; then
    rev=(); for ((i=${#specs[@]}-1; i>=0; i--)); do rev+=("${specs[$i]}"); done; specs=("${rev[@]}")
  fi
  for spec in "${specs[@]}"; do
    label=${spec%%=*}; cmd=${spec#*=}
    out=$CERTS/$label.out
    env -u CARGO $cmd > "$out" 2>&1 &
    SPID=$!
    for _ in $(seq 200); do grep -q "serving on" "$out" 2>/dev/null && break; sleep 0.05; done
    ADDR=$(sed -n 's/.*serving on //p' "$out" | head -1)
    perf stat -x, -e task-clock,context-switches -p $SPID -o "$CERTS/$label.perf" -- sleep "$DUR" &
    P=$!
    J=$(env -u CARGO "$B" tls load --mode "$MODE" --target "$ADDR" --ca "$CERTS/ca.pem" -c 16 --duration "$DUR" 2>/dev/null)
    wait $P
    kill -TERM $SPID; wait $SPID 2>/dev/null
    rps=$(echo "$J" | sed 's/.*"rps":\([0-9.]*\).*/\1/')
    req=$(echo "$J" | sed 's/.*"requests":\([0-9]*\).*/\1/')
    tc=$(grep task-clock "$CERTS/$label.perf" | cut -d, -f1)
    cs=$(grep context-switches "$CERTS/$label.perf" | cut -d, -f1)
    echo "round $r $label rps $rps cpu_us_per_req $(echo "$tc*1000/$req" | bc) cs_per_req $(echo "scale=2; $cs/$req" | bc)"
  done
done
