#!/usr/bin/env bash
# A headless-browser screenshot of an HTML report, to check it opens with its pictures (issue 13):
#   scripts/screenshot.sh outputs/dissect/<dir>/report.html report.png
# Needs Chromium (Debian/Ubuntu: apt-get install chromium); reports are self-contained (images inlined).
set -euo pipefail
REPORT=$(realpath "$1"); OUT=${2:-report.png}
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$BROWSER" ] || { echo "no Chromium found: apt-get install chromium (or open $REPORT in any browser)" >&2; exit 2; }
"$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
    --screenshot="$OUT" "file://$REPORT" 2>/dev/null
echo "$OUT"
