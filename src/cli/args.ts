// Option values shared by the commands: each parser throws commander's
// InvalidArgumentError, so a bad value is a usage error (exit 2).
import { InvalidArgumentError } from 'commander';

/** Machine memory of a host: 1 to 4096 MiB. */
export function memoryArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 4096)
    throw new InvalidArgumentError('a whole number of MiB from 1 to 4096');
  return n;
}

/** A timeout: more than 0 and at most a day. */
export function secondsArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 86400)
    throw new InvalidArgumentError('a number of seconds, more than 0 and at most 86400');
  return n;
}
