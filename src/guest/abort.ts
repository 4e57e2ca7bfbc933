// AbortSignal plumbing for the waits of guest code (event channels, vchan,
// xenstore watches): a wait that is aborted rejects with the signal's reason
// (an AbortError DOMException unless the caller gave another), as Node's own
// APIs do, and leaves nothing registered behind.

/** `p`, or a rejection with `signal.reason` if the signal aborts first. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) {
    p.catch(() => {}); // what p comes to no longer matters
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Whether `signal` has aborted (a call, so TypeScript does not narrow it across an await). */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
