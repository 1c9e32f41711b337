#!/usr/bin/env bash
# `make run`: start bunkerd on 127.0.0.1:8080 with the embedded store, after
# creating an API key on the first run (kept in the data directory, readable
# by root only, so that later runs print the same one).
set -euo pipefail
build=${1:-build/release}
data=${BUNKER_DATA_DIR:-/var/lib/bunker}
port=${BUNKER_PORT:-8080}
keyfile="$data/dev-api-key"

mkdir -p "$data"
chmod 0711 "$data"
if [ ! -s "$keyfile" ]; then
	(umask 077 && "$build/bunker" --data-dir "$data" keys create --plan paid > "$keyfile.tmp")
	mv "$keyfile.tmp" "$keyfile"
fi
key=$(cat "$keyfile")

cat <<MSG

  bunkerd: http://127.0.0.1:$port   (data in $data)
  API key: $key   (plan: paid; more with: $build/bunker --data-dir $data keys create --plan free)

  Try it, in another terminal:

  curl -s -X POST http://127.0.0.1:$port/sessions/create -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"ttl":3600}'

  then, with the sessionId it prints:

  curl -s -X POST http://127.0.0.1:$port/execute -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"sessionId":"<sessionId>","code":"console.log(await Bun.version)"}'

MSG
exec "$build/bunkerd" --listen 127.0.0.1 --port "$port" --data-dir "$data"
