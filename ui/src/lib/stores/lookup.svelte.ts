// Names for what events and lists refer to by id: devices by MAC, rollouts and firmware by id,
// read from the stores (so a view that uses them follows the stores' changes).

import type { Lookup } from '../logic/events';
import { devices } from './devices.svelte';
import { firmware } from './firmware.svelte';
import { rollouts } from './rollouts.svelte';

export const lookup: Lookup = {
  device: (mac) => devices.get(mac),
  rollout: (id) => rollouts.byId(id),
  firmware: (id) => firmware.byId(id),
};
