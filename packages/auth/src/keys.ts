import { createHash, createPrivateKey, createPublicKey, createSecretKey, KeyObject } from 'node:crypto';

/**
 * A token key as the host configures it. `key` is a PEM string (private or public), a Node
 * `KeyObject`, or an HMAC secret (bytes, or any non-PEM string) of at least 32 bytes. EC (P-256,
 * P-384, P-521), RSA and Ed25519 keys sign with ES256/ES384/ES512, RS256 and EdDSA; secrets with HS256.
 */
export interface TokenKey {
  /** The JWT header `kid`. Default: derived from the (public) key, so rotation needs no naming. */
  kid?: string;
  key: string | KeyObject | Uint8Array;
}

/** A key ready for jose: its id, algorithm, and what signs (if it can) and verifies with it. */
export interface ResolvedKey {
  kid: string;
  alg: string;
  /** The private key or secret; undefined for a public key, which only verifies. */
  sign?: KeyObject;
  verify: KeyObject;
}

export function resolveKey(input: TokenKey): ResolvedKey {
  const object = toKeyObject(input.key);
  if (object.type === 'secret') {
    if ((object.symmetricKeySize ?? 0) < 32) throw new Error('token key: an HMAC secret needs at least 32 bytes');
    const kid = input.kid ?? `hs-${createHash('sha256').update(object.export()).digest('base64url').slice(0, 16)}`;
    return { kid, alg: 'HS256', sign: object, verify: object };
  }
  const publicKey = object.type === 'private' ? createPublicKey(object) : object;
  const kid =
    input.kid ??
    createHash('sha256')
      .update(publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64url')
      .slice(0, 32);
  return { kid, alg: algorithmOf(publicKey), sign: object.type === 'private' ? object : undefined, verify: publicKey };
}

function toKeyObject(key: TokenKey['key']): KeyObject {
  if (key instanceof KeyObject) return key;
  if (typeof key === 'string' && key.includes('-----BEGIN')) {
    return key.includes('PRIVATE KEY') ? createPrivateKey(key) : createPublicKey(key);
  }
  return createSecretKey(typeof key === 'string' ? Buffer.from(key, 'utf8') : key);
}

function algorithmOf(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const alg = curve && { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[curve];
      if (alg) return alg;
      throw new Error(`token key: unsupported EC curve ${curve}`);
    }
    default:
      throw new Error(`token key: unsupported key type ${key.asymmetricKeyType}`);
  }
}
