import type { TensorVisitor } from './decoder.js';

/**
 * Delivers one tensor's bytes to the visitor in element-aligned slices. Whole elements of each pushed run
 * go out as a zero-copy subarray; the < elementSize bytes of an element split across pushes are carried in
 * an 8-byte buffer and sent as one element once completed. Callers push exactly the tensor's bytes (a
 * multiple of the element size) before `begin`ning the next tensor, so nothing is carried across tensors.
 */
export class ElementSlicer {
  private readonly carry = new Uint8Array(8);
  private carryLength = 0;
  private index = -1;
  private elementSize = 1;
  private offset = 0;

  constructor(private readonly visitor: TensorVisitor) {}

  begin(index: number, elementSize: number): void {
    this.index = index;
    this.elementSize = elementSize;
    this.offset = 0;
    this.carryLength = 0;
  }

  /** Pushes `bytes[start, end)`, the tensor's next bytes. */
  push(bytes: Uint8Array, start: number, end: number): void {
    const size = this.elementSize;
    if (this.carryLength > 0) {
      // At most 7 bytes: a loop beats subarray + set here.
      while (this.carryLength < size && start < end) this.carry[this.carryLength++] = bytes[start++];
      if (this.carryLength < size) return;
      this.emit(this.carry.subarray(0, size));
      this.carryLength = 0;
    }
    const available = end - start;
    const whole = available - (available % size);
    if (whole > 0) {
      this.emit(start === 0 && whole === bytes.byteLength ? bytes : bytes.subarray(start, start + whole));
      start += whole;
    }
    while (start < end) this.carry[this.carryLength++] = bytes[start++];
  }

  private emit(slice: Uint8Array): void {
    this.visitor.onData(this.index, this.offset, slice);
    this.offset += slice.byteLength;
  }
}
