#!/bin/sh
# Container entrypoint. Creates the node home on first start (a no-op afterwards), then replaces itself with
# `dsnode serve`, so the node is PID 1 and receives SIGTERM from `docker stop` / Kubernetes and stops cleanly.
# The first start prints the operator token once, to the container log.
# Arguments run a one-off command instead of serving, after the same init:
#   docker compose run --rm node1 dsnode ledger verify
set -eu

dsnode init --if-needed

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec dsnode serve
