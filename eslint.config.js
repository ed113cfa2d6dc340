// @ts-check
// Type-aware lint (`pnpm lint`). typescript-eslint needs the TypeScript compiler API, which TypeScript 7
// (`tsc`, run by `pnpm typecheck`) does not have: the `typescript` package here is @typescript/typescript6,
// installed beside TypeScript 7 as @typescript/native (see package.json).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/node_modules/**', 'test-results/**', 'test/.tmp/**', 'demo-out/**', 'bench-out/**', '.meshmirror/**', 'dist/**', 'test-artifacts/**'],
  },
  // Everything in recommendedTypeChecked, among it the rules this lint is for: no-floating-promises,
  // no-misused-promises and await-thenable. Changes from it are below, each with its reason.
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          // Files outside tsconfig.json's include: the bin shim and the config files.
          allowDefaultProject: ['packages/coordinator/bin/*.js', 'eslint.config.js', 'prettier.config.js', 'vitest.faults.config.ts'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Off: an `async` method without `await` is how this code implements a Promise-returning interface
      // (BlobSource, RegistryClient, the fakes in tests): `async` turns a synchronous throw into a
      // rejection, which callers rely on. Dropping `async` to please the rule would change that.
      '@typescript-eslint/require-await': 'off',
      // Passing on a caught error (`catch (error)` binds `unknown`) is forwarding, not inventing a
      // non-Error reason: allowed, as only-throw-error already allows `throw error` of an unknown.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      // `const { sha256: _dropped, ...rest } = record` is how this code copies an object without a key.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    // Tests read JSON that a run wrote (the CLI's summary on stdout, reports, index.json, manifests)
    // with JSON.parse, which returns `any`, and check its shape with expect(); vitest's asymmetric
    // matchers (expect.stringContaining, expect.objectContaining) are typed `any` as well. The
    // no-unsafe-* rules would only ask for a cast to the shape that the assertion itself checks.
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
