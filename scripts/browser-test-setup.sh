#!/usr/bin/env bash
# Debian's Chromium, for the console's browser tests (tests/http/test_console_browser.py runs
# this; Playwright, from the project's `test` extra, drives it through executable_path: no
# `playwright install`, whose browser download fails on a closed network).
#
# Usage:  scripts/browser-test-setup.sh
#   Idempotent: installs the `chromium` package only when $CHROMIUM is missing, then prints the
#   browser's path on stdout.
#
# Env:  CHROMIUM=/usr/bin/chromium   the browser to find (or install)
#       BROWSER_APT_UPDATE=1         run apt-get update before the install
#       BROWSER_APT_LOG=${TMPDIR:-/tmp}/browser-test-setup-apt.log
#
# Exit status 77 means "Chromium cannot be installed here" (not root, no apt, no package
# mirror); the tests skip on it with the message printed on the last line of stderr.
#
# Measured on this machine (Debian 12 container, root, Chromium 156): apt-get update + install
# from a state without chromium took 31 s wall clock (25 packages, 113 MB downloaded, 414 MB
# on disk, --no-install-recommends); with chromium already there the script returns at once.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
APT_LOG=${BROWSER_APT_LOG:-${TMPDIR:-/tmp}/browser-test-setup-apt.log}

log() { printf '[browser-test-setup %s] %s\n' "$(date +%T)" "$*" >&2; }
cannot() { log "$*"; printf 'cannot install chromium: %s\n' "$*" >&2; exit 77; }

if [ -x "$CHROMIUM" ]; then
  printf '%s\n' "$CHROMIUM"
  exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-query >/dev/null \
  || cannot "$CHROMIUM is missing and there is no apt-get/dpkg here (it comes from Debian's chromium package)"
[ "$(id -u)" = 0 ] || cannot "$CHROMIUM is missing and apt-get needs root (uid $(id -u))"

unreachable='Failed to fetch|Temporary failure resolving|Could not resolve|Could not connect|Unable to connect|Unable to fetch|Network is unreachable|Connection timed out'
: >"$APT_LOG"
log "installing chromium (log: $APT_LOG)"
if [ "${BROWSER_APT_UPDATE:-1}" = 1 ]; then
  apt-get update -qq --error-on=any >>"$APT_LOG" 2>&1 || {
    tail -5 "$APT_LOG" >&2
    line=$(grep -Em1 "$unreachable" "$APT_LOG") \
      && cannot "apt-get update cannot reach the package mirrors: ${line:0:200}"
    log "apt-get update failed"; exit 1
  }
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o DPkg::Lock::Timeout=120 chromium >>"$APT_LOG" 2>&1 || {
    tail -30 "$APT_LOG" >&2
    line=$(grep -Em1 "$unreachable" "$APT_LOG") \
      && cannot "apt-get install cannot reach the package mirrors: ${line:0:200}"
    grep -qE 'Unable to locate package|has no installation candidate' "$APT_LOG" \
      && cannot "no chromium package in the configured apt sources"
    log "apt-get install failed (log: $APT_LOG)"; exit 1
  }
[ -x "$CHROMIUM" ] || cannot "the chromium package is installed but $CHROMIUM is not there"
log "installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
printf '%s\n' "$CHROMIUM"
