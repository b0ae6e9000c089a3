import { describe, expect, it } from 'vitest';

describe('demo', () => {
  it('is fine', () => {
    expect(true).toBe(true);
  });
});
