/**
 * The one error the template engine raises, for parse and execution failures alike. Its message is
 * Go's `text/template` error text without the leading `template: `, so it always starts with the
 * file and line: `app/templates/x.yaml:12: function "foo" not defined`, or for execution
 * `app/templates/x.yaml:12:20: executing "app/templates/x.yaml" at <.Values.a.b>: nil pointer evaluating interface {}.b`.
 * An error inside an `include` keeps Go's chain (`error calling include: template: ...`) in the
 * message, while `template`/`line` point at the innermost failing action, the one to fix.
 */

export interface TemplateErrorOptions {
  /** The chart file (Go's ParseName) holding the failing action. */
  template: string;
  line: number;
  /** Go's byte column within the line; absent for parse errors, which Go reports by line only. */
  column?: number;
  /** The innermost reason, without locations: `nil pointer evaluating interface {}.b`. */
  reason: string;
  cause?: unknown;
}

/** A chart template that does not parse or does not execute; `message` starts with `file:line`. */
export class TemplateError extends Error {
  readonly code = 'MM_HELM_TEMPLATE' as const;
  readonly template: string;
  readonly line: number;
  readonly column: number | undefined;
  readonly reason: string;

  constructor(message: string, options: TemplateErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TemplateError';
    this.template = options.template;
    this.line = options.line;
    this.column = options.column;
    this.reason = options.reason;
  }

  /** The message as Go prints it (`template: ...`), for embedding in an outer error's chain. */
  get goMessage(): string {
    return `template: ${this.message}`;
  }
}

/**
 * An error a template function reports, Go's `(result, error)` second value: the executor turns it
 * into `error calling <name>: <message>` at the calling action.
 */
export class TemplateFunctionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TemplateFunctionError';
  }
}
