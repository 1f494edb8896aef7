#!/usr/bin/env bash
# Start the robot-arm-orchestrator from docker-compose.orchestrator.yml, apart from the farm stack.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: run-docker-compose-orchestrator.sh [options] [--] [arguments for 'up -d']

Runs
    docker compose -f docker-compose.orchestrator.yml up -d [arguments]
as its own Compose project (pantheon-orchestrator), so starting, stopping or upgrading the farm
stack never touches the process that moves the robot, and the other way round. It joins the
network cluster_controller_network, which ./run-docker-compose.sh creates: start that first.
Debian's docker-compose (v1) is used when the 'docker compose' plugin is missing.

Options:
  --dry-run          validate and print the configuration ('config'); nothing is started.
                     The output is resolved against the env file, secrets included.
  --stop             stop the orchestrator instead of starting it
  --env-file FILE    environment file (default: .env next to this script; see .env.example)
  -h, --help         show this help

Examples:
  ./run-docker-compose-orchestrator.sh
  ./run-docker-compose-orchestrator.sh -- --build
  ./run-docker-compose-orchestrator.sh --stop
EOF
}

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/compose/common.sh
source "$here/infra/compose/common.sh"

project=pantheon-orchestrator
network=cluster_controller_network
action=up
env_file="$here/.env"
passthrough=()

while (($#)); do
    case $1 in
        --dry-run) action=config ;;
        --stop) action=stop ;;
        --env-file) [[ $# -ge 2 ]] || die "--env-file needs a file"; env_file=$2; shift ;;
        --env-file=*) env_file=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        --) shift; passthrough+=("$@"); break ;;
        *) passthrough+=("$1") ;;
    esac
    shift
done

require_env_file "$env_file"
env_file=$(cd -- "$(dirname -- "$env_file")" && pwd)/$(basename -- "$env_file")

find_compose
compose=("${COMPOSE[@]}" --project-name "$project" --project-directory "$here" --env-file "$env_file"
    -f "$here/docker-compose.orchestrator.yml")

cd -- "$here"
case $action in
    config)
        "${compose[@]}" config "${passthrough[@]}"
        ;;
    stop)
        "${compose[@]}" stop "${passthrough[@]}"
        ;;
    up)
        # The external network must exist; say which script creates it rather than let Compose
        # fail with "network ... declared as external, but could not be found".
        if ! docker network inspect "$network" >/dev/null 2>&1; then
            die "network $network not found: start the farm first with ./run-docker-compose.sh"
        fi
        "${compose[@]}" up -d "${passthrough[@]}"
        ;;
esac
