# shellcheck shell=bash
# Helpers shared by run-docker-compose.sh and run-docker-compose-orchestrator.sh (sourced, not run).

die() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# Sets the array COMPOSE to the Compose command: the v2 plugin when the engine has it, else
# Debian's docker-compose (v1.29). Both accept every option the scripts use.
# shellcheck disable=SC2034  # COMPOSE is read by the scripts that source this file
find_compose() {
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        die "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install --no-install-recommends docker-compose)"
    fi
}

# require_env_file FILE: stop with a hint when the env file is missing.
require_env_file() {
    local file=$1
    if [[ ! -f $file ]]; then
        die "$file not found. Copy .env.example to .env and fill in the secrets (required ones are marked there), or pass --env-file FILE."
    fi
}

# env_value NAME FILE: the value Compose will see for NAME - the process environment first,
# else the last NAME=... line of FILE, without surrounding quotes. Empty when unset.
env_value() {
    local name=$1 file=$2 line value
    if [[ -n ${!name+x} ]]; then
        printf '%s' "${!name}"
        return 0
    fi
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}=" "$file" 2>/dev/null | tail -n 1 || true)
    value=${line#*=}
    if [[ $value == \"*\" || $value == \'*\' ]]; then
        value=${value:1:${#value}-2}
    fi
    printf '%s' "$value"
}
