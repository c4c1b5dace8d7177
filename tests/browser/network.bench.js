// @ts-check
/**
 * The network benchmark (tests/bench/network.sh): one call through our server, then one through Janus's VideoRoom,
 * both behind the same link emulator in the same run, each put through the same link profiles (TH_LINK_PROFILES).
 * The station's Chromium runs in its own network namespace, the doctor's on the servers' network; both use the
 * fake camera and microphone and publish the same simulcast encodings. Prints `network table: {ours, janus}`, a
 * row per profile for each server, with what each side received (calls.js `throughProfiles`).
 */
import { test } from '@playwright/test';
import { dirname, join } from 'node:path';
import { signIn } from './helpers.js';
import { inCall, link, mediaBothWays, started, stationSignIn, throughProfiles } from './calls.js';
import { joinJanus } from './janus-client.js';

const stationIp = process.env.TH_STATION_IP ?? '';
const hostIp = process.env.TH_HOST_IP ?? '';
/** @type {import('./calls.js').Profile[]} */
const profiles = JSON.parse(process.env.TH_LINK_PROFILES ?? '[]');
/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('the link profiles through our server and through Janus', async ({ browser }) => {
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
    await inCall(hw, dr, 'Ho, sốt', 30_000);
    await sleep(5000);
    table.ours = await throughProfiles(hw, dr, stationLink, profiles);
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
