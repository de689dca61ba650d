const NEWLINE = 0x0a;
/** How much of an oversized line is kept to find out which request it answered. */
export const OVERSIZED_HEAD_BYTES = 256;

/** What {@link createLineReader} reports. */
export interface LineReaderHandlers {
  /**
   * One complete line, without its `\n`. The buffer belongs to the reader and is zeroed as soon
   * as this returns: decode what you need before returning, keep nothing.
   */
  onLine(line: Buffer): void;
  /**
   * A line grew past the limit before its `\n` arrived. `head` holds its first bytes (at most
   * {@link OVERSIZED_HEAD_BYTES}, zeroed after this returns); the rest of the line is discarded
   * up to and including its `\n`.
   */
  onOversized(head: Buffer, seenBytes: number): void;
  /** The input ended; `trailingBytes` > 0 means a last line without its `\n` was dropped. */
  onEnd?(trailingBytes: number): void;
}

/** A line splitter with a bound: see {@link createLineReader}. */
export interface LineReader {
  push(chunk: Buffer): void;
  end(): void;
  /** Changes the bound (after the handshake agrees on one); lines already buffered are kept. */
  setMaxLineBytes(maxLineBytes: number): void;
}

/**
 * Splits a byte stream into `\n`-terminated lines of at most `maxLineBytes` bytes (the `\n`
 * not counted), without ever buffering more than that: a longer line is reported once through
 * `onOversized` and skipped. Bytes are zeroed once handled, since lines carry secret values.
 *
 * @example
 * const reader = createLineReader(1_048_576, { onLine: (line) => handle(line.toString('utf8')), onOversized: () => reset() });
 * child.stdout.on('data', (chunk) => reader.push(chunk));
 * child.stdout.on('end', () => reader.end());
 */
export function createLineReader(maxLineBytes: number, handlers: LineReaderHandlers): LineReader {
  let limit = maxLineBytes;
  let pieces: Buffer[] = [];
  let buffered = 0;
  let discarding = false;
  let ended = false;

  const dropPieces = () => {
    for (const piece of pieces) piece.fill(0);
    pieces = [];
    buffered = 0;
  };

  const emit = (last: Buffer) => {
    const line = pieces.length === 0 ? last : Buffer.concat([...pieces, last]);
    try {
      handlers.onLine(line);
    } finally {
      line.fill(0);
      last.fill(0);
      dropPieces();
    }
  };

  const oversized = (extra: Buffer) => {
    const seen = buffered + extra.length;
    const head = Buffer.concat([...pieces, extra]).subarray(0, OVERSIZED_HEAD_BYTES);
    const copy = Buffer.from(head);
    extra.fill(0);
    dropPieces();
    discarding = true;
    try {
      handlers.onOversized(copy, seen);
    } finally {
      copy.fill(0);
    }
  };

  return {
    push(chunk) {
      if (ended) return;
      let rest = chunk;
      while (rest.length > 0 && !ended) {
        const index = rest.indexOf(NEWLINE);
        if (discarding) {
          if (index < 0) {
            rest.fill(0);
            return;
          }
          rest.subarray(0, index + 1).fill(0);
          discarding = false;
          rest = rest.subarray(index + 1);
          continue;
        }
        if (index < 0) {
          if (buffered + rest.length > limit) {
            oversized(rest);
            return;
          }
          pieces.push(rest);
          buffered += rest.length;
          return;
        }
        if (buffered + index > limit) {
          oversized(rest.subarray(0, index));
          // The line's end is in this chunk: nothing more of it to discard.
          discarding = false;
          rest.subarray(index, index + 1).fill(0);
          rest = rest.subarray(index + 1);
          continue;
        }
        emit(rest.subarray(0, index));
        rest.subarray(index, index + 1).fill(0);
        rest = rest.subarray(index + 1);
      }
    },
    end() {
      if (ended) return;
      ended = true;
      const trailing = buffered;
      dropPieces();
      handlers.onEnd?.(trailing);
    },
    setMaxLineBytes(maxLineBytes) {
      limit = maxLineBytes;
    },
  };
}

/** A splitter for free text (a child's stderr): see {@link createTextLineSplitter}. */
export interface TextLineSplitter {
  push(chunk: Buffer): void;
  /** Flushes a last line without `\n`. */
  end(): void;
}

/**
 * Splits free text into lines, keeping at most `maxLineBytes` of each (the rest is counted and
 * reported as `truncatedBytes`), so a child that writes a huge line cannot make the host
 * buffer it. Lines are decoded as UTF-8 with invalid sequences replaced.
 */
export function createTextLineSplitter(
  maxLineBytes: number,
  onLine: (text: string, truncatedBytes: number) => void,
): TextLineSplitter {
  let pieces: Buffer[] = [];
  let kept = 0;
  let truncated = 0;
  const flush = () => {
    const text = Buffer.concat(pieces).toString('utf8');
    const dropped = truncated;
    pieces = [];
    kept = 0;
    truncated = 0;
    onLine(text.endsWith('\r') ? text.slice(0, -1) : text, dropped);
  };
  const keep = (part: Buffer) => {
    const room = maxLineBytes - kept;
    if (part.length <= room) {
      pieces.push(Buffer.from(part));
      kept += part.length;
    } else {
      if (room > 0) pieces.push(Buffer.from(part.subarray(0, room)));
      kept += Math.max(room, 0);
      truncated += part.length - Math.max(room, 0);
    }
  };
  return {
    push(chunk) {
      let rest = chunk;
      for (;;) {
        const index = rest.indexOf(NEWLINE);
        if (index < 0) {
          keep(rest);
          return;
        }
        keep(rest.subarray(0, index));
        flush();
        rest = rest.subarray(index + 1);
      }
    },
    end() {
      if (kept > 0 || truncated > 0) flush();
    },
  };
}
