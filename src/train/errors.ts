/** An error caused by user input (flags, files, data): the CLI prints its message on one line, no stack. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'UserError';
  }
}
