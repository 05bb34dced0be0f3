#!/bin/sh
# deploy.sh up IMAGE | rollback | down: deploys the service with docker compose (the v2 plugin,
# else Debian's docker-compose) on this machine.
#
# `up` records the image that was live before as PREVIOUS_IMAGE in $PIPEWRIGHT_ENV, so the later
# steps and hooks of the job (the rollback) see it; `rollback` deploys PREVIOUS_IMAGE again, or
# stops the service when there was none.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
project=${PROJECT:-pipewright-example}
if docker compose version >/dev/null 2>&1; then compose="docker compose"; else compose=docker-compose; fi
run() { IMAGE="$1"; shift; IMAGE="$IMAGE" $compose -p "$project" -f "$here/docker-compose.yml" "$@"; }
# The image reference the live container was started from (`docker ps` drops the digest).
live() {
  id=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=web" | head -n 1)
  if [ -n "$id" ]; then docker inspect --format '{{.Config.Image}}' "$id"; fi
}
case "${1:-}" in
  up)
    previous=$(live)
    if [ -n "${PIPEWRIGHT_ENV:-}" ]; then echo "PREVIOUS_IMAGE=$previous" >> "$PIPEWRIGHT_ENV"; fi
    echo "deploying $2 (live before: ${previous:-nothing})"
    run "$2" up -d --remove-orphans
    ;;
  rollback)
    if [ -n "${PREVIOUS_IMAGE:-}" ]; then
      echo "rolling back to $PREVIOUS_IMAGE"
      run "$PREVIOUS_IMAGE" up -d --remove-orphans
    else
      echo "nothing to roll back to: stopping the service"
      run none down
    fi
    ;;
  down) run none down ;;
  *) echo "usage: deploy.sh up IMAGE | rollback | down" >&2; exit 2 ;;
esac
