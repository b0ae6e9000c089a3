import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// `npm run dev` proxies the admin API of a running engine (`flotilla serve`), so the UI is
// same-origin in development exactly as when the engine serves the built files.
// eslint-disable-next-line no-undef
const api = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.FLOTILLA_API ?? 'http://127.0.0.1:8071';

export default defineConfig({
  plugins: [svelte()],
  base: '/',
  build: { outDir: 'dist', target: 'es2022', chunkSizeWarningLimit: 600 },
  server: {
    proxy: {
      '/api': { target: api, changeOrigin: true },
      '/health': { target: api, changeOrigin: true },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
