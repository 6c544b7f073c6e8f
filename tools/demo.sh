#!/usr/bin/env bash
# Sets up and runs Hato with a demo configuration: installs what is
# missing, builds, starts a private MariaDB in ./state (unix socket, no TCP
# port), applies the schema, and runs hato-intake and hato-gateway in the
# foreground. The demo routes every carrier to a local SMTP sink that
# writes what it receives to state/outbox.jsonl. Ctrl-C stops everything
# it started. Run it again at any time: it reuses ./state.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
state=$top/state
py=/usr/bin/python3
lmtp_port=${HATO_DEMO_LMTP_PORT:-2424}
sink_port=${HATO_DEMO_SINK_PORT:-2525}

bash tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
ctl() { build/ctl/hatoctl --config "$state/hato.ini" "$@"; }

mkdir -p "$state"
chmod 700 "$state"
me=$(id -un)
sock=$state/mysqld.sock
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ ! -d "$state/mariadb/mysql" ]; then
	echo "creating a private MariaDB in $state/mariadb"
	mariadb-install-db --no-defaults --datadir="$state/mariadb" --user="$me" \
		--skip-test-db --auth-root-authentication-method=normal >"$state/install-db.log" 2>&1
fi
if ! mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1; then
	mariadbd --no-defaults --datadir="$state/mariadb" --socket="$sock" --skip-networking \
		--user="$me" --pid-file="$state/mysqld.pid" --log-error="$state/mysqld.log" &
	pids+=($!)
	for _ in $(seq 1 100); do
		mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1 && break
		sleep 0.2
	done
fi
if [ ! -s "$state/db.password" ]; then
	(umask 077; openssl rand -hex 16 >"$state/db.password")
fi
pw=$(cat "$state/db.password")
mariadb --no-defaults --socket="$sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS hato CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'hato'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'hato'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL ON hato.* TO 'hato'@'localhost';
SQL

if [ ! -s "$state/secret.key" ]; then
	(umask 077; openssl rand -hex 32 >"$state/secret.key")
fi
if [ ! -s "$state/demo.token" ]; then
	(umask 077; build/ctl/hatoctl token >"$state/demo.token")
fi
token=$(sed -n 's/^token .*: //p' "$state/demo.token")
token_sha=$(sed -n 's/^token_sha256 = //p' "$state/demo.token")

cat >"$state/demo.routes" <<EOF2
# The demo sends every carrier's mail to the local sink (relay "sink").
docomo.ne.jp      relay:docomo     # docomo
softbank.ne.jp    relay:softbank   # SoftBank
i.softbank.jp     relay:softbank   # SoftBank (iPhone)
ezweb.ne.jp       pace:au          # au
au.com            pace:au          # au
*                 relay:sink       # everyone else
EOF2
cat >"$state/hato.ini" <<EOF2
; Demo configuration written by tools/demo.sh.
[hato]
user = $me
secret_file = $state/secret.key
[log]
level = info
[db]
socket = $sock
user = hato
password_file = $state/db.password
[intake]
lmtp_listen = 127.0.0.1:$lmtp_port
lmtp_socket = $state/intake.sock
submit_address = dm@hato.example
[gateway]
hostname = hato.example
routes = $state/demo.routes
bounce_domain = hato.example
poll_interval = 500ms
http_listen = 127.0.0.1:${HATO_DEMO_HTTP_PORT:-8025}
[retry]
intervals = 10s 1m 5m
[relay sink]
host = 127.0.0.1
port = $sink_port
[relay docomo]
host = 127.0.0.1
port = $sink_port
[relay softbank]
host = 127.0.0.1
port = $sink_port
[pace au]
relay = sink
messages = 20
interval = 2s
[submitter demo]
address = demo@example.jp
token_sha256 = $token_sha
EOF2

ctl db init
"$py" tests/harness/smtpsink.py --port "$sink_port" --record "$state/outbox.jsonl" &
pids+=($!)
build/gateway/hato-gateway --config "$state/hato.ini" &
pids+=($!)
build/intake/hato-intake --config "$state/hato.ini" &
pids+=($!)
sleep 1
cat <<EOF2

Hato is running (Ctrl-C stops it).
  intake (LMTP): 127.0.0.1:$lmtp_port and $state/intake.sock
  carriers' relays: a sink on 127.0.0.1:$sink_port writing to $state/outbox.jsonl
  configuration: $state/hato.ini

Submit a first DM:
  swaks --protocol LMTP --server 127.0.0.1:$lmtp_port --from demo@example.jp \\
    --to dm@hato.example --h-From demo@example.jp --h-Subject "demo" \\
    --body "\$(printf 'Token: $token\nTo: taro..@docomo.ne.jp, hanako@ezweb.ne.jp\nTo: jiro@i.softbank.jp\nSubject: 週末セールのお知らせ\n\n本文はここから。\n')"
Then:
  build/ctl/hatoctl --config $state/hato.ini jobs
  build/ctl/hatoctl --config $state/hato.ini job show 1
EOF2
wait "${pids[@]}"
