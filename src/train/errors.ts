import { makeFolder } from '../io/atomic';

/** An error caused by user input (flags, files, data): the CLI prints its message on one line, no stack. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'UserError';
  }
}

/** Creates an output folder of a command; why it cannot be created is a user error. */
export function makeOutputFolder(dir: string): void {
  try {
    makeFolder(dir);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}
