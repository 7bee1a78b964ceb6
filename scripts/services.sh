#!/usr/bin/env bash
# Real servers on 127.0.0.1 for Kiln's integration tests.
#
#   scripts/services.sh up [SERVICE...]     start (default: all); a running service is left alone
#   scripts/services.sh down [SERVICE...]   stop by pid files
#   scripts/services.sh status              what runs (exit 3 when something is not running)
#   scripts/services.sh env [SERVICE...]    `export NAME=value` lines for the tests
#   scripts/services.sh check [SERVICE...]  smoke-test the running servers with their clients
#
# Services:
#   git       smart-HTTP through nginx + fcgiwrap + git http-backend, and sshd with git-shell
#   docker    Debian's dockerd 20.10 (built-in BuildKit) and its own containerd on a private unix
#             socket, no bridge; a local base image kiln.local/busybox:latest (needs root)
#   registry  two Docker registries (distribution 2.8) on 127.0.0.1: anonymous, and htpasswd auth
#   toolchains  images with Go, Node, Python and Jupyter from Debian packages, in that dockerd
#             (debootstrap'd bookworm base; a few minutes the first time)
# State (configs, keys, logs, pid files, repos, images) lives in $KILN_SERVICES_DIR, default
# <repo>/target/services; nothing is written outside it except Debian packages installed with apt,
# the /run/sshd directory Debian's sshd insists on, dockerd's trust key /etc/docker/key.json
# (20.10 has no flag to move it), containerd's shim sockets in /run/containerd/s, and docker's
# exec-root /run/kiln-docker-<hash> when $KILN_SERVICES_DIR is too long for unix socket paths.
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
SERVICES=(git docker registry toolchains)
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
      if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ] && [[ " ${missing[*]} " != *" $pkg "* ]]; then
        missing+=("$pkg")
      fi
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
# docker: Debian's dockerd 20.10 (built-in BuildKit) with its own containerd, on a private socket
#
# Layout under $STATE/docker:
#   docker.sock            the Engine API (KILN_DOCKER_HOST=unix://...)
#   data/                  --data-root (images, layers; containerd's root in data/containerd)
#   dockerd.log, containerd.log, containerd.toml, daemon.json, pid files
#   exec-root              the path of dockerd's --exec-root and containerd's sockets (see below)
#   env.sh, env.json       what `env` prints
#
# dockerd would silently use a system containerd when /run/containerd/containerd.sock exists, so
# we start our own containerd (its config, root and sockets ours) and pass it with --containerd.
# Unix socket paths are limited to 107 bytes: --exec-root is $STATE/docker/exec when that is
# short enough, otherwise /run/kiln-docker-<hash of $STATE> (the docker socket goes there too when
# $STATE/docker/docker.sock is too long). Also outside $STATE: the shim sockets containerd keeps
# in /run/containerd/s (named by a hash of our containerd's address: no clash with a system one)
# and dockerd 20.10's trust key /etc/docker/key.json (no flag moves it in 20.10).
# Debian installs dockerd as /usr/sbin/dockerd.
# Only network `none` and `host` exist (--bridge none): containers and builds must use one.
# /usr/bin/docker is Debian's 20.10 client; /usr/local/bin/docker, if present, is another one.
#
# The base image kiln.local/busybox:latest is made locally (`docker import` of a busybox-static
# rootfs): no registry is reachable to pull from.

DOCKER_BIN=/usr/bin/docker
KILN_BASE_IMAGE=kiln.local/busybox:latest

svc_docker_packages() {
  cat <<'EOF'
/usr/sbin/dockerd:docker.io
/usr/bin/docker:docker.io
/usr/bin/containerd:containerd
/usr/bin/containerd-shim-runc-v2:containerd
/usr/sbin/runc:runc
/bin/busybox:busybox-static
EOF
}

docker_dirs() {
  D="$STATE/docker"
  DX="$D/exec"
  # the longest socket under exec-root: containerd/containerd.sock.ttrpc
  if [ "$((${#DX} + 32))" -gt 100 ]; then
    DX="/run/kiln-docker-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)"
  fi
  DSOCK="$D/docker.sock"
  if [ "$((${#DSOCK}))" -gt 100 ]; then DSOCK="$DX/docker.sock"; fi
  DCSOCK="$DX/containerd/containerd.sock"
}

# docker CLI (Debian's client) against our daemon
dock() { DOCKER_CONFIG="$D/client" "$DOCKER_BIN" -H "unix://$DSOCK" "$@"; }

docker_containerd_up() {
  if pid_alive "$D/containerd.pid" containerd; then return; fi
  stop_pid "$D/containerd.pid" containerd group
  mkdir -p "$DX/containerd" "$D/data/containerd"
  cat >"$D/containerd.toml" <<EOF
# generated by scripts/services.sh
version = 2
root = "$D/data/containerd"
state = "$DX/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$DCSOCK"
[ttrpc]
  address = "$DCSOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/data/containerd/opt"
EOF
  rm -f "$DCSOCK" "$DCSOCK.ttrpc"
  (run_closed setsid /usr/bin/containerd --config "$D/containerd.toml") >>"$D/containerd.log" 2>&1 &
  echo $! >"$D/containerd.pid"
  for _ in $(seq 100); do [ -S "$DCSOCK" ] && break; sleep 0.1; done
  if [ ! -S "$DCSOCK" ] || ! pid_alive "$D/containerd.pid" containerd; then
    die "containerd did not start (see $D/containerd.log)"
  fi
}

docker_daemon_up() {
  if pid_alive "$D/dockerd.pid" dockerd && dock version >/dev/null 2>&1; then
    log "docker: dockerd already running on $DSOCK"
    return
  fi
  stop_pid "$D/dockerd.pid" dockerd group
  mkdir -p "$D/data" "$DX" "$D/client"
  echo "$DX" >"$D/exec-root"
  # an empty daemon.json: no /etc/docker/daemon.json of the machine applies
  [ -s "$D/daemon.json" ] || echo '{}' >"$D/daemon.json"
  docker_containerd_up
  rm -f "$DSOCK"
  (run_closed setsid /usr/sbin/dockerd \
    --host "unix://$DSOCK" \
    --config-file "$D/daemon.json" \
    --containerd "$DCSOCK" \
    --data-root "$D/data" \
    --exec-root "$DX" \
    --pidfile "$D/dockerd.pid.daemon" \
    --storage-driver overlay2 \
    --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false) \
    >>"$D/dockerd.log" 2>&1 &
  echo $! >"$D/dockerd.pid"
  local i
  for i in $(seq 300); do
    if dock version >/dev/null 2>&1; then break; fi
    if ! pid_alive "$D/dockerd.pid" dockerd; then
      die "dockerd exited while starting (see $D/dockerd.log)"
    fi
    if [ "$i" = 300 ]; then die "dockerd does not answer on $DSOCK after 30 s (see $D/dockerd.log)"; fi
    sleep 0.1
  done
  log "docker: dockerd $(dock version -f '{{.Server.Version}}') on $DSOCK"
}

# kiln.local/busybox:latest from busybox-static, unless the image exists.
docker_base_image() {
  if dock image inspect "$KILN_BASE_IMAGE" >/dev/null 2>&1; then return; fi
  local r a
  r=$(mktemp -d)
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  # relative links (what `busybox --install -s` would make inside the image, not on the host)
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  tar -C "$r" --numeric-owner --owner=0 --group=0 -cf - . |
    dock import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$KILN_BASE_IMAGE" >/dev/null ||
    { rm -rf "$r"; die "docker import of $KILN_BASE_IMAGE failed (see $D/dockerd.log)"; }
  rm -rf "$r"
  log "docker: made $KILN_BASE_IMAGE from busybox-static"
}

svc_docker_up() {
  docker_dirs
  if [ "$(id -u)" != 0 ]; then die "docker: dockerd needs root (run scripts/services.sh as root)"; fi
  mkdir -p "$D"
  docker_daemon_up
  docker_base_image
  write_env_files docker
}

# Containerd shims of our containerd (they outlive it when a container still runs).
docker_shims() {
  local p
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in containerd-shim*) ;; *) continue ;; esac
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$DCSOCK"; then echo "${p#/proc/}"; fi
  done
}

svc_docker_down() {
  docker_dirs
  local pid mnt
  if pid_alive "$D/dockerd.pid" dockerd; then
    # test containers are disposable: kill them rather than wait out their 10 s stop timeout
    # (dockerd's shutdown waits for the longest of --shutdown-timeout and theirs)
    # shellcheck disable=SC2046
    dock kill $(dock ps -q 2>/dev/null) >/dev/null 2>&1 || true
    pid=$(cat "$D/dockerd.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do pid_alive "$D/dockerd.pid" dockerd || break; sleep 0.1; done
  fi
  stop_pid "$D/dockerd.pid" dockerd group
  stop_pid "$D/containerd.pid" containerd group
  for pid in $(docker_shims); do kill -KILL "$pid" 2>/dev/null || true; done
  # mounts a killed daemon left behind (container rootfs, netns), innermost first
  awk -v a="$D/data/" -v b="$DX/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts |
    sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -f "$DSOCK" "$D/dockerd.pid.daemon"
}

svc_docker_status() {
  docker_dirs
  local rc=0
  if pid_alive "$D/containerd.pid" containerd; then
    printf 'docker  %-10s running  pid %s  socket %s\n' containerd "$(cat "$D/containerd.pid")" "$DCSOCK"
  else
    printf 'docker  %-10s stopped\n' containerd
    rc=3
  fi
  if pid_alive "$D/dockerd.pid" dockerd; then
    printf 'docker  %-10s running  pid %s  socket %s\n' dockerd "$(cat "$D/dockerd.pid")" "$DSOCK"
  else
    printf 'docker  %-10s stopped\n' dockerd
    rc=3
  fi
  return "$rc"
}

svc_docker_env() {
  docker_dirs
  cat <<EOF
KILN_DOCKER_HOST=unix://$DSOCK
KILN_DOCKER_CLI=$DOCKER_BIN
KILN_BASE_IMAGE=$KILN_BASE_IMAGE
KILN_DOCKER_ENV_JSON=$D/env.json
EOF
}

# check_expect DESCRIPTION COMMAND...: print ok/FAIL with the command's output on a failure.
check_expect() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    printf 'ok    %s\n' "$what"
  else
    printf 'FAIL  %s\n' "$what"
    printf '%s\n' "$out" | sed 's/^/      /'
    return 1
  fi
}

svc_docker_check() {
  docker_dirs
  local rc=0 out
  check_expect "docker version (client $DOCKER_BIN, daemon on $DSOCK)" dock version || rc=1
  check_expect "$KILN_BASE_IMAGE exists" dock image inspect "$KILN_BASE_IMAGE" || rc=1
  if out=$(dock run --rm --network none "$KILN_BASE_IMAGE" echo ok 2>&1) && [ "$out" = ok ]; then
    printf 'ok    docker run --network none %s echo ok\n' "$KILN_BASE_IMAGE"
  else
    printf 'FAIL  docker run --network none %s echo ok: containers cannot run here\n' "$KILN_BASE_IMAGE"
    printf '%s\n' "$out" | sed 's/^/      /'
    rc=1
  fi
  # BuildKit: dockerd 20.10's built-in one; Debian's 20.10 client speaks to it without buildx
  check_expect "BuildKit build (DOCKER_BUILDKIT=1, FROM $KILN_BASE_IMAGE, RUN)" \
    env DOCKER_BUILDKIT=1 DOCKER_CONFIG="$D/client" "$DOCKER_BIN" -H "unix://$DSOCK" \
    build --progress plain --network none -t kiln.local/check:latest - \
    <<<"$(printf 'FROM %s\nRUN echo hi > /hi\n' "$KILN_BASE_IMAGE")" || rc=1
  if out=$(dock run --rm --network none kiln.local/check:latest cat /hi 2>&1) && [ "$out" = hi ]; then
    printf 'ok    the built image has /hi\n'
  else
    printf 'FAIL  the built image has /hi\n'
    printf '%s\n' "$out" | sed 's/^/      /'
    rc=1
  fi
  dock image rm kiln.local/check:latest >/dev/null 2>&1 || true
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# registry: two Docker registries (distribution 2.8) on 127.0.0.1, filesystem storage
#
# Layout under $STATE/registry:
#   anon/                  no auth: config.yml, data/, registry.log, pid, port
#   auth/                  basic auth (htpasswd, bcrypt), user kiln, a new random password in
#                          auth/password at each start
#   env.sh, env.json       what `env` prints
# Debian's /etc/docker/registry/config.yml is not used (all interfaces, a directory as htpasswd).

svc_registry_packages() {
  cat <<'EOF'
/usr/bin/docker-registry:docker-registry
htpasswd:apache2-utils
skopeo:skopeo
curl:curl
EOF
}

registry_dirs() {
  R="$STATE/registry"
}

# registry_instance_up NAME: start $R/NAME (auth when NAME is auth) unless it runs.
registry_instance_up() {
  local name=$1 dir="$R/$1" port attempt auth=""
  if pid_alive "$dir/registry.pid" docker-registry; then
    log "registry: $name already running on port $(cat "$dir/port")"
    return
  fi
  stop_pid "$dir/registry.pid" docker-registry group
  mkdir -p "$dir/data"
  if [ "$name" = auth ]; then
    random_secret >"$dir/password"
    chmod 600 "$dir/password"
    htpasswd -Bbn kiln "$(cat "$dir/password")" >"$dir/htpasswd"
    auth="auth:
  htpasswd:
    realm: kiln-registry
    path: $dir/htpasswd"
  fi
  for attempt in 1 2 3 4 5; do
    port=$(pick_port "$dir/port")
    cat >"$dir/config.yml" <<EOF
# generated by scripts/services.sh
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: $(random_secret)
$auth
EOF
    (run_closed setsid /usr/bin/docker-registry serve "$dir/config.yml") >>"$dir/registry.log" 2>&1 &
    echo $! >"$dir/registry.pid"
    if wait_port "$port" && pid_alive "$dir/registry.pid" docker-registry; then
      echo "$port" >"$dir/port"
      log "registry: $name on 127.0.0.1:$port"
      return
    fi
    stop_pid "$dir/registry.pid" docker-registry group
    log "registry: $name could not start on port $port (attempt $attempt), trying another"
    rm -f "$dir/port"
  done
  die "registry $name did not start (see $dir/registry.log)"
}

svc_registry_up() {
  registry_dirs
  mkdir -p "$R"
  registry_instance_up anon
  registry_instance_up auth
  write_env_files registry
}

svc_registry_down() {
  registry_dirs
  stop_pid "$R/anon/registry.pid" docker-registry group
  stop_pid "$R/auth/registry.pid" docker-registry group
}

svc_registry_status() {
  registry_dirs
  local rc=0 name
  for name in anon auth; do
    if pid_alive "$R/$name/registry.pid" docker-registry; then
      printf 'registry  %-5s running  pid %s  127.0.0.1:%s\n' "$name" "$(cat "$R/$name/registry.pid")" \
        "$(cat "$R/$name/port")"
    else
      printf 'registry  %-5s stopped\n' "$name"
      rc=3
    fi
  done
  return "$rc"
}

svc_registry_env() {
  registry_dirs
  cat <<EOF
KILN_REGISTRY=127.0.0.1:$(cat "$R/anon/port")
KILN_REGISTRY_AUTH=127.0.0.1:$(cat "$R/auth/port")
KILN_REGISTRY_USER=kiln
KILN_REGISTRY_PASSWORD=$(cat "$R/auth/password")
KILN_REGISTRY_ENV_JSON=$R/env.json
EOF
}

# http_code URL [curl args...]: the HTTP status of a GET
http_code() {
  local url=$1
  shift
  curl -sS -o /dev/null -w '%{http_code}' "$@" "$url"
}

svc_registry_check() {
  registry_dirs
  local rc=0 anon auth pw code tag cfg
  anon=127.0.0.1:$(cat "$R/anon/port")
  auth=127.0.0.1:$(cat "$R/auth/port")
  pw=$(cat "$R/auth/password")
  expect_code() {   # expect_code WANT DESCRIPTION URL [curl args]
    local want=$1 what=$2
    shift 2
    code=$(http_code "$@" 2>&1) || true
    if [ "$code" = "$want" ]; then printf 'ok    %s\n' "$what"; else
      printf 'FAIL  %s (HTTP %s, expected %s)\n' "$what" "$code" "$want"
      rc=1
    fi
  }
  expect_code 200 "GET http://$anon/v2/ (anonymous registry)" "http://$anon/v2/"
  expect_code 401 "GET http://$auth/v2/ without credentials is refused (401)" "http://$auth/v2/"
  expect_code 401 "GET http://$auth/v2/ with a wrong password is refused (401)" "http://$auth/v2/" -u kiln:wrong
  expect_code 200 "GET http://$auth/v2/ with credentials" "http://$auth/v2/" -u "kiln:$pw"

  if ! (svc_docker_status >/dev/null 2>&1); then
    log "registry: docker is not running: push checks skipped (scripts/services.sh up docker)"
    return "$rc"
  fi
  docker_dirs
  # a client config of our own: never the user's ~/.docker
  cfg=$(mktemp -d "$R/docker-config.XXXXXX")
  tag="selftest-$$"
  # shellcheck disable=SC2317  # called through check_expect
  dockc() { DOCKER_CONFIG="$cfg" "$DOCKER_BIN" -H "unix://$DSOCK" "$@"; }
  # shellcheck disable=SC2317
  push_anon() {
    dockc tag "$KILN_BASE_IMAGE" "$anon/kiln/busybox:$tag" && dockc push "$anon/kiln/busybox:$tag" &&
      dockc image rm "$anon/kiln/busybox:$tag"
  }
  # shellcheck disable=SC2317
  login_auth() { printf '%s' "$pw" | dockc login -u kiln --password-stdin "$auth"; }
  check_expect "docker push $anon/kiln/busybox:$tag" push_anon || rc=1
  check_expect "skopeo inspect docker://$anon/kiln/busybox:$tag" \
    skopeo inspect --tls-verify=false "docker://$anon/kiln/busybox:$tag" || rc=1
  if dockc tag "$KILN_BASE_IMAGE" "$auth/kiln/busybox:$tag" && ! dockc push "$auth/kiln/busybox:$tag" >/dev/null 2>&1; then
    printf 'ok    docker push to %s without login is refused\n' "$auth"
  else
    printf 'FAIL  docker push to %s without login is refused\n' "$auth"
    rc=1
  fi
  check_expect "docker login $auth (DOCKER_CONFIG in $R)" login_auth || rc=1
  check_expect "docker push $auth/kiln/busybox:$tag" dockc push "$auth/kiln/busybox:$tag" || rc=1
  check_expect "skopeo inspect --creds docker://$auth/kiln/busybox:$tag" \
    skopeo inspect --tls-verify=false --creds "kiln:$pw" "docker://$auth/kiln/busybox:$tag" || rc=1
  if ! skopeo inspect --tls-verify=false "docker://$auth/kiln/busybox:$tag" >/dev/null 2>&1; then
    printf 'ok    skopeo inspect without --creds is refused\n'
  else
    printf 'FAIL  skopeo inspect without --creds is refused\n'
    rc=1
  fi
  dockc image rm "$auth/kiln/busybox:$tag" >/dev/null 2>&1 || true
  rm -rf "$cfg"
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# toolchains: local images with language toolchains, for builds of real Go, Node, Python and
# Jupyter projects (the `detect` plugin's Dockerfiles, seed 002's two-stage Go build). No image
# registry is reachable, so they are made here: a Debian bookworm rootfs by debootstrap (kept as
# $STATE/toolchains/debian-bookworm.tar, so a fresh docker data root does not debootstrap again),
# imported as kiln.local/debian:bookworm, and one image per toolchain built on it with Debian's
# packages (`RUN apt-get install` with network `host`). Each image is tagged with a hash of its
# Dockerfile, so a changed package list makes a new image. Needs the docker service.

TOOLCHAINS=(golang node python jupyter)
toolchain_packages() {
  case "$1" in
    golang) echo "golang-go git ca-certificates" ;;
    node) echo "nodejs npm ca-certificates" ;;
    python) echo "python3 python3-venv python3-pip ca-certificates" ;;
    jupyter) echo "python3 python3-venv python3-pip jupyter-notebook ca-certificates" ;;
  esac
}
TOOLCHAIN_BASE=kiln.local/debian:bookworm

svc_toolchains_packages() {
  echo "/usr/sbin/debootstrap:debootstrap"
  svc_docker_packages
}

toolchain_dockerfile() {
  printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends %s >/dev/null && rm -rf /var/lib/apt/lists/*\n' \
    "$TOOLCHAIN_BASE" "$(toolchain_packages "$1")"
}

toolchain_image() {
  printf 'kiln.local/%s:bookworm-%s' "$1" "$(toolchain_dockerfile "$1" | sha256sum | cut -c1-12)"
}

toolchains_base_up() {
  local T="$STATE/toolchains" r
  if dock image inspect "$TOOLCHAIN_BASE" >/dev/null 2>&1; then return; fi
  mkdir -p "$T"
  if [ ! -s "$T/debian-bookworm.tar" ]; then
    r=$(mktemp -d)
    log "toolchains: debootstrap of Debian bookworm (about 30 s)"
    debootstrap --variant=minbase bookworm "$r" http://deb.debian.org/debian >"$T/debootstrap.log" 2>&1 ||
      { rm -rf "$r"; die "debootstrap failed (see $T/debootstrap.log)"; }
    tar -C "$r" --numeric-owner -cf "$T/debian-bookworm.tar.tmp" . && mv "$T/debian-bookworm.tar.tmp" "$T/debian-bookworm.tar"
    rm -rf "$r"
  fi
  dock import -c 'CMD ["bash"]' "$T/debian-bookworm.tar" "$TOOLCHAIN_BASE" >/dev/null ||
    die "docker import of $TOOLCHAIN_BASE failed (see $D/dockerd.log)"
}

svc_toolchains_up() {
  svc_docker_up
  mkdir -p "$STATE/toolchains"
  toolchains_base_up
  local t image dir
  for t in "${TOOLCHAINS[@]}"; do
    image=$(toolchain_image "$t")
    if dock image inspect "$image" >/dev/null 2>&1; then continue; fi
    dir=$(mktemp -d)
    toolchain_dockerfile "$t" >"$dir/Dockerfile"
    log "toolchains: building $image ($(toolchain_packages "$t"))"
    DOCKER_BUILDKIT=1 dock build -q --network host -t "$image" "$dir" >"$STATE/toolchains/$t.log" 2>&1 ||
      { rm -rf "$dir"; die "building $image failed (see $STATE/toolchains/$t.log)"; }
    rm -rf "$dir"
  done
  write_env_files toolchains
}

svc_toolchains_down() { :; }

svc_toolchains_status() {
  docker_dirs
  local t rc=0
  if ! pid_alive "$D/dockerd.pid" dockerd; then
    printf 'toolchains  stopped (dockerd is not running)\n'
    return 3
  fi
  for t in "${TOOLCHAINS[@]}"; do
    if dock image inspect "$(toolchain_image "$t")" >/dev/null 2>&1; then
      printf 'toolchains  %-8s %s\n' "$t" "$(toolchain_image "$t")"
    else
      printf 'toolchains  %-8s missing\n' "$t"
      rc=3
    fi
  done
  return "$rc"
}

svc_toolchains_env() {
  local t
  for t in "${TOOLCHAINS[@]}"; do
    printf 'KILN_IMAGE_%s=%s\n' "$(printf '%s' "$t" | tr a-z A-Z)" "$(toolchain_image "$t")"
  done
}

svc_toolchains_check() {
  local rc=0
  check_expect "go version in $(toolchain_image golang)" dock run --rm --network none "$(toolchain_image golang)" go version || rc=1
  check_expect "node in $(toolchain_image node)" dock run --rm --network none "$(toolchain_image node)" node -e 'process.exit(0)' || rc=1
  check_expect "python3 -m venv in $(toolchain_image python)" dock run --rm --network none "$(toolchain_image python)" python3 -m venv /tmp/v || rc=1
  check_expect "jupyter in $(toolchain_image jupyter)" dock run --rm --network none "$(toolchain_image jupyter)" jupyter notebook --version || rc=1
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
  flock -w 1200 9 || die "timed out waiting for $STATE/.lock"
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
