/** Called as bytes move: bytes so far, and the total when known (null for a stream of unknown length). */
export type Progress = (sentBytes: number, totalBytes: number | null) => void;
