import * as openpgp from 'openpgp';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '@meshmirror/shared';
import { RED_HAT_RELEASE_KEYS, RED_HAT_RELEASE_KEYS_FINGERPRINTS } from './redhat-release-keys.ts';
import { openReleaseSignatureStore } from './release-signatures.ts';

describe('release signature keys', () => {
  it("are Red Hat's release key 2 and beta key 2, as published", async () => {
    const keys = await openpgp.readKeys({ armoredKeys: RED_HAT_RELEASE_KEYS });
    expect(keys.map((k) => k.getFingerprint()).sort()).toEqual([...RED_HAT_RELEASE_KEYS_FINGERPRINTS].sort());
    expect(keys.map((k) => k.getUserIDs()[0])).toEqual(['Red Hat, Inc. (release key 2) <security@redhat.com>', 'Red Hat, Inc. (beta key 2) <security@redhat.com>']);
  });

  it('refuses a key file that holds no public key, naming the variable', async () => {
    await expect(openReleaseSignatureStore({ armoredKeys: 'not a key', tlsVerify: true, logger: silentLogger() })).rejects.toMatchObject({
      code: 'MM_USAGE',
      message: expect.stringMatching(/^OCP_SIGNATURE_VERIFICATION_PK: not an armored OpenPGP public key/),
    });
  });
});
