// @ts-check
/**
 * The network benchmark (tests/bench/network.sh): one call through our server, then one through Janus's VideoRoom,
 * both behind the same link emulator in the same run, each put through the same link profiles (TH_LINK_PROFILES).
 * The station's Chromium runs in its own network namespace, the doctor's on the servers' network; both use the
 * fake camera and microphone and publish the same simulcast encodings. Prints `network table: {ours, janus}`, a
 * row per profile for each server, with what each side received (calls.js `throughProfiles`), and for ours the
 * server's side from the session log: its estimate of the station's downlink, the NACKs the station sent, the
 * layer changes (`video_level`) and the round trip.
 */
import { expect, request, test } from '@playwright/test';
import { dirname, join } from 'node:path';
import { password, signIn } from './helpers.js';
import { inCall, link, mediaBothWays, started, stationSignIn, throughProfiles } from './calls.js';
import { joinJanus } from './janus-client.js';

const stationIp = process.env.TH_STATION_IP ?? '';
const hostIp = process.env.TH_HOST_IP ?? '';
/** @type {import('./calls.js').Profile[]} */
const profiles = JSON.parse(process.env.TH_LINK_PROFILES ?? '[]');
/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * What our server saw of the station in each profile's window, from the consultation's session log (stats
 * samples every 5 s, `video_level` events).
 * @param {string} baseURL @param {string} id @param {string} pid @param {Record<string, any>[]} rows
 */
async function serverView(baseURL, id, pid, rows) {
  const api = await request.newContext({ baseURL });
  const login = await api.post('/api/auth/login', { data: { username: 'admin', password: password('admin') } });
  expect(login.ok()).toBeTruthy();
  const r = await api.get(`/api/sessions/${id}`, { headers: { authorization: `Bearer ${(await login.json()).access_token}` } });
  expect(r.ok()).toBeTruthy();
  /** @type {{at: string, kind: string, data: any}[]} */
  const events = (await r.json()).events;
  await api.dispose();
  return rows.map((row) => {
    const within = events.filter((e) => e.data?.participant_id === pid && Date.parse(e.at) >= row.from && Date.parse(e.at) <= row.to);
    const stats = within.filter((e) => e.kind === 'stats').map((e) => e.data);
    const estimates = stats.map((d) => d.send_estimate_kbps).filter((k) => typeof k === 'number');
    const mean = (/** @type {number[]} */ xs) => (xs.length ? Math.round(xs.reduce((a, b) => a + b, 0) / xs.length) : null);
    return {
      profile: row.profile,
      estimate_kbps: { mean: mean(estimates), min: estimates.length ? Math.min(...estimates) : null },
      station_nacks: stats.length > 1 ? stats.at(-1).nacks - stats[0].nacks : null,
      layer_changes: within.filter((e) => e.kind === 'video_level').map((e) => e.data.off ?? `${e.data.layer}/${e.data.layers}`),
      rtt_ms: mean(stats.map((d) => d.rtt_ms).filter((x) => typeof x === 'number')),
    };
  });
}

test('the link profiles through our server and through Janus', async ({ browser, baseURL }) => {
  const janusPorts = process.env.TH_JANUS_RTP_PORTS;
  const janusHttp = process.env.TH_JANUS_HTTP_PORT;
  if (!process.env.TH_STATION_URL || !janusPorts || !janusHttp || !profiles.length) {
    throw new Error('run through tests/bench/network.sh (as root)');
  }
  const stationLink = link(stationIp);
  /** @type {Record<string, Record<string, any>[]>} */
  const table = {};

  await test.step('our server', async () => {
    const station = await stationSignIn('yta3');
    const doctor = await signIn(browser, 'bacsi2');
    const [hw, dr] = [station.page, doctor.page];
    const { id } = await inCall(hw, dr, 'Ho, sốt', 30_000);
    await sleep(5000);
    table.ours = await throughProfiles(hw, dr, stationLink, profiles);
    const pid = await hw.evaluate(() => /** @type {any} */ (window).__thCall?.participantId ?? null);
    table.ours_server = await serverView(baseURL ?? '', id, pid, table.ours);
    await dr.locator('#consult-actions [data-action=end]').click();
    await station.browser.close();
    await doctor.context.close();
  });

  await test.step('Janus VideoRoom', async () => {
    const bin = join(dirname(process.env.TH_BIN ?? ''), 'janus-browser');
    const janus = await started('janus', bin, ['--announce-ip', hostIp, '--rtp-ports', janusPorts, '--http-port', janusHttp],
      /janus ready/);
    console.log(janus.output().trim());
    try {
      // Pages on the same origins as ours (secure contexts, for the camera), driving Janus's API instead.
      const station = await stationSignIn('yta3');
      const doctor = await signIn(browser, 'bacsi2');
      const [hw, dr] = [station.page, doctor.page];
      await Promise.all([hw.goto('/healthz'), dr.goto('/healthz')]);
      await Promise.all([
        joinJanus(hw, { url: `http://${hostIp}:${janusHttp}/janus`, room: 1234, display: 'station' }),
        joinJanus(dr, { url: `http://127.0.0.1:${janusHttp}/janus`, room: 1234, display: 'doctor' }),
      ]);
      await mediaBothWays(hw, 'station', dr, 'doctor', 30_000);
      await sleep(5000);
      table.janus = await throughProfiles(hw, dr, stationLink, profiles);
      await station.browser.close();
      await doctor.context.close();
    } finally {
      await janus.stop();
    }
  });
  console.log(`network table: ${JSON.stringify(table)}`);
});
