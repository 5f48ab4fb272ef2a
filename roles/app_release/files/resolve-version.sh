#!/usr/bin/env bash
# Resolve a git ref to the revision and release name a deploy uses, on the control node.
#   resolve-version.sh REPO VERSION   ->  {"revision": "<sha>", "release": "<name>"}
# The release is named after the nearest tag (git describe), so v1.2.0 deploys as
# releases/v1.2.0 and an untagged commit as releases/v1.2.0-3-g<sha> or releases/<sha>.
# Exit 2 when the ref is unknown.
set -euo pipefail
repo=$1 version=$2
if ! revision=$(git -C "$repo" rev-parse --verify --quiet --end-of-options "${version}^{commit}"); then
  echo "unknown ref: $version" >&2
  exit 2
fi
release=$(git -C "$repo" describe --tags --always --abbrev=10 "$revision" | tr -c 'A-Za-z0-9._+\n-' '_')
printf '{"revision": "%s", "release": "%s"}\n' "$revision" "$release"
