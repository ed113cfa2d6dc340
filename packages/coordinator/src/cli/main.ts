#!/usr/bin/env node
/**
 * The CLI's entry point. Node's compile cache (in the system temp folder, shared by every run) keeps
 * the stripped and compiled sources, which halves start-up: measured 0.42 s → 0.25 s for a bare
 * command. It has to be on before the program's modules load, hence the dynamic import.
 */
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./program.ts');
