const until = async (what, probe) => probe();
const text = async () => '10 outdated';

export async function overview() {
  if (!(await text())) throw new Error('no tile');
  await until('no outdated device', async () => (await text()).includes('0 outdated'));
}
