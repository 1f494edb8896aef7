#!/usr/bin/env bash
# Publish one message to the RabbitMQ queue `homing` through the management HTTP API: the
# robot-arm-orchestrator turns it into one homing task, run between jobs (architecture 3.1, 4.7).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: publish-homing.sh [--env-file FILE] [--dry-run]

Publishes one persistent message to the durable queue `homing` (default exchange, routing key
`homing`) with curl and the RabbitMQ management API, and fails unless RabbitMQ routed it.

  --env-file FILE   read the settings from FILE (default: /etc/pantheon/homing.env); lines
                    NAME=value, like .env, so the farm's .env works too. The environment wins.
  --dry-run         print the request (without credentials) instead of sending it
  -h, --help        show this help

Settings:
  RABBITMQ_API_URL   management API base URL (default http://127.0.0.1:15672)
  RABBITMQ_VHOST     virtual host (default /)
  RABBITMQ_USER      user (required)
  RABBITMQ_PASSWORD  password (required)
EOF
}

die() {
    printf 'publish-homing.sh: %s\n' "$*" >&2
    exit 1
}

env_file=/etc/pantheon/homing.env
dry_run=false
while (($#)); do
    case $1 in
        --env-file) [[ $# -ge 2 ]] || die "--env-file needs a file"; env_file=$2; shift ;;
        --env-file=*) env_file=${1#*=} ;;
        --dry-run) dry_run=true ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
[[ -r $env_file ]] || die "cannot read $env_file (copy the example from ubuntu_services/README.md)"

# Read NAME=value lines without executing the file; the process environment wins.
setting() {
    local name=$1 default=${2-} line value
    if [[ -n ${!name:-} ]]; then
        printf '%s' "${!name}"
        return 0
    fi
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}=" "$env_file" | tail -n 1 || true)
    value=${line#*=}
    if [[ $value == \"*\" || $value == \'*\' ]]; then
        value=${value:1:${#value}-2}
    fi
    printf '%s' "${value:-$default}"
}

api_url=$(setting RABBITMQ_API_URL http://127.0.0.1:15672)
vhost=$(setting RABBITMQ_VHOST /)
user=$(setting RABBITMQ_USER)
password=$(setting RABBITMQ_PASSWORD)
[[ -n $user && -n $password ]] || die "RABBITMQ_USER and RABBITMQ_PASSWORD must be set in $env_file"

# The vhost is one path segment: "/" is %2F.
vhost_path=$(printf '%s' "$vhost" | sed -e 's/%/%25/g' -e 's#/#%2F#g')
url="${api_url%/}/api/exchanges/${vhost_path}/amq.default/publish"
stamp=$(date -u +%s)
message_id="homing-cron-$(date -u +%Y%m%dT%H%M%SZ)"
# Any body means one homing task; the body only tells a person where it came from.
body=$(printf '{"properties":{"delivery_mode":2,"content_type":"text/plain","message_id":"%s","timestamp":%s},"routing_key":"homing","payload":"homing (cron)","payload_encoding":"string"}' "$message_id" "$stamp")

if [[ $dry_run == true ]]; then
    printf 'POST %s\n%s\n' "$url" "$body"
    exit 0
fi

# Credentials go to curl on stdin (a config file), never on its command line where ps shows them.
escape() { local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
response=$(printf 'user = "%s:%s"\n' "$(escape "$user")" "$(escape "$password")" |
    curl --silent --show-error --fail --max-time 15 --config - \
        --header 'content-type: application/json' --data "$body" "$url") ||
    die "RabbitMQ management API at $api_url refused or failed the publish"

# {"routed":false} means the queue does not exist yet: the orchestrator declares it on start.
if [[ $response != *'"routed":true'* ]]; then
    die "RabbitMQ did not route the message (response: $response): is the queue 'homing' declared? Start robot-arm-orchestrator once."
fi
printf 'publish-homing.sh: published %s to queue homing\n' "$message_id"
