import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// base "./": every asset URL is relative, so the panel works under any ingress prefix
// (the server injects <base href="<X-Ingress-Path>/"> into index.html for deep links).
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:18300",
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
});
