// @ts-check
/**
 * Several nodes, as a province runs them: three server processes on one PostgreSQL database. The station's
 * browser talks to node A, the doctor's to node B, and their call is hosted on node C; node C is killed
 * (SIGKILL) mid-call. Both pages must bring the call back by themselves, on a surviving node, with media both
 * ways (measured with getStats, never the DOM).
 */
import { test, expect } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inCall, inbound, mediaBothWays, signInAt, started } from './calls.js';
import { SHOTS } from './helpers.js';

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on loopback. @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(a.port));
    });
  });
}

/** @param {string} url @param {string} sql */
const psql = (url, sql) => execFileSync('psql', [url, '-tAc', sql]).toString().trim();

test('a call whose node is killed comes back by itself on a surviving node', async () => {
  test.setTimeout(240_000);
  const bin = process.env.TH_BIN;
  if (!bin) throw new Error('TH_BIN is not set: run the tests through tests/browser/run.sh');
  const base = process.env.TELEHEALTH_TEST_POSTGRES_URL;
  if (!base) throw new Error('TELEHEALTH_TEST_POSTGRES_URL is not set: run through tests/run.sh (or source tests/scripts/postgres.sh)');
  const name = `browser_cluster_${Date.now()}`;
  psql(base, `CREATE DATABASE ${name}`);
  const db = `${base.slice(0, base.lastIndexOf('/'))}/${name}`;
  const dir = mkdtempSync(join(tmpdir(), 'telehealth-cluster-'));
  const env = {
    ...process.env,
    TELEHEALTH_JWT_KEY: `cluster-browser-test-key-${Date.now()}-0123456789abcdef`,
    TELEHEALTH_ADMIN_PASSWORD: 'quản-trị-thử-nghiệm-cụm',
    RUST_LOG: 'info,sqlx=warn',
  };
  /** @type {Array<() => Promise<void>>} */
  const stops = [];
  try {
    // A and B are the nodes the pages talk to; C ("n1": ties go by id) hosts the call.
    /** @type {Record<string, {url: string, server: Awaited<ReturnType<typeof started>>}>} */
    const nodes = {};
    for (const [label, id] of [['A', 'n2'], ['B', 'n3'], ['C', 'n1']]) {
      const port = await freePort();
      const server = await started(`node ${label}`, bin, [
        ...(label === 'A' ? ['--demo'] : []),
        '--node-id', id, '--database-url', db, '--data-dir', join(dir, id), '--http-addr', `127.0.0.1:${port}`,
        '--media-engines', '1', '--media-udp-port', '0', '--public-ip', '127.0.0.1',
      ], /listening on/, env);
      stops.unshift(server.stop);
      nodes[label] = { url: `http://127.0.0.1:${port}`, server };
    }
    /** @type {Record<string, string>} */
    const passwords = {};
    for (const m of nodes.A.server.output().matchAll(/^\s+((?:yta|bacsi)\d+)\s+(\S+)\s+\(/gm)) passwords[m[1]] = m[2];
    const station = await signInAt('yta1', nodes.A.url, { password: passwords.yta1 });
    stops.unshift(() => station.browser.close());
    const doctor = await signInAt('bacsi1', nodes.B.url, { password: passwords.bacsi1 });
    stops.unshift(() => doctor.browser.close());

    const { id, took } = await inCall(station.page, doctor.page, 'Sốt cao, co giật', 45_000);
    console.log(`in call through A and B: media both ways in ${took.max} ms`);
    expect(psql(db, `SELECT node_id || ' ' || epoch FROM room_placements WHERE consultation_id = '${id}'`)).toBe('n1 1');

    const before = /** @type {[import('./calls.js').Inbound, import('./calls.js').Inbound]} */ (
      await Promise.all([inbound(station.page), inbound(doctor.page)]));
    await nodes.C.server.kill();
    const killed = Date.now();
    // The pages notice, come back through A and B, find their seats gone with node C and join again with
    // fresh connections (a new participant id); then the media must flow on those.
    for (const [who, page, was] of /** @type {const} */ ([['station', station.page, before[0]], ['doctor', doctor.page, before[1]]])) {
      await expect.poll(async () => (await inbound(page)).pid, { message: `${who} joined again`, timeout: 60_000 }).not.toBe(was.pid);
    }
    const back = await mediaBothWays(station.page, 'station', doctor.page, 'doctor', 60_000, before);
    console.log(`node C killed: media both ways again after ${Date.now() - killed} ms (station ${back.station} ms, doctor ${back.doctor} ms)`);
    const [host, epoch] = psql(db, `SELECT node_id || ' ' || epoch FROM room_placements WHERE consultation_id = '${id}'`).split(' ');
    expect(['n2', 'n3'], 'hosted on a surviving node').toContain(host);
    expect(epoch).toBe('2');
    for (const [who, page] of /** @type {const} */ ([['station', station.page], ['doctor', doctor.page]])) {
      const now = await inbound(page);
      expect(now.phase, `${who}'s page says the call is live again`).toBe('live');
      // What the person sees: the call's quality badge no longer says the picture and sound are lost.
      await expect(page.locator('#call-quality'), `${who}'s badge`).toHaveAttribute('data-level', /good|fair/, { timeout: 15_000 });
      await page.screenshot({ path: join(SHOTS, `cluster-after-kill-${who}.png`) });
    }
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    try { psql(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } catch { /* the server may be gone */ }
  }
});
