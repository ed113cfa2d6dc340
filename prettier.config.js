// @ts-check
/**
 * Chosen to match the code as it was written: single quotes, semicolons, trailing commas, and long
 * lines. 168 is the print width that changed the fewest lines when the code was first formatted
 * (measured from 120 to 220; the code had lines up to ~200 characters).
 * @type {import('prettier').Config}
 */
export default {
  singleQuote: true,
  trailingComma: 'all',
  printWidth: 168,
};
