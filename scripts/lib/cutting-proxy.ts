/**
 * A TCP proxy in front of a gateway that cuts each of its first `cuts` connections once `afterBytes` bytes
 * went client → server on it (an upload cut mid-body): both sockets are destroyed, as a dropped link would.
 * For the resumable-upload test and bench-resumable.
 */
import net from 'node:net';

export interface CuttingProxy {
  url: string;
  connections(): number;
  /** Connections cut so far. */
  cuts(): number;
  close(): Promise<void>;
}

export async function cuttingProxy(
  target: string,
  options: { afterBytes: number; cuts: number },
): Promise<CuttingProxy> {
  const { hostname, port } = new URL(target);
  let connections = 0;
  let cut = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    let forwarded = 0;
    client.on('data', (chunk: Buffer) => {
      forwarded += chunk.length;
      if (cut < options.cuts && forwarded > options.afterBytes) {
        cut++;
        upstream.write(chunk.subarray(0, chunk.length - (forwarded - options.afterBytes)));
        client.destroy();
        upstream.destroy();
        return;
      }
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections: () => connections,
    cuts: () => cut,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
