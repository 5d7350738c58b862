#!/usr/bin/env bash
# Rebuild the vendored browser files in assets/ from the npm registry (run by hand when
# upgrading plotly or bootstrap; the results are committed, so installs need no npm).
#
#   plotly-<version>-whypop.min.js  plotly.js core (scatter) + scatterpolar + heatmap: the
#       only trace types the dashboard draws. 1.2 MB (412 kB gzipped) instead of the full
#       4.8 MB bundle (1.47 MB gzipped), which alone would break the 1.5 MB first-page
#       budget. dcc.Graph uses window.Plotly when it is defined, so Dash never loads its own.
#       The version must match plotly.py's (python -c "import plotly.offline as o; print(o.get_plotlyjs_version())").
#   bootstrap.min.css  Bootstrap 5 (dash-bootstrap-components' themes are CDN links).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plotly_version="${PLOTLY_VERSION:-$(python3 -c 'import plotly.offline as o; print(o.get_plotlyjs_version())')}"
bootstrap_version="${BOOTSTRAP_VERSION:-5.3.9}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "plotly.js@${plotly_version}" esbuild "bootstrap@${bootstrap_version}"
cat > entry.js <<'JS'
var Plotly = require('plotly.js/lib/core');
Plotly.register([require('plotly.js/lib/scatterpolar'), require('plotly.js/lib/heatmap')]);
module.exports = Plotly;
JS
npx esbuild entry.js --bundle --minify --format=iife --global-name=Plotly --target=es2016 \
  --define:global=window --define:define.amd=false --alias:stream=stream-browserify \
  --legal-comments=none --outfile=bundle.js --log-level=warning
rm -f "$here"/plotly-*-whypop.min.js
{
  echo "/*! plotly.js v${plotly_version} (MIT, Plotly Inc.), partial bundle for whypop: core + scatterpolar + heatmap. Rebuild: assets/build-assets.sh */"
  cat bundle.js
} > "$here/plotly-${plotly_version}-whypop.min.js"
cp node_modules/bootstrap/dist/css/bootstrap.min.css "$here/bootstrap.min.css"
ls -l "$here"/plotly-*-whypop.min.js "$here/bootstrap.min.css"
