import { test } from 'node:test';

test('clicks and takes a screenshot, checks nothing', async () => {
  await Promise.resolve('click');
});
