#!/usr/bin/env bash
# Start the Pantheon farm: generate one printer-service per printer of the farm layout, merge it
# with docker-compose.yml and bring the stack up. The orchestrator has its own script.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: run-docker-compose.sh [options] [--] [arguments for 'up -d']

Generates docker-compose.printers.yml (one printer-service-<id> per printer of the farm
layout, published on port 500<id>) and runs
    docker compose -f docker-compose.yml -f docker-compose.printers.yml up -d [arguments]
Debian's docker-compose (v1) is used when the 'docker compose' plugin is missing.

Options:
  --dry-run          generate, validate and print the merged configuration ('config');
                     nothing is started. The output is resolved against the env file, secrets
                     included: do not paste it anywhere public.
  --stop             stop the stack's containers instead of starting them (used by systemd)
  --out FILE         where to write the printer services (default: docker-compose.printers.yml
                     next to this script; the file is generated, do not edit or commit it)
  --farm FILE        farm layout to read (default: farm.yaml next to this script)
  --env-file FILE    environment file (default: .env next to this script; see .env.example)
  --profile NAME     enable a compose profile, repeatable: apps, datadog, portainer, sftp, sim
                     (COMPOSE_PROFILES=apps,datadog in the environment or .env works too)
  --sim              run the simulated farm: generate the printer services against bambu-sim
                     (its endpoints.json and CA from the bambu-sim-data volume) and enable the
                     profiles sim and apps (bambu-sim, robot-arm-sim, every application)
  -h, --help         show this help

Examples:
  ./run-docker-compose.sh                      # infrastructure only: mongo, mysql, rabbitmq, mosquitto
  ./run-docker-compose.sh --profile apps       # and every application service and printer
  ./run-docker-compose.sh --dry-run --profile apps
  ./run-docker-compose.sh --sim                # the whole farm against bambu-sim and robot-arm-sim
  ./run-docker-compose.sh -- --build pantheon-api
EOF
}

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/compose/common.sh
source "$here/infra/compose/common.sh"

project=pantheon
action=up
out="$here/docker-compose.printers.yml"
farm="$here/farm.yaml"
env_file="$here/.env"
profiles=()
passthrough=()
sim=false

while (($#)); do
    case $1 in
        --dry-run) action=config ;;
        --stop) action=stop ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; out=$2; shift ;;
        --out=*) out=${1#*=} ;;
        --farm) [[ $# -ge 2 ]] || die "--farm needs a file"; farm=$2; shift ;;
        --farm=*) farm=${1#*=} ;;
        --env-file) [[ $# -ge 2 ]] || die "--env-file needs a file"; env_file=$2; shift ;;
        --env-file=*) env_file=${1#*=} ;;
        --profile) [[ $# -ge 2 ]] || die "--profile needs a name"; profiles+=("$2"); shift ;;
        --profile=*) profiles+=("${1#*=}") ;;
        --sim) sim=true ;;
        -h | --help) usage; exit 0 ;;
        --) shift; passthrough+=("$@"); break ;;
        *) passthrough+=("$1") ;;
    esac
    shift
done

require_env_file "$env_file"
[[ -f $farm ]] || die "farm layout $farm not found (pass --farm FILE)"
# Absolute paths: compose runs from the repository root below.
env_file=$(cd -- "$(dirname -- "$env_file")" && pwd)/$(basename -- "$env_file")
farm=$(cd -- "$(dirname -- "$farm")" && pwd)/$(basename -- "$farm")
out_dir=$(dirname -- "$out")
[[ -d $out_dir ]] || die "output directory $out_dir does not exist"
out=$(cd -- "$out_dir" && pwd)/$(basename -- "$out")

# The generator needs Python 3.11+ with PyYAML: the workspace venv, else the system python3
# (Debian: python3-yaml), else uv.
if [[ -x $here/.venv/bin/python ]]; then
    python=("$here/.venv/bin/python")
elif command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' >/dev/null 2>&1; then
    python=(python3)
elif command -v uv >/dev/null 2>&1; then
    python=(uv run --project "$here" python)
else
    die "no Python with PyYAML found: run 'uv sync' here, or apt-get install python3-yaml"
fi
generator=("$here/infra/compose/gen_printers.py" --farm "$farm" --out "$out")
if [[ $sim == true ]]; then
    generator+=(--sim)
    for profile in sim apps; do
        [[ " ${profiles[*]} " == *" $profile "* ]] || profiles+=("$profile")
    done
fi
"${python[@]}" "${generator[@]}"

# Every enabled profile, from the options and from COMPOSE_PROFILES (environment or env file).
enabled=",$(env_value COMPOSE_PROFILES "$env_file"),"
for profile in "${profiles[@]}"; do
    enabled+="$profile,"
done

# Secrets of the optional profiles are not `:?` in docker-compose.yml (Compose interpolates every
# profile), so they are checked here, only when the profile is on.
if [[ $action != stop && $enabled == *,datadog,* && -z $(env_value DD_API_KEY "$env_file") ]]; then
    die "profile datadog needs DD_API_KEY in $env_file"
fi
if [[ $action != stop && $enabled == *,sftp,* ]]; then
    sftp_keys=$(env_value SFTP_KEYS_DIR "$env_file")
    sftp_keys=${sftp_keys:-/etc/pantheon/sftp-keys}
    [[ $sftp_keys == /* ]] || sftp_keys="$here/${sftp_keys#./}"
    if [[ -z $(env_value SFTP_PASSWORD "$env_file") ]] && ! compgen -G "$sftp_keys/*.pub" >/dev/null; then
        die "profile sftp needs SFTP_PASSWORD in $env_file or a public key (*.pub) in $sftp_keys"
    fi
fi

find_compose
compose=("${COMPOSE[@]}" --project-name "$project" --project-directory "$here" --env-file "$env_file"
    -f "$here/docker-compose.yml" -f "$out")
for profile in "${profiles[@]}"; do
    compose+=(--profile "$profile")
done

cd -- "$here"
case $action in
    config)
        # --no-interpolate would hide the secrets, but Compose v1 then rejects ports such as
        # "${MQTT_PUBLISHED_PORT:-1883}:1883", so the resolved file is printed.
        "${compose[@]}" config "${passthrough[@]}"
        ;;
    stop)
        "${compose[@]}" stop "${passthrough[@]}"
        ;;
    up)
        "${compose[@]}" up -d "${passthrough[@]}"
        ;;
esac
