import { chromium, type Browser, type Page } from 'playwright-core';

export interface TestBrowser {
  browser: Browser;
  page: Page;
  close(): Promise<void>;
}

/** Debian's Chromium (the flags this machine needs), headless, with a fake microphone that plays `wav` in a loop. */
export async function launchChromium(url: string, wav: string): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Gather candidates on 127.0.0.1 too (Chromium skips loopback by default).
      '--allow-loopback-in-peer-connection',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`,
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const page = await browser.newPage();
  // tsx compiles test files with esbuild keepNames, which wraps functions passed to
  // page.evaluate in a __name() helper that does not exist in the page.
  await page.addInitScript('window.__name = (fn) => fn;');
  await page.goto(url);
  return {
    browser,
    page,
    async close() {
      // Playwright gives the browser its own temporary profile and removes it on close.
      await browser.close();
    },
  };
}

export interface PublishOptions {
  token: string;
  trickle: boolean;
  iceServers?: RTCIceServer[];
  relayOnly?: boolean;
  /** sendrecv asks to hear the agent (our extension of WHIP). */
  direction?: 'sendonly' | 'sendrecv';
  /** Open a data channel for agent events. */
  dataChannel?: boolean;
  /** Also send the fake camera on a sendonly video transceiver (after the audio one), as OBS does. */
  video?: boolean;
}

export interface PublishResult {
  status: number;
  location: string | null;
  etag: string | null;
  links: string | null;
  patchStatuses: number[];
  connectionState: string;
  candidateTypes: string[];
  /** The SDP the page POSTed. */
  offerSdp: string;
  /** The body of the 201 (empty otherwise). */
  answerSdp: string;
}

/**
 * Runs a WHIP publish inside the page: getUserMedia (the fake WAV), createOffer, POST,
 * optional trickle PATCHes, setRemoteDescription; resolves when the peer is connected.
 */
export async function publishFromPage(page: Page, whipUrl: string, opts: PublishOptions): Promise<PublishResult> {
  return page.evaluate(
    async ({ whipUrl, opts }) => {
      const w = window as unknown as { vgPc?: RTCPeerConnection; vgStream?: MediaStream; vgRemote?: MediaStream; vgMessages: unknown[]; vgDc?: RTCDataChannel };
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: opts.video ?? false });
      w.vgStream = stream;
      const pc = new RTCPeerConnection({ iceServers: opts.iceServers ?? [], iceTransportPolicy: opts.relayOnly ? 'relay' : 'all' });
      w.vgPc = pc;
      pc.addTransceiver(stream.getAudioTracks()[0]!, { direction: opts.direction ?? 'sendonly' });
      if (opts.video) pc.addTransceiver(stream.getVideoTracks()[0]!, { direction: 'sendonly' });
      w.vgMessages = [];
      pc.ontrack = (e) => {
        w.vgRemote = e.streams[0] ?? new MediaStream([e.track]);
        // Chrome feeds remote WebRTC audio to Web Audio only while a media element plays it.
        const el = new Audio();
        el.muted = true;
        el.srcObject = w.vgRemote;
        void el.play();
      };
      if (opts.dataChannel) {
        const dc = pc.createDataChannel('events');
        w.vgDc = dc;
        dc.onmessage = (e) => w.vgMessages.push(JSON.parse(String(e.data)));
      }
      const pending: RTCIceCandidate[] = [];
      let ended = false;
      pc.onicecandidate = (e) => {
        if (e.candidate) pending.push(e.candidate);
        else ended = true;
      };
      await pc.setLocalDescription(await pc.createOffer());
      if (!opts.trickle) {
        await new Promise<void>((r) => {
          if (pc.iceGatheringState === 'complete') r();
          else pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
        });
      }
      const res = await fetch(whipUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${opts.token}` },
        body: pc.localDescription!.sdp,
      });
      const result = {
        status: res.status,
        location: res.headers.get('Location'),
        etag: res.headers.get('ETag'),
        links: res.headers.get('Link'),
        patchStatuses: [] as number[],
        connectionState: 'new',
        candidateTypes: [] as string[],
        offerSdp: pc.localDescription!.sdp,
        answerSdp: '',
      };
      if (res.status !== 201) return result;
      result.answerSdp = await res.text();
      await pc.setRemoteDescription({ type: 'answer', sdp: result.answerSdp });
      if (opts.trickle) {
        // RFC 8840 sdpfrag: ICE credentials, one media section, its candidates.
        await new Promise<void>((r) => {
          if (pc.iceGatheringState === 'complete') r();
          else pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
        });
        const offer = pc.localDescription!.sdp;
        const ufrag = /a=ice-ufrag:(.*)/.exec(offer)![1]!.trim();
        const pwd = /a=ice-pwd:(.*)/.exec(offer)![1]!.trim();
        const mid = pc.getTransceivers()[0]!.mid!;
        const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, 'm=audio 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`];
        for (const c of pending) {
          lines.push(`a=${c.candidate}`);
          result.candidateTypes.push(c.type ?? 'unknown');
        }
        if (ended) lines.push('a=end-of-candidates');
        const p = await fetch(result.location!, {
          method: 'PATCH',
          headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': result.etag!, Authorization: `Bearer ${opts.token}` },
          body: lines.join('\r\n') + '\r\n',
        });
        result.patchStatuses.push(p.status);
      }
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`not connected: ${pc.connectionState}`)), 15000);
        const check = () => {
          if (pc.connectionState === 'connected') {
            clearTimeout(t);
            resolve();
          } else if (pc.connectionState === 'failed') {
            clearTimeout(t);
            reject(new Error('connection failed'));
          }
        };
        pc.addEventListener('connectionstatechange', check);
        check();
      });
      result.connectionState = pc.connectionState;
      return result;
    },
    { whipUrl, opts },
  );
}

/** Packets the page's sender has sent so far (RTCOutboundRtpStreamStats). */
export async function packetsSent(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const pc = (window as unknown as { vgPc: RTCPeerConnection }).vgPc;
    let n = 0;
    (await pc.getStats()).forEach((s: { type: string; kind?: string; packetsSent?: number }) => {
      if (s.type === 'outbound-rtp' && s.kind === 'audio') n += s.packetsSent ?? 0;
    });
    return n;
  });
}

/** Peak frequency and its level (dB relative to the spectrum's median) of the audio the page receives. */
export async function analyseRemoteAudio(page: Page, ms = 1500): Promise<{ peakHz: number; peakOverMedianDb: number; rms: number }> {
  return page.evaluate(async (ms) => {
    // Our test page keeps the remote stream in vgRemote, the player page in voxgatePlayer.stream.
    const w = window as unknown as { vgRemote?: MediaStream; voxgatePlayer?: { stream: MediaStream } };
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource((w.vgRemote ?? w.voxgatePlayer?.stream)!);
    const an = ctx.createAnalyser();
    an.fftSize = 4096;
    src.connect(an);
    const freq = new Float32Array(an.frequencyBinCount);
    const time = new Float32Array(an.fftSize);
    const sum = new Float64Array(an.frequencyBinCount);
    let rms = 0;
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      an.getFloatFrequencyData(freq);
      an.getFloatTimeDomainData(time);
      for (let i = 0; i < freq.length; i++) sum[i]! += 10 ** (freq[i]! / 10);
      rms += Math.sqrt(time.reduce((a, x) => a + x * x, 0) / time.length);
      n++;
    }
    await ctx.close();
    let peak = 1;
    for (let i = 1; i < sum.length; i++) if (sum[i]! > sum[peak]!) peak = i;
    const sorted = [...sum].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    return { peakHz: (peak * ctx.sampleRate) / an.fftSize, peakOverMedianDb: 10 * Math.log10(sum[peak]! / median), rms: rms / n };
  }, ms);
}

/** The page's RTCStats entries of a type. */
export async function statsOfType(page: Page, type: string): Promise<Record<string, unknown>[]> {
  return page.evaluate(async (type) => {
    const w = window as unknown as { vgPc?: RTCPeerConnection; voxgate?: { pc: RTCPeerConnection } };
    const pc = (w.vgPc ?? w.voxgate?.pc)!; // our test page, or the demo page
    const out: Record<string, unknown>[] = [];
    (await pc.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type === type) out.push({ ...s });
    });
    return out;
  }, type);
}
