import { isDigest } from './digest.js';
import { OciError } from './errors.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const IMAGE_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);

/** Content-Types that say nothing about the manifest kind, so its `mediaType` field decides. */
const GENERIC_TYPES = new Set(['', 'application/json', 'application/octet-stream', 'text/plain']);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
}

/** What the registry needs from a manifest: parsed for validation only, stored as pushed. */
export interface ParsedManifest {
  mediaType: string;
  kind: 'image' | 'index';
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** Blobs that must be in the repository (config and distributable layers). */
  blobs: string[];
  /** Manifests an index references; they must be in the repository. */
  children: string[];
}

function invalid(message: string, detail?: unknown): OciError {
  return new OciError('MANIFEST_INVALID', { message, detail });
}

/** How much structure a manifest may have; checked on the raw bytes, before JSON.parse. */
export interface ManifestLimits {
  /** Deepest nesting of arrays and objects. */
  maxDepth: number;
  /** Most arrays, objects, and items and members inside them. */
  maxElements: number;
}

export const DEFAULT_MANIFEST_LIMITS: ManifestLimits = { maxDepth: 64, maxElements: 200_000 };

/** Parse the pushed bytes, given the request's Content-Type (parameters ignored). */
export function parseManifest(content: Buffer, contentType: string | undefined, limits = DEFAULT_MANIFEST_LIMITS): ParsedManifest {
  checkShape(content, limits);
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!isObject(json)) throw invalid('manifest must be a JSON object');

  const headerType = (contentType ?? '').split(';')[0].trim().toLowerCase();
  const fieldType = json.mediaType;
  if (fieldType !== undefined && typeof fieldType !== 'string') throw invalid('mediaType must be a string');
  if (fieldType && !GENERIC_TYPES.has(headerType) && fieldType !== headerType) {
    throw invalid(`mediaType ${fieldType} does not match Content-Type ${headerType}`);
  }
  const mediaType = GENERIC_TYPES.has(headerType) ? (fieldType ?? '') : headerType;
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2');

  if (IMAGE_TYPES.has(mediaType)) return parseImage(json, mediaType);
  if (INDEX_TYPES.has(mediaType)) return parseIndex(json, mediaType);
  if (!mediaType) {
    // No type anywhere: infer it from the shape, as the conformance suite pushes such manifests.
    if (Array.isArray(json.manifests)) return parseIndex(json, MEDIA_TYPES.ociIndex);
    if (json.config !== undefined) return parseImage(json, MEDIA_TYPES.ociManifest);
  }
  throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`);
}

function parseImage(json: Record<string, unknown>, mediaType: string): ParsedManifest {
  const config = descriptor(json.config, 'config');
  if (!Array.isArray(json.layers)) throw invalid('layers must be an array');
  const layers = json.layers.map((layer, i) => descriptor(layer, `layers[${i}]`));
  const artifactType = optionalString(json.artifactType, 'artifactType');
  // Non-distributable layers (with `urls`) are fetched elsewhere and never pushed here.
  const blobs = [config, ...layers.filter((layer) => !layer.urls?.length)].map((d) => d.digest);
  return {
    mediaType,
    kind: 'image',
    subject: json.subject === undefined ? undefined : descriptor(json.subject, 'subject'),
    artifactType: artifactType ?? config.mediaType,
    annotations: annotations(json.annotations),
    blobs: unique(blobs),
    children: [],
  };
}

function parseIndex(json: Record<string, unknown>, mediaType: string): ParsedManifest {
  if (!Array.isArray(json.manifests)) throw invalid('manifests must be an array');
  const manifests = json.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
  return {
    mediaType,
    kind: 'index',
    subject: json.subject === undefined ? undefined : descriptor(json.subject, 'subject'),
    artifactType: optionalString(json.artifactType, 'artifactType'),
    annotations: annotations(json.annotations),
    blobs: [],
    children: unique(manifests.map((m) => m.digest)),
  };
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, urls } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where}.mediaType must be a string`);
  if (typeof digest !== 'string' || !isDigest(digest)) throw invalid(`${where}.digest is not a valid digest`, { digest });
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}.size must be a non-negative integer`);
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string'))) {
    throw invalid(`${where}.urls must be an array of strings`);
  }
  return {
    mediaType,
    digest,
    size,
    urls: urls as string[] | undefined,
    artifactType: optionalString(value.artifactType, `${where}.artifactType`),
    annotations: annotations(value.annotations, `${where}.annotations`),
  };
}

function annotations(value: unknown, where = 'annotations'): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw invalid(`${where} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`${where} must be a string`);
  return value;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Refuse JSON nested deeper than `maxDepth` or holding more than `maxElements` before parsing it:
 * JSON.parse's time and the objects it builds grow with both (16 concurrent 4 MB `[[[...]]]`
 * bodies held 1.8 GB and the event loop for 48 s), while this pass touches each byte once and
 * skips string contents with indexOf. Malformed JSON is left for JSON.parse to refuse.
 */
function checkShape(content: Buffer, { maxDepth, maxElements }: ManifestLimits): void {
  let depth = 0;
  let elements = 0;
  const tooMany = () => invalid(`manifest has more than ${maxElements} elements (arrays, objects and their items)`, { maxElements });
  for (let i = 0; i < content.length; i++) {
    const byte = content[i];
    if (byte === QUOTE) {
      // Jump to the closing quote: the next one not escaped by an odd run of backslashes.
      for (;;) {
        const end = content.indexOf(QUOTE, i + 1);
        if (end < 0) return;
        let slashes = 0;
        while (content[end - 1 - slashes] === BACKSLASH) slashes++;
        i = end;
        if (slashes % 2 === 0) break;
      }
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) throw invalid(`manifest is nested deeper than ${maxDepth} levels`, { maxDepth });
      if (++elements > maxElements) throw tooMany();
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--;
    } else if (byte === 0x2c && ++elements > maxElements) {
      throw tooMany();
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
