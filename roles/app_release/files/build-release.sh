#!/usr/bin/env bash
# Build one release on the control node: the app's wheel, a wheelhouse of its pinned
# dependencies for the target's Python and CPU (so the host needs no index), the
# frontend, and RELEASE.json. Output: OUT/<release>.tar.gz, written atomically.
#   build-release.sh REPO REVISION RELEASE VERSION OUT PYTHON TARGET_PY TARGET_ARCH
set -euo pipefail
repo=$1 revision=$2 release=$3 version=$4 out=$5 python=$6 target_py=$7 target_arch=$8

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/pkg/wheels" "$out"

git -C "$repo" archive --format=tar "$revision" app frontend | tar -x -C "$work/src"
commit_time=$(git -C "$repo" show -s --format=%ct "$revision")
export SOURCE_DATE_EPOCH=$commit_time

# The app's own wheel is built here from the tagged source, so there is no published file
# whose hash could be pinned: it is installed on the host with --no-deps after the hashed set.
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/pkg/wheels" "$work/src/app"
# Every dependency file must match a sha256 in requirements.txt (make lock writes them for
# every file on PyPI, so each target's wheels are covered); a pin without a hash, or a
# file that is not the one locked, stops the build. What pip downloaded and checked is kept
# beside the built releases, under the hash of the pins and the target: the next release
# with the same pins (most of them) takes its wheels from there, as a built release is
# taken from there, instead of asking the index for every file again.
wheelhouses="$(dirname "$out")/wheelhouses"
key=$(printf '%s\n' "$target_py" "$target_arch" | cat - "$work/src/app/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ ! -d "$wheelhouses/$key" ]; then
  mkdir -p "$wheelhouses"
  fresh=$(mktemp -d "$wheelhouses/.$key.XXXXXX")
  trap 'rm -rf "$work" "$fresh"' EXIT
  if ! "$python" -m pip download --quiet --require-hashes --only-binary=:all: --implementation cp \
    --python-version "$target_py" \
    --platform "manylinux_2_17_${target_arch}" --platform "manylinux2014_${target_arch}" \
    --platform "manylinux_2_28_${target_arch}" --platform any \
    -r "$work/src/app/requirements.txt" -d "$fresh"; then
    echo "build-release.sh: refused: the wheelhouse for Python $target_py on $target_arch does not match" \
      "app/requirements.txt at $revision (see pip's error above). A pin without hashes or a missing wheel:" \
      "run 'make lock', commit, release again. A file whose hash differs from the locked one: it is not" \
      "the file that was locked; find out why before anything else." >&2
    exit 1
  fi
  # Complete or absent, never half there: another build that got there first keeps its own.
  mv -T "$fresh" "$wheelhouses/$key" 2>/dev/null || true
fi
cp "$wheelhouses/$key"/*.whl "$work/pkg/wheels/"

cp "$work/src/app/requirements.txt" "$work/pkg/requirements.txt"
cp -r "$work/src/frontend" "$work/pkg/frontend"
app_version=$(cd "$work/pkg/wheels" && ls task_manager-*.whl | sed -E 's/^task_manager-([^-]+)-.*/\1/')
"$python" - "$work/pkg/RELEASE.json" "$release" "$version" "$revision" "$commit_time" "$app_version" <<'PY'
import datetime, json, sys
path, release, version, revision, commit_time, app_version = sys.argv[1:]
record = {
    "release": release,
    "version": version,
    "revision": revision,
    "app_version": app_version,
    "committed_at": datetime.datetime.fromtimestamp(int(commit_time), datetime.UTC).isoformat().replace("+00:00", "Z"),
    "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
}
open(path, "w").write(json.dumps(record, indent=2) + "\n")
PY
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$commit_time" -C "$work/pkg" -czf "$out/.$release.tar.gz" .
# Its sha256 beside it, written last (its presence says the release is whole): a cached release
# is reused only while it still matches (roles/app_release checks it on the control node, and
# again on the host before unpacking it).
(cd "$out" && sha256sum ".$release.tar.gz" | sed "s/  \.$release/  $release/" > ".$release.tar.gz.sha256")
mv "$out/.$release.tar.gz" "$out/$release.tar.gz"
mv "$out/.$release.tar.gz.sha256" "$out/$release.tar.gz.sha256"
echo "$out/$release.tar.gz"
