import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../oci/digest.ts';
import { makeReceipt, parseReceipt, RECEIPT_VERSION } from './receipt.ts';

const d = (s: string) => sha256Digest(Buffer.from(s));

describe('receipt', () => {
  it('lists manifests and blobs per repository with their sizes, merged into an earlier receipt for the same target only', () => {
    const first = makeReceipt(
      'docker://mirror.example.com/pre',
      [{ repository: 'pre/app', manifests: [{ digest: d('m1'), size: 10 }], blobs: [{ digest: d('b1'), size: 100 }] }],
      undefined,
    );
    expect(parseReceipt(JSON.parse(JSON.stringify(first)))).toEqual({ success: true, data: first });
    const second = makeReceipt(
      'docker://mirror.example.com/pre',
      [{ repository: 'pre/other', manifests: [{ digest: d('m2'), size: 20 }], blobs: [{ digest: d('b1'), size: 100 }] }],
      first,
    );
    expect(Object.keys(second.repositories)).toEqual(['pre/app', 'pre/other']);
    expect(second.sizes).toEqual({ [d('m1')]: 10, [d('b1')]: 100, [d('m2')]: 20 });
    const elsewhere = makeReceipt('docker://other.example.com', [], first);
    expect(elsewhere.repositories).toEqual({});
  });

  it('names the field at fault, and refuses a receipt from a newer meshmirror', () => {
    const good = makeReceipt('docker://h', [], undefined);
    expect(parseReceipt({ ...good, sizes: { 'not-a-digest': 1 } })).toMatchObject({ success: false, problem: expect.stringContaining('at sizes') });
    expect(parseReceipt({ ...good, schemaVersion: RECEIPT_VERSION + 1 })).toMatchObject({ success: false, problem: expect.stringContaining('newer meshmirror') });
  });
});
