export * from './errors.ts';
export * from './logging.ts';
export * from './oci/digest.ts';
export * from './oci/media-types.ts';
export * from './oci/manifest.ts';
export * from './oci/reference.ts';
export * from './registry/types.ts';
export * from './agent/api.ts';
