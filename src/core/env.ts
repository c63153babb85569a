/**
 * Environment variables as kvsieve reads them: `process.env` fits, and so does a plain object (tests,
 * callers that pass their own). Public signatures use this rather than `NodeJS.ProcessEnv`, so that
 * the package's types need no `@types/node`.
 */
export type Env = Readonly<Record<string, string | undefined>>;
