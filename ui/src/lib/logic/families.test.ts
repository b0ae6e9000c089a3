import { describe, expect, it } from 'vitest';
import { canUpdate, familyNote, familyText } from './families';
import { FAMILIES } from '../api/types';

describe('families the engine updates', () => {
  it('updates only native devices today, and says so of the others', () => {
    expect(FAMILIES.filter(canUpdate)).toEqual(['native']);
    expect(familyText('native')).toBe('Native');
    expect(familyText('tasmota')).toBe('Tasmota — updates not supported yet');
    expect(familyText('shelly')).toBe('Shelly — updates not supported yet');
    expect(familyText('unknown')).toBe('Unknown — cannot be updated');
    expect(familyNote('esphome')).toBe('Flotilla finds ESPHome devices but cannot update them yet: a rollout skips them.');
    expect(familyNote('native')).toBe('Flotilla updates this family.');
  });
});
