#!/usr/bin/env python3
"""Free slots of a hospital's day, two server binaries side by side (old, new, old again, on one machine in
one run): each starts on a fresh database with the demo province, gets 10 more doctors working 07:00-17:00
every day, and answers GET /api/facilities/{id}/slots for a day ahead 60 times; p50/p90/max and whether both
binaries give the same slots.

    source tests/scripts/postgres.sh; tests/bench/slots.py OLD_BINARY NEW_BINARY [--sqlite]
"""
import json, os, subprocess, sys, time, urllib.request, socket, statistics, datetime, tempfile
SQLITE = '--sqlite' in sys.argv
args = [a for a in sys.argv[1:] if a != '--sqlite']
pg = None if SQLITE else os.environ['TELEHEALTH_TEST_POSTGRES_URL']
def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def req(base, method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, method=method)
    r.add_header('content-type', 'application/json')
    if token: r.add_header('authorization', 'Bearer ' + token)
    with urllib.request.urlopen(r) as resp:
        t = resp.read()
        return json.loads(t) if t else None
def run(binary, tag, n=60):
    db_args = []
    if not SQLITE:
        db = f"slots_{tag}_{int(time.time())}"
        subprocess.run(['psql', pg, '-qc', f'CREATE DATABASE {db}'], check=True)
        db_args = ['--database-url', pg.rsplit('/', 1)[0] + '/' + db]
    port = free_port(); mport = free_port(socket.SOCK_DGRAM)
    data = tempfile.mkdtemp()
    env = dict(os.environ, TELEHEALTH_ADMIN_PASSWORD='admin-bench-password-1', RUST_LOG='warn')
    srv = subprocess.Popen([binary, '--demo', '--data-dir', data, *db_args, '--http-addr', f'127.0.0.1:{port}',
                            '--media-udp-port', str(mport), '--public-ip', '127.0.0.1'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f'http://127.0.0.1:{port}'
    for _ in range(100):
        try:
            urllib.request.urlopen(base + '/healthz'); break
        except Exception: time.sleep(0.2)
    admin = req(base, 'POST', '/api/auth/login', body={'username': 'admin', 'password': 'admin-bench-password-1'})['access_token']
    h = [f for f in req(base, 'GET', '/api/facilities', admin) if f['kind'] != 'commune_station'][0]
    for i in range(10):
        try:
            req(base, 'POST', '/api/users', admin, {'username': f'bench.doc{i}', 'display_name': f'BS {i}', 'password': 'bench-doctor-pass', 'role': 'doctor', 'facility_id': h['id']})
        except Exception as e: pass
    docs = req(base, 'GET', f"/api/facilities/{h['id']}/doctors", admin)
    for d in docs:
        req(base, 'PUT', f"/api/doctors/{d['id']}/hours", admin, {'hours': [{'weekday': w, 'start_minute': 420, 'end_minute': 1020} for w in range(1, 8)]})
    tok = req(base, 'POST', '/api/auth/login', body={'username': 'bench.doc0', 'password': 'bench-doctor-pass'})['access_token']
    day = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    path = f"/api/facilities/{h['id']}/slots?date={day}"
    slots = req(base, 'GET', path, tok)
    times = []
    for _ in range(n):
        t = time.perf_counter(); req(base, 'GET', path, tok); times.append((time.perf_counter() - t) * 1000)
    srv.terminate(); srv.wait()
    times.sort()
    print(f"{tag}: {len(docs)} doctors, {len(slots)} slots, p50 {statistics.median(times):.1f} ms, p90 {times[int(len(times)*0.9)]:.1f} ms, max {times[-1]:.1f} ms")
    return slots
a = run(args[0], 'old'); b = run(args[1], 'new'); c = run(args[0], 'old again')
print("same answer:", [(s["start"], len(s["doctor_ids"])) for s in a] == [(s["start"], len(s["doctor_ids"])) for s in b])
