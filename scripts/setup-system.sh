#!/usr/bin/env bash
# System packages the test suite uses beyond Python: headless Chromium and a local MathJax, for the
# test that opens the built site in a browser. Installed with apt-get where we are root on Debian or
# Ubuntu; elsewhere we say what is missing and the browser test is skipped with that reason.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/javascript/mathjax/MathJax.js ] || need+=(libjs-mathjax)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} with apt-get (for the browser test of the built site)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || echo "setup: could not install ${need[*]}; the browser test will be skipped"
else
    echo "setup: ${need[*]} not installed (needs root and apt-get); the browser test will be skipped."
    echo "       To run it: sudo apt-get install -y ${need[*]}"
fi
exit 0
