#!/usr/bin/env bash
# Instructions per request of a gunicorn worker (gthread, 1 worker x 2 threads) under callgrind,
# for the note's floor and the mixin's first request, twice each in turns: the in-process count
# (tools/count_instructions.py) checked against a real server's.
#
#   DATABASE_URL is ignored: it recreates idem_server_instructions on 127.0.0.1:5432.
#   tools/server_instructions.sh [N]      # N requests per measurement (200), about 5 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
PORT=18299
OUT=$(mktemp -d)
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/idem_server_instructions
export DJANGO_SETTINGS_MODULE=bench.settings PYTHONHASHSEED=0
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS idem_server_instructions" \
    -c "CREATE DATABASE idem_server_instructions"
.venv/bin/python manage.py migrate -v0
.venv/bin/python manage.py load_demo_data > /dev/null
TOKEN=$(.venv/bin/python manage.py issue_token server-instructions)
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.%p" \
    .venv/bin/gunicorn config.wsgi:application --bind=127.0.0.1:$PORT --worker-class=gthread \
    --workers=1 --threads=2 --log-level=warning > "$OUT/gunicorn.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$OUT"' EXIT
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 1; done

send() {  # path count: keyed POSTs of the note over one keep-alive connection
    .venv/bin/python - "$PORT" "$1" "$TOKEN" "$2" <<'PY'
import http.client, json, sys, uuid
port, path, token, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
connection = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
for _ in range(count):
    connection.request("POST", path, json.dumps({"text": "hello"}),
                       {**headers, "Idempotency-Key": uuid.uuid4().hex})
    response = connection.getresponse()
    response.read()
    assert response.status == 201, response.status
PY
}

dump=0
for path in /bench/floor/notes /bench/idempotent/notes /bench/floor/notes /bench/idempotent/notes; do
    send "$path" 30  # warm
    callgrind_control -z > /dev/null 2>&1
    send "$path" "$N"
    callgrind_control -d > /dev/null 2>&1
    dump=$((dump + 1))
    # The busiest process's count is the worker's (the master only sleeps).
    total=$(grep -h '^summary' "$OUT"/cg.*."$dump" | awk '{print $2}' | sort -n | tail -1)
    echo "$path: $((total / N)) instructions per request"
done
