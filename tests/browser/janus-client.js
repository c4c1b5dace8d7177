// @ts-check
/**
 * A minimal Janus VideoRoom client for the network benchmark (network.bench.js): what a page of a Janus-based
 * product does with the same camera and microphone as ours. It publishes audio and simulcast video (the same three
 * resolutions and bitrates as web-client/call.js, highest first as janus.js sends them) on one peer connection, waits for the other participant's feed and
 * subscribes to it on a second, over Janus's plain HTTP API (long poll), without trickle (each side's description
 * carries its candidates). The subscriber connection is exposed as `window.__thCall.pc`, where calls.js's
 * `quality()` reads what a page received. Janus forwards what it was asked for: the default substream (the top
 * layer); a Janus-based product would add its own layer choice on top.
 */

/**
 * Joins `room` on the Janus API at `url` from this page and subscribes to the first other publisher; resolves once
 * the subscription has started.
 * @param {import('@playwright/test').Page} page @param {{url: string, room: number, display: string}} opts
 */
export function joinJanus(page, opts) {
  return page.evaluate(async ({ url, room, display }) => {
    const tx = () => Math.random().toString(36).slice(2);
    /** @param {string} path @param {object} body */
    const post = async (path, body) => {
      const r = await fetch(url + path, { method: 'POST', body: JSON.stringify({ ...body, transaction: tx() }) });
      const v = await r.json();
      if (v.janus === 'error') throw new Error(`janus ${path}: ${JSON.stringify(v.error)}`);
      return v;
    };
    const session = (await post('', { janus: 'create' })).data.id;
    /** @type {any[]} */
    const events = [];
    const call = /** @type {any} */ (window).__thCall = { pc: /** @type {RTCPeerConnection | null} */ (null), closed: false, janus: session };
    // Janus's events for every handle of the session, by long poll; keepalive is implied by polling.
    void (async () => {
      while (!call.closed) {
        try {
          const r = await fetch(`${url}/${session}?maxev=10`);
          const v = await r.json();
          for (const e of [v].flat()) if (e.janus !== 'keepalive') events.push(e);
        } catch { await new Promise((r) => setTimeout(r, 500)); }
      }
    })();
    /** @param {number} handle @param {(e: any) => boolean} match @param {number} [ms] */
    const event = async (handle, match, ms = 30_000) => {
      const t0 = Date.now();
      while (Date.now() - t0 < ms) {
        const i = events.findIndex((e) => e.sender === handle && match(e));
        if (i >= 0) return events.splice(i, 1)[0];
        const err = events.find((e) => e.sender === handle && e.plugindata?.data?.error);
        if (err) throw new Error(`janus: ${JSON.stringify(err.plugindata.data)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`janus: no matching event within ${ms} ms`);
    };
    const attach = async () => (await post(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
    /** @param {RTCPeerConnection} pc */
    const gathered = (pc) => new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r(null);
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r(null));
    });

    // Publish.
    const media = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } },
    });
    const pub = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pub.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
    pub.addTransceiver(media.getVideoTracks()[0], {
      direction: 'sendonly',
      // Janus takes the first encoding for the highest (as janus.js sends them).
      sendEncodings: [
        { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
        { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      ],
    });
    await pub.setLocalDescription();
    await gathered(pub);
    const ph = await attach();
    await post(`/${session}/${ph}`, {
      janus: 'message', body: { request: 'joinandconfigure', room, ptype: 'publisher', display }, jsep: pub.localDescription,
    });
    const joined = await event(ph, (e) => e.plugindata?.data?.videoroom === 'joined' && e.jsep);
    await pub.setRemoteDescription(joined.jsep);
    const me = joined.plugindata.data.id;

    // Wait for the other side's feed, then subscribe.
    /** @param {any} d */
    const other = (d) => (d?.publishers ?? []).map((/** @type {any} */ p) => p.id).find((/** @type {number} */ id) => id !== me);
    let feed = other(joined.plugindata.data);
    if (!feed) feed = other((await event(ph, (e) => !!other(e.plugindata?.data), 60_000)).plugindata.data);
    const sh = await attach();
    await post(`/${session}/${sh}`, { janus: 'message', body: { request: 'join', room, ptype: 'subscriber', streams: [{ feed }] } });
    const attached = await event(sh, (e) => e.plugindata?.data?.videoroom === 'attached' && e.jsep);
    const sub = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const remote = new MediaStream();
    sub.addEventListener('track', (ev) => remote.addTrack(ev.track));
    await sub.setRemoteDescription(attached.jsep);
    await sub.setLocalDescription();
    await gathered(sub);
    await post(`/${session}/${sh}`, { janus: 'message', body: { request: 'start', room }, jsep: sub.localDescription });
    await event(sh, (e) => e.plugindata?.data?.started === 'ok');
    // Play it, as a page would (a video element decodes; audio is played out).
    const video = document.createElement('video');
    video.autoplay = true;
    video.muted = false;
    video.srcObject = remote;
    document.body.append(video);
    call.pc = sub;
    call.publisher = pub;
    return { me, feed };
  }, opts);
}
