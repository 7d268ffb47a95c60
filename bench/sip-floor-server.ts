/**
 * The floor for bench:sip: a Node WebSocket server (`ws`, as the gateway uses it) that answers
 * the bench's REGISTER loop with no SIP work at all. It copies the request's Via, From, To,
 * Call-ID and CSeq lines as text, as the cheapest stateless responder would, and sends a
 * canned 401 (a fixed-shape nonce, never checked) or, when the request carries Authorization,
 * a canned 200. Whatever a registrar does, it cannot cost less than this on Node: the figure
 * bench:sip prints for it is what the event loop, `ws` and the loopback sockets cost alone.
 *
 * Usage: node --import tsx bench/sip-floor-server.ts <port>
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (p) => (p.has('sip') ? 'sip' : false) });
const server = createServer((_req, res) => res.writeHead(426).end());
server.on('upgrade', (req, socket, head) =>
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      // The lines from Via up to Contact: Via, Max-Forwards, To, From, Call-ID, CSeq.
      const copied = text.slice(text.indexOf('\r\n') + 2, text.indexOf('\r\nContact:')).replace('\r\nMax-Forwards: 70', '');
      ws.send(
        text.includes('\r\nAuthorization:')
          ? `SIP/2.0 200 OK\r\n${copied}\r\nContact: <sip:floor@floor.invalid;transport=ws>;expires=600\r\nContent-Length: 0\r\n\r\n`
          : `SIP/2.0 401 Unauthorized\r\n${copied}\r\nWWW-Authenticate: Digest realm="bench.test", nonce="${Date.now().toString(36)}0123456789abcdef", qop="auth", algorithm=MD5\r\nContent-Length: 0\r\n\r\n`,
      );
    });
  }),
);
server.listen(port, '127.0.0.1');
