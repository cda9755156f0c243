#!/usr/bin/env bash
# Keeps a cached cargo target directory from growing without bound. Every change to a crate
# of this workspace leaves its earlier artifacts behind in `deps/` under a new hash (test
# binaries, rlibs, fuzz targets of hundreds of MB each); cargo never removes them. In each
# `deps/` below DIR this removes a file when a newer file of the same crate and kind (name
# before the hash, same extension) was written more than an hour after it: the newer one
# replaced it. Artifacts that coexist on purpose (one crate built with two feature sets)
# are written by the same build, within minutes; if one is removed anyway, cargo sees the
# output missing and builds it again.
#
# Usage: tests/support/prune-target.sh DIR...
set -euo pipefail
for dir in "$@"; do
    [ -d "$dir" ] || continue
    before=$(du -sm "$dir" | cut -f1)
    while IFS= read -r -d '' deps; do
        # mtime (seconds), group key (stem + extension), path; newest first.
        find "$deps" -maxdepth 1 -type f -printf '%T@ %f\n' |
            awk '{
                name = $2; ext = ""
                if (match(name, /\.[a-z]+$/)) { ext = substr(name, RSTART); name = substr(name, 1, RSTART - 1) }
                if (!match(name, /-[0-9a-f]+$/)) next
                stem = substr(name, 1, RSTART - 1)
                printf "%d %s%s %s\n", $1, stem, ext, $2
            }' |
            sort -k2,2 -k1,1nr |
            awk -v deps="$deps" '{
                if ($2 != key) { key = $2; newest = $1; next }
                if (newest - $1 > 3600) print deps "/" $3
            }' |
            xargs -r rm -f --
    done < <(find "$dir" -type d -name deps -print0)
    after=$(du -sm "$dir" | cut -f1)
    echo "pruned $dir: ${before} MB -> ${after} MB"
done
