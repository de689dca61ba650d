/**
 * Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts (at once
 * when it already has). The operation itself runs on: only the wait is cut short, so whoever
 * started it stays responsible for stopping it. The abort listener is removed when either side
 * settles, so a long-lived signal does not collect listeners.
 *
 * @example
 * const reply = await abortable(client.get(key), signal);
 */
export function abortable<T>(promise: PromiseLike<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return Promise.resolve(promise);
  if (signal.aborted) {
    // The operation's own rejection, if any, is not reported as unhandled: the caller left.
    Promise.resolve(promise).catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(promise).then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Calls `onAbort` once when any of `signals` aborts (at once, synchronously, when one already
 * has) and returns the function that stops listening. For code that must undo something on
 * abort (destroy a socket, kill a process) rather than merely stop waiting.
 *
 * @example
 * const stop = onAbort(signal, () => socket.destroy());
 * try { await read(socket); } finally { stop(); }
 */
export function onAbort(
  signals: AbortSignal | undefined | ReadonlyArray<AbortSignal | undefined>,
  callback: (reason: unknown) => void,
): () => void {
  const list = (Array.isArray(signals) ? signals : [signals]).filter(
    (signal): signal is AbortSignal => signal !== undefined,
  );
  const aborted = list.find((signal) => signal.aborted);
  if (aborted !== undefined) {
    callback(aborted.reason);
    return () => {};
  }
  let fired = false;
  const listeners = list.map((signal) => {
    const listener = () => {
      if (fired) return;
      fired = true;
      stop();
      callback(signal.reason);
    };
    signal.addEventListener('abort', listener, { once: true });
    return { signal, listener };
  });
  function stop() {
    for (const { signal, listener } of listeners) signal.removeEventListener('abort', listener);
  }
  return stop;
}
