/**
 * Keeps the last `limitBytes` of a byte stream and counts the rest, so a chatty or hostile
 * process cannot make us buffer without bound.
 */
export class TailBuffer {
  #chunks: Buffer[] = [];
  #size = 0;
  /** Bytes seen in total, kept or not. */
  total = 0;

  constructor(readonly limitBytes: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.byteLength;
    if (this.limitBytes <= 0) return;
    const kept = chunk.byteLength > this.limitBytes ? chunk.subarray(-this.limitBytes) : chunk;
    // Copy: the chunk may be a view into a larger socket buffer we must not keep alive.
    this.#chunks.push(Buffer.from(kept));
    this.#size += kept.byteLength;
    while (this.#size - (this.#chunks[0]?.byteLength ?? 0) >= this.limitBytes) {
      this.#size -= this.#chunks.shift()?.byteLength ?? 0;
    }
  }

  /** True when bytes were dropped from the front. */
  get truncated(): boolean {
    return this.total > this.limitBytes;
  }

  toString(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.byteLength - this.limitBytes)).toString('utf8');
  }
}

const HEADER_BYTES = 8;

/**
 * Splits Docker's multiplexed attach stream (`Tty: false`): frames of an 8-byte header
 * (`[stream, 0, 0, 0, size uint32 BE]`, stream 1 = stdout, 2 = stderr) and `size` bytes of
 * payload. Payloads are handed on chunk by chunk, never reassembled, so memory stays bounded by
 * the sinks. A header with an unknown stream byte means the stream is not multiplexed (a TTY):
 * everything from there on goes to stdout.
 */
export class DockerStreamDemuxer {
  #header = Buffer.alloc(HEADER_BYTES);
  #headerFill = 0;
  #remaining = 0;
  #target: TailBuffer | undefined;
  #raw = false;

  constructor(
    readonly stdout: TailBuffer,
    readonly stderr: TailBuffer,
  ) {}

  push(chunk: Buffer): void {
    if (this.#raw) {
      this.stdout.push(chunk);
      return;
    }
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.byteLength - offset);
        this.#target?.push(chunk.subarray(offset, offset + take));
        this.#remaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(HEADER_BYTES - this.#headerFill, chunk.byteLength - offset);
      chunk.copy(this.#header, this.#headerFill, offset, offset + take);
      this.#headerFill += take;
      offset += take;
      if (this.#headerFill < HEADER_BYTES) return;
      this.#headerFill = 0;
      const stream = this.#header[0];
      if (stream !== 0 && stream !== 1 && stream !== 2) {
        this.#raw = true;
        this.stdout.push(Buffer.from(this.#header));
        this.stdout.push(chunk.subarray(offset));
        return;
      }
      this.#target = stream === 2 ? this.stderr : this.stdout;
      this.#remaining = this.#header.readUInt32BE(4);
    }
  }
}
