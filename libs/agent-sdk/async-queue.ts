/**
 * A minimal unbounded async queue used as the request side of a bidirectional stream:
 * the client pushes messages, connect-es pulls them through async iteration. Bounding
 * happens before this queue (the SDK's buffer and in-flight window), so it never grows
 * past the window.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: ((r: IteratorResult<T>) => void) | undefined;
  #closed = false;

  /** Appends a message; ignored after {@link close}. */
  push(item: T): void {
    if (this.#closed) return;
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      w({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  /** Ends the iteration once queued messages are consumed. Idempotent. */
  close(): void {
    this.#closed = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.#items.length > 0) return Promise.resolve({ value: this.#items.shift()!, done: false });
        if (this.#closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.#waiter = resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      // connect-es ends the request side through throw() when the call is cancelled.
      throw: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
