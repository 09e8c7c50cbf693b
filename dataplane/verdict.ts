/**
 * What the engine answers for a packet in place of the length to write back.
 *
 * @module
 */

/** What `process` returns for a packet that must not be written back. */
export const DROP = -1;

/**
 * What `process` returns for a packet it handed to the DirectSender (DR): sent already, so not to
 * be written back.
 */
export const SENT = -3;
