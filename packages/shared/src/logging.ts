import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface LoggerOptions {
  level?: LogLevel;
  /** Where JSON lines go; stderr by default so stdout stays free for results. */
  destination?: DestinationStream;
}

/**
 * Paths that must never reach a log line. Components also avoid logging credentials at all; this is
 * the second line of defence.
 */
const REDACT_PATHS = [
  'password',
  'auth',
  'token',
  'authorization',
  'headers.authorization',
  '*.password',
  '*.auth',
  '*.token',
  '*.authorization',
  'swarmKey',
  '*.swarmKey',
];

/** The root logger of a process. Components get `logger.child({ component: 'mesh:fetcher' })`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      // No pid or hostname on every line.
      base: null,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    options.destination ?? pino.destination(2),
  );
}

/** A logger for a named component, e.g. `componentLogger(root, 'mesh:fetcher')`. */
export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}

/** A logger that drops everything (tests, library callers that pass none). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
