#!/usr/bin/env bash
# Real servers on 127.0.0.1 for Kiln's integration tests.
#
#   scripts/services.sh up [SERVICE...]     start (default: all); a running service is left alone
#   scripts/services.sh down [SERVICE...]   stop by pid files
#   scripts/services.sh status              what runs (exit 3 when something is not running)
#   scripts/services.sh env [SERVICE...]    `export NAME=value` lines for the tests
#   scripts/services.sh check [SERVICE...]  smoke-test the running servers with their clients
#
# Services: git (smart-HTTP through nginx + fcgiwrap + git http-backend, and sshd with git-shell).
# State (configs, keys, logs, pid files, repos) lives in $KILN_SERVICES_DIR, default
# <repo>/target/services; nothing is written outside it except Debian packages installed with apt
# and the /run/sshd directory Debian's sshd insists on.
#
# Adding a service NAME: append it to SERVICES and define
# svc_NAME_{packages,up,down,status,env,check}.
#   packages: print "command-or-path:debian-package" pairs the service needs
#   up:       start whatever is not running (called with the lock held)
#   down:     stop it
#   status:   print one line per process, return non-zero when something is not running
#   env:      print NAME=value lines (unquoted values; also written to $STATE/NAME/env.json)
#   check:    smoke-test the running service, return non-zero on a failure
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${KILN_SERVICES_DIR:-$ROOT/target/services}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
SERVICES=(git)
case "$STATE" in
  *[[:space:]\;\'\"\$]*) printf '[services] error: unsupported characters in %s\n' "$STATE" >&2; exit 1 ;;
esac

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# helpers

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # Do not let the packages' maintainer scripts start system-wide daemons (nginx on port 80,
  # sshd on 22): a policy-rc.d that denies every start, only while we install and only when the
  # machine has none of its own.
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0
  {
    if [ -z "${KILN_APT_UPDATED:-}" ]; then
      $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
      export KILN_APT_UPDATED=1
    fi
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
  } || rc=$?
  if [ -n "$own_policy" ]; then $sudo rm -f "$policy"; fi
  return "$rc"
}

# Install the Debian packages of the given services whose commands are missing.
ensure_packages() {
  local svc pair cmd pkg missing=()
  for svc in "$@"; do
    while read -r pair; do
      [ -n "$pair" ] || continue
      cmd=${pair%%:*} pkg=${pair#*:}
      if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then missing+=("$pkg"); fi
    done < <("svc_${svc}_packages")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing with apt: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  # an exited daemon stays a zombie until pid 1 reaps it (slow in some containers)
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# stop_pid PIDFILE NAME [group]: TERM the process (its whole process group with `group`: a daemon
# we started with setsid, whose children must go too), KILL after 5 s, remove the pid file.
stop_pid() {
  local pid target i
  if pid_alive "$1" "$2"; then
    pid=$(head -n1 "$1")
    target=$pid
    if [ "${3:-}" = group ]; then target="-$pid"; fi
    kill -TERM -- "$target" 2>/dev/null || true
    for i in $(seq 50); do
      pid_alive "$1" "$2" || break
      sleep 0.1
      if [ "$i" = 50 ]; then kill -KILL -- "$target" 2>/dev/null || true; fi
    done
  fi
  rm -f "$1"
}

# Is a TCP port listening on this machine (any address)?
port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A free port outside the ephemeral range; prefer the one in file $1 (the last one used).
pick_port() {
  local port
  if [ -s "$1" ]; then
    port=$(cat "$1")
    if [[ $port =~ ^[0-9]+$ ]] && ! port_in_use "$port"; then echo "$port"; return; fi
  fi
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    if ! port_in_use "$port"; then echo "$port"; return; fi
  done
  die "no free port found"
}

# Wait until a port listens on 127.0.0.1 (daemons bind before they fork, so this is quick).
wait_port() {
  for _ in $(seq 50); do
    if port_in_use "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# run_closed CMD...: exec CMD with stdin from /dev/null and no file descriptors above 2, so that a
# daemon keeps neither our lock (fd 9) nor any pipe of the caller open. Use in a subshell or as the
# last command. Stdout and stderr are the caller's: redirect them to a log.
run_closed() {
  local fd
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
  done
  exec "$@" </dev/null
}

random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24; }

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# write_env_files SVC: $STATE/SVC/env.sh (export lines) and env.json from `svc_SVC_env`.
write_env_files() {
  local svc=$1 dir="$STATE/$1" name value first=1
  local lines
  lines=$("svc_${svc}_env")
  {
    while IFS='=' read -r name value; do
      printf 'export %s=%q\n' "$name" "$value"
    done <<<"$lines"
  } >"$dir/env.sh.tmp"
  {
    printf '{\n'
    while IFS='=' read -r name value; do
      if [ -z "$first" ]; then printf ',\n'; fi
      first=""
      printf '  %s: %s' "$(json_string "$name")" "$(json_string "$value")"
    done <<<"$lines"
    printf '\n}\n'
  } >"$dir/env.json.tmp"
  mv "$dir/env.sh.tmp" "$dir/env.sh"
  mv "$dir/env.json.tmp" "$dir/env.json"
}

# ---------------------------------------------------------------------------------------------
# git: smart HTTP (nginx + fcgiwrap + git http-backend) and SSH (sshd + git-shell)
#
# Layout under $STATE/git:
#   repos/                 bare repos, served at http://127.0.0.1:PORT/{auth,anon}/NAME.git and
#                          ssh://USER@127.0.0.1:SSHPORT$STATE/git/repos/NAME.git
#   server.gitconfig       git config of the serving processes (GIT_CONFIG_GLOBAL), see below
#   http/                  nginx.conf, htpasswd, password, logs, pid files, fcgiwrap socket
#   ssh/                   sshd_config, host key, authorized_keys, logs, pid file
#   keys/                  client keys: deploy_ed25519 (no passphrase), protected_ed25519 (with
#                          the passphrase in protected_ed25519.passphrase)
#   known_hosts            the server's real host key for [127.0.0.1]:SSHPORT
#   known_hosts_wrong      another key for the same host (host-key-mismatch tests)
#   env.sh, env.json       what `env` prints

svc_git_packages() {
  cat <<'EOF'
git:git
/usr/sbin/nginx:nginx-light
/usr/sbin/fcgiwrap:fcgiwrap
htpasswd:apache2-utils
/usr/sbin/sshd:openssh-server
ssh-keygen:openssh-client
ssh:openssh-client
EOF
}

git_dirs() {
  G="$STATE/git"
  GH="$G/http"
  GS="$G/ssh"
  GK="$G/keys"
  GR="$G/repos"
}

# The serving side's git config. uploadpack.allowReachableSHA1InWant / allowAnySHA1InWant let a
# client fetch a commit by its SHA even when no ref points at it: Kiln fetches the exact commit
# of an event, and the base commit of a diff that may be missing locally (shallow clone, force
# push, deleted branch), by SHA. Protocol v2 clients (git CLI) may do that anyway, but protocol
# v0/v1 clients such as libgit2 (git2) get "Server does not allow request for unadvertised
# object" without these, as GitHub- and GitLab-like servers that allow it would not.
# safe.directory: repos made by a test run as another user must still be served.
git_write_server_config() {
  cat >"$G/server.gitconfig" <<'EOF'
[uploadpack]
	allowReachableSHA1InWant = true
	allowAnySHA1InWant = true
	allowFilter = true
[safe]
	directory = *
EOF
}

git_keys() {
  mkdir -p "$GK" "$GS"
  chmod 700 "$GK" "$GS"
  if [ ! -s "$GS/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "kiln-test-host" -f "$GS/ssh_host_ed25519_key"
  fi
  if [ ! -s "$GS/wrong_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "kiln-test-wrong-host" -f "$GS/wrong_host_ed25519_key"
  fi
  if [ ! -s "$GK/deploy_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "kiln-test-deploy" -f "$GK/deploy_ed25519"
  fi
  if [ ! -s "$GK/protected_ed25519" ]; then
    random_secret >"$GK/protected_ed25519.passphrase"
    chmod 600 "$GK/protected_ed25519.passphrase"
    ssh-keygen -q -t ed25519 -N "$(cat "$GK/protected_ed25519.passphrase")" -C "kiln-test-protected" \
      -f "$GK/protected_ed25519"
  fi
  # `restrict`: no pty, no forwarding; sshd_config's ForceCommand runs git-shell.
  {
    printf 'restrict %s\n' "$(cat "$GK/deploy_ed25519.pub")"
    printf 'restrict %s\n' "$(cat "$GK/protected_ed25519.pub")"
  } >"$GS/authorized_keys"
  chmod 600 "$GS/authorized_keys"
}

git_http_up() {
  if pid_alive "$GH/fcgiwrap.pid" fcgiwrap && pid_alive "$GH/nginx.pid" nginx; then
    log "git: http already running on port $(cat "$GH/port")"
    return
  fi
  stop_pid "$GH/nginx.pid" nginx
  stop_pid "$GH/fcgiwrap.pid" fcgiwrap group
  mkdir -p "$GH/tmp" "$GH/logs"

  # A new password for every start of the HTTP server.
  random_secret >"$GH/password"
  chmod 600 "$GH/password"
  htpasswd -i -c -m "$GH/htpasswd" kiln <"$GH/password" 2>/dev/null

  local backend
  backend="$(git --exec-path)/git-http-backend"
  [ -x "$backend" ] || die "git http-backend not found at $backend"

  rm -f "$GH/fcgiwrap.sock"
  # setsid: its own process group, so that `down` stops its children too.
  (run_closed setsid /usr/sbin/fcgiwrap -c 4 -s "unix:$GH/fcgiwrap.sock") >>"$GH/logs/fcgiwrap.log" 2>&1 &
  echo $! >"$GH/fcgiwrap.pid"
  for _ in $(seq 50); do [ -S "$GH/fcgiwrap.sock" ] && break; sleep 0.1; done
  if [ ! -S "$GH/fcgiwrap.sock" ] || ! pid_alive "$GH/fcgiwrap.pid" fcgiwrap; then
    die "fcgiwrap did not start (see $GH/logs/fcgiwrap.log)"
  fi

  local user_line="" port attempt
  if [ "$(id -u)" = 0 ]; then user_line="user root root;"; fi
  for attempt in 1 2 3 4 5; do
    port=$(pick_port "$GH/port")
    cat >"$GH/nginx.conf" <<EOF
# generated by scripts/services.sh
$user_line
daemon on;
worker_processes 1;
pid $GH/nginx.pid;
error_log $GH/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log $GH/logs/access.log;
  client_body_temp_path $GH/tmp/body;
  proxy_temp_path $GH/tmp/proxy;
  fastcgi_temp_path $GH/tmp/fastcgi;
  uwsgi_temp_path $GH/tmp/uwsgi;
  scgi_temp_path $GH/tmp/scgi;
  client_max_body_size 0;
  fastcgi_buffering off;
  fastcgi_request_buffering off;
  fastcgi_read_timeout 300s;

  server {
    listen 127.0.0.1:$port;
    server_name localhost;

    # Basic auth (user kiln, password in $GH/password); push allowed (REMOTE_USER is set).
    location ~ ^/auth(/.*)$ {
      auth_basic "kiln git";
      auth_basic_user_file $GH/htpasswd;
      fastcgi_pass unix:$GH/fcgiwrap.sock;
      fastcgi_param SCRIPT_FILENAME $backend;
      fastcgi_param PATH_INFO \$1;
      fastcgi_param REMOTE_USER \$remote_user;
      include $GH/fastcgi_common;
    }

    # Anonymous read-only (no REMOTE_USER: git http-backend refuses receive-pack).
    location ~ ^/anon(/.*)$ {
      fastcgi_pass unix:$GH/fcgiwrap.sock;
      fastcgi_param SCRIPT_FILENAME $backend;
      fastcgi_param PATH_INFO \$1;
      fastcgi_param REMOTE_USER "";
      fastcgi_param GIT_CONFIG_COUNT 1;
      fastcgi_param GIT_CONFIG_KEY_0 http.receivepack;
      fastcgi_param GIT_CONFIG_VALUE_0 false;
      include $GH/fastcgi_common;
    }

    location / { return 404; }
  }
}
EOF
    cat >"$GH/fastcgi_common" <<EOF
fastcgi_param GIT_PROJECT_ROOT $GR;
fastcgi_param GIT_HTTP_EXPORT_ALL 1;
fastcgi_param GIT_CONFIG_GLOBAL $G/server.gitconfig;
fastcgi_param GIT_CONFIG_NOSYSTEM 1;
fastcgi_param HOME $G;
fastcgi_param PATH /usr/local/bin:/usr/bin:/bin;
fastcgi_param QUERY_STRING \$query_string;
fastcgi_param REQUEST_METHOD \$request_method;
fastcgi_param CONTENT_TYPE \$content_type;
fastcgi_param CONTENT_LENGTH \$content_length;
fastcgi_param REQUEST_URI \$request_uri;
fastcgi_param SERVER_PROTOCOL \$server_protocol;
fastcgi_param REMOTE_ADDR \$remote_addr;
fastcgi_param SERVER_NAME \$server_name;
fastcgi_param SERVER_PORT \$server_port;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param HTTP_GIT_PROTOCOL \$http_git_protocol;
EOF
    rm -f "$GH/nginx.pid"
    if (run_closed /usr/sbin/nginx -e "$GH/logs/error.log" -p "$GH" -c "$GH/nginx.conf") \
      >>"$GH/logs/nginx.out" 2>&1; then
      echo "$port" >"$GH/port"
      wait_port "$port" || die "nginx does not listen on $port (see $GH/logs/error.log)"
      log "git: http on 127.0.0.1:$port"
      return
    fi
    log "git: nginx could not start on port $port (attempt $attempt), trying another"
    rm -f "$GH/port"
  done
  die "nginx did not start (see $GH/logs/error.log and $GH/logs/nginx.out)"
}

git_ssh_up() {
  if pid_alive "$GS/sshd.pid" sshd; then
    log "git: ssh already running on port $(cat "$GS/port")"
    return
  fi
  stop_pid "$GS/sshd.pid" sshd
  # Debian's sshd needs its privilege-separation directory (normally made by systemd).
  if [ ! -d /run/sshd ]; then $sudo mkdir -p /run/sshd && $sudo chmod 755 /run/sshd; fi

  local user shell port attempt
  user=$(id -un)
  # sshd runs the forced command with the user's login shell.
  shell=$(getent passwd "$user" | cut -d: -f7)
  [ -x "$shell" ] || die "the login shell of $user ($shell) is not executable"
  for attempt in 1 2 3 4 5; do
    port=$(pick_port "$GS/port")
    cat >"$GS/sshd_config" <<EOF
# generated by scripts/services.sh
ListenAddress 127.0.0.1:$port
HostKey $GS/ssh_host_ed25519_key
PidFile $GS/sshd.pid
AuthorizedKeysFile $GS/authorized_keys
AllowUsers $user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
StrictModes no
PermitTTY no
DisableForwarding yes
PermitUserRC no
PermitUserEnvironment no
PrintMotd no
LogLevel VERBOSE
SetEnv GIT_CONFIG_GLOBAL=$G/server.gitconfig GIT_CONFIG_NOSYSTEM=1
ForceCommand git-shell -c "\$SSH_ORIGINAL_COMMAND"
EOF
    rm -f "$GS/sshd.pid"
    # sshd binds before it forks into the background: a busy port fails here.
    if (run_closed /usr/sbin/sshd -f "$GS/sshd_config" -E "$GS/sshd.log") >>"$GS/sshd.out" 2>&1; then
      echo "$port" >"$GS/port"
      wait_port "$port" || die "sshd does not listen on $port (see $GS/sshd.log)"
      for _ in $(seq 50); do [ -s "$GS/sshd.pid" ] && break; sleep 0.1; done
      log "git: ssh on 127.0.0.1:$port (user $user)"
      break
    fi
    log "git: sshd could not start on port $port (attempt $attempt), trying another"
    rm -f "$GS/port"
    if [ "$attempt" = 5 ]; then die "sshd did not start (see $GS/sshd.log and $GS/sshd.out)"; fi
  done
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$GS/ssh_host_ed25519_key.pub")" >"$G/known_hosts"
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$GS/wrong_host_ed25519_key.pub")" \
    >"$G/known_hosts_wrong"
}

svc_git_up() {
  git_dirs
  mkdir -p "$G" "$GR" "$GH"
  git_write_server_config
  git_keys
  git_http_up
  git_ssh_up
  write_env_files git
}

svc_git_down() {
  git_dirs
  stop_pid "$GH/nginx.pid" nginx
  stop_pid "$GH/fcgiwrap.pid" fcgiwrap group
  rm -f "$GH/fcgiwrap.sock"
  stop_pid "$GS/sshd.pid" sshd
}

svc_git_status() {
  git_dirs
  local rc=0 name pidfile comm what
  for what in "http nginx $GH/nginx.pid" "http fcgiwrap $GH/fcgiwrap.pid" "ssh sshd $GS/sshd.pid"; do
    read -r name comm pidfile <<<"$what"
    if pid_alive "$pidfile" "$comm"; then
      local port_file="$GH/port"
      [ "$name" = ssh ] && port_file="$GS/port"
      if [ "$comm" = fcgiwrap ]; then
        printf 'git  %-9s running  pid %s  socket %s\n' "$comm" "$(cat "$pidfile")" "$GH/fcgiwrap.sock"
      else
        printf 'git  %-9s running  pid %s  127.0.0.1:%s\n' "$comm" "$(cat "$pidfile")" "$(cat "$port_file")"
      fi
    else
      printf 'git  %-9s stopped\n' "$comm"
      rc=3
    fi
  done
  return "$rc"
}

svc_git_env() {
  git_dirs
  local http ssh user
  http="http://127.0.0.1:$(cat "$GH/port")"
  ssh=$(cat "$GS/port")
  user=$(id -un)
  cat <<EOF
KILN_GIT_REPOS=$GR
KILN_GIT_HTTP_URL=$http
KILN_GIT_HTTP_AUTH_URL=$http/auth
KILN_GIT_HTTP_ANON_URL=$http/anon
KILN_GIT_HTTP_USER=kiln
KILN_GIT_HTTP_PASSWORD_FILE=$GH/password
KILN_GIT_SSH_HOST=127.0.0.1
KILN_GIT_SSH_PORT=$ssh
KILN_GIT_SSH_USER=$user
KILN_GIT_SSH_URL=ssh://$user@127.0.0.1:$ssh$GR
KILN_GIT_SSH_KEY=$GK/deploy_ed25519
KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED=$GK/protected_ed25519
KILN_GIT_SSH_KEY_PASSPHRASE_FILE=$GK/protected_ed25519.passphrase
KILN_GIT_KNOWN_HOSTS=$G/known_hosts
KILN_GIT_KNOWN_HOSTS_WRONG=$G/known_hosts_wrong
KILN_GIT_ENV_JSON=$G/env.json
EOF
}

# A smoke test with the git CLI against the running servers (`scripts/services.sh check git`).
svc_git_check() {
  git_dirs
  local t name pass http ssh_ok ssh_wrong rc=0 sha
  t=$(mktemp -d)
  name="selftest-$$.git"
  # shellcheck disable=SC2064
  trap "rm -rf '$t' '$GR/$name'" EXIT
  # shellcheck source=/dev/null
  source "$G/env.sh"
  pass=$(cat "$KILN_GIT_HTTP_PASSWORD_FILE")
  http="http://kiln:$pass@127.0.0.1:$(cat "$GH/port")"
  ssh_ok="ssh -i $KILN_GIT_SSH_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$KILN_GIT_KNOWN_HOSTS"
  ssh_wrong="ssh -i $KILN_GIT_SSH_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$KILN_GIT_KNOWN_HOSTS_WRONG"
  git init -q --bare -b main "$GR/$name"
  git init -q -b main "$t/src"
  git -C "$t/src" -c user.name=t -c user.email=t@t commit -q --allow-empty -m one
  sha=$(git -C "$t/src" rev-parse HEAD)
  expect() {   # expect ok|fail:MESSAGE DESCRIPTION COMMAND...: succeeds, or fails saying MESSAGE
    local spec=$1 want=${1%%:*} message=${1#*:} what=$2 got=ok
    shift 2
    GIT_TERMINAL_PROMPT=0 "$@" >"$t/out" 2>&1 || got=fail
    if [ "$got" = "$want" ] && { [ "$got" = ok ] || grep -qE -- "$message" "$t/out"; }; then
      printf 'ok    %s\n' "$what"
    else
      printf 'FAIL  %s (expected: %s)\n' "$what" "$spec"
      sed 's/^/      /' "$t/out"
      rc=1
    fi
  }
  expect ok "http push through /auth/" git -C "$t/src" push -q "$http/auth/$name" HEAD:refs/heads/main
  expect "fail:error: 403" "http push through /anon/ is refused (403)" git -C "$t/src" push -q "$KILN_GIT_HTTP_ANON_URL/$name" HEAD:refs/heads/x
  expect "fail:could not read Username|Authentication failed" \
    "http clone through /auth/ without a password fails (401)" git clone -q "$KILN_GIT_HTTP_AUTH_URL/$name" "$t/c0"
  expect "fail:Authentication failed" "http clone through /auth/ with a wrong password fails (401)" \
    git clone -q "http://kiln:wrong@127.0.0.1:$(cat "$GH/port")/auth/$name" "$t/c1"
  expect ok "http clone through /auth/" git clone -q "$http/auth/$name" "$t/c2"
  expect ok "http clone through /anon/" git clone -q "$KILN_GIT_HTTP_ANON_URL/$name" "$t/c3"
  expect ok "ssh clone with the deploy key and known_hosts" \
    env GIT_SSH_COMMAND="$ssh_ok" git clone -q "$KILN_GIT_SSH_URL/$name" "$t/c4"
  expect "fail:HOST IDENTIFICATION HAS CHANGED" "ssh clone with the wrong known_hosts fails" \
    env GIT_SSH_COMMAND="$ssh_wrong" git clone -q "$KILN_GIT_SSH_URL/$name" "$t/c5"
  expect "fail:unrecognized command" "ssh shell command is refused by git-shell" sh -c "$ssh_ok -p $KILN_GIT_SSH_PORT $KILN_GIT_SSH_USER@127.0.0.1 id"
  # the protected key: refused without its passphrase, accepted by the server once opened
  expect "fail:Permission denied" "ssh with the protected key and no passphrase fails" \
    env GIT_SSH_COMMAND="${ssh_ok/$KILN_GIT_SSH_KEY/$KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED}" \
    git ls-remote "$KILN_GIT_SSH_URL/$name"
  cp "$KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED" "$t/opened"
  ssh-keygen -q -p -P "$(cat "$KILN_GIT_SSH_KEY_PASSPHRASE_FILE")" -N '' -f "$t/opened" >/dev/null
  expect ok "ssh with the protected key, opened with its passphrase" \
    env GIT_SSH_COMMAND="${ssh_ok/$KILN_GIT_SSH_KEY/$t/opened}" git ls-remote "$KILN_GIT_SSH_URL/$name"
  git -C "$t/c4" -c user.name=t -c user.email=t@t commit -q --allow-empty -m two
  expect ok "ssh push" env GIT_SSH_COMMAND="$ssh_ok" git -C "$t/c4" push -q origin HEAD:refs/heads/main
  # an unreferenced commit, fetched by SHA with protocol v0 (as libgit2 does)
  git -C "$t/c4" -c user.name=t -c user.email=t@t commit -q --allow-empty -m hidden
  sha=$(git -C "$t/c4" rev-parse HEAD)
  env GIT_SSH_COMMAND="$ssh_ok" git -C "$t/c4" push -q origin HEAD:refs/heads/tmp
  env GIT_SSH_COMMAND="$ssh_ok" git -C "$t/c4" push -q origin :refs/heads/tmp
  git init -q "$t/f"
  expect ok "http fetch of an unreferenced commit by SHA (protocol v0)" \
    git -C "$t/f" -c protocol.version=0 fetch -q --depth=1 "$KILN_GIT_HTTP_ANON_URL/$name" "$sha"
  expect ok "ssh fetch of an unreferenced commit by SHA (protocol v0)" env GIT_SSH_COMMAND="$ssh_ok" \
    git -C "$t/f" -c protocol.version=0 fetch -q --depth=1 "$KILN_GIT_SSH_URL/$name" "$sha"
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# commands

known_service() {
  local s
  for s in "${SERVICES[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# select SERVICE...: the services named (default: all) into the array `svcs`.
select_services() {
  local s
  if [ "$#" = 0 ]; then set -- "${SERVICES[@]}"; fi
  svcs=()
  for s in "$@"; do
    known_service "$s" || die "unknown service '$s' (known: ${SERVICES[*]})"
    svcs+=("$s")
  done
}

# Serialise up/down between processes (two test binaries may call `up` at the same time).
lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "timed out waiting for $STATE/.lock"
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

cmd=${1:-}
[ "$#" -gt 0 ] && shift
case "$cmd" in
  up)
    select_services "$@"
    lock
    ensure_packages "${svcs[@]}"
    for s in "${svcs[@]}"; do "svc_${s}_up"; done
    ;;
  down)
    select_services "$@"
    lock
    for s in "${svcs[@]}"; do "svc_${s}_down"; done
    ;;
  status)
    rc=0
    for s in "${SERVICES[@]}"; do "svc_${s}_status" || rc=$?; done
    exit "$rc"
    ;;
  env)
    select_services "$@"
    rc=0
    for s in "${svcs[@]}"; do
      if "svc_${s}_status" >/dev/null && [ -s "$STATE/$s/env.sh" ]; then
        cat "$STATE/$s/env.sh"
      else
        log "$s is not running (scripts/services.sh up $s)"
        rc=1
      fi
    done
    exit "$rc"
    ;;
  check)
    select_services "$@"
    rc=0
    for s in "${svcs[@]}"; do
      if ! "svc_${s}_status" >/dev/null; then log "$s is not running"; rc=1; continue; fi
      "svc_${s}_check" || rc=1
    done
    exit "$rc"
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
