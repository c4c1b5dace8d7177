// @ts-check
/**
 * Reachability behind firewalls, in Chromium. A commune station's network may let no UDP out at all (a hospital
 * or office firewall), or only TCP to a few servers (a carrier or a proxy that allows web traffic only):
 *
 * - **UDP blocked**: the link emulator drops every datagram of the station in both directions (as a firewall
 *   does: packets lost, nothing refused) before it joins. The station's browser reaches the SFU over ICE-TCP (the
 *   server's passive TCP candidate on the media port), and media flows both ways.
 * - **Forced to relay**: the station's browser is allowed only TURN relay candidates (`iceTransportPolicy:
 *   'relay'`, as a browser whose network lets nothing but the relay through must use) and is given only the TURN
 *   server's TCP address, then only its TLS address (`turns:`, a test certificate). Debian's coturn, configured
 *   from `deploy/turnserver.conf` with the server's shared secret, relays the call; the server hands the page a
 *   time-limited credential.
 *
 * Each call is checked with `getStats`: media both ways, and the selected candidate pair goes the way it must.
 * The TURN call runs against a server of this test's own (started with `--turn-url` and `--turn-secret`) so that
 * the other tests' pages never see a relay.
 */
import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signIn } from './helpers.js';
import {
  inCall, link, mediaPath, quality, received, signInAt, started, stationSignIn,
} from './calls.js';

const stationIp = process.env.TH_STATION_IP ?? '';
const hostIp = process.env.TH_HOST_IP ?? '';
/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test.skip(!process.env.TH_STATION_URL, 'needs the station network namespace (run.sh as root)');

/** Ten seconds of what each page receives: the call is usable, not just connected. @param {import('@playwright/test').Page} hw @param {import('@playwright/test').Page} dr */
async function usable(hw, dr) {
  const [a1, b1] = await Promise.all([quality(hw), quality(dr)]);
  await sleep(10_000);
  const [a2, b2] = await Promise.all([quality(hw), quality(dr)]);
  const got = { station: received(a1, a2), doctor: received(b1, b2) };
  for (const [who, r] of Object.entries(got)) {
    expect(r.fps, `${who} receives moving video`).toBeGreaterThanOrEqual(8);
    expect(r.concealedPct, `${who} hears the other side`).toBeLessThan(5);
  }
  return got;
}

test('a station whose UDP is blocked calls over ICE-TCP', async ({ browser }) => {
  test.setTimeout(180_000);
  const stationLink = link(stationIp);
  // Before the station's browser opens anything: no datagram gets through, either way.
  await stationLink.shape({ loss: 1 }, { loss: 1 });
  const station = await stationSignIn('yta1');
  const doctor = await signIn(browser, 'bacsi1');
  try {
    const { took: t } = await inCall(station.page, doctor.page, 'Đau ngực, khó thở', 45_000);
    const path = await mediaPath(station.page);
    console.log(`ICE-TCP: media both ways in ${t.max} ms over ${JSON.stringify(path)}`);
    expect(path?.protocol, 'the station\'s media goes over TCP').toBe('tcp');
    expect(path?.local, 'straight to the server, no relay').not.toBe('relay');
    expect(path?.remote).toContain(`tcp ${hostIp}:`);
    const q = await usable(station.page, doctor.page);
    console.log(`ICE-TCP: ${JSON.stringify(q)}`);
    const stats = await stationLink.stats();
    console.log(`station link: ${JSON.stringify(stats)}`);
  } finally {
    await stationLink.shape({}, {});
    await station.browser.close();
    await doctor.context.close();
  }
});

/** A free port on `ip` for TCP (or UDP). @param {string} ip @param {'tcp' | 'udp'} kind @returns {Promise<number>} */
function freePort(ip, kind = 'tcp') {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.bind(0, ip, () => { const { port } = s.address(); s.close(() => resolve(port)); });
    } else {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, ip, () => { const a = /** @type {import('node:net').AddressInfo} */ (s.address()); s.close(() => resolve(a.port)); });
    }
  });
}

test('a station forced to relay calls through coturn over TCP, and over TLS', async () => {
  test.setTimeout(240_000);
  const bin = process.env.TH_BIN;
  if (!bin) throw new Error('TH_BIN is not set: run the tests through tests/browser/run.sh');
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dir = mkdtempSync(join(tmpdir(), 'telehealth-turn-'));
  const secret = `turn-secret-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const [httpPort, mediaPort, turnPort, tlsPort] = await Promise.all([
    freePort(hostIp), freePort(hostIp, 'udp'), freePort(hostIp), freePort(hostIp),
  ]);
  // A test certificate for the TURN server's address, as an operator's would be for its name.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'turn.key'), '-out', join(dir, 'turn.crt'), '-days', '1', '-subj', '/CN=turn.telehealth.test',
    '-addext', `subjectAltName=IP:${hostIp}`], { stdio: 'ignore' });
  // The station's browser trusts that one certificate (its key's SHA-256), as it would a public CA's.
  const spki = execFileSync('sh', ['-c', `openssl x509 -in '${join(dir, 'turn.crt')}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]).toString().trim();
  /** @type {Array<() => Promise<void>>} */
  const stops = [];
  try {
    const coturn = await started('coturn', 'turnserver', [
      '-c', join(root, 'deploy', 'turnserver.conf'),
      '--listening-ip', hostIp, '--relay-ip', hostIp, '--listening-port', `${turnPort}`, '--tls-listening-port', `${tlsPort}`,
      `--cert=${join(dir, 'turn.crt')}`, `--pkey=${join(dir, 'turn.key')}`, '--no-dtls',
      // The deployed configuration relays to the media server only: here, the server this test starts.
      '--allowed-peer-ip', hostIp, `--static-auth-secret=${secret}`,
      `--pidfile=${join(dir, 'turnserver.pid')}`, `--db=${join(dir, 'turndb')}`, '--log-file=stdout', '--simple-log', '--verbose',
    ], /TLS\/TCP listener opened on/);
    stops.push(coturn.stop);
    const server = await started('the server', bin, [
      '--demo', '--data-dir', join(dir, 'data'), '--http-addr', `${hostIp}:${httpPort}`, '--media-udp-port', `${mediaPort}`,
      '--media-tcp-port', '0', '--public-ip', hostIp,
      '--turn-url', `turn:${hostIp}:${turnPort}?transport=tcp`, '--turn-url', `turns:${hostIp}:${tlsPort}?transport=tcp`,
    ], /listening/i, { ...process.env, TELEHEALTH_TURN_SECRET: secret, RUST_LOG: 'info,sqlx=warn' });
    stops.push(server.stop);
    const url = `http://${hostIp}:${httpPort}`;
    for (let i = 0; i < 100 && !(await fetch(`${url}/healthz`).then((r) => r.ok, () => false)); i++) await sleep(200);
    /** @type {Record<string, string>} */
    const passwords = {};
    for (const m of server.output().matchAll(/^\s+((?:yta|bacsi)\d+)\s+(\S+)\s+\(/gm)) passwords[m[1]] = m[2];

    const doctor = await signInAt('bacsi1', url, { password: passwords.bacsi1 });
    stops.unshift(() => doctor.browser.close());
    for (const scheme of ['turn', 'turns']) {
      await test.step(`relay only, through ${scheme === 'turn' ? 'TCP' : 'TLS'}`, async () => {
        // Only relay candidates, through the one TURN address this network lets through.
        const station = await stationSignIn('yta1', {
          url, password: passwords.yta1, arg: `${scheme}:`, args: [`--ignore-certificate-errors-spki-list=${spki}`],
          init: (/** @type {string} */ only) => {
            const Native = window.RTCPeerConnection;
            const relayOnly = (/** @type {RTCConfiguration | undefined} */ c) => ({
              ...c, iceTransportPolicy: /** @type {RTCIceTransportPolicy} */ ('relay'),
              iceServers: (c?.iceServers ?? [])
                .map((s) => ({ ...s, urls: [s.urls].flat().filter((u) => u.startsWith(only)) }))
                .filter((s) => s.urls.length),
            });
            window.RTCPeerConnection = class extends Native {
              /** @param {RTCConfiguration} [c] */
              constructor(c) { super(relayOnly(c)); }
              /** @param {RTCConfiguration} [c] */
              setConfiguration(c) { super.setConfiguration(relayOnly(c)); }
            };
          },
        });
        try {
          const { took: t } = await inCall(station.page, doctor.page, 'Đau ngực, khó thở', 45_000);
          const path = await mediaPath(station.page);
          console.log(`${scheme}: media both ways in ${t.max} ms over ${JSON.stringify(path)}`);
          expect(path?.local, 'the station\'s media goes through the relay').toBe('relay');
          expect(path?.relayProtocol, 'to the TURN server over the one transport allowed').toBe(scheme === 'turn' ? 'tcp' : 'tls');
          const q = await usable(station.page, doctor.page);
          console.log(`${scheme}: ${JSON.stringify(q)}`);
        } finally {
          await station.browser.close();
        }
      });
    }
    expect(server.output(), 'the TURN secret never appears in the server log').not.toContain(secret);
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});
