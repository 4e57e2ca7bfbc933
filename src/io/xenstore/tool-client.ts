// The toolstack's in-process client of the store.
import { XsClientCore } from './client.ts';
import type { XsConnection } from './connection.ts';
import { decodeMessage } from './wire.ts';
import type { XenStore } from './xenstored.ts';

/**
 * The toolstack's in-process client (a socket connection to xenstored):
 * privileged, id 0. Requests are handled at once; replies and watch events are
 * delivered from a microtask, never inside the store's own call stack.
 */
export class ToolClient extends XsClientCore {
  private readonly store: XenStore;
  private readonly conn: XsConnection;

  constructor(store: XenStore) {
    super(0);
    this.store = store;
    this.conn = store.connectTool();
    this.conn.onOutput = () => {
      const msgs = this.conn.out.splice(0).map((m) => decodeMessage(m.bytes)!);
      queueMicrotask(() => {
        for (const m of msgs) this.receive(m);
      });
    };
  }

  protected override async sendMessage(bytes: Uint8Array): Promise<void> {
    const msg = decodeMessage(bytes);
    if (msg === null) throw new Error('xenstore: malformed request');
    this.store.handle(this.conn, msg);
  }

  protected override shutdown(): void {
    this.store.disconnect(this.conn);
  }
}
