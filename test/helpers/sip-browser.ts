import { build } from 'esbuild';
import type { Page } from 'playwright-core';

const bundles = new Map<string, string>();

/** JsSIP and SIP.js from node_modules, unchanged, bundled once into a script a page can run. */
async function bundle(name: 'jssip' | 'sip.js'): Promise<string> {
  let code = bundles.get(name);
  if (code) return code;
  const global = name === 'jssip' ? 'JsSIP' : 'SIP';
  const out = await build({
    stdin: { contents: `import * as lib from '${name}'; window.${global} = lib.default ?? lib;`, resolveDir: process.cwd(), loader: 'js' },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  });
  code = out.outputFiles[0]!.text;
  bundles.set(name, code);
  return code;
}

/** Puts `window.JsSIP` and `window.SIP` into the page. */
export async function loadSipLibraries(page: Page): Promise<void> {
  await page.addScriptTag({ content: await bundle('jssip') });
  await page.addScriptTag({ content: await bundle('sip.js') });
}

/**
 * Page-side glue for one SIP user per page: JsSIP's UA or SIP.js's SimpleUser, unchanged,
 * configured as an app would; remote audio lands in `window.vgRemote` (what
 * analyseRemoteAudio reads), events in `window.vgSip.events`.
 */
const PAGE_GLUE = `
window.vgSip = (() => {
  // policy: what JsSIP does with an incoming call when set (else the autoAnswer flag decides):
  // 'answer', 'ring' (until answer() is called), or a status to refuse it with once it rang.
  const state = { events: [], ua: undefined, session: undefined, simple: undefined, policy: undefined };
  const log = (type, data) => state.events.push({ type, ...(data || {}) });
  function hear(pc) {
    window.vgPc = pc;
    const attach = (track) => {
      window.vgRemote = new MediaStream([track]);
      const el = new Audio(); el.muted = true; el.srcObject = window.vgRemote; el.play().catch(() => {});
    };
    pc.getReceivers().forEach((r) => r.track && r.track.readyState === 'live' && pc.remoteDescription && attach(r.track));
    pc.addEventListener('track', (e) => attach(e.track));
  }
  function watch(session, label) {
    state.session = session;
    session.on('peerconnection', (e) => hear(e.peerconnection));
    if (session.connection) hear(session.connection);
    for (const ev of ['progress', 'accepted', 'confirmed', 'ended', 'failed', 'hold', 'unhold']) {
      session.on(ev, (e) => log(label + ':' + ev, { cause: e && e.cause, status: e && e.message && e.message.status_code, originator: e && e.originator }));
    }
    session.on('refer', (e) => {
      log(label + ':refer', { target: String(e.request.refer_to.uri) });
      e.accept((s) => watch(s, 'transferred'), { mediaConstraints: { audio: true, video: false } });
    });
  }
  return {
    state,
    jssip(wsUrl, user, password, domain, autoAnswer) {
      JsSIP.debug.disable('JsSIP:*');
      const ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface(wsUrl)], uri: 'sip:' + user + '@' + domain, password, register: true, session_timers: true });
      state.ua = ua;
      ua.on('newRTCSession', (e) => {
        if (e.originator !== 'remote') return;
        log('incoming', { from: String(e.request.from.uri) });
        watch(e.session, 'in');
        const policy = state.policy !== undefined ? state.policy : autoAnswer ? 'answer' : 'ring';
        if (policy === 'answer') e.session.answer({ mediaConstraints: { audio: true, video: false } });
        else if (typeof policy === 'number') {
          // A person declining: after the 180 went out, JsSIP answers the INVITE with the status.
          const s = e.session;
          s.on('progress', () => s.terminate({ status_code: policy }));
        }
      });
      return new Promise((resolve) => {
        ua.on('registered', () => resolve({ ok: true }));
        ua.on('registrationFailed', (e) => resolve({ ok: false, cause: e.cause, status: e.response && e.response.status_code }));
        ua.start();
      });
    },
    /** How JsSIP treats the next incoming calls: 'answer', 'ring', or a final status (486, 603) to refuse them with. */
    incoming(policy) { state.policy = policy; },
    answer() { state.session.answer({ mediaConstraints: { audio: true, video: false } }); },
    jssipCall(target) {
      const s = state.ua.call(target, { mediaConstraints: { audio: true, video: false }, sessionTimersExpires: 90 });
      watch(s, 'out');
      return new Promise((resolve) => {
        s.on('confirmed', () => resolve({ ok: true }));
        s.on('failed', (e) => resolve({ ok: false, cause: e.cause, status: e.message && e.message.status_code }));
      });
    },
    dtmf(digit, transportType) { state.session.sendDTMF(digit, { transportType, duration: 160 }); },
    // A blind transfer as an app does it: REFER, follow the NOTIFYs, hang up once it is accepted.
    jssipRefer(target) {
      const session = state.session;
      const sub = session.refer(target);
      const done = new Promise((resolve) => {
        sub.on('requestSucceeded', (e) => log('refer:requestSucceeded', { status: e.response.status_code }));
        sub.on('requestFailed', (e) => resolve({ ok: false, status: e.response && e.response.status_code }));
        for (const ev of ['trying', 'progress']) sub.on(ev, (e) => log('refer:' + ev, { status: e.status_line.status_code }));
        sub.on('accepted', (e) => { log('refer:accepted', { status: e.status_line.status_code }); session.terminate(); resolve({ ok: true }); });
        sub.on('failed', (e) => { log('refer:failed', { status: e.status_line.status_code }); resolve({ ok: false, status: e.status_line.status_code }); });
      });
      return done;
    },
    hangup() { state.session.terminate(); },
    // The media goes (a crashed tab, a closed RTCPeerConnection) and no BYE is sent.
    closeMedia() { state.session.connection.close(); },
    stop() { if (state.ua) state.ua.stop(); if (state.simple) return state.simple.disconnect(); },
    async sipjs(wsUrl, user, password, domain, autoAnswer) {
      const el = document.createElement('audio'); document.body.appendChild(el);
      let su;
      const result = new Promise((resolve) => {
        su = new SIP.Web.SimpleUser(wsUrl, {
          aor: 'sip:' + user + '@' + domain,
          media: { constraints: { audio: true, video: false }, remote: { audio: el } },
          userAgentOptions: { authorizationUsername: user, authorizationPassword: password, logLevel: 'error' },
          delegate: {
            onRegistered: () => resolve({ ok: true }),
            onCallReceived: () => { log('incoming'); if (autoAnswer) su.answer().catch((e) => log('answer-failed', { cause: String(e) })); },
            onCallAnswered: () => { log('sipjs:answered'); const pc = su.session.sessionDescriptionHandler.peerConnection; hear(pc); },
            onCallHangup: () => log('sipjs:hangup'),
          },
        });
        state.simple = su;
        su.connect().then(() => su.register({ requestDelegate: { onReject: (r) => resolve({ ok: false, status: r.message.statusCode }) } }));
      });
      return result;
    },
    async sipjsCall(target) {
      try { await state.simple.call(target); } catch (e) { return { ok: false, cause: String(e) }; }
      return new Promise((resolve) => {
        const t = setInterval(() => {
          const s = state.simple.session;
          if (s && s.state === 'Established') { clearInterval(t); hear(s.sessionDescriptionHandler.peerConnection); resolve({ ok: true }); }
          if (s && s.state === 'Terminated') { clearInterval(t); resolve({ ok: false, cause: 'terminated' }); }
        }, 50);
      });
    },
    sipjsDtmf(digit) { return state.simple.sendDTMF(digit); },
    sipjsHangup() { return state.simple.hangup(); },
  };
})();
`;

/** Loads the libraries and the glue into a page. */
export async function preparePage(page: Page): Promise<void> {
  await loadSipLibraries(page);
  await page.addScriptTag({ content: PAGE_GLUE });
}

export type SipPageEvent = { type: string; cause?: string; status?: number; target?: string; from?: string; originator?: string };

export async function pageEvents(page: Page): Promise<SipPageEvent[]> {
  return page.evaluate(() => (window as unknown as { vgSip: { state: { events: SipPageEvent[] } } }).vgSip.state.events);
}
