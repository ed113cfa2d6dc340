export * from './errors.ts';
export * from './logging.ts';
export * from './oci/digest.ts';
export * from './oci/media-types.ts';
export * from './oci/manifest.ts';
export * from './oci/walk-image.ts';
export * from './oci/reference.ts';
export * from './oci/referrers.ts';
export * from './oci/mirror-name.ts';
export * from './oci/sparse-index.ts';
export * from './registry/types.ts';
export * from './agent/api.ts';
export * from './agent/blob-reader.ts';
export * from './archive/run-metadata.ts';
export * from './archive/receipt.ts';
export * from './units.ts';
export * from './mesh/swarm-key.ts';
export * from './config/imageset.ts';
export * from './config/load-imageset.ts';
export * from './config/delete-image-list.ts';
export * from './config/settings.ts';
export * from './retry/policy.ts';
export * from './retry/host-backoff.ts';
export * from './retry/retry-loop.ts';
export * from './retry/retry-clock.ts';
export * from './registry/credentials.ts';
export { parseWwwAuthenticate, type AuthChallenge } from './registry/auth.ts';
export {
  createRegistryClient,
  parseContentRange,
  DEFAULT_MAX_MANIFEST_BYTES,
  DEFAULT_MAX_SMALL_BLOB_BYTES,
  type RegistryClientOptions,
  type HttpRegistryClient,
  type ContentRange,
} from './registry/client.ts';
export * from './mesh/control-messages.ts';
export { abandonBody, mapTransportError, type TransportErrorContext } from './registry/http.ts';
export { raceAbort } from './registry/abortable.ts';
export * from './config/agent-config.ts';
