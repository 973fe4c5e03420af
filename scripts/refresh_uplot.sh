#!/usr/bin/env bash
# Refresh the uPlot chart library vendored into the package (the dashboard and the report
# never load anything from a CDN: training clusters often have no internet).
#
#   scripts/refresh_uplot.sh [VERSION]      # default: the version in vendor/VERSION
#   scripts/refresh_uplot.sh latest         # the newest uplot on the npm registry
#
# Fetches the package from the npm registry with `npm pack`, and copies
# dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE into
# src/craft_callbacks/cli/ui/static/vendor/, writing the version into vendor/VERSION.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$here/src/craft_callbacks/cli/ui/static/vendor"
version="${1:-$(sed -n 's/^uplot@//p' "$vendor/VERSION" 2>/dev/null || true)}"
version="${version:-latest}"

command -v npm >/dev/null || { echo "refresh_uplot.sh: npm is needed (apt-get install npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null)
tarball="$(ls "$work"/uplot-*.tgz)"
tar -xzf "$tarball" -C "$work" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE package/package.json
resolved="$(node -p 'require(process.argv[1]).version' "$work/package/package.json" 2>/dev/null \
    || sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$work/package/package.json" | head -n1)"

mkdir -p "$vendor"
cp "$work/package/dist/uPlot.iife.min.js" "$vendor/uPlot.iife.min.js"
cp "$work/package/dist/uPlot.min.css" "$vendor/uPlot.min.css"
cp "$work/package/LICENSE" "$vendor/LICENSE-uPlot"
printf 'uplot@%s\n' "$resolved" > "$vendor/VERSION"
echo "vendored uplot@$resolved into ${vendor#"$here"/}"
