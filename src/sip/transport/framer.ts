/**
 * RFC 3261 §18.3: SIP on a stream (TCP, TLS) is framed by the end of the headers and the
 * Content-Length. Pure: chunks in, whole messages (or keep-alives, or one error) out; no
 * socket, no timer. Each byte is scanned once and copied at most twice (in, and out with its
 * message), so a message split over many chunks or many messages in one chunk cost linear time.
 */

/** Why a stream cannot be framed any further; the connection closes after it. */
export type FramingErrorCode = 'missing-content-length' | 'bad-content-length' | 'headers-too-long' | 'message-too-large';

export interface FramingError {
  kind: 'error';
  code: FramingErrorCode;
  /** The status a server answers with, when it can answer (`salvageResponse`). */
  status: 400 | 413 | 513;
  reason: string;
  /** The start line and whole header lines read (the CRLFCRLF included when it was reached): enough to answer. */
  head: Buffer;
}

export type FramedItem =
  | { kind: 'message'; data: Buffer }
  /** RFC 5626 §3.5.1: a CRLFCRLF "ping" between messages; the transport answers a CRLF "pong". */
  | { kind: 'ping' }
  | FramingError;

export interface StreamFramerOptions {
  /** Largest message (headers and body), bytes: a Content-Length that would pass it is an error (413). */
  maxMessageBytes: number;
  /** Longest start line and headers, bytes (513 beyond); maxMessageBytes by default. */
  maxHeaderBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const CRLFCRLF = Buffer.from('\r\n\r\n');
/** A buffer this big is given back once it is empty, so an idle connection holds little. */
const KEEP_BYTES = 64 * 1024;

type State = 'between' | 'head' | 'body' | 'failed';

export class StreamFramer {
  readonly #maxMessage: number;
  readonly #maxHead: number;
  #buf = Buffer.alloc(0);
  /** The unread bytes are #buf[#start, #end); every offset below is from #start. */
  #start = 0;
  #end = 0;
  #state: State = 'between';
  /** How much of a CRLFCRLF ping has been seen between messages (0-3). */
  #ping = 0;
  /** Where the search for the end of the headers resumes: nothing before it can hold one. */
  #scan = 0;
  /** The length of the message being read, once its headers are in. */
  #length = 0;

  constructor(opts: StreamFramerOptions) {
    this.#maxMessage = opts.maxMessageBytes;
    this.#maxHead = Math.min(opts.maxHeaderBytes ?? opts.maxMessageBytes, opts.maxMessageBytes);
  }

  /** Bytes held for a message not yet whole. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Whether an error has ended framing (every later chunk is ignored). */
  get failed(): boolean {
    return this.#state === 'failed';
  }

  /** The items completed by this chunk, in order; after an error, nothing more. */
  push(chunk: Buffer): FramedItem[] {
    if (this.#state === 'failed') return [];
    this.#append(chunk);
    const out: FramedItem[] = [];
    for (;;) {
      if (this.#state === 'between' && !this.#skipCrlf(out)) break;
      if (this.#state === 'head') {
        const err = this.#readHead();
        if (err) {
          out.push(err);
          this.#fail();
          break;
        }
        if (this.#state === 'head') break;
      }
      if (this.#state === 'body') {
        if (this.#end - this.#start < this.#length) break;
        // Copied out: the framer's buffer is reused, and a small message must not pin a big one.
        out.push({ kind: 'message', data: Buffer.from(this.#buf.subarray(this.#start, this.#start + this.#length)) });
        this.#start += this.#length;
        this.#state = 'between';
      }
    }
    this.#release();
    return out;
  }

  /** RFC 3261 §7.5 / RFC 5626 §4.4.1: CRLFs before a message are skipped, each CRLFCRLF a ping. False when the bytes ran out. */
  #skipCrlf(out: FramedItem[]): boolean {
    const buf = this.#buf;
    while (this.#start < this.#end) {
      const c = buf[this.#start]!;
      if (c !== CR && c !== LF) {
        this.#state = 'head';
        this.#ping = 0;
        this.#scan = 0;
        return true;
      }
      this.#start++;
      if (c === (this.#ping % 2 === 0 ? CR : LF)) {
        if (++this.#ping === 4) {
          out.push({ kind: 'ping' });
          this.#ping = 0;
        }
      } else this.#ping = c === CR ? 1 : 0;
    }
    return false;
  }

  /** Looks for the end of the headers from where the last look stopped; reads Content-Length once found. */
  #readHead(): FramingError | undefined {
    const live = this.#buf.subarray(this.#start, this.#end);
    const at = live.indexOf(CRLFCRLF, this.#scan);
    if (at < 0) {
      if (live.length > this.#maxHead) return this.#error('headers-too-long', 513, `Message Too Large (headers over ${this.#maxHead} bytes)`, live);
      // The next chunk may complete a CRLFCRLF begun in the last 3 bytes.
      this.#scan = Math.max(0, live.length - 3);
      return undefined;
    }
    const headLength = at + 4;
    const head = live.subarray(0, headLength);
    if (headLength > this.#maxHead) return this.#error('headers-too-long', 513, `Message Too Large (headers over ${this.#maxHead} bytes)`, head);
    const cl = contentLength(live.toString('latin1', 0, at));
    // RFC 3261 §18.3: on a stream Content-Length MUST be present; without it the body cannot be found.
    if (cl === undefined) return this.#error('missing-content-length', 400, 'Missing Content-Length (required on TCP and TLS)', head);
    if (cl === 'bad') return this.#error('bad-content-length', 400, 'Bad Content-Length', head);
    if (headLength + cl > this.#maxMessage) return this.#error('message-too-large', 413, 'Request Entity Too Large', head);
    this.#length = headLength + cl;
    this.#state = 'body';
    return undefined;
  }

  #error(code: FramingErrorCode, status: FramingError['status'], reason: string, head: Buffer): FramingError {
    // Only whole lines, and never more than the header limit, go to whoever answers.
    let cut = head.length;
    if (head.subarray(-4).compare(CRLFCRLF) !== 0) {
      const lastCrlf = head.lastIndexOf('\r\n', this.#maxHead);
      cut = lastCrlf < 0 ? 0 : lastCrlf + 2;
    }
    return { kind: 'error', code, status, reason, head: Buffer.from(head.subarray(0, cut)) };
  }

  #fail(): void {
    this.#state = 'failed';
    this.#buf = Buffer.alloc(0);
    this.#start = this.#end = 0;
  }

  /**
   * Appends a chunk. Space freed at the front is reused only when it is at least as big as
   * what is kept (so each byte moves at most once per byte consumed); otherwise the buffer
   * doubles. Its size stays within twice the largest message plus the largest chunk.
   */
  #append(chunk: Buffer): void {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    const n = chunk.length;
    if (this.#end + n > this.#buf.length) {
      const live = this.#end - this.#start;
      if (live + n <= this.#buf.length && this.#start >= live) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = Buffer.allocUnsafe(Math.max(live + n, this.#buf.length * 2, 4096));
        this.#buf.copy(grown, 0, this.#start, this.#end);
        this.#buf = grown;
      }
      this.#start = 0;
      this.#end = live;
    }
    chunk.copy(this.#buf, this.#end);
    this.#end += n;
  }

  #release(): void {
    if (this.#start === this.#end && this.#buf.length > KEEP_BYTES) {
      this.#buf = Buffer.alloc(0);
      this.#start = this.#end = 0;
    }
  }
}

/**
 * The Content-Length of a header block (start line first): RFC 3261 §7.3.1 names are
 * case-insensitive, `l` is its compact form (§7.3.3), whitespace may surround the colon and a
 * value may be folded. Repeated values that disagree are 'bad': two framings of one stream is
 * how requests are smuggled.
 */
export function contentLength(head: string): number | 'bad' | undefined {
  let value: string | undefined;
  let inContentLength = false;
  let bad = false;
  let lineStart = head.indexOf('\r\n');
  while (lineStart >= 0) {
    lineStart += 2;
    const eol = head.indexOf('\r\n', lineStart);
    const line = head.slice(lineStart, eol < 0 ? head.length : eol);
    lineStart = eol;
    const c0 = line.charCodeAt(0);
    if (c0 === 0x20 || c0 === 0x09) {
      // §7.3.1: a continuation line belongs to the header above it.
      if (inContentLength) value = `${value ?? ''} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim().toLowerCase();
    inContentLength = name === 'content-length' || name === 'l';
    if (!inContentLength) continue;
    const v = line.slice(colon + 1).trim();
    if (value !== undefined && value.trim() !== v) bad = true;
    value = v;
  }
  if (value === undefined) return undefined;
  const v = value.trim();
  if (bad || !/^\d{1,10}$/.test(v)) return 'bad';
  return Number(v);
}
