// @ts-check
/**
 * The call comes back by itself when the station's network drops, measured in Chromium. The station's browser
 * runs in a network namespace of its own (run.sh), so everything it sends — pages, WebSocket, media — crosses the
 * link emulator, which drops packets for real (not Playwright's offline mode, which does not stop WebRTC):
 * - a 5 s blackout: the doctor's page says the picture is interrupted during it; the station's first new frame
 *   (the doctor's picture, which the SFU controls end to end) arrives within 1 s of its end; the doctor's (the
 *   station's picture) within 2 s, median, never over 3 s: that side waits on the station's own Chromium, whose
 *   pacer sends the frames it queued during the outage before the keyframe the SFU asked for at the first packet
 *   back (with Chromium's `WebRTC-Pacer-KeyframeFlushing` trial the keyframe reached the SFU 13-174 ms after the
 *   end; stock Chromium, what stations run, takes 0.1-1.8 s);
 * - a 60 s blackout: the station's page retries by itself (no click) and both sides have media again within
 *   5 s of its end, in the same consultation, as the same participant;
 * - handovers (the station's address and port change, and its TCP connections are cut, as when a phone moves
 *   from Wi-Fi to 4G): media flowing steadily again within 3 s on both sides (median of five), never over 12 s.
 *   After an ICE restart (the 60 s blackout's), some handovers (3 of 14 right after one, 4 of 80 later ones) leave
 *   the doctor's picture standing 3-7 s although the SFU forwards the station's packets whole and in order (sequence numbers, timestamps and VP8
 *   picture ids checked packet by packet): the doctor's Chromium counts them and decodes none, until its own
 *   keyframe request 3 s on. Not explained yet (docs/BENCHMARKS.md); the bound keeps that rare case visible
 *   without failing a run on it.
 * Both sides are checked with getStats. Times are printed for docs/BENCHMARKS.md.
 */
import { expect, test } from '@playwright/test';
import { signIn } from './helpers.js';
import { flowing, inbound, inCall, link, mediaBothWays, newMedia, stationSignIn } from './calls.js';

const stationUrl = process.env.TH_STATION_URL;
const stationIp = process.env.TH_STATION_IP ?? '';

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** The middle of a few measurements. @param {number[]} xs */
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

test.skip(!stationUrl, 'needs the station network namespace (run.sh as root)');

test('the call survives blackouts and handovers of the station, by itself', async ({ browser }) => {
  test.setTimeout(6 * 60_000);
  // The station's own browser, in its namespace, reaching the server through the emulator.
  const { browser: stationBrowser, page: hw } = await stationSignIn('yta4');
  const doctor = await signIn(browser, 'bacsi2');
  const dr = doctor.page;
  const station_link = link(stationIp);

  const { id } = await inCall(hw, dr, 'Khó thở khi đi lại, cần bác sĩ xem qua video', 20_000);
  const stationPid = (await inbound(hw)).pid;
  const flows = await station_link.stats();
  console.log('station link before the drops:', JSON.stringify(flows));
  // Let the bandwidth estimate and the layers settle.
  await sleep(3000);

  await test.step('5 s blackouts: the doctor is told at once; the first new frame comes within 1 s (station) and 2 s (doctor) of the end', async () => {
    /** @type {number[]} */ const station = [];
    /** @type {number[]} */ const doctorSide = [];
    for (let i = 1; i <= 3; i++) {
      // Each outage starts on a live picture both ways, or "told at once" and "first new frame" measure an
      // earlier stall instead (one CI run: the doctor's picture stalled again 3 s after a recovery, and the next
      // blackout's "first new frame" came 3.5 s after its end).
      const live = await Promise.all([flowing(hw, 'station', 10_000), flowing(dr, 'doctor', 10_000)]);
      if (i > 1) console.log(`before blackout ${i}: media flowing steadily (checked in ${live[0]} ms station, ${live[1]} ms doctor)`);
      await station_link.blackout(5000);
      const started = Date.now();
      await expect(dr.locator('#remote-frozen'), "the doctor's page says the picture is interrupted").toBeVisible({ timeout: 4000 });
      const told = Date.now() - started;
      // Neither badge claims a good line while nothing arrives.
      await expect(hw.locator('#call-quality')).toHaveAttribute('data-level', 'down', { timeout: 3000 });
      await expect(dr.locator('#call-quality')).toHaveAttribute('data-level', 'down', { timeout: 3000 });
      await sleep(Math.max(0, 4700 - (Date.now() - started)));
      const before = /** @type {[any, any]} */ ([await inbound(hw), await inbound(dr)]);
      await sleep(Math.max(0, 5000 - (Date.now() - started)));
      const [a, b] = await Promise.all([newMedia(hw, 'station', 15_000, before[0]), newMedia(dr, 'doctor', 15_000, before[1])]);
      station.push(a.framesMs);
      doctorSide.push(b.framesMs);
      console.log(`${new Date().toISOString()} 5 s blackout ${i}: doctor told after ${told} ms; first new frame ${a.framesMs} ms (station), ${b.framesMs} ms (doctor) after its end; audio too by ${Math.max(a.ms, b.ms)} ms`);
      await expect(dr.locator('#remote-frozen')).toBeHidden({ timeout: 5000 });
      await sleep(3000);
    }
    console.log(`5 s blackouts: first new frame median ${median(station)} ms (station), ${median(doctorSide)} ms (doctor)`);
    expect(median(station), 'station: first new frame within 1 s (median of 3)').toBeLessThanOrEqual(1000);
    expect(Math.max(...station), 'station: never more than 2 s').toBeLessThanOrEqual(2000);
    // The station's browser drains what its pacer queued during the outage before the new keyframe (see above).
    expect(median(doctorSide), 'doctor: first new frame within 2 s (median of 3)').toBeLessThanOrEqual(2000);
    expect(Math.max(...doctorSide), 'doctor: never more than 3 s').toBeLessThanOrEqual(3000);
  });

  await test.step('a 60 s blackout: the station comes back by itself, both sides have media within 5 s of its end', async () => {
    await station_link.blackout(60_000);
    const started = Date.now();
    await expect(hw.locator('#reconnecting'), "the station's page says it is reconnecting").toBeVisible({ timeout: 20_000 });
    await expect(dr.locator('#remote-frozen')).toBeVisible({ timeout: 5000 });
    await sleep(50_000 - (Date.now() - started));
    await expect(hw.locator('#reconnecting')).toContainText(/giữ thêm \d+:\d\d/);
    console.log(`station banner during the blackout: ${await hw.locator('#reconnecting').textContent()}`);
    console.log(`doctor during the blackout: ${await dr.locator('#call-others').textContent()}`);
    const before = /** @type {[any, any]} */ ([await inbound(hw), await inbound(dr)]);
    await sleep(Math.max(0, 60_000 - (Date.now() - started)));
    const ended = Date.now();
    const r = await mediaBothWays(hw, 'station', dr, 'doctor', 30_000, before).catch(async (e) => {
      console.log('station recovery log:', JSON.stringify(await hw.evaluate(() => /** @type {any} */ (window).__thCall.log.slice(-40))));
      throw e;
    });
    console.log(`60 s blackout: media both ways ${Date.now() - ended} ms after its end (station ${r.station} ms, doctor ${r.doctor} ms; first frames ${JSON.stringify(r.firstFrame)})`);
    console.log('station recovery log:', JSON.stringify(await hw.evaluate(() => /** @type {any} */ (window).__thCall.log.slice(-25))));
    expect(r.max, 'both sides within 5 s of the end').toBeLessThanOrEqual(5000);
    expect((await inbound(hw)).pid, 'the same participant').toBe(stationPid);
    await expect(hw).toHaveURL(new RegExp(`#/consultations/${id}$`));
    await expect(hw.locator('#reconnecting')).toBeHidden({ timeout: 5000 });
  });

  await test.step('handovers: new address and port, TCP cut; media back within 3 s on both sides (median of 5)', async () => {
    /** @type {number[]} */ const station = [];
    /** @type {number[]} */ const doctorSide = [];
    for (let i = 1; i <= 5; i++) {
      await sleep(3000);
      const before = await station_link.stats();
      await station_link.handover();
      // Steady media again (not one late frame), timed from the handover.
      const [a, b] = await Promise.all([flowing(hw, 'station', 20_000), flowing(dr, 'doctor', 20_000)]);
      station.push(a);
      doctorSide.push(b);
      const after = await station_link.stats();
      console.log(`handover ${i}: media flowing steadily again after ${a} ms (station), ${b} ms (doctor); link before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    }
    console.log(`handovers: media flowing again median ${median(station)} ms (station), ${median(doctorSide)} ms (doctor); all ${JSON.stringify({ station, doctor: doctorSide })}`);
    expect(median(station), 'station: within 3 s (median of 5)').toBeLessThanOrEqual(3000);
    expect(median(doctorSide), 'doctor: within 3 s (median of 5)').toBeLessThanOrEqual(3000);
    expect(Math.max(...station, ...doctorSide), 'never over 12 s').toBeLessThanOrEqual(12_000);
  });

  await dr.locator('#consult-actions [data-action=end]').click();
  await expect(hw.locator('#call')).toHaveAttribute('data-ended', 'true');
  await stationBrowser.close();
  await doctor.context.close();
});
