#!/usr/bin/env bash
# The whole system on this machine: a local systemd test host (scripts/test-host.py, the
# same definition Molecule and the bench use) deployed with the real deploy.yml and the
# demo inventory.
#   scripts/demo.sh up     create the host(s) if needed, deploy, print the address
#   scripts/demo.sh down   remove them
# TOPOLOGY=cluster: HAProxy, two app hosts and PostgreSQL, each a host of its own on one
# podman network (inventories/demo-cluster), the load balancer on the same address.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/molecule/containers.conf}"
name=task-manager-demo
port="${DEMO_PORT:-8080}"
topology="${TOPOLOGY:-single}"
network=task-manager-demo-net
cluster_hosts=("$name-db" "$name-app1" "$name-app2" "$name-lb")

case "${1:-up}" in
  up)
    if [ "$topology" = cluster ]; then
      for host in "${cluster_hosts[@]}"; do
        publish=()
        [ "$host" = "$name-lb" ] && publish=(--publish "127.0.0.1:${port}:8080")
        scripts/test-host.py create "$host" --network "$network" "${publish[@]}" >/dev/null
      done
      .venv/bin/ansible-playbook -i inventories/demo-cluster/hosts.yml deploy.yml
    elif [ "$topology" = single ]; then
      scripts/test-host.py create "$name" --publish "127.0.0.1:${port}:8080" >/dev/null
      .venv/bin/ansible-playbook -i inventories/demo/hosts.yml deploy.yml
    else
      echo "TOPOLOGY is single or cluster, not $topology" >&2
      exit 2
    fi
    cat <<MSG

  Task manager is running ($topology): open http://127.0.0.1:${port}/
  Sign in as demo_user / demo_password (the manual's demo account).
  Health: curl http://127.0.0.1:${port}/health
  Plain HTTP, on this machine only: a real deployment serves HTTPS (see docs/security.md;
  the production inventory refuses to deploy without TLS).
  Remove it with: make demo-destroy

MSG
    ;;
  down)
    # Both topologies: whichever is up goes.
    scripts/test-host.py destroy "$name" "${cluster_hosts[@]}" --network "$network"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
