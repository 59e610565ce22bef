#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/, each for a bounded time (issue 7, "Fuzzing and soak").
#
#   scripts/fuzz.sh                          # every target, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh xmlrpc  # one target, 5 minutes
#
# Targets: http_request (the HTTP/1.1 layer's keep-alive loop on raw bytes), jsonrpc and xmlrpc
# (the examples' request decoding, examples/protocol/*.rs), websocket_handshake (the websocket
# example's upgrade handling, through the HTTP layer), proxy_header (the PROXY protocol header
# reader, on arbitrary bytes arriving in arbitrary pieces).
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Not part of
# `cargo test`: the fuzz package is excluded from the workspace. Each run starts from the seeds
# in fuzz/seeds/TARGET and keeps what it learns in fuzz/corpus/TARGET (ignored by git).
# A crash leaves its input in fuzz/artifacts/TARGET/; the script prints how to reproduce and
# minimise it, goes on with the other targets, and exits 1.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
all_targets=(http_request jsonrpc xmlrpc websocket_handshake proxy_header)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

cargo +nightly fuzz build

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== $target: ${seconds}s"
    # -max_total_time bounds the run; -timeout flags one input that hangs for 10 s; the outer
    # timeout is a backstop if libFuzzer itself wedges.
    if timeout --kill-after=30 "$((seconds + 120))" \
        cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -max_len=16384 -print_final_stats=1 \
        2>"artifacts/$target/last-run.log"; then
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)" \
            "artifacts/$target/last-run.log" || true
    else
        failed+=("$target")
        tail -n 30 "artifacts/$target/last-run.log"
        crash=$(ls -t "artifacts/$target"/{crash,timeout,oom,leak}-* 2>/dev/null | head -n 1 || true)
        echo "!! $target failed; log: fuzz/artifacts/$target/last-run.log"
        if [ -n "$crash" ]; then
            echo "   reproduce: cd fuzz && cargo +nightly fuzz run $target $crash"
            echo "   minimise:  cd fuzz && cargo +nightly fuzz tmin $target $crash"
            echo "   as bytes:  xxd -i $crash   (for the regression test)"
        fi
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all targets ran ${seconds}s without a crash"
