#!/usr/bin/env bash
# The whole system on this machine: a local systemd test host (scripts/test-host.py, the
# same definition Molecule and the bench use) deployed with the real deploy.yml and the
# demo inventory.
#   scripts/demo.sh up     create the host if needed, deploy, print the address
#   scripts/demo.sh down   remove the host
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/molecule/containers.conf}"
name=task-manager-demo
port="${DEMO_PORT:-8080}"

case "${1:-up}" in
  up)
    scripts/test-host.py create "$name" --publish "127.0.0.1:${port}:8080" >/dev/null
    .venv/bin/ansible-playbook -i inventories/demo/hosts.yml deploy.yml
    cat <<MSG

  Task manager is running: open http://127.0.0.1:${port}/
  Sign in as demo_user / demo_password (the manual's demo account).
  Health: curl http://127.0.0.1:${port}/health
  Plain HTTP, on this machine only: a real deployment serves HTTPS (see the README's
  security section); the production inventory refuses to deploy without TLS.
  Remove it with: make demo-destroy

MSG
    ;;
  down)
    scripts/test-host.py destroy "$name"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
