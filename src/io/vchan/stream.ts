// A vchan as a node:stream Duplex: reads pull what the read ring holds (one
// blocking libxenvchan_read at a time), writes push into the write ring (a
// blocking libxenvchan_write each, or one writev for a corked batch). The end
// of the peer's data (EPIPE once closed and drained) is the end of the
// readable side, and with it of the writable side (allowHalfOpen false: a
// closed peer takes no more data), so the stream then finishes, destroys
// itself and closes the channel; the stream owns the channel and closes it
// whenever it is destroyed. (Whether leaving a for-await loop destroys a
// half-open Duplex differs between Node lines; this does not depend on it.)
import { Duplex } from 'node:stream';
import { XenError } from '../../guest/xen-error.ts';

/** Options of Vchan.stream. */
export interface VchanStreamOptions {
  /** Largest chunk a read pushes (default 64 KiB). */
  chunkSize?: number;
  /** The readable side's highWaterMark in bytes (default 64 KiB). */
  readableHighWaterMark?: number;
  /** The writable side's highWaterMark in bytes (default 64 KiB). */
  writableHighWaterMark?: number;
}

/** What the stream needs of its vchan (blocking calls, whatever the vchan's own mode). */
export interface VchanStreamIo {
  read(buf: Uint8Array): Promise<number>;
  write(data: Uint8Array): Promise<number>;
  writev(bufs: readonly Uint8Array[]): Promise<number>;
}

interface Closable {
  close(): Promise<void>;
}

const isEnd = (e: unknown) => e instanceof XenError && e.code === 'EPIPE';

/** @internal Vchan.stream builds it. */
export function vchanStream(v: Closable, o: VchanStreamOptions, io: VchanStreamIo): Duplex {
  const chunk = o.chunkSize ?? 64 * 1024;
  let reading = false;
  const d: Duplex = new Duplex({
    allowHalfOpen: false,
    readableHighWaterMark: o.readableHighWaterMark ?? 64 * 1024,
    writableHighWaterMark: o.writableHighWaterMark ?? 64 * 1024,
    read() {
      if (reading) return;
      reading = true;
      const pull = (): void => {
        const buf = Buffer.allocUnsafe(chunk);
        io.read(buf).then(
          (n) => {
            if (d.push(buf.subarray(0, n))) pull();
            else reading = false;
          },
          (e: unknown) => {
            reading = false;
            if (isEnd(e)) d.push(null);
            else d.destroy(e instanceof Error ? e : new Error(String(e)));
          },
        );
      };
      pull();
    },
    write(data: Buffer, _enc, cb) {
      io.write(data).then(
        () => cb(),
        (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))),
      );
    },
    writev(parts, cb) {
      io.writev(parts.map((p) => p.chunk as Buffer)).then(
        () => cb(),
        (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))),
      );
    },
    destroy(err, cb) {
      v.close().then(
        () => cb(err),
        (e: unknown) => cb(err ?? (e instanceof Error ? e : new Error(String(e)))),
      );
    },
  });
  return d;
}
