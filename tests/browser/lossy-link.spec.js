// @ts-check
/**
 * A call on a commune's lossy 4G link, measured in Chromium: the station's browser runs in its own network
 * namespace behind the link emulator (run.sh), the doctor's on the server's own network. For each link profile
 * the emulator impairs the station's UDP in each direction; after a warm-up, both pages' getStats give what each
 * side received (frames per second, freezes, audio concealment, packets lost after repair).
 *
 * TH_LINK_PROFILES (JSON: [{name, up, down, warmup_s, measure_s}], or {name, profile} for one of the emulator's
 * named profiles such as "4g-yeu") replaces the default profiles, for the benchmark.
 */
import { expect, request, test } from '@playwright/test';
import { password, signIn } from './helpers.js';
import { inCall, link, stationSignIn, throughProfiles } from './calls.js';

const stationIp = process.env.TH_STATION_IP ?? '';
/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @type {import('./calls.js').Profile[]} */
const profiles = process.env.TH_LINK_PROFILES
  ? JSON.parse(process.env.TH_LINK_PROFILES)
  : [
    { name: '5% loss on the station uplink', up: { loss: 0.05 }, down: {}, warmup_s: 5, measure_s: 30 },
    { name: '10% loss each way, 150 ms each way', up: { loss: 0.1, delay_ms: 150 }, down: { loss: 0.1, delay_ms: 150 }, warmup_s: 5, measure_s: 20 },
  ];

test.skip(!process.env.TH_STATION_URL, 'needs the station network namespace (run.sh as root)');

test('a call on a lossy station link: what each side receives', async ({ browser, baseURL }) => {
  test.setTimeout(120_000 + profiles.length * 90_000);
  const station = await stationSignIn('yta3');
  const hw = station.page;
  const doctor = await signIn(browser, 'bacsi2');
  const dr = doctor.page;
  const stationLink = link(stationIp);

  const { id } = await inCall(hw, dr, 'Ho kéo dài, sốt về chiều', 20_000);
  await sleep(5000);

  const rows = await throughProfiles(hw, dr, stationLink, profiles);
  console.log(`link profiles: ${JSON.stringify(rows)}`);
  if (!process.env.TH_LINK_PROFILES) {
    const d = /** @type {any} */ (rows[0].doctor_receives);
    // 5 % loss on the station's uplink, which the SFU repairs from the station's retransmissions and, when a frame
    // is lost anyway, with the keyframe the doctor's page asks for: the picture keeps moving (16-19 fps, frozen
    // 0-0.6 s of 20 in most runs). In about one run of four the picture stands 3-10 s early in the lossy period:
    // a keyframe and three frames, nothing for 3 s, the doctor's PLI, again — the stall seen after handovers,
    // not explained yet (docs/BENCHMARKS.md), with and without RED; measured over 30 s so that one such stall
    // does not fail the run. When the SFU dropped the simulcast layers' retransmissions: 4.3 fps, frozen 19.1 s
    // of 20; when it lost keyframe requests that came in a compound behind a report about its RTX stream: the
    // picture stood still 3-20 s in 10 runs of 38.
    expect(d.fps, "the doctor's picture keeps moving").toBeGreaterThanOrEqual(10);
    expect(d.freezeSec, 'and is frozen under 12 s of 30').toBeLessThan(12);
    // Audio is redundant (RED, each packet carries the one before): 5 % loss on the uplink leaves 0.1-0.5 % of
    // the doctor's audio concealed (3.1-5.5 % with Opus alone), and 10 % each way at 300 ms round trip 0.4-0.9 %
    // on either side (the goal is under 5 %).
    expect(d.concealedPct, "the doctor's audio at 5 % loss: under 2 % concealed").toBeLessThan(2);
    for (const side of /** @type {const} */ (['doctor_receives', 'station_receives'])) {
      const r = /** @type {any} */ (rows[1][side]);
      expect(r.concealedPct, `${side} audio at 10 % loss each way: under 5 % concealed`).toBeLessThan(5);
    }
    // The SFU says so too: both send RED, and each receives it as sent.
    const api = await request.newContext({ baseURL });
    const login = await api.post('/api/auth/login', { data: { username: 'admin', password: password('admin') } });
    expect(login.ok()).toBeTruthy();
    const token = (await login.json()).access_token;
    const r = await api.get(`/api/sessions/${id}`, { headers: { authorization: `Bearer ${token}` } });
    expect(r.ok()).toBeTruthy();
    const stats = (await r.json()).events.filter((/** @type {any} */ e) => e.kind === 'stats').map((/** @type {any} */ e) => e.data);
    for (const page of [hw, dr]) {
      const pid = await page.evaluate(() => /** @type {any} */ (window).__thCall?.participantId ?? null);
      const last = stats.filter((/** @type {any} */ s) => s.participant_id === pid).at(-1);
      expect(last?.audio_codec_sent, 'sends redundant audio').toBe('audio/red');
      expect(last?.audio_codec_received, 'and receives it').toBe('audio/red');
    }
    await api.dispose();
  }
  await dr.locator('#consult-actions [data-action=end]').click();
  await expect(hw.locator('#call')).toHaveAttribute('data-ended', 'true');
  await station.browser.close();
  await doctor.context.close();
});
