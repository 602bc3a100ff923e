#!/usr/bin/env bash
# Request Tracker 5 (the Debian package) on loopback with a fresh SQLite db, for the RT adapter's
# integration tests (tests/tickets/rt_server.py runs it; CI needs nothing else).
#
# Usage:  RT_STATE_DIR=DIR scripts/rt5-test-server.sh [all|install|initdb|seed|start|stop|status]
#   all = install + stop + initdb + seed + start   (the default)
#
# Env:  RT_STATE_DIR  (required) everything this script writes, apart from the apt install
#       RT_HOST=127.0.0.1  RT_PORT=8080  RT_WORKERS=2  RT_APT_UPDATE=1
#       RT_QUEUES="Incoming,Billing"   queues to create
#       RT_CUSTOM_FIELDS="otai_label"  free-form ticket custom fields, applied to every queue
#       RT_TIMEZONE=UTC                RT's $Timezone (TicketSQL reads dates in it)
# Writes in $RT_STATE_DIR: rtdb (SQLite), RT_SiteConfig.pm, token (root's auth token),
#   rt-server.pid, rt-server.log, apt-install.log, initdb.log, seed.log
#   REST2: http://$RT_HOST:$RT_PORT/REST/2.0, header "Authorization: token $(cat token)",
#   or basic auth root:password.
#
# Exit status 77 means "RT cannot be installed here" (not root, not Debian, no package mirror);
# the tests skip on it with the message printed on the last line of stderr.
#
# `install` is skipped when the packages are there; it is the only step that needs root. Measured
# on a 2-core Debian 12 VM: install 37-50 s from a purged state (apt-get update included, 262
# packages, ~50 MB); then initdb ~2 s, seed ~1 s, start until REST2 answers 1-2 s; stop ~1.5 s.
set -euo pipefail

: "${RT_STATE_DIR:?set RT_STATE_DIR to the directory for the db, logs and pid file}"
RT_HOST=${RT_HOST:-127.0.0.1}
RT_PORT=${RT_PORT:-8080}
RT_WORKERS=${RT_WORKERS:-2}
RT_QUEUES=${RT_QUEUES:-Incoming,Billing}
RT_CUSTOM_FIELDS=${RT_CUSTOM_FIELDS:-otai_label}
RT_TIMEZONE=${RT_TIMEZONE:-UTC}
RT_STATE_DIR=$(mkdir -p "$RT_STATE_DIR" && cd "$RT_STATE_DIR" && pwd)
RT_DB_FILE=$RT_STATE_DIR/rtdb
RT_SITE_CONFIG=$RT_STATE_DIR/RT_SiteConfig.pm
RT_SITE_CONFIG_DIR=$RT_STATE_DIR/RT_SiteConfig.d
export RT_SITE_CONFIG RT_SITE_CONFIG_DIR RT_QUEUES RT_CUSTOM_FIELDS
RT_LIBEXEC=/usr/share/request-tracker5/libexec
PACKAGES=(request-tracker5 rt5-db-sqlite rt5-standalone curl)
BASE="http://$RT_HOST:$RT_PORT/REST/2.0"

log() { printf '[rt5-test-server %s] %s\n' "$(date +%T)" "$*" >&2; }
cannot() { log "$*"; printf 'cannot install RT: %s\n' "$*" >&2; exit 77; }

installed() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}

do_install() {
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || cannot "no apt-get/dpkg here (RT5 is installed from Debian packages)"
  if installed; then
    log "RT5 already installed"
    return 0
  fi
  [ "$(id -u)" = 0 ] || cannot "RT5 is not installed and apt-get needs root (uid $(id -u))"
  log "installing ${PACKAGES[*]}"
  # Non-interactive: dbconfig-common creates its own SQLite db, unused (initdb makes ours).
  debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/rtname string rt.localtest
request-tracker5 request-tracker5/organization string rt.localtest
request-tracker5 request-tracker5/correspondaddress string rt@localhost
request-tracker5 request-tracker5/commentaddress string rt-comment@localhost
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1:8080
request-tracker5 request-tracker5/initial-root-password password password
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
EOF
  local apt_log=$RT_STATE_DIR/apt-install.log unreachable line
  unreachable='Failed to fetch|Temporary failure resolving|Could not resolve|Could not connect|Unable to connect|Unable to fetch|Network is unreachable|Connection timed out'
  if [ "${RT_APT_UPDATE:-1}" = 1 ]; then
    apt-get update -qq --error-on=any >"$apt_log" 2>&1 || {
      tail -5 "$apt_log" >&2
      line=$(grep -Em1 "$unreachable" "$apt_log") \
        && cannot "apt-get update cannot reach the package mirrors: ${line:0:200}"
      log "apt-get update failed"; exit 1
    }
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=120 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${PACKAGES[@]}" >>"$apt_log" 2>&1 || {
      tail -30 "$apt_log" >&2
      line=$(grep -Em1 "$unreachable" "$apt_log") \
        && cannot "apt-get install cannot reach the package mirrors: ${line:0:200}"
      log "apt-get install failed (log: $apt_log)"; exit 1
    }
  log "installed"
}

# Our own site config and an empty RT_SiteConfig.d: Debian's snippets in /etc (its db, its /rt
# web path) are not read, and nothing outside $RT_STATE_DIR is written.
write_config() {
  mkdir -p "$RT_SITE_CONFIG_DIR" "$RT_STATE_DIR/mason_data" "$RT_STATE_DIR/session_data"
  printf '#!/bin/sh\ncat >/dev/null\n' >"$RT_STATE_DIR/sendmail"
  chmod +x "$RT_STATE_DIR/sendmail"
  cat >"$RT_SITE_CONFIG" <<EOF
# written by scripts/rt5-test-server.sh (integration tests only)
Set(\$rtname, 'rt.localtest');
Set(\$Organization, 'rt.localtest');
Set(\$CorrespondAddress, 'rt@localhost');
Set(\$CommentAddress, 'rt-comment@localhost');
Set(\$WebPath, '');
Set(\$WebDomain, '$RT_HOST');
Set(\$WebPort, $RT_PORT);
Set(\$WebBaseURL, 'http://$RT_HOST:$RT_PORT');
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$RT_DB_FILE');
Set(\$MasonDataDir, '$RT_STATE_DIR/mason_data');
Set(\$MasonSessionDir, '$RT_STATE_DIR/session_data');
Set(\$MailCommand, 'sendmailpipe');   # mail goes nowhere
Set(\$SendmailPath, '$RT_STATE_DIR/sendmail');
Set(\$LogToSTDERR, 'warning');
Set(\$LogToSyslog, undef);
Set(\$LogToFile, undef);
Set(\$Timezone, '$RT_TIMEZONE');
Set(\$BcryptCost, 4);   # cheap password and token hashing: the default costs ~350 ms a request
1;
EOF
}

do_initdb() {
  write_config
  rm -f "$RT_DB_FILE"
  log "creating a fresh SQLite db $RT_DB_FILE"
  rt-setup-database-5 --action init --skip-create </dev/null >"$RT_STATE_DIR/initdb.log" 2>&1 \
    || { cat "$RT_STATE_DIR/initdb.log" >&2; exit 1; }
}

# Straight into the db, before the server starts: root's auth token, the queues and the custom
# fields (one perl process: RT's start-up is the slow part).
do_seed() {
  write_config
  log "seeding queues ($RT_QUEUES), custom fields ($RT_CUSTOM_FIELDS), root's token"
  perl -e '
    use strict; use warnings;
    use lib "/usr/local/share/request-tracker5/lib", "/usr/share/request-tracker5/lib";
    use RT; RT::LoadConfig(); RT::Init();
    my $root = RT::User->new(RT->SystemUser); $root->Load("root") or die "no root user\n";
    for my $name (grep { length } split /,/, $ENV{RT_QUEUES}) {
      my $q = RT::Queue->new(RT->SystemUser); $q->Load($name);
      next if $q->id;
      my ($ok, $msg) = $q->Create(Name => $name, Description => $name);
      die "queue $name: $msg\n" unless $ok;
    }
    for my $name (grep { length } split /,/, $ENV{RT_CUSTOM_FIELDS}) {
      my $cf = RT::CustomField->new(RT->SystemUser);
      $cf->LoadByName(Name => $name, LookupType => RT::Ticket->CustomFieldLookupType);
      unless ($cf->id) {
        my ($ok, $msg) = $cf->Create(Name => $name, Type => "FreeformSingle",
                                     LookupType => RT::Ticket->CustomFieldLookupType);
        die "custom field $name: $msg\n" unless $ok;
      }
      my ($ok, $msg) = $cf->AddToObject(RT::Queue->new(RT->SystemUser));   # global
      die "custom field $name: $msg\n" unless $ok or $msg =~ /already/i;
    }
    my $token = RT::AuthToken->new(RT::CurrentUser->new($root));
    my ($id, $msg, $secret) = $token->Create(Owner => $root->id, Description => "tests");
    die "token: $msg\n" unless $id;
    print "$secret\n";' >"$RT_STATE_DIR/token" 2>"$RT_STATE_DIR/seed.log" \
    || { cat "$RT_STATE_DIR/seed.log" >&2; exit 1; }
}

running() {
  [ -f "$RT_STATE_DIR/rt-server.pid" ] && kill -0 "$(cat "$RT_STATE_DIR/rt-server.pid")" 2>/dev/null
}

do_start() {
  write_config
  if running; then log "already running (pid $(cat "$RT_STATE_DIR/rt-server.pid"))"; return 0; fi
  log "starting rt-server on $RT_HOST:$RT_PORT"
  nohup "$RT_LIBEXEC/rt-server" --host "$RT_HOST" --port "$RT_PORT" --max-workers "$RT_WORKERS" \
    >"$RT_STATE_DIR/rt-server.log" 2>&1 </dev/null &
  echo $! >"$RT_STATE_DIR/rt-server.pid"
  local i
  for i in $(seq 1 240); do
    if curl -sf -o /dev/null -u root:password "$BASE/rt"; then log "ready: $BASE"; return 0; fi
    running || break
    sleep 0.25
  done
  log "rt-server did not become ready; its log follows"
  cat "$RT_STATE_DIR/rt-server.log" >&2
  do_stop
  exit 1
}

do_stop() {
  [ -f "$RT_STATE_DIR/rt-server.pid" ] || return 0
  local pid _
  pid=$(cat "$RT_STATE_DIR/rt-server.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RT_STATE_DIR/rt-server.pid"
  log "stopped"
}

case "${1:-all}" in
  install) do_install ;;
  initdb)  do_initdb ;;
  seed)    do_seed ;;
  start)   do_start ;;
  stop)    do_stop ;;
  status)  curl -s -u root:password "$BASE/rt" ;;
  all)     do_install; do_stop; do_initdb; do_seed; do_start ;;
  *) echo "usage: $0 [all|install|initdb|seed|start|stop|status]" >&2; exit 2 ;;
esac
