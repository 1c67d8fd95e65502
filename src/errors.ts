// The one error type for problems with the user's input (files, options). The CLI maps it to
// exit code 2, so a bad checkpoint is told apart from a bug (exit 1) without parsing messages.

export class MelboError extends Error {
  /** The file the problem is in, when there is one; the message names it too. */
  readonly file: string | undefined;

  constructor(message: string, options?: { file?: string; cause?: unknown }) {
    // The file is put in front of the message here, so no call site can forget to name it.
    const file = options?.file;
    super(file !== undefined ? `${file}: ${message}` : message, { cause: options?.cause });
    this.name = "MelboError";
    this.file = file;
  }
}

/** Short description of an unknown thrown value, for wrapping library errors. */
export function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
