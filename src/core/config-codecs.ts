/** The audio codecs voxgate speaks, as config fields name them. */
export const CODECS = ['opus', 'pcmu', 'pcma', 'g722'] as const;
export type CodecName = (typeof CODECS)[number];
