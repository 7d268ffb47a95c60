/** A flow's `remote` (`1.2.3.4:5060`, `[2001:db8::1]:5060`) as host and port; undefined when it is not one. */
export function remoteAddress(remote: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(remote) ?? /^([^:[\]]+):(\d{1,5})$/.exec(remote);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port <= 65535 ? { host: m[1]!, port } : undefined;
}
