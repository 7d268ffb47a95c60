/**
 * The measured side of bench/stir.ts, in its own process so that bench/stir.ts can pin it to one
 * CPU (taskset) and read its CPU alone. Its input is the JSON in STIR_BENCH (the STI lab's
 * files and x5u, BENCH_SECONDS, the in-flight counts); two modes:
 *
 *   loops   voxgate's signing and verifying in process: StirSigner.headers, StirVerifier.verify
 *           with the certificate cached (fetched once from the lab's x5u before the clock starts),
 *           and the raw signPassport / verifyIdentity with the key in hand, which tells the
 *           certificate cache's share apart. Prints one JSON line of rows; exits 2 when any
 *           verification was not TN-Validation-Passed (the figures would be of failing work).
 *   serve   the same two operations behind secsipidx's HTTP API (POST /v1/check with the Identity
 *           header as the body, POST /v1/sign-csv with `orig,dest,attest,origid,x5u`), so its
 *           HTTP figures compare with secsipidx's own server like for like. Prints {"port":N}.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { identityHeader, signPassport, verifyIdentity } from '../src/sip/identity/passport.js';
import type { StirVerifier } from '../src/sip/identity/stir.js';
import { CALLED, callerNumber, closedLoop, identityOf, selfCpuUs, stirFor, type Row, type WorkerInput } from './stir-measure.js';

/** How many distinct calls the loops cycle through (each signed for its own numbers). */
const POOL = 256;
const WARMUP_S = 0.5;

async function warmCache(verifier: StirVerifier, x5u: string): Promise<void> {
  const cert = await verifier.cache.keyFor(x5u);
  if (!cert.ok) throw new Error(`the lab's certificate did not load: ${cert.detail}`);
}

async function loops(input: WorkerInput): Promise<void> {
  const { signer, verifier } = stirFor(input);
  await warmCache(verifier, input.x5u);
  const key = createPrivateKey(readFileSync(input.signerKey));
  const publicKey = new X509Certificate(readFileSync(input.signerCert)).publicKey;
  const calls = Array.from({ length: POOL }, (_, i) => ({ from: callerNumber(i), to: CALLED, identity: '' }));
  // Signed again before each run, so every verification is of a fresh PASSporT (iat within maxAgeSeconds).
  const resign = async () => {
    for (const c of calls) c.identity = identityOf(await signer.headers(c.from, c.to));
  };
  const passed = (verstat: string) => (verstat === 'TN-Validation-Passed' ? undefined : verstat);
  const ops: { op: string; run: (i: number) => Promise<string | undefined> }[] = [
    {
      op: 'sign: StirSigner.headers',
      run: async (i) => {
        const c = calls[i % POOL]!;
        return identityOf(await signer.headers(c.from, c.to)).length > 0 ? undefined : 'empty Identity';
      },
    },
    {
      op: 'verify: StirVerifier.verify (cached cert)',
      run: async (i) => {
        const c = calls[i % POOL]!;
        const r = await verifier.verify({ identities: [c.identity], origTn: c.from, destTn: [c.to], date: undefined });
        return passed(r.verstat) && `${r.verstat}: ${r.reason ?? ''}`;
      },
    },
    {
      op: 'sign: signPassport (raw key)',
      run: async (i) => {
        const c = calls[i % POOL]!;
        const { jws } = await signPassport({ key, x5u: input.x5u, attest: 'A', orig: c.from, dest: c.to });
        return identityHeader(jws, input.x5u).length > 0 ? undefined : 'empty JWS';
      },
    },
    {
      op: 'verify: verifyIdentity (raw key)',
      run: async (i) => {
        const c = calls[i % POOL]!;
        const v = await verifyIdentity({ identity: c.identity, key: publicKey, now: Math.floor(Date.now() / 1000), maxAgeSeconds: input.maxAgeSeconds, origTn: c.from, destTn: c.to });
        return passed(v.verstat) && `${v.verstat}: ${v.reason ?? ''}`;
      },
    },
  ];
  const rows: Row[] = [];
  for (const { op, run } of ops) {
    for (const inflight of input.inflight) {
      await resign();
      await closedLoop({ seconds: WARMUP_S, inflight, cpu: selfCpuUs, op: run });
      rows.push({ impl: 'voxgate', op, inflight, ...(await closedLoop({ seconds: input.seconds, inflight, cpu: selfCpuUs, op: run })) });
    }
  }
  const fetches = verifier.cache.fetches;
  process.stdout.write(`${JSON.stringify({ rows, certificateFetches: fetches })}\n`);
  const bad = rows.filter((r) => r.failures > 0);
  if (bad.length || fetches !== 1) {
    for (const r of bad) process.stderr.write(`${r.op} x${r.inflight}: ${r.failures} of ${r.ops} failed, first: ${r.firstFailure}\n`);
    if (fetches !== 1) process.stderr.write(`the certificate was fetched ${fetches} times (expected once: the cache is not what was measured)\n`);
    process.exitCode = 2;
  }
}

/** secsipidx 1.2.0's HTTP API (main.go: httpHandleV1Check, httpHandleV1SignCSV) over voxgate's signer and verifier. */
async function serve(input: WorkerInput): Promise<void> {
  const { signer, verifier } = stirFor(input);
  await warmCache(verifier, input.x5u);
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8').trim();
      const reply = (status: number, text: string) => {
        res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
      };
      const work =
        req.url === '/v1/check'
          ? (async () => {
              // secsipidx's check is given the header alone; ours checks orig and dest against the
              // call too, so it is given the numbers the PASSporT claims (the same work, and it passes).
              let claims: { orig?: { tn?: string }; dest?: { tn?: string[] } } = {};
              try {
                claims = JSON.parse(Buffer.from(body.split('.')[1] ?? '', 'base64url').toString('utf8')) as typeof claims;
              } catch {
                // A body that does not decode fails the verification below.
              }
              const r = await verifier.verify({ identities: [body], origTn: claims.orig?.tn, destTn: claims.dest?.tn ?? [], date: undefined });
              return r.verstat === 'TN-Validation-Passed' ? reply(200, 'OK\n') : reply(500, 'FAILED\n');
            })()
          : req.url === '/v1/sign-csv'
            ? (async () => {
                const [orig, dest] = body.split(',');
                if (!orig || !dest) return reply(400, 'too few tokens');
                reply(200, `${identityOf(await signer.headers(orig, dest))}\n`);
              })()
            : Promise.resolve(reply(404, 'not found\n'));
      work.catch((err: unknown) => reply(500, `${(err as Error).message}\n`));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close();
  });
}

const mode = process.argv[2];
const input = JSON.parse(process.env.STIR_BENCH ?? '{}') as WorkerInput;
if (mode === 'loops') await loops(input);
else if (mode === 'serve') await serve(input);
else {
  process.stderr.write('usage: stir-worker.ts loops|serve (input in STIR_BENCH, from bench/stir.ts)\n');
  process.exitCode = 1;
}
