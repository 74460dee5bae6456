#!/usr/bin/env bash
# Screenshot a workspace's quarterly report with headless Chromium, after the page's scripts
# ran (the loss chart is drawn by one):
#   scripts/report_screenshot.sh WORKSPACE MODEL OUT.png
# WIDTH and HEIGHT (pixels, default 1280 x 2400) set the window; CHROMIUM names the browser
# (default: chromium, chromium-browser or google-chrome on PATH). Exit 2: bad arguments, no
# report or no browser; 1: the browser failed.
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 WORKSPACE MODEL OUT.png" >&2
  exit 2
fi
workspace=$1 model=$2 out=$3
page="$workspace/reports/$model/report.html"
if [ ! -f "$page" ]; then
  echo "no report at $page: run \`clt --workspace $workspace report $model\` first" >&2
  exit 2
fi
browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then browser=$(command -v "$name"); break; fi
  done
fi
if [ -z "$browser" ]; then
  echo "no Chromium found (Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/browser)" >&2
  exit 2
fi
width=${WIDTH:-1280} height=${HEIGHT:-2400}
page_abs=$(cd "$(dirname "$page")" && pwd)/report.html
mkdir -p "$(dirname "$out")"
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d)  # a profile of its own: runs never share browser state
trap 'rm -rf "$profile"' EXIT
tmp_png="$profile/shot.png"
if ! "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$width,$height" --virtual-time-budget=5000 --screenshot="$tmp_png" \
    "file://$page_abs" >"$profile/browser.log" 2>&1 || [ ! -s "$tmp_png" ]; then
  echo "the browser did not write a screenshot; its log:" >&2
  tail -20 "$profile/browser.log" >&2
  exit 1
fi
mv "$tmp_png" "$out_abs.tmp" && mv "$out_abs.tmp" "$out_abs"  # appears whole or not at all
echo "wrote $out (${width}x${height}) from $page"
