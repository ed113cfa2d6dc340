// The mesh (libp2p) is its own entry point, `@meshmirror/agent/mesh`: loading libp2p costs about
// 0.17 s and 30 MB, which commands that do not use the mesh should not pay.
export * from './identity.ts';
export * from './node.ts';
export * from './blob-protocol.ts';
export * from './agent-service.ts';
export * from './agent-counters.ts';
export * from './control-protocol.ts';
export * from './exchange.ts';
